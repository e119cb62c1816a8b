"""More-like-this throughput through a load balancer: one replica direct, nginx over one, nginx over two.

    python3 scripts/bench_replicas_lb.py WORK_DIR CATALOG REPLICA_A_PORT REPLICA_B_PORT [ROUNDS] [SECONDS]

Generates nginx configurations like docker/nginx.conf's (least_conn upstream, keepalive 32, proxy
HTTP/1.1) in WORK_DIR, one over replica A and one over A and B, and runs `nginx` (the Debian package)
with each. Then, ROUNDS times, in this order so that the host's drift touches each alike: wrk (-t1
-c32, a 5 s warm-up, then SECONDS) on GET /v1/movies/{id}/similar?k=10 rotating over the catalog's
ids, shuffled, (1) straight to replica A (the reference), (2) through nginx over A, (3) through nginx
over A and B. Prints each run's req/s and p50/p99, the median of each configuration and the ratios
against the reference of the same round, and the RSS of each replica and of nginx.
"""
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
import urllib.request

WRK_THREADS = int(os.environ.get("WRK_THREADS", "1"))
WRK_CONNECTIONS = int(os.environ.get("WRK_CONNECTIONS", "32"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def nginx_conf(folder, listen, upstreams):
    """An nginx configuration like docker/nginx.conf's, for ports `upstreams`, in `folder`."""
    os.makedirs(folder, exist_ok=True)
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in upstreams)
    # As root (the bench's usual case here), workers stay root: the work folder is not readable by others.
    user = "user root;" if os.geteuid() == 0 else ""
    conf = f"""
{user}
worker_processes auto;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    upstream cinevec {{
        least_conn;
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{listen};
        client_max_body_size 4m;
        location / {{
            proxy_pass http://cinevec;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Request-Id $request_id;
            proxy_next_upstream error timeout http_503;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""
    path = os.path.join(folder, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path


def start_nginx(folder, upstreams):
    port = free_port()
    conf = nginx_conf(folder, port, upstreams)
    proc = subprocess.Popen(["nginx", "-p", folder, "-c", conf, "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(folder, "stderr.log"), "w"))
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit(f"nginx on {port} did not answer: {open(os.path.join(folder, 'error.log')).read()}")


def wrk(work, port, seconds, name):
    """wrk GETs rotating over the paths file: req/s, p50 and p99 ms."""
    lua = os.path.join(work, "rotate.lua")
    url = f"http://127.0.0.1:{port}"
    base = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", "--latency", "-s", lua]
    subprocess.run(base + ["-d5s", url], check=True, capture_output=True)  # warm-up
    out = subprocess.run(base + [f"-d{seconds}s", url], check=True, capture_output=True, text=True).stdout
    with open(os.path.join(work, f"wrk-{name}.txt"), "w") as f:
        f.write(out)

    def ms(text):
        v, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        sys.exit(f"wrk saw errors ({name}):\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return rps, p50, p99, socket_errors.group(1) if socket_errors else None


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pid_on(port):
    """The pid of the process listening on 127.0.0.1:port (from `ss`)."""
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True).stdout
    m = re.search(r"pid=(\d+)", out)
    return int(m.group(1)) if m else None


def main():
    work, catalog, a, b = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    seconds = int(sys.argv[6]) if len(sys.argv) > 6 else 15
    ids = [json.loads(line)["id"] for line in open(catalog) if line.strip()]
    random.Random(7).shuffle(ids)
    paths = os.path.join(work, "paths.txt")
    with open(paths, "w") as f:
        f.write("\n".join(f"/v1/movies/{i}/similar?k=10" for i in ids) + "\n")
    with open(os.path.join(work, "rotate.lua"), "w") as f:
        f.write(f"""
local paths = {{}}
for line in io.lines("{paths}") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
""")
    one, one_port = start_nginx(os.path.join(work, "nginx-1"), [a])
    two, two_port = start_nginx(os.path.join(work, "nginx-2"), [a, b])
    configs = [("direct to replica A", a), ("nginx -> 1 replica", one_port), ("nginx -> 2 replicas", two_port)]
    results = {name: [] for name, _ in configs}
    try:
        print(f"wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{seconds}s (after a 5 s warm-up), more like this "
              f"(k=10) over {len(ids)} ids, {rounds} rounds", flush=True)
        for r in range(rounds):
            for name, port in configs:
                rps, p50, p99, errors = wrk(work, port, seconds, f"{r}-{port}")
                results[name].append((rps, p50, p99))
                extra = f", socket errors: {errors}" if errors else ""
                print(f"  round {r + 1}: {name:<22} {rps:9.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms{extra}",
                      flush=True)
        print("median over rounds; ratio = req/s against direct to replica A in the same round (median):")
        for name, _ in configs:
            runs = results[name]
            ratios = [run[0] / ref[0] for run, ref in zip(runs, results[configs[0][0]])]
            print(f"  {name:<22} {statistics.median(x[0] for x in runs):9.0f} req/s  "
                  f"p99 {statistics.median(x[2] for x in runs):6.2f} ms  ratio {statistics.median(ratios):.2f} "
                  f"({min(ratios):.2f}-{max(ratios):.2f})")
        for label, port in (("replica A", a), ("replica B", b)):
            pid = pid_on(port)
            print(f"{label} (:{port}): {rss_mib(pid):.0f} MiB RSS" if pid else f"{label}: pid not found")
        nginx_rss = sum(rss_mib(int(p)) for p in subprocess.run(
            ["pgrep", "-P", str(two.pid)], capture_output=True, text=True).stdout.split()) + rss_mib(two.pid)
        print(f"nginx (2 replicas, master + workers): {nginx_rss:.0f} MiB RSS")
        print(f"load: {open('/proc/loadavg').read().strip()} ({os.cpu_count()} CPUs)")
    finally:
        for proc in (one, two):
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
