"""The official `openai` package and LangChain's `OpenAIEmbeddings` against cinevec's
OpenAI-compatible routes (run by tests/clients.rs, which checks what this writes).

Usage: python openai_clients.py BASE_URL REFERENCE_JSON MAX_TEXTS OUT_JSON

For every text of the PyTorch reference that the model reads whole, it records the vector each client
returned (the `openai` client with `encoding_format="float"`, with its default (it asks for base64 and
decodes it itself), the raw base64 string off the wire, and LangChain's documents and query), the
models the server lists, the usage it reports, and how each bad request failed: the exception's class
and the fields of OpenAI's error body. Nothing is judged here: tests/clients.rs asserts on it.
"""

import json
import sys

import openai
from langchain_openai import OpenAIEmbeddings


def failure(call):
    """Run `call`, expecting an API error; return what the client raised."""
    try:
        call()
    except openai.APIStatusError as e:
        return {
            "class": type(e).__name__,
            "status": e.status_code,
            "type": e.type,
            "code": e.code,
            "param": e.param,
            "message": e.message,
        }
    except openai.APIError as e:  # not a status error (a connection or decoding failure)
        return {"class": type(e).__name__, "status": None, "message": str(e)}
    return {"class": None, "status": None, "message": "no error was raised"}


def main():
    base, reference_path, max_texts, out_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    with open(reference_path, encoding="utf-8") as f:
        reference = json.load(f)
    limit = reference["max_seq_length"]
    whole = [c["text"] for c in reference["cases"] if c["tokens_untruncated"] <= limit]
    long = [c["text"] for c in reference["cases"] if c["tokens_untruncated"] > limit]

    # No key: reads need none on cinevec, but the client insists on one and sends it (ignored).
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=120)
    out = {"openai_version": openai.__version__, "texts": whole}

    listed = client.models.list()
    out["models"] = [m.id for m in listed.data]
    model = out["models"][0]
    out["model"] = model
    out["retrieved"] = client.models.retrieve(model).id

    one = client.embeddings.create(model=model, input="hello world", encoding_format="float")
    out["single"] = {"embedding": one.data[0].embedding, "usage": one.usage.prompt_tokens, "model": one.model}

    floats = client.embeddings.create(model=model, input=whole, encoding_format="float")
    out["list_float"] = [d.embedding for d in floats.data]
    out["list_index"] = [d.index for d in floats.data]
    out["list_usage"] = {"prompt_tokens": floats.usage.prompt_tokens, "total_tokens": floats.usage.total_tokens}

    default = client.embeddings.create(model=model, input=whole)
    out["list_default"] = [d.embedding for d in default.data]

    raw = client.embeddings.with_raw_response.create(model=model, input=whole[:2], encoding_format="base64")
    out["raw_base64"] = [d["embedding"] for d in raw.http_response.json()["data"]]

    out["errors"] = {
        "wrong_model": failure(lambda: client.embeddings.create(model="text-embedding-3-small", input="hello")),
        "wrong_model_retrieve": failure(lambda: client.models.retrieve("text-embedding-3-small")),
        "oversized": failure(lambda: client.embeddings.create(model=model, input=long[0])),
        "too_many": failure(lambda: client.embeddings.create(model=model, input=["a text"] * (max_texts + 1))),
        "empty_text": failure(lambda: client.embeddings.create(model=model, input="")),
        "tokens": failure(lambda: client.embeddings.create(model=model, input=[[101, 7592, 2088, 102]])),
        "dimensions": failure(lambda: client.embeddings.create(model=model, input="hello", dimensions=128)),
    }

    embeddings = OpenAIEmbeddings(
        model=model, base_url=f"{base}/v1", api_key="not-needed", check_embedding_ctx_length=False, max_retries=0
    )
    out["langchain_documents"] = embeddings.embed_documents(whole)
    out["langchain_query"] = embeddings.embed_query("hello world")

    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f)
    print(f"openai {openai.__version__}: {len(whole)} texts, {len(out['errors'])} refusals recorded")


if __name__ == "__main__":
    main()
