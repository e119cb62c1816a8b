#!/usr/bin/env python3
"""Overload probe of a running server: `/v1/embed` with 8 documents a request at twice its capacity.

    scripts/overload.py BASE_URL [--seconds 20] [--factor 2] [--docs 8]

Capacity (documents/s) is measured first, closed-loop (4 concurrent clients for 5 s); then requests are
offered open-loop at `factor` × capacity for `seconds` (each on its own thread, 30 s client timeout),
and the status mix, useful throughput (documents answered 200 per second over the run, as a share of
capacity) and the latency of accepted requests are printed as one JSON line. Standard library only.
"""
import argparse, json, threading, time, urllib.request, urllib.error

p = argparse.ArgumentParser()
p.add_argument("base")
p.add_argument("--seconds", type=float, default=20)
p.add_argument("--factor", type=float, default=2)
p.add_argument("--docs", type=int, default=8)
a = p.parse_args()

def body(i):
    movies = [{"title": f"Overload probe {i}-{j}", "genres": ["Drama", "Crime"], "release_year": 1990 + j,
               "directors": ["Someone Else"], "actors": [f"Actor {k}" for k in range(6)],
               "plot": "A long enough description of the film so that every document costs some tokens. " * 3}
              for j in range(a.docs)]
    return json.dumps({"movies": movies}).encode()

def post(i):
    req = urllib.request.Request(a.base + "/v1/embed", data=body(i), headers={"content-type": "application/json"})
    t = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            return r.status, time.monotonic() - t
    except urllib.error.HTTPError as e:
        e.read()
        return e.code, time.monotonic() - t
    except Exception:
        return 0, time.monotonic() - t

# Capacity: closed loop.
done = [0]
stop = time.monotonic() + 5
def loop(k):
    i = 0
    while time.monotonic() < stop:
        s, _ = post(k * 100000 + i)
        i += 1
        if s == 200:
            done[0] += a.docs
threads = [threading.Thread(target=loop, args=(k,)) for k in range(4)]
t0 = time.monotonic()
[t.start() for t in threads]
[t.join() for t in threads]
capacity = done[0] / (time.monotonic() - t0)

# Open loop at factor x capacity.
rate = a.factor * capacity / a.docs  # requests per second
n = int(rate * a.seconds)
results = [None] * n
def one(i):
    results[i] = post(10_000_000 + i)
threads = []
t0 = time.monotonic()
for i in range(n):
    delay = t0 + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    th = threading.Thread(target=one, args=(i,))
    th.start()
    threads.append(th)
[t.join() for t in threads]
elapsed = time.monotonic() - t0
mix = {}
for s, _ in results:
    mix[str(s)] = mix.get(str(s), 0) + 1
ok = sorted(t for s, t in results if s == 200)
refused = sorted(t for s, t in results if s == 429)
pct = lambda xs, q: round(xs[min(len(xs) - 1, int(len(xs) * q))], 3) if xs else None
print(json.dumps({
    "capacity_docs_per_s": round(capacity, 1), "offered_requests": n, "offered_docs_per_s": round(n * a.docs / a.seconds, 1),
    "status": mix, "useful_share_of_capacity": round(len(ok) * a.docs / elapsed / capacity, 3),
    "accepted_p50_s": pct(ok, 0.5), "accepted_p99_s": pct(ok, 0.99), "refusal_p99_s": pct(refused, 0.99),
    "elapsed_s": round(elapsed, 1)}))
