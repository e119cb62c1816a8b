"""PyTorch half of the embedding benchmark: sentence-transformers on the same documents.

    bench_embed_torch.py MODEL_DIR CINEVEC_JSON THREADS [OUT_JSON] [--device cpu|cuda] [--dtype f32|f16|bf16]

Reads the documents cinevec measured (its --json output), embeds them at each batch size cinevec used,
and prints docs/s (and p50/p99 latency at batch 1). On the CPU it uses THREADS threads, like cinevec;
on a GPU (`--device cuda`, for scripts/gpu-bench.sh) the timings include copying the vectors back to
the host, as cinevec's do, and f32 runs keep TF32 off (PyTorch's default, and candle's).
"""
import argparse
import json
import time

import torch
from sentence_transformers import SentenceTransformer

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("cinevec_json")
    parser.add_argument("threads", type=int)
    parser.add_argument("out_json", nargs="?")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="f32", choices=sorted(DTYPES))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    with open(args.cinevec_json) as f:
        bench = json.load(f)
    texts = bench["texts"]
    model = SentenceTransformer(args.model_dir, device=args.device)
    if args.dtype != "f32":
        model = model.to(DTYPES[args.dtype])
    model.encode(["warm up"] * 4)
    if args.device != "cpu":
        # On a GPU, warm up at each measured batch size too (first launches pay for module loading and
        # kernel selection); cinevec's bench-embed does the same there.
        for entry in bench["results"]:
            model.encode(texts[: 2 * entry["batch"]], batch_size=entry["batch"])
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    print(f"pytorch: torch {torch.__version__}, {args.device} ({where}) in {args.dtype}, {len(texts)} docs")
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
    if args.out_json:
        with open(args.out_json, "w") as f:
            json.dump(
                {
                    "engine": "pytorch",
                    "torch": torch.__version__,
                    "device": args.device,
                    "dtype": args.dtype,
                    "results": results,
                },
                f,
            )


if __name__ == "__main__":
    main()
