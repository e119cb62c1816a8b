#!/usr/bin/env python3
"""The measuring half of scripts/bench-service.sh (standard library only).

    bench_service.py BIN SET_DIR DB MODEL_DIR OUT_DIR [OFFLINE_SET_DIR...]

Starts the real `cinevec serve` on the artifact set SET_DIR (catalog DB), measures start-up to
/readyz after deleting the saved graph (rebuild) and with it (three starts, median), recall@10 of
more-like-this against `exact=true` over 1,000 movies, `wrk` throughput and latency of
`GET /v1/movies/{id}/similar?k=10` rotating over every catalog id in a shuffled order (no cache could
help), the same with a filter from a mix of realistic ones (one genre, rare genres included, a decade,
min_votes, combinations) with its recall@10 against `exact=true` under the same filter (and, with
BASELINE_BIN, the same filtered and unfiltered measurements of another build's server in the same run,
with the ratios), one-movie `POST /v1/predict` latency
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
# 1: only the saved-graph start, the unfiltered and the filtered more-like-this (no rebuild or store
# start, no k=20 walk, no predict, no offline sets).
FILTERED_ONLY = os.environ.get("FILTERED_ONLY", "0") == "1"
# Another build of cinevec (e.g. main's, before planned filtered search) measured on the same set in the
# same run, for the before/after ratios.
BASELINE_BIN = os.environ.get("BASELINE_BIN", "")
# Queries per filter of the filtered recall measurement.
FILTER_RECALL_QUERIES = int(os.environ.get("FILTER_RECALL_QUERIES", "40"))
# The filtered mix: one genre (common to rarest, as in `cinevec gen-service`'s genre shares), decades,
# min_votes, and combinations.
FILTERS = [
    "genres=Drama",
    "genres=Sci-Fi",
    "genres=Western",
    "genres=Film-Noir",
    "min_year=1970&max_year=1979",
    "min_year=2010&max_year=2019",
    "min_votes=10000",
    "genres=Horror&min_year=1980&max_year=1989",
    "genres=Comedy&min_votes=1000",
    "genres=Western,Film-Noir&max_year=1969",
    "min_year=1990&max_year=1999&min_votes=5000",
    "genres=Documentary&exclude_genres=Music",
]


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
    def __init__(self, extra_env=None, binary=None):
        self.port = free_port()
        env = dict(os.environ, **(extra_env or {}))
        self.log = open(os.path.join(OUT, "server.log"), "ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [binary or BIN, "serve", "--bind", f"127.0.0.1:{self.port}", "--artifacts", SET_DIR, "--db", DB],
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


# wrk's socket errors (timeouts) per measurement.
WRK_SOCKET_ERRORS = {}


def wrk(port, ids, k=10, name=None):
    """wrk over GET /v1/movies/{id}/similar?k=K rotating over `ids`: req/s, p50 and p99 ms."""
    return wrk_paths(port, [f"/v1/movies/{i}/similar?k={k}" for i in ids], name or f"k{k}")


def wrk_paths(port, paths, name):
    """wrk GETs rotating over `paths`: req/s, p50 and p99 ms."""
    paths_file = os.path.join(OUT, f"wrk-{name}-paths.txt")
    with open(paths_file, "w") as f:
        f.write("\n".join(paths) + "\n")
    lua = os.path.join(OUT, f"rotate-{name}.lua")
    with open(lua, "w") as f:
        f.write(f"""
local paths = {{}}
for line in io.lines("{paths_file}") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
""")
    url = f"http://127.0.0.1:{port}"
    base = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", "--latency", "-s", lua]
    subprocess.run(base + ["-d5s", url], check=True, capture_output=True)  # warm-up
    out = subprocess.run(base + [f"-d{WRK_SECONDS}s", url], check=True, capture_output=True, text=True).stdout
    with open(os.path.join(OUT, f"wrk-{name}.txt"), "w") as f:
        f.write(out)

    def ms(text):
        v, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if errors:
        sys.exit(f"wrk saw errors:\n{out}")
    if socket_errors:
        # Timeouts (over wrk's 2 s) are a result, not a failure: counted and reported.
        WRK_SOCKET_ERRORS[name] = socket_errors.group(1)
    return rps, p50, p99


def filtered_paths(ids):
    """More like this with a filter: the ids paired with the filters in turn."""
    return [f"/v1/movies/{movie}/similar?k=10&{FILTERS[i % len(FILTERS)]}" for i, movie in enumerate(ids)]


def filtered_recall(port):
    """Per filter: recall@10 against exact=true with the same filter over FILTER_RECALL_QUERIES movies,
    and the sequential latency p50/max (ms) of the planned request. Counted over the exact answer (a
    filter that passes fewer than 10 movies counts those)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    ids = sample_ids(FILTER_RECALL_QUERIES * 7)[3::7]
    out = {}
    for flt in FILTERS:
        found = wanted = 0
        times = []
        for movie in ids:
            t = time.perf_counter()
            fast = [r["id"] for r in get_json(conn, f"/v1/movies/{movie}/similar?k=10&{flt}")["results"]]
            times.append((time.perf_counter() - t) * 1e3)
            exact = [r["id"] for r in get_json(conn, f"/v1/movies/{movie}/similar?k=10&exact=true&{flt}")["results"]]
            found += len(set(fast) & set(exact))
            wanted += len(exact)
        times.sort()
        out[flt] = {"recall": found / max(wanted, 1), "found": found, "wanted": wanted,
                    "p50_ms": times[len(times) // 2], "max_ms": times[-1]}
    return out


def serve_filtered(s, prefix, results):
    """The unfiltered table figure and the filtered mix (recall, wrk) on server `s`, into results."""
    results[prefix + "rps"], results[prefix + "p50_ms"], results[prefix + "p99_ms"] = wrk(
        s.port, all_ids_shuffled(), name=prefix + "k10")
    per = filtered_recall(s.port)
    results[prefix + "filtered_per_filter"] = per
    results[prefix + "filtered_recall"] = sum(p["found"] for p in per.values()) / max(
        1, sum(p["wanted"] for p in per.values()))
    results[prefix + "filtered_rps"], results[prefix + "filtered_p50_ms"], results[prefix + "filtered_p99_ms"] = \
        wrk_paths(s.port, filtered_paths(all_ids_shuffled()), prefix + "filtered")


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
    if not FILTERED_ONLY and (MEASURE_REBUILD or not os.path.exists(os.path.join(SET_DIR, "index.graph"))):
        for name in ("index.graph", "index.manifest.json"):
            if os.path.exists(os.path.join(SET_DIR, name)):
                os.remove(os.path.join(SET_DIR, name))
        s = Server()
        results["ready_rebuild_s"] = s.ready_s
        results["peak_rss_rebuild"] = s.hwm_bytes()
        s.stop()
    # 2. A start that reads the catalog from the store (the snapshot deleted); it saves a new snapshot.
    snapshot = os.path.join(SET_DIR, "catalog.snapshot")
    if not FILTERED_ONLY or not os.path.exists(snapshot):
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
        serve_filtered(s, "", results)
        if not FILTERED_ONLY:
            # k = 20 is more than the neighbour table holds: every request walks the graph.
            results["graph_recall_at_10"] = recall(s.port, sample_ids(RECALL_QUERIES // 4), k=20)
            results["graph_rps"], results["graph_p50_ms"], results["graph_p99_ms"] = wrk(
                s.port, all_ids_shuffled(), k=20)
            results["predict_p50_ms"], results["predict_p99_ms"] = predict_latency(s.port, PREDICT_CATALOG)
            results["predict_synthetic_p50_ms"], results["predict_synthetic_p99_ms"] = predict_latency(
                s.port, os.path.join(os.path.dirname(DB), "catalog.jsonl"))
        results["peak_rss"] = s.hwm_bytes()
        info = get_json(http.client.HTTPConnection("127.0.0.1", s.port), "/v1/info")
    finally:
        s.stop()
    # 5. The same filtered and unfiltered measurements on the baseline build, same set, same run.
    if BASELINE_BIN:
        b = Server(binary=BASELINE_BIN)
        try:
            serve_filtered(b, "baseline_", results)
        finally:
            b.stop()
    results["load_after"] = os.getloadavg()
    results["wrk_socket_errors"] = WRK_SOCKET_ERRORS
    data = {
        "matrix": size(os.path.join(SET_DIR, "embeddings.safetensors")),
        # The nearest-neighbour index the server holds: the graph, the neighbour table and the row
        # sketches of filtered scans.
        "graph": size(os.path.join(SET_DIR, "index.graph")) + size(os.path.join(SET_DIR, "index.knn"))
        + size(os.path.join(SET_DIR, "index.sketch")),
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
    if "filtered_rps" in r:
        row(f"filtered more-like-this by id: recall@10 vs exact=true with the same filter ({len(FILTERS)} filters "
            f"× {FILTER_RECALL_QUERIES} movies)", f"{r['filtered_recall']:.4f}", "≥ 0.99", r["filtered_recall"] / 0.99,
            "yes" if r["filtered_recall"] >= 0.99 else "no")
        row(f"filtered more-like-this throughput (the {len(FILTERS)} filters in turn over all ids)",
            f"{r['filtered_rps']:,.0f} req/s", "≥ 2,000 req/s", r["filtered_rps"] / 2000,
            "yes" if r["filtered_rps"] >= 2000 else "no")
        row("filtered more-like-this latency p50 / p99 under that load",
            f"{r['filtered_p50_ms']:.2f} / {r['filtered_p99_ms']:.2f} ms", "p99 ≤ 20 ms", r["filtered_p99_ms"] / 20,
            "yes" if r["filtered_p99_ms"] <= 20 else "no")
        for flt, p in r["filtered_per_filter"].items():
            base = r.get("baseline_filtered_per_filter", {}).get(flt)
            extra = (f"; baseline recall {base['recall']:.4f}, p50 {base['p50_ms']:.2f} ms, max {base['max_ms']:.1f} ms"
                     if base else "")
            row(f"filter `{flt}`: recall@10, sequential p50 / max", f"{p['recall']:.4f}, {p['p50_ms']:.2f} / "
                f"{p['max_ms']:.1f} ms{extra}", "-", None, "-")
    if "baseline_filtered_rps" in r:
        row(f"baseline ({BASELINE_BIN}), same set and run: unfiltered req/s, p99; filtered req/s, p99, recall@10",
            f"{r['baseline_rps']:,.0f}, {r['baseline_p99_ms']:.2f} ms; {r['baseline_filtered_rps']:,.0f}, "
            f"{r['baseline_filtered_p99_ms']:.2f} ms, {r['baseline_filtered_recall']:.4f}", "-", None, "-")
        row("filtered throughput, this build ÷ baseline", f"{r['filtered_rps'] / r['baseline_filtered_rps']:.1f} ×",
            "-", None, "-")
        row("filtered p99, baseline ÷ this build", f"{r['baseline_filtered_p99_ms'] / r['filtered_p99_ms']:.1f} ×",
            "-", None, "-")
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
    if "predict_p50_ms" in r:
        row("one-movie POST /v1/predict, sequential, p50 (IMDb movies)", f"{r['predict_p50_ms']:.1f} ms", "≤ 20 ms",
            r["predict_p50_ms"] / 20, "yes" if r["predict_p50_ms"] <= 20 else "no")
        row("one-movie POST /v1/predict, sequential, p99 (IMDb movies)", f"{r['predict_p99_ms']:.1f} ms", "-", None,
            "-")
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
    if r.get("wrk_socket_errors"):
        print("wrk socket errors (timeouts over 2 s):", r["wrk_socket_errors"])
    print()
    print("| measurement | value | target | ratio to target | met |")
    print("|---|---|---|---|---|")
    for w, v, t, ratio, met in rows:
        print(f"| {w} | {v} | {t} | {ratio} | {met} |")


if __name__ == "__main__":
    main()
