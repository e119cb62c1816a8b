#!/usr/bin/env python3
"""Connection storm against a running server: RSS before, during and after, and /healthz meanwhile.

    scripts/storm.py HOST:PORT PID [--connections 5000] [--hold 5] [--settle 30]

Opens `connections` sockets (half send nothing, half send half a request head), holds them for
`hold` seconds while probing /healthz once a second, closes them, waits 5 s, and prints one JSON
line: the server's RSS (MiB, from /proc/PID/status) before, at the end of the hold and after, and
the /healthz probes' latencies (null: no answer within 5 s); then it samples RSS once a second for up
to `settle` seconds and reports when it first came back to within 2 MiB of its value before the storm
(`settled_s`, null if it did not) and the last sample. Standard library only; local only.
"""
import argparse, json, socket, time

p = argparse.ArgumentParser()
p.add_argument("addr")
p.add_argument("pid", type=int)
p.add_argument("--connections", type=int, default=5000)
p.add_argument("--hold", type=float, default=5)
p.add_argument("--settle", type=float, default=30)
a = p.parse_args()
host, port = a.addr.rsplit(":", 1)
port = int(port)

def rss():
    for line in open(f"/proc/{a.pid}/status"):
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)

def probe():
    t = time.monotonic()
    try:
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = s.recv(64)
        s.close()
        return round(time.monotonic() - t, 3) if data.startswith(b"HTTP/1.1 200") else None
    except OSError:
        return None

before = rss()
socks, failed = [], 0
for i in range(a.connections):
    try:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, port))
        socks.append(s)
    except OSError:
        failed += 1
time.sleep(0.5)
for i, s in enumerate(socks):
    if i % 2:
        try:
            s.send(b"POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        except OSError:
            pass
probes = []
end = time.monotonic() + a.hold
while time.monotonic() < end:
    probes.append(probe())
    time.sleep(1)
during = rss()
for s in socks:
    s.close()
closed = time.monotonic()
time.sleep(5)
after = rss()
settled, last = None, after
while settled is None and time.monotonic() - closed < a.settle:
    last = rss()
    if last <= before + 2:
        settled = round(time.monotonic() - closed, 1)
        break
    time.sleep(1)
print(json.dumps({"connections": a.connections, "connect_failed": failed, "rss_mib_before": before,
                  "rss_mib_during": during, "rss_mib_after": after, "rss_mib_last": last,
                  "settled_s": settled, "healthz_s": probes}))
