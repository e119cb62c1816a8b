#!/usr/bin/env bash
# Issue 7 on a GPU machine: cinevec's CUDA build checked against PyTorch and timed side by side with
# it, in one run. Meant for the device machine: the `device` tool runs it from the repo root, with
# what scripts/gpu-pack.sh packed here carried in .gpu/1 and .gpu/2. It needs no Rust toolchain and
# no network there: only the image's NVIDIA driver, python3 with PyTorch, sentence-transformers and
# transformers, and the CUDA 13 libraries PyTorch brings (site-packages/nvidia/cu13/lib).
#
#   scripts/gpu-bench.sh stage DIR   copy a carried folder (.gpu/1, later .gpu/2) to /tmp/cinevec-gpu
#   scripts/gpu-bench.sh probe       after .gpu/1, about a minute: the binary on the GPU with a tiny
#                                    random ModernBERT made there, parity with PyTorch
#   scripts/gpu-bench.sh run [DOCS]  after .gpu/2: everything below (default 2000 documents)
#
# `run`, in order; a failed check is reported, the run goes on, and the exit status is 1:
#   1. MiniLM parity with sentence-transformers' reference (minilm-reference.json, PyTorch on a CPU):
#      in f32 cosine >= 0.9999 one by one, batched, and batch == single; f16 and bf16 measured too.
#   2. a gte-modernbert-base-shaped random model (scripts/gpu_modernbert.py: 22 layers, hidden 768,
#      made there from a fixed seed), its reference from PyTorch on the CPU in f32, parity on the GPU.
#   3. speed, cinevec then PyTorch (sentence-transformers) on the same catalog documents: batch 32
#      (docs/s) and batch 1 (docs/s, p50/p99 latency of one request): MiniLM in f32 and f16, the
#      ModernBERT in f32.
# Results: $OUT/summary.md (the table, printed last too), $OUT/gpu-results.tar.gz (every JSON and
# log), $OUT/run.log.
#
# GPU_BENCH_DRY=1 runs it all on the CPU instead (cinevec's CUDA build falls back, PyTorch is told
# `--device cpu`): a test of this script on a machine without a GPU; its numbers mean nothing. There,
# GPU_BENCH_GTE_ARGS="--layers 2 --max-seq 512" keeps the ModernBERT small enough for a small machine.
set -uo pipefail
cd "$(dirname "$0")/.."
work=${GPU_BENCH_WORK:-/tmp/cinevec-gpu}
dry=${GPU_BENCH_DRY:-0}
torch_device=cuda
[ "$dry" = 1 ] && torch_device=cpu
export NO_COLOR=1
stage=$work/stage
results=$work/results
mkdir -p "$stage"

die() {
  echo "gpu-bench: $*" >&2
  exit 1
}

# The CUDA 13 libraries: PyTorch's nvidia-* packages (site-packages/nvidia/cu13/lib), else wherever a
# libcublas.so.13 is; plus the driver's folder where the container runtime mounts one.
cuda_env() {
  local lib
  lib=$(python3 - <<'PY'
import glob, os, site, sys
for root in site.getsitepackages() + [site.getusersitepackages()]:
    for lib in sorted(glob.glob(os.path.join(root, "nvidia", "*", "lib"))):
        if os.path.exists(os.path.join(lib, "libcublas.so.13")):
            print(lib)
            sys.exit()
PY
  )
  [ -n "$lib" ] || lib=$(find /usr /opt -name 'libcublas.so.13' -printf '%h\n' 2>/dev/null | head -1)
  [ -n "$lib" ] || die "no libcublas.so.13 on this machine (looked in python's site-packages, /usr, /opt)"
  export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if [ -d /usr/local/nvidia/lib64 ]; then export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/usr/local/nvidia/lib64"; fi
  echo "CUDA libraries: $lib"
}

# Unpack call 1's files once: the binary, the data, MiniLM's folder less its weights.
unpack() {
  [ -f "$stage/1/MANIFEST" ] || die "nothing staged: run \`scripts/gpu-bench.sh stage .gpu/1\` first (a fresh machine starts bare: repeat call 1)"
  bin=$work/bin/cinevec
  data=$work/data
  if [ ! -x "$bin" ]; then
    (cd "$stage" && grep -E ' 1/' 1/MANIFEST | sha256sum -c --quiet) || die "call 1's files are damaged"
    mkdir -p "$work/bin" "$data"
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
      "$stage/1/cinevec.xz" "$bin.tmp" && chmod +x "$bin.tmp" && mv "$bin.tmp" "$bin"
    python3 -c 'import tarfile, sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$stage/1/data.tar.xz" "$data"
  fi
  export RUST_LOG=${RUST_LOG:-info}
}

# MiniLM's weights, from the two parts; checked against the sha256 recorded when packing.
unpack_minilm() {
  minilm=$work/models/all-MiniLM-L6-v2
  [ -f "$minilm/model.safetensors" ] && return 0
  [ -f "$stage/2/minilm.safetensors.xz.part2" ] || die "call 2's part of the model is not staged: \`scripts/gpu-bench.sh stage .gpu/2\`"
  (cd "$stage" && grep -E ' 2/' 1/MANIFEST | sha256sum -c --quiet) || die "call 2's files are damaged"
  mkdir -p "$minilm"
  cp -r "$data/minilm-files/." "$minilm/"
  cat "$stage/1/minilm.safetensors.xz.part1" "$stage/2/minilm.safetensors.xz.part2" |
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)' >"$minilm/model.safetensors.tmp"
  local want got
  want=$(awk '$1 == "model.safetensors" {print $2}' "$stage/1/MANIFEST")
  got=$(sha256sum "$minilm/model.safetensors.tmp" | cut -d' ' -f1)
  [ "$want" = "$got" ] || die "MiniLM weights: sha256 $got, packed $want"
  mv "$minilm/model.safetensors.tmp" "$minilm/model.safetensors"
}

machine_report() {
  echo "== machine"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 || true
  python3 - <<'PY' 2>&1 || true
import importlib.metadata as m, platform
names = ["torch", "transformers", "sentence-transformers", "tokenizers", "nvidia-cublas", "nvidia-cuda-runtime"]
found = []
for n in names:
    try:
        found.append(f"{n} {m.version(n)}")
    except Exception:
        found.append(f"{n} missing")
print("python", platform.python_version() + ":", ", ".join(found))
PY
  echo "cpu: $(nproc) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  echo "binary: $(grep '^binary' "$stage/1/MANIFEST"), $(grep '^# made' "$stage/1/MANIFEST" | cut -c3-)"
  if ldd "$bin" | grep 'not found'; then die "the binary cannot start here (missing system libraries above)"; fi
}

failures=0
# check NAME COMMAND...: run, log to $results/NAME.log, count a failure without stopping.
check() {
  local name=$1
  shift
  echo "-- $name: $*" | sed "s|$work|\$W|g"
  if "$@" >"$results/$name.log" 2>&1; then
    grep -v ' INFO ' "$results/$name.log" | grep -v '^\s*$' | tail -8
  else
    echo "FAILED ($name), last lines:"
    tail -15 "$results/$name.log"
    failures=$((failures + 1))
  fi
}

# The engine must be on the GPU: its log's device line says so.
require_gpu() {
  local log=$results/model-info-$1.log
  "$bin" model info --model "$2" >"$log" 2>&1 || { cat "$log"; die "cinevec model info failed"; }
  grep -o 'device: .*' "$log" | head -1
  if [ "$dry" = 1 ]; then return 0; fi
  grep -q 'device: CUDA GPU' "$log" || die "cinevec did not get the GPU (device line above; full log: $log)"
}

cmd_stage() {
  local dir=${1:?stage DIR}
  [ -d "$dir" ] || die "$dir not found: name it in the device call's carry"
  local name
  name=$(basename "$dir")
  rm -rf "${stage:?}/$name"
  cp -r "$dir" "$stage/$name"
  echo "staged $dir: $(du -sm "$stage/$name" | cut -f1) MiB in $stage/$name"
}

cmd_probe() {
  unpack
  cuda_env
  mkdir -p "$results"
  machine_report
  echo "== probe: a tiny random ModernBERT made here, on the GPU against PyTorch"
  local tiny=$work/models/probe-modernbert
  python3 - "$data/minilm-reference.json" "$results/probe-cases.json" <<'PY'
import json, sys
ref = json.load(open(sys.argv[1]))
ref["cases"] = ref["cases"][:6]
json.dump(ref, open(sys.argv[2], "w"))
PY
  check probe-make python3 scripts/gpu_modernbert.py make "$tiny" --tokenizer-from "$data/minilm-files" \
    --layers 3 --hidden 64 --intermediate 96 --heads 4 --local-window 8 --max-seq 512 --init-std 0.3
  check probe-reference python3 scripts/gpu_modernbert.py reference "$tiny" "$results/probe-cases.json" "$results/probe-reference.json"
  require_gpu probe "$tiny"
  check probe-parity "$bin" check-parity --reference "$results/probe-reference.json" --model "$tiny"
  [ "$failures" = 0 ] || die "probe failed"
  echo "probe: ok (now call 2: stage .gpu/2 and run)"
}

summary() {
  python3 - "$results" "$@" <<'PY'
import json, os, sys
res = sys.argv[1]
rows = []
for name in sys.argv[2:]:
    c_path, p_path = os.path.join(res, f"cinevec-{name}.json"), os.path.join(res, f"pytorch-{name}.json")
    if not (os.path.exists(c_path) and os.path.exists(p_path)):
        rows.append(f"| {name} | (missing: see its log) | | | | | |")
        continue
    c = {r["batch"]: r for r in json.load(open(c_path))["results"]}
    p = {r["batch"]: r for r in json.load(open(p_path))["results"]}
    for bs in sorted(c, reverse=True):
        lat = lambda r: f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}" if "p50_ms" in r else "-"
        rows.append(f"| {name} | {bs} | {c[bs]['docs_per_s']:.1f} | {p[bs]['docs_per_s']:.1f} | "
                    f"{c[bs]['docs_per_s'] / p[bs]['docs_per_s']:.2f} | {lat(c[bs])} | {lat(p[bs])} |")
print("| model, dtype | batch | cinevec docs/s | PyTorch docs/s | ratio | cinevec p50 / p99 ms | PyTorch p50 / p99 ms |")
print("|---|---|---|---|---|---|---|")
print("\n".join(rows))
print()
print("| parity | device, dtype | min cosine, single vs ref | batch vs ref | batch vs single | passed |")
print("|---|---|---|---|---|---|")
for f in sorted(os.listdir(res)):
    if f.startswith("parity-") and f.endswith(".json"):
        j = json.load(open(os.path.join(res, f)))
        cos = lambda key: f"{j[key]:.7f} (1-cos {1 - j[key]:.1e})"
        print(f"| {f[7:-5]} | {j['device']}, {j['dtype']} | {cos('min_cosine_single_vs_reference')} | "
              f"{cos('min_cosine_batch_vs_reference')} | {cos('min_cosine_batch_vs_single')} | {j['passed']} |")
PY
}

cmd_run() {
  local docs=${1:-2000}
  local out=${OUT:-$work/out}
  unpack
  unpack_minilm
  cuda_env
  mkdir -p "$results" "$out"
  machine_report
  local threads
  threads=$(nproc)
  local gte=$work/models/gte-modernbert-shaped
  local ref=$data/minilm-reference.json
  local catalog=$data/imdb5000/catalog.jsonl

  echo "== 1. MiniLM parity with sentence-transformers (reference made on a CPU in f32)"
  require_gpu minilm "$minilm"
  check parity-minilm-f32 "$bin" check-parity --reference "$ref" --model "$minilm" --json "$results/parity-minilm-f32.json"
  if [ "$dry" != 1 ]; then
    check parity-minilm-f16 "$bin" check-parity --reference "$ref" --model "$minilm" --dtype f16 --min-cosine 0.999 --json "$results/parity-minilm-f16.json"
    check parity-minilm-bf16 "$bin" check-parity --reference "$ref" --model "$minilm" --dtype bf16 --min-cosine 0.99 --json "$results/parity-minilm-bf16.json"
  fi

  echo "== 2. gte-modernbert-shaped random model: made here, reference from PyTorch (CPU, f32), parity on the GPU"
  # shellcheck disable=SC2086 # GPU_BENCH_GTE_ARGS is a list of arguments
  check gte-make python3 scripts/gpu_modernbert.py make "$gte" --tokenizer-from "$minilm" ${GPU_BENCH_GTE_ARGS:-}
  check gte-reference python3 scripts/gpu_modernbert.py reference "$gte" "$ref" "$results/gte-reference.json"
  check parity-gte-f32 "$bin" check-parity --reference "$results/gte-reference.json" --model "$gte" --json "$results/parity-gte-f32.json"

  echo "== 3. speed: $docs catalog documents, cinevec then PyTorch, same GPU"
  local name model dtype names=()
  local specs=("minilm-f32 $minilm f32" "minilm-f16 $minilm f16" "gte-f32 $gte f32")
  # On the CPU (dry run) half precision is refused: f32 only.
  [ "$dry" = 1 ] && specs=("minilm-f32 $minilm f32" "gte-f32 $gte f32")
  for spec in "${specs[@]}"; do
    read -r name model dtype <<<"$spec"
    names+=("$name")
    check "bench-cinevec-$name" "$bin" bench-embed --catalog "$catalog" --docs "$docs" --batch-sizes 32,1 \
      --model "$model" --dtype "$dtype" --json "$results/cinevec-$name.json"
    check "bench-pytorch-$name" python3 scripts/bench_embed_torch.py "$model" "$results/cinevec-$name.json" "$threads" \
      "$results/pytorch-$name.json" --device "$torch_device" --dtype "$dtype"
  done

  echo "== summary"
  {
    echo "# cinevec vs PyTorch on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), $(date -u +%FT%TZ)"
    echo
    echo "$docs documents of the imdb5000 catalog, rendered by cinevec; PyTorch = sentence-transformers on the same texts."
    echo "Timings include tokenisation and copying the vectors back to the host, on both sides."
    echo
    summary "${names[@]}"
  } | tee "$results/summary.md"
  cp "$results/summary.md" "$out/summary.md"
  tar -C "$work" -czf "$out/gpu-results.tar.gz" results
  if [ "$failures" != 0 ]; then
    echo "gpu-bench: $failures check(s) FAILED (logs in gpu-results.tar.gz)"
    return 1
  fi
}

main() {
  local cmd=${1:-}
  shift || true
  case "$cmd" in
    stage) cmd_stage "$@" ;;
    probe) cmd_probe "$@" ;;
    run)
      mkdir -p "${OUT:-$work/out}"
      cmd_run "$@" 2>&1 | tee "${OUT:-$work/out}/run.log"
      return "${PIPESTATUS[0]}"
      ;;
    *)
      sed -n '2,26p' "$0"
      exit 2
      ;;
  esac
}

main "$@"
