"""Write tests/fixtures/mpnet-reference.json: sentence-transformers' all-mpnet-base-v2 embeddings (PyTorch,
CPU, float32) of a few texts, for tests/engine_parity.rs. Run once; the output is committed.

    .bench/venv/bin/python scripts/make_mpnet_fixture.py models/all-mpnet-base-v2 tests/fixtures/mpnet-reference.json

The texts are taken from ../shared/fixtures/minilm-reference.json (so both models are checked on the same
inputs): a short string, a one-line movie JSON, non-ASCII text, two movie documents as the pipeline renders
them, and one document far longer than the model's 384 tokens. Each case holds the embedding of the text
alone (`embedding`) and its row when all cases are embedded together as one padded batch
(`embedding_in_batch`); `tokens_untruncated` counts the tokens (special tokens included) before truncation.
Values are rounded to 7 decimals to keep the file small (far below the 1e-4 cosine tolerance).
"""

import json
import pathlib
import sys

import torch
from sentence_transformers import SentenceTransformer

model_dir, out = sys.argv[1], pathlib.Path(sys.argv[2])
shared = pathlib.Path(__file__).resolve().parent.parent.parent / "shared"
minilm = json.load(open(shared / "fixtures" / "minilm-reference.json"))
by_start = {c["text"][:40]: c["text"] for c in minilm["cases"]}
wanted = ["hello world", '{"title": "Star Wars', "Amélie", '{\n  "title": "Avatar"', '{\n  "title": "Tangled"',
          '{\n  "title": "A very long document"']
texts = [next(t for k, t in by_start.items() if k.startswith(w)) for w in wanted]

torch.set_num_threads(2)
model = SentenceTransformer(model_dir, device="cpu")
model.eval()
tokenizer = model.tokenizer
single = [model.encode([t], batch_size=1, normalize_embeddings=True, convert_to_numpy=True)[0] for t in texts]
batch = model.encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True)
cases = []
for text, one, row in zip(texts, single, batch):
    cases.append({
        "text": text,
        "tokens_untruncated": len(tokenizer(text, truncation=False)["input_ids"]),
        "embedding": [round(float(x), 7) for x in one],
        "embedding_in_batch": [round(float(x), 7) for x in row],
    })
reference = {
    "model": "sentence-transformers/all-mpnet-base-v2",
    "pooling": "mean",
    "normalized": True,
    "max_seq_length": model.max_seq_length,
    "produced_with": f"sentence-transformers {__import__('sentence_transformers').__version__}, torch {torch.__version__} (CPU, float32)",
    "cases": cases,
}
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(reference, ensure_ascii=False) + "\n")
print(f"wrote {out}: {len(cases)} cases, tokens {[c['tokens_untruncated'] for c in cases]}")
