"""Add → visible latency between two cinevec replicas on one PostgreSQL store.

    python3 scripts/bench_replicas.py WRITER_URL READER_URL API_KEY [ADDS]

Adds ADDS movies one at a time through the writer; after each acknowledgement, asks the reader (every
2 ms) until it serves the movie (GET /v1/movies/{id}/similar?k=1 answers from the reader's in-memory
rows, not from the store). Prints the latency from acknowledgement to visibility: p50, p90, p99, max.
"""
import json
import sys
import time
import urllib.error
import urllib.request


def call(url, body=None, key=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")
    if body is not None:
        req.add_header("content-type", "application/json")
    if key:
        req.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def main():
    writer, reader, key = sys.argv[1:4]
    adds = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    run = f"{time.time():.0f}"
    latencies = []
    for i in range(adds):
        movie_id = f"bench-{run}-{i}"
        body = {"id": movie_id, "rating": 6.5, "votes": 100, "movie": {
            "title": f"Replica Bench {i}", "genres": ["Drama"], "release_year": 2026}}
        status = call(f"{writer}/v1/movies", body, key)
        if status != 201:
            sys.exit(f"add {i} answered {status}")
        acked = time.perf_counter()
        while call(f"{reader}/v1/movies/{movie_id}/similar?k=1") != 200:
            if time.perf_counter() - acked > 10:
                sys.exit(f"{movie_id} not visible on the reader after 10 s")
            time.sleep(0.002)
        latencies.append((time.perf_counter() - acked) * 1000)
    latencies.sort()
    q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))]
    print(f"add -> visible on the other replica over {adds} adds (ms): "
          f"p50 {q(0.50):.1f}, p90 {q(0.90):.1f}, p99 {q(0.99):.1f}, max {latencies[-1]:.1f}")


if __name__ == "__main__":
    main()
