#!/usr/bin/env python3
"""The measuring half of scripts/bench-service.sh (standard library only).

    bench_service.py BIN SET_DIR DB MODEL_DIR OUT_DIR [OFFLINE_SET_DIR...]

Starts the real `cinevec serve` on the artifact set SET_DIR (catalog DB), measures start-up to
/readyz after deleting the saved graph (rebuild) and with it (three starts, median), recall@10 of
more-like-this against `exact=true` over 1,000 movies, `wrk` throughput and latency of
`GET /v1/movies/{id}/similar?k=10` rotating over every catalog id in a shuffled order (no cache could
help), one-movie `POST /v1/predict` latency
with a sequential client, and the server's peak RSS (VmHWM) against the bytes of matrix + graph +
model; prints one table with each number beside its target. Each OFFLINE_SET_DIR (e.g. the 768-d set,
which no local model can serve) is measured with `cinevec bench-index` after the server stopped: graph
build (when none is saved) and load, recall@10 per ef against brute force, peak RSS.
"""
import http.client
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

BIN, SET_DIR, DB, MODEL_DIR, OUT = sys.argv[1:6]
OFFLINE_SETS = sys.argv[6:]
WRK_THREADS = int(os.environ.get("WRK_THREADS", "1"))
WRK_CONNECTIONS = int(os.environ.get("WRK_CONNECTIONS", "32"))
WRK_SECONDS = int(os.environ.get("WRK_SECONDS", "20"))
RECALL_QUERIES = int(os.environ.get("RECALL_QUERIES", "1000"))
PREDICT_REQUESTS = int(os.environ.get("PREDICT_REQUESTS", "300"))
# Real movie documents for the predict latency (the synthetic catalog's documents are measured too):
# the same IMDb movies the embedding benchmark uses (scripts/bench-embed.sh).
PREDICT_CATALOG = os.environ.get("PREDICT_CATALOG", os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                                                  "data", "imdb5000", "catalog.jsonl"))
# Graph parameters of the offline sets (default: the server's defaults, M 24, ef_construction 200).
OFFLINE_M = os.environ.get("OFFLINE_HNSW_M", "24")
OFFLINE_EFC = os.environ.get("OFFLINE_HNSW_EF_CONSTRUCTION", "200")
# Skip the start-up with a rebuilt graph (minutes at this scale) when 0.
MEASURE_REBUILD = os.environ.get("MEASURE_REBUILD", "1") != "0"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Server:
    def __init__(self, extra_env=None):
        self.port = free_port()
        env = dict(os.environ, **(extra_env or {}))
        self.log = open(os.path.join(OUT, "server.log"), "ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [BIN, "serve", "--bind", f"127.0.0.1:{self.port}", "--artifacts", SET_DIR, "--db", DB],
            stdout=self.log, stderr=self.log, env=env)
        self.ready_s = self.wait_ready()

    def wait_ready(self, limit=1800):
        while time.monotonic() - self.started < limit:
            if self.proc.poll() is not None:
                sys.exit(f"the server exited with {self.proc.returncode}: see {OUT}/server.log")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.01)
        sys.exit("the server did not get ready in time")

    def hwm_bytes(self):
        return status_kb(self.proc.pid, "VmHWM") * 1024

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()


def get_json(conn, path):
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"GET {path}: {r.status} {body[:200]!r}")
    return json.loads(body)


def sample_ids(n):
    """Every (rows / n)-th id of the matrix: spread over the whole catalog."""
    with open(os.path.join(SET_DIR, "embeddings.ids.json")) as f:
        ids = json.load(f)["ids"]
    step = max(1, len(ids) // n)
    return ids[::step][:n]


def all_ids_shuffled():
    """Every id of the matrix, in a fixed pseudo-random order."""
    with open(os.path.join(SET_DIR, "embeddings.ids.json")) as f:
        ids = json.load(f)["ids"]
    random.Random(5).shuffle(ids)
    return ids


def recall(port, ids, k=10):
    """recall@10 of more-like-this by id (asked for `k` results, the first 10 counted) against exact=true."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    found = 0
    for movie in ids:
        fast = [r["id"] for r in get_json(conn, f"/v1/movies/{movie}/similar?k={k}")["results"]][:10]
        exact = [r["id"] for r in get_json(conn, f"/v1/movies/{movie}/similar?k=10&exact=true")["results"]]
        found += len(set(fast) & set(exact))
    return found / (10 * len(ids))


def wrk(port, ids, k=10):
    ids_file = os.path.join(OUT, "wrk-ids.txt")
    with open(ids_file, "w") as f:
        f.write("\n".join(ids) + "\n")
    lua = os.path.join(OUT, "rotate.lua")
    with open(lua, "w") as f:
        f.write(f"""
local ids = {{}}
for line in io.lines("{ids_file}") do ids[#ids + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/v1/movies/" .. ids[(i % #ids) + 1] .. "/similar?k={k}")
end
""")
    url = f"http://127.0.0.1:{port}"
    base = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", "--latency", "-s", lua]
    subprocess.run(base + ["-d5s", url], check=True, capture_output=True)  # warm-up
    out = subprocess.run(base + [f"-d{WRK_SECONDS}s", url], check=True, capture_output=True, text=True).stdout
    with open(os.path.join(OUT, f"wrk-k{k}.txt"), "w") as f:
        f.write(out)

    def ms(text):
        v, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if errors or socket_errors:
        sys.exit(f"wrk saw errors:\n{out}")
    return rps, p50, p99


def predict_latency(port, catalog):
    """p50/p99 ms of one-movie POST /v1/predict over the first PREDICT_REQUESTS movies of `catalog`."""
    docs = []
    with open(catalog) as f:
        for line in f:
            docs.append(json.loads(line)["movie"])
            if len(docs) == PREDICT_REQUESTS:
                break
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = []
    for i, doc in enumerate(docs):
        body = json.dumps({"movies": [doc]})
        t = time.perf_counter()
        conn.request("POST", "/v1/predict", body, {"content-type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            sys.exit(f"POST /v1/predict: {r.status} {data[:200]!r}")
        if i >= 10:  # the first few warm caches up
            times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, len(times) * 99 // 100)]


def bench_index(set_dir):
    """`cinevec bench-index` on a set; when it had to build the graph, once more to measure the load."""
    def run():
        path = os.path.join(OUT, f"index-{os.path.basename(set_dir)}.json")
        subprocess.run([BIN, "bench-index", "--artifacts", set_dir, "--queries", str(RECALL_QUERIES),
                        "--ef", "32,64,96,128", "--hnsw-m", OFFLINE_M, "--hnsw-ef-construction", OFFLINE_EFC,
                        "--json", path], check=True, stdout=subprocess.DEVNULL)
        return json.load(open(path))
    first = run()
    if first["graph"] == "built":
        second = run()
        second["build_s"] = first["graph_s"]
        second["peak_rss_build"] = first["peak_rss"]
        return second
    return first


def size(path):
    return os.path.getsize(path) if os.path.exists(path) else 0


def main():
    os.makedirs(OUT, exist_ok=True)
    results = {"load_before": os.getloadavg()}
    # 1. Start-up with the graph rebuilt (the saved one deleted).
    if MEASURE_REBUILD or not os.path.exists(os.path.join(SET_DIR, "index.graph")):
        for name in ("index.graph", "index.manifest.json"):
            if os.path.exists(os.path.join(SET_DIR, name)):
                os.remove(os.path.join(SET_DIR, name))
        s = Server()
        results["ready_rebuild_s"] = s.ready_s
        results["peak_rss_rebuild"] = s.hwm_bytes()
        s.stop()
    # 2. A start that reads the catalog from the store (the snapshot deleted); it saves a new snapshot.
    snapshot = os.path.join(SET_DIR, "catalog.snapshot")
    if os.path.exists(snapshot):
        os.remove(snapshot)
    s = Server()
    results["ready_store_s"] = s.ready_s
    for _ in range(600):
        if os.path.exists(snapshot):
            break
        time.sleep(0.1)
    time.sleep(1)
    s.stop()
    # 3. Start-up with the saved graph and snapshot: three starts, the median.
    starts = []
    for _ in range(3):
        s = Server()
        starts.append(s.ready_s)
        results["peak_rss_at_ready"] = s.hwm_bytes()
        if len(starts) < 3:
            s.stop()
    results["ready_saved_s_all"] = starts
    results["ready_saved_s"] = statistics.median(starts)
    # 4. The serving measurements, on the last server.
    try:
        results["recall_at_10"] = recall(s.port, sample_ids(RECALL_QUERIES))
        results["rps"], results["p50_ms"], results["p99_ms"] = wrk(s.port, all_ids_shuffled())
        # k = 20 is more than the neighbour table holds: every request walks the graph.
        results["graph_recall_at_10"] = recall(s.port, sample_ids(RECALL_QUERIES // 4), k=20)
        results["graph_rps"], results["graph_p50_ms"], results["graph_p99_ms"] = wrk(s.port, all_ids_shuffled(), k=20)
        results["predict_p50_ms"], results["predict_p99_ms"] = predict_latency(s.port, PREDICT_CATALOG)
        results["predict_synthetic_p50_ms"], results["predict_synthetic_p99_ms"] = predict_latency(
            s.port, os.path.join(os.path.dirname(DB), "catalog.jsonl"))
        results["peak_rss"] = s.hwm_bytes()
        info = get_json(http.client.HTTPConnection("127.0.0.1", s.port), "/v1/info")
    finally:
        s.stop()
    results["load_after"] = os.getloadavg()
    data = {
        "matrix": size(os.path.join(SET_DIR, "embeddings.safetensors")),
        # The nearest-neighbour index the server holds: the graph and the neighbour table.
        "graph": size(os.path.join(SET_DIR, "index.graph")) + size(os.path.join(SET_DIR, "index.knn")),
        "model": size(os.path.join(MODEL_DIR, "model.safetensors")),
    }
    results["q8_bytes"] = size(os.path.join(SET_DIR, "index.q8"))  # held only with --int8-walk
    results["snapshot_bytes"] = size(os.path.join(SET_DIR, "catalog.snapshot"))
    results["data_bytes"] = data
    results["rows"] = info["counts"]["matrix_rows"]
    results["dim"] = info["model"]["dim"]
    # More-like-this by id reads the neighbour table, found with the by-id candidate list.
    results["ef_search"] = info["index"].get("ef_search_by_row", info["index"]["ef_search"])
    table = info["index"].get("neighbour_table") or {}
    results["table"] = table
    results["catalog_loaded_from"] = info.get("catalog_loaded_from")
    results["int8_walk"] = info["index"].get("int8_walk", False)
    offline = [bench_index(d) for d in OFFLINE_SETS]
    results["offline"] = offline
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    report(results, data, offline)


def report(r, data, offline):
    mib = 1 << 20
    total = sum(data.values())
    rows = []

    def row(what, value, target, ratio, met):
        rows.append((what, value, target, f"{ratio:.2f}" if ratio is not None else "-", met))

    how = (f"neighbour table of {r['table']['width']}, found at ef {r['table']['ef']}" if r.get("table")
           else f"graph, ef {r['ef_search']}")
    row(f"recall@10, more-like-this by id vs exact ({RECALL_QUERIES} movies; {how})", f"{r['recall_at_10']:.4f}",
        "≥ 0.99", r["recall_at_10"] / 0.99, "yes" if r["recall_at_10"] >= 0.99 else "no")
    row(f"more-like-this throughput (wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS}, {WRK_SECONDS} s)",
        f"{r['rps']:,.0f} req/s", "≥ 10,000 req/s", r["rps"] / 10_000, "yes" if r["rps"] >= 10_000 else "no")
    row("more-like-this latency p50 under that load", f"{r['p50_ms']:.2f} ms", "-", None, "-")
    row("more-like-this latency p99 under that load", f"{r['p99_ms']:.2f} ms", "≤ 10 ms", r["p99_ms"] / 10,
        "yes" if r["p99_ms"] <= 10 else "no")
    if "graph_rps" in r:
        row(f"the graph walk (k=20, more than the table holds; ef {r['ef_search']}): recall@10 "
            f"({RECALL_QUERIES // 4} movies), throughput, p50, p99",
            f"{r['graph_recall_at_10']:.4f}, {r['graph_rps']:,.0f} req/s, {r['graph_p50_ms']:.2f} ms, "
            f"{r['graph_p99_ms']:.2f} ms", "-", None, "-")
    row(f"ready, saved graph and catalog snapshot (median of 3 starts; catalog from the "
        f"{r.get('catalog_loaded_from')})", f"{r['ready_saved_s']:.2f} s", "≤ 2 s", r["ready_saved_s"] / 2,
        "yes" if r["ready_saved_s"] <= 2 else "no")
    if "ready_store_s" in r:
        row("ready, saved graph, catalog read from the store (no snapshot)", f"{r['ready_store_s']:.2f} s", "-", None, "-")
    if "ready_rebuild_s" in r:
        row("ready, graph rebuilt", f"{r['ready_rebuild_s']:.1f} s", "-", None, "-")
    ratio = r["peak_rss"] / total
    walk = ", --int8-walk" if r.get("int8_walk") else ""
    row(f"peak RSS (VmHWM) ÷ data ({data['matrix'] / mib:.0f} MiB matrix + {data['graph'] / mib:.0f} MiB graph "
        f"and neighbour table + {data['model'] / mib:.0f} MiB model{walk})", f"{r['peak_rss'] / mib:.0f} MiB = {ratio:.2f} ×",
        "≤ 1.3 ×", ratio / 1.3, "yes" if ratio <= 1.3 else "no")
    if r.get("q8_bytes") and r.get("int8_walk"):
        with_q8 = r["peak_rss"] / (total + r["q8_bytes"])
        row(f"peak RSS ÷ data with the int8 walk copy ({r['q8_bytes'] / mib:.0f} MiB index.q8) counted as data",
            f"{with_q8:.2f} ×", "-", None, "-")
    if "peak_rss_rebuild" in r:
        row("peak RSS of the rebuild start", f"{r['peak_rss_rebuild'] / mib:.0f} MiB", "-", None, "-")
    row("one-movie POST /v1/predict, sequential, p50 (IMDb movies)", f"{r['predict_p50_ms']:.1f} ms", "≤ 20 ms",
        r["predict_p50_ms"] / 20, "yes" if r["predict_p50_ms"] <= 20 else "no")
    row("one-movie POST /v1/predict, sequential, p99 (IMDb movies)", f"{r['predict_p99_ms']:.1f} ms", "-", None, "-")
    if "predict_synthetic_p50_ms" in r:
        row("one-movie POST /v1/predict, p50 / p99 (the synthetic catalog's longer documents)",
            f"{r['predict_synthetic_p50_ms']:.1f} / {r['predict_synthetic_p99_ms']:.1f} ms", "-", None, "-")
    for o in offline:
        for e in o["per_ef"]:
            met = "yes" if e["recall"] >= 0.99 else "no"
            row(f"offline {o['dim']}-d (M {o['params']['max_connections']}, ef_construction "
                f"{o['params']['ef_construction']}): recall@10, ef {e['ef']} ({o['queries']} queries; search p50 "
                f"{e['search_p50_ms']:.2f} ms)", f"{e['recall']:.4f}", "≥ 0.99", e["recall"] / 0.99, met)
        if o.get("neighbour_table"):
            t = o["neighbour_table"]
            row(f"offline {o['dim']}-d: neighbour table ({t['width']} per movie, found at ef {t['ef']}): recall@10 "
                f"({o['queries']} queries; lookup p50 {t['lookup_p50_ms']:.3f} ms)", f"{t['recall']:.4f}", "≥ 0.99",
                t["recall"] / 0.99, "yes" if t["recall"] >= 0.99 else "no")
        data_o = o["matrix_bytes"] + o["graph_bytes"]
        row(f"offline {o['dim']}-d: saved graph loaded in", f"{o['graph_s']:.2f} s (matrix read {o['matrix_load_s']:.2f} s)",
            "-", None, "-")
        if "build_s" in o:
            row(f"offline {o['dim']}-d: graph built in", f"{o['build_s']:.0f} s (peak RSS {o['peak_rss_build'] / mib:.0f} MiB)",
                "-", None, "-")
        row(f"offline {o['dim']}-d: peak RSS ÷ (matrix + graph)", f"{o['peak_rss'] / mib:.0f} MiB = "
            f"{o['peak_rss'] / data_o:.2f} ×", "-", None, "-")
    print()
    print(f"{r['rows']:,} movies, dim {r['dim']}; load average before {r['load_before'][0]:.2f}, "
          f"after {r['load_after'][0]:.2f}; ready times of the saved-graph starts: "
          + ", ".join(f"{s:.2f} s" for s in r["ready_saved_s_all"]))
    print()
    print("| measurement | value | target | ratio to target | met |")
    print("|---|---|---|---|---|")
    for w, v, t, ratio, met in rows:
        print(f"| {w} | {v} | {t} | {ratio} | {met} |")


if __name__ == "__main__":
    main()
