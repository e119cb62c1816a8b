"""Top-k neighbour overlap between two embedding sets of the same catalog (issue 21's check that a
reduced-precision CPU path keeps more-like-this answers).

    neighbour-overlap.py SET_A SET_B [K]

SET_A and SET_B are `cinevec embed --out` folders (embeddings.safetensors + embeddings.ids.json) of the
same catalog, e.g. made with `--dtype f32` and `--dtype bf16`. For every movie, its K (10) nearest
other movies by cosine in each set; prints the mean overlap |A ∩ B| / K, the share of movies whose K
neighbours are the same set, and the mean cosine between each movie's two vectors. Needs numpy (the
bench venv has it: .bench/venv/bin/python).
"""
import json
import struct
import sys

import numpy as np


def load(folder):
    with open(f"{folder}/embeddings.safetensors", "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        body = f.read()
    name = next(k for k in header if k != "__metadata__")
    t = header[name]
    assert t["dtype"] == "F32", t["dtype"]
    start, end = t["data_offsets"]
    matrix = np.frombuffer(body[start:end], dtype="<f4").reshape(t["shape"])
    ids = json.load(open(f"{folder}/embeddings.ids.json"))["ids"]
    return ids, matrix


def neighbours(matrix, k):
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    out = np.empty((len(unit), k), dtype=np.int64)
    for start in range(0, len(unit), 1024):
        sims = unit[start : start + 1024] @ unit.T
        rows = np.arange(sims.shape[0])
        sims[rows, rows + start] = -np.inf  # not itself
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        out[start : start + 1024] = top
    return out


def main():
    a_dir, b_dir = sys.argv[1], sys.argv[2]
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    (ids_a, a), (ids_b, b) = load(a_dir), load(b_dir)
    if ids_a != ids_b:
        sys.exit("the two sets do not hold the same movies in the same order")
    na, nb = neighbours(a, k), neighbours(b, k)
    overlap = np.array([len(set(x) & set(y)) / k for x, y in zip(na, nb)])
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    print(f"{len(ids_a)} movies, top-{k} neighbours of {a_dir} vs {b_dir}:")
    print(f"  mean overlap {overlap.mean():.4f}, identical neighbour sets {np.mean(overlap == 1.0):.4f}, "
          f"lowest overlap {overlap.min():.2f}")
    print(f"  per-movie cosine between the two vectors: mean {cos.mean():.6f}, min {cos.min():.6f}")


if __name__ == "__main__":
    main()
