#!/usr/bin/env bash
# The CUDA build of cinevec, on any x86-64 Linux machine with Rust, a C/C++ compiler and pip: a GPU
# is not needed to build (nor to run: without one the binary falls back to the CPU).
#
#   scripts/build-cuda.sh [extra cargo build arguments]
#   scripts/build-cuda.sh test [extra cargo test arguments]   the test suite, against the CUDA build
#                                                              (e.g. `test -- --include-ignored`)
#
# 1. pip-installs CUDA 13.0's compiler, headers and libraries from PyPI into .cuda/pkgs (first run
#    only; about 1.2 GB on disk). 13.0, not newer: the PTX that candle's kernels are compiled to must
#    not be newer than what the GPU's driver understands, and the device machines' driver is 580.x
#    (CUDA 13.0).
# 2. writes lazy-binding link stubs into .cuda/link/lib (scripts/cuda-lazy-link.py): the binary then
#    starts without libcuda.so.1 and the other CUDA libraries, and opens them only when it looks for a
#    GPU (src/engine/device.rs). The CUDA runtime (cudart) is linked statically.
# 3. runs `cargo build --release --features cuda --locked` into target-cuda/ (the CPU build in
#    target/ stays as it is).
#
# Settings (environment):
#   CUDA_COMPUTE_CAP   GPU generation to compile the kernels for: 90 (default; H100/H200, built as
#                      sm_90a), 80 (A100), 89 (L4), ... There is no GPU to detect at build time.
#   CARGO_TARGET_DIR   where cargo builds (default target-cuda)
#   CINEVEC_CUDA_DIR   where the toolkit and the link stubs go (default .cuda)
#   CUDAFORGE_THREADS  parallel nvcc jobs (default: cudaforge's, from the core count)
#   NVCC_CCBIN         host C++ compiler for nvcc, when the default one is too new for CUDA 13.0
#   PYTHON             Python with pip (default python3)
#
# Run the result on a GPU machine with the CUDA 13 libraries on the library path, e.g. those PyTorch
# installs (site-packages/nvidia/cu13/lib) or .cuda/pkgs/nvidia/cu13/lib:
#   LD_LIBRARY_PATH=/path/to/nvidia/cu13/lib target-cuda/release/cinevec model info
set -euo pipefail
cd "$(dirname "$0")/.."
mode=build
if [ "${1:-}" = test ]; then
  mode=test
  shift
fi
root=$PWD
start=$SECONDS
py=${PYTHON:-python3}
cuda_dir=$(realpath -m "${CINEVEC_CUDA_DIR:-.cuda}")
target=$(realpath -m "${CARGO_TARGET_DIR:-target-cuda}")
compute_cap=${CUDA_COMPUTE_CAP:-90}

# CUDA 13.0 update 2 (what the device machines' PyTorch, 2.11+cu130, and driver 580 pair with).
packages=(
  nvidia-cuda-nvcc==13.0.88     # nvcc, ptxas, fatbinary
  nvidia-nvvm==13.0.88          # cicc and libdevice, which nvcc calls
  nvidia-cuda-crt==13.0.88      # nvcc's crt/ headers
  nvidia-cuda-cccl==13.0.85     # thrust, cub, libcu++ (candle's sort kernels)
  nvidia-cuda-runtime==13.0.96  # cuda.h, cuda_runtime.h, libcudart_static.a
  nvidia-cuda-nvrtc==13.0.88    # run time: libnvrtc.so.13
  nvidia-cublas==13.1.0.3       # run time: libcublas.so.13, libcublasLt.so.13
  nvidia-curand==10.4.0.35      # run time: libcurand.so.10
)
pkgs=$cuda_dir/pkgs
stamp=$pkgs/.cinevec-packages
if [ "$(cat "$stamp" 2>/dev/null)" != "${packages[*]}" ]; then
  echo "installing the CUDA 13.0 toolkit from PyPI into $pkgs ..."
  rm -rf "$pkgs"
  PIP_ROOT_USER_ACTION=ignore "$py" -m pip install -q --disable-pip-version-check --no-deps --only-binary=:all: --target "$pkgs" "${packages[@]}"
  echo "${packages[*]}" >"$stamp"
fi
tk=$pkgs/nvidia/cu13
"$tk/bin/nvcc" --version | grep -q 'release 13\.0' || { echo "unexpected nvcc in $tk" >&2; exit 1; }

# Link stubs for the libraries cudarc links (driver, cuBLAS, cuBLASLt, cuRAND, NVRTC), generated
# from the cudarc sources cargo resolved, and the static CUDA runtime under the name candle's kernels
# link (`-lcudart`).
cudarc_src=$(cargo metadata --format-version 1 --locked --features cuda | "$py" -c '
import json, os, sys
pkgs = json.load(sys.stdin)["packages"]
print(next(os.path.dirname(p["manifest_path"]) for p in pkgs if p["name"] == "cudarc"))')
link=$cuda_dir/link/lib
rm -rf "$cuda_dir/link"
mkdir -p "$link"
"$py" scripts/cuda-lazy-link.py --self-test
"$py" scripts/cuda-lazy-link.py "$link" "$cudarc_src" 13
cp "$tk/lib/libcudart_static.a" "$link/libcudart.a"

# nvcc and its headers for candle-kernels (cudaforge finds nvcc through NVCC/PATH); the CUDA version
# for cudarc comes from `nvcc --version`; cudarc searches CUDA_HOME, CUDA_PATH and CUDA_ROOT for
# libraries: the toolkit's lib/ holds only versioned .so files and libcudart_static.a, which `-lcuda`,
# `-lcublas`, `-lcudart`... do not match, so the stubs in CUDA_ROOT/lib are what the linker takes.
export PATH="$tk/bin:$PATH" NVCC="$tk/bin/nvcc" CUDA_HOME="$tk" CUDA_PATH="$tk" CUDA_ROOT="$cuda_dir/link"
export CUDA_COMPUTE_CAP="$compute_cap" CARGO_TARGET_DIR="$target"
if [ "$mode" = test ]; then
  echo "cargo test --release --features cuda --locked $* (CUDA_COMPUTE_CAP=$compute_cap, in $target) ..."
  exec cargo test --release --features cuda --locked "$@"
fi
echo "cargo build --release --features cuda --locked (CUDA_COMPUTE_CAP=$compute_cap, into $target) ..."
cargo build --release --features cuda --locked "$@"

bin=$target/release/cinevec
if readelf -d "$bin" | grep -E 'NEEDED.*lib(cuda|cublas|cublasLt|curand|nvrtc|cudart)\.'; then
  echo "error: $bin needs CUDA libraries at load time: the lazy link stubs were not used" >&2
  exit 1
fi
size=$(du -m "$bin" | cut -f1)
echo "built $bin (${size} MiB, CUDA 13.0, compute capability $compute_cap) in $((SECONDS - start)) s"
echo "needs no CUDA library to start; on a GPU machine put the CUDA 13 libraries on LD_LIBRARY_PATH, e.g."
echo "  LD_LIBRARY_PATH=$tk/lib $bin model info"
