#!/usr/bin/env bash
# Pack what a GPU run needs into .gpu/ (git-ignored), to travel to the device machine with the
# device tool's `carry` (64 MiB per call, the working tree included). Run here, after
# scripts/build-cuda.sh; then on the device machine run scripts/gpu-bench.sh (it says how).
#
#   scripts/gpu-pack.sh
#
# What travels, xz-compressed: the stripped CUDA binary; the imdb5000 catalog, the MiniLM reference
# embeddings and MiniLM's folder less its weights (data.tar.xz); MiniLM's model.safetensors as it is
# (87 MiB: it does not fit one call even compressed, so it is cut in two parts, one per call: .gpu/1
# and .gpu/2). Every file is listed with its sha256 in .gpu/1/MANIFEST, which gpu-bench.sh checks
# before it runs anything.
#
# Settings (environment): CARGO_TARGET_DIR (target-cuda), CINEVEC_MODELS_DIR (models),
# CINEVEC_SHARED (../shared), GPU_PACK_CALL_MIB (carry budget per call, default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target-cuda}
models=${CINEVEC_MODELS_DIR:-models}
shared=${CINEVEC_SHARED:-../shared}
budget_mib=${GPU_PACK_CALL_MIB:-60}
bin=$target/release/cinevec
minilm=$models/all-MiniLM-L6-v2
[ -x "$bin" ] || { echo "no $bin: run scripts/build-cuda.sh first" >&2; exit 1; }
[ -f "$minilm/model.safetensors" ] || { echo "no $minilm: run \`cinevec model fetch\` first" >&2; exit 1; }
for f in data/imdb5000/catalog.jsonl fixtures/minilm-reference.json; do
  [ -f "$shared/$f" ] || { echo "no $shared/$f" >&2; exit 1; }
done

rm -rf .gpu/1 .gpu/2 .gpu/tmp
mkdir -p .gpu/1 .gpu/2 .gpu/tmp .gpu/cache
strip -o .gpu/tmp/cinevec "$bin"
xz -9 -T1 -c .gpu/tmp/cinevec >.gpu/1/cinevec.xz
# The small files: catalog, reference embeddings, and MiniLM's folder without its weights (tokenizer,
# configs), which the probe uses before the weights have arrived.
mkdir -p .gpu/tmp/data/minilm-files
mkdir -p .gpu/tmp/data/imdb5000
cp "$shared/data/imdb5000/catalog.jsonl" .gpu/tmp/data/imdb5000/
cp "$shared/fixtures/minilm-reference.json" .gpu/tmp/data/
(cd "$minilm" && find . -type f ! -name model.safetensors -print0 | xargs -0 cp --parents -t "$OLDPWD/.gpu/tmp/data/minilm-files")
tar -C .gpu/tmp/data -cf - . | xz -9 -T1 >.gpu/1/data.tar.xz
# (xz -9 of 87 MiB takes minutes: kept in .gpu/cache, which never travels, by the weights' sha256)
weights_sha=$(sha256sum "$minilm/model.safetensors" | cut -d' ' -f1)
cached=.gpu/cache/$weights_sha.safetensors.xz
if [ ! -f "$cached" ]; then
  xz -9 -T1 -c "$minilm/model.safetensors" >"$cached.tmp"
  mv "$cached.tmp" "$cached"
fi
cp "$cached" .gpu/tmp/minilm.safetensors.xz

# Cut the model archive: what is left of call 1's budget after the binary and the data, the rest in
# call 2 (the working tree, about 1 MiB, travels with each call too).
used=$(du -cb .gpu/1/* | tail -1 | cut -f1)
room=$(((budget_mib << 20) - used))
[ "$room" -gt $((4 << 20)) ] || { echo "the binary and data leave no room in call 1" >&2; exit 1; }
head -c "$room" .gpu/tmp/minilm.safetensors.xz >.gpu/1/minilm.safetensors.xz.part1
tail -c +"$((room + 1))" .gpu/tmp/minilm.safetensors.xz >.gpu/2/minilm.safetensors.xz.part2
[ "$(du -b .gpu/2/minilm.safetensors.xz.part2 | cut -f1)" -le $((budget_mib << 20)) ] ||
  { echo "the model does not fit two calls" >&2; exit 1; }

{
  echo "# made by scripts/gpu-pack.sh on $(date -u +%FT%TZ) from $(git rev-parse --short HEAD)"
  echo "binary $(sha256sum .gpu/tmp/cinevec | cut -d' ' -f1) $(du -b .gpu/tmp/cinevec | cut -f1)"
  echo "model.safetensors $weights_sha"
  (cd .gpu && sha256sum 1/cinevec.xz 1/data.tar.xz 1/minilm.safetensors.xz.part1 2/minilm.safetensors.xz.part2)
} >.gpu/1/MANIFEST
rm -rf .gpu/tmp
echo "packed (MiB):"
du -m .gpu/1/* .gpu/2/*
du -sm .gpu/1 .gpu/2
cat <<'EOF'

On the device machine, two calls back to back (the machine stays warm only ~30 s between calls;
if it was given back in between, gpu-bench.sh says so: repeat call 1):
  call 1, carry [".gpu/1"]:  bash scripts/gpu-bench.sh stage .gpu/1 && bash scripts/gpu-bench.sh probe
  call 2, carry [".gpu/2"]:  bash scripts/gpu-bench.sh stage .gpu/2 && bash scripts/gpu-bench.sh run
EOF
