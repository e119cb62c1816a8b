"""A gte-modernbert-base-shaped model with random weights, and PyTorch reference embeddings for it.

    gpu_modernbert.py make OUT_DIR --tokenizer-from MINILM_DIR [--seed 0] [--layers 22] [--hidden 768]
                      [--intermediate 1152] [--heads 12] [--vocab 50368] [--local-window 128] [--max-seq 8192]
    gpu_modernbert.py reference MODEL_DIR CASES_JSON OUT_JSON

`make` writes a sentence-transformers folder (config.json, model.safetensors, tokenizer files,
modules.json, 1_Pooling with CLS pooling, sentence_bert_config.json) that both cinevec and
sentence-transformers load: the shape of Alibaba-NLP/gte-modernbert-base (22 layers, hidden 768,
GeGLU intermediate 1152, 12 heads, global attention every 3rd layer, local window 128, vocabulary
50,368, RoPE theta 160,000 global / 10,000 local), initialised by `transformers` from a fixed seed, so
the same command makes the same weights anywhere. Its embeddings mean nothing: it is for speed and
for checking that cinevec computes the same function as PyTorch.

The weights are drawn with initializer_range 0.1 (--init-std), not transformers' usual 0.02: at 0.02
a random model of this shape gives nearly the same CLS vector for every text (cosine 0.994 to 0.9999
between unrelated texts, measured), so a parity check would pass whatever attention computed; at 0.1
unrelated texts land at cosine 0.02 to 0.31, and attention, the local window and RoPE all show in
the output. (A tiny model, hidden 64, needs about 0.3.) The value does not change the speed.

The tokenizer is all-MiniLM-L6-v2's WordPiece (30,522 ids, all inside the 50,368-row embedding table),
not gte-modernbert's BPE, which is not available offline: both engines use the same one, so the
comparison is fair, but token counts per document differ somewhat from the real model's.

`reference` embeds the texts of a check-parity reference file (e.g. ../shared/fixtures/
minilm-reference.json) with sentence-transformers on the CPU in float32 and writes the same format
for this model: `cinevec check-parity --reference OUT_JSON --model MODEL_DIR` then compares.
"""
import argparse
import json
import os
import shutil
import time

import torch


def config_for(args) -> dict:
    # Keys as in gte-modernbert-base's config.json; candle-transformers reads global_rope_theta,
    # local_rope_theta and layer_norm_eps, transformers reads the same (and norm_eps).
    return {
        "architectures": ["ModernBertModel"],
        "model_type": "modernbert",
        "vocab_size": args.vocab,
        "hidden_size": args.hidden,
        "intermediate_size": args.intermediate,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "hidden_activation": "gelu",
        "max_position_embeddings": args.max_seq,
        "global_attn_every_n_layers": 3,
        "local_attention": args.local_window,
        "global_rope_theta": 160000.0,
        "local_rope_theta": 10000.0,
        "norm_eps": 1e-05,
        "layer_norm_eps": 1e-05,
        "norm_bias": False,
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "embedding_dropout": 0.0,
        "mlp_dropout": 0.0,
        "initializer_range": args.init_std,
        "initializer_cutoff_factor": 2.0,
        # MiniLM's tokenizer: [PAD] 0, [CLS] 101, [SEP] 102.
        "pad_token_id": 0,
        "cls_token_id": 101,
        "sep_token_id": 102,
        "bos_token_id": 101,
        "eos_token_id": 102,
        "classifier_pooling": "cls",
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        # Plain eager PyTorch on both sides of the benchmark: no torch.compile of the MLP.
        "reference_compile": False,
    }


def make(args) -> None:
    from safetensors.torch import save_file
    from transformers import ModernBertConfig, ModernBertModel

    out = args.out_dir
    os.makedirs(os.path.join(out, "1_Pooling"), exist_ok=True)
    config = config_for(args)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    model = ModernBertModel(ModernBertConfig.from_pretrained(out)).eval()
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    params = sum(v.numel() for v in state.values())
    for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]:
        src = os.path.join(args.tokenizer_from, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(out, name))
    with open(os.path.join(out, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": args.max_seq, "do_lower_case": False}, f)
    with open(os.path.join(out, "1_Pooling", "config.json"), "w") as f:
        json.dump(
            {
                "word_embedding_dimension": args.hidden,
                "pooling_mode_cls_token": True,
                "pooling_mode_mean_tokens": False,
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
            },
            f,
            indent=2,
        )
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    with open(os.path.join(out, "modules.json"), "w") as f:
        json.dump(modules, f, indent=2)
    print(
        f"{out}: random ModernBERT, {params / 1e6:.1f}M parameters, {args.layers} layers, hidden {args.hidden}, "
        f"seed {args.seed}, made in {time.perf_counter() - start:.1f}s"
    )


def reference(args) -> None:
    from sentence_transformers import SentenceTransformer

    with open(args.cases_json) as f:
        texts = [c["text"] for c in json.load(f)["cases"]]
    model = SentenceTransformer(args.model_dir, device="cpu")
    tokenizer = model.tokenizer
    with torch.inference_mode():
        vectors = model.encode(texts, batch_size=1, normalize_embeddings=True, convert_to_numpy=True)
    cases = []
    for text, vector in zip(texts, vectors):
        tokens = len(tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])
        cases.append({"text": text, "tokens_untruncated": tokens, "embedding": [float(x) for x in vector]})
    out = {
        "model": f"random gte-modernbert-shaped ({args.model_dir})",
        "pooling": "cls",
        "normalized": True,
        "max_seq_length": model.max_seq_length,
        "produced_with": f"sentence-transformers (PyTorch {torch.__version__}, CPU, float32)",
        "cases": cases,
    }
    with open(args.out_json, "w") as f:
        json.dump(out, f)
    print(f"{args.out_json}: {len(cases)} reference embeddings from PyTorch on the CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("out_dir")
    m.add_argument("--tokenizer-from", required=True, help="folder with MiniLM's tokenizer.json and friends")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--layers", type=int, default=22)
    m.add_argument("--hidden", type=int, default=768)
    m.add_argument("--intermediate", type=int, default=1152)
    m.add_argument("--heads", type=int, default=12)
    m.add_argument("--vocab", type=int, default=50368)
    m.add_argument("--local-window", type=int, default=128)
    m.add_argument("--max-seq", type=int, default=8192)
    m.add_argument("--init-std", type=float, default=0.1, help="initializer_range (see above)")
    r = sub.add_parser("reference")
    r.add_argument("model_dir")
    r.add_argument("cases_json")
    r.add_argument("out_json")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.command == "make":
        make(args)
    else:
        reference(args)


if __name__ == "__main__":
    main()
