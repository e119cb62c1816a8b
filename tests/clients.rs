//! The OpenAI-compatible routes through the clients people point at them: the official `openai`
//! Python package and LangChain's `OpenAIEmbeddings` (PyPI `langchain-openai`, with `base_url` and
//! `check_embedding_ctx_length=False`), against the real server (real default model, a 300-movie
//! slice of imdb5000) on port 0.
//!
//! `tests/clients/openai_clients.py` makes the calls and records what the clients returned and raised;
//! this test checks it: every text of the PyTorch reference (`../shared/fixtures/minilm-reference.json`)
//! that the model reads whole comes back as its reference vector (cos >= 0.9999) from a string, a
//! list, base64 and LangChain, and as the vector `/v1/embed` gives the movie document it renders;
//! a wrong model, an oversized text, too many texts, an empty text, token arrays and `dimensions`
//! each raise the client's own error class for the status, with OpenAI's error fields.
//!
//! The packages (pinned in `tests/clients/requirements.txt`) go into `.bench/venv-clients`, made by
//! this test with `python3 -m venv` and pip. Where that cannot be done, the test fails under CI
//! (`CI=true`) and otherwise prints why and passes without running.

mod common;
mod serving;

use base64::Engine as _;
use serde_json::{json, Value};
use serving::{config, fixture, Server};
use std::path::PathBuf;
use std::process::Command;

fn clients_dir() -> PathBuf {
    common::repo_root().join("tests/clients")
}

/// Run a command to the end; its failure as one line (what ran, and the tail of what it said).
fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let out = command.output().map_err(|e| format!("cannot run {shown}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = said.lines().rev().take(6).collect();
    Err(format!("{shown} failed ({}): {}", out.status, tail.into_iter().rev().collect::<Vec<_>>().join(" | ")))
}

/// The venv's Python with the pinned clients, made (or remade, when the pins changed) here.
fn make_venv() -> Result<PathBuf, String> {
    let venv = common::repo_root().join(".bench/venv-clients");
    let python = venv.join("bin/python");
    let requirements = clients_dir().join("requirements.txt");
    let pins = std::fs::read_to_string(&requirements).map_err(|e| format!("{}: {e}", requirements.display()))?;
    let stamp = venv.join("cinevec-requirements.txt");
    if python.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == pins) {
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(&venv);
    std::fs::create_dir_all(venv.parent().unwrap()).map_err(|e| e.to_string())?;
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
        .map_err(|e| format!("{e} (Debian: `apt-get install -y python3-venv`)"))?;
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))?;
    std::fs::write(&stamp, pins).map_err(|e| e.to_string())?;
    Ok(python)
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap_or_else(|| panic!("not a vector: {v}")).iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the model, ../shared and python3 with venv (PyPI reachable): run scripts/test.sh"]
async fn the_openai_and_langchain_clients_get_the_reference_vectors() {
    let python = match make_venv() {
        Ok(python) => python,
        Err(why) => {
            let message = format!("the OpenAI clients' venv (.bench/venv-clients) cannot be made: {why}");
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
            eprintln!("skipped: {message}");
            return;
        }
    };
    let reference_path = common::shared().join("fixtures/minilm-reference.json");
    let reference: Value = serde_json::from_slice(&std::fs::read(&reference_path).unwrap()).unwrap();
    let server = Server::start(config(fixture())).await;
    let max_texts = server.get("/v1/info").await.json::<Value>().await.unwrap()["limits"]["max_documents_per_request"]
        .as_u64()
        .unwrap();

    let out = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new(&python);
    command
        .arg(clients_dir().join("openai_clients.py"))
        .arg(&server.base)
        .arg(&reference_path)
        .arg(max_texts.to_string())
        .arg(out.path());
    let output =
        tokio::task::spawn_blocking(move || command.output().expect("cannot run the venv's python")).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the clients' program failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let got: Value = serde_json::from_slice(&std::fs::read(out.path()).unwrap()).unwrap();

    // The served model, as the client lists and retrieves it.
    let model = got["model"].as_str().unwrap();
    assert_eq!(got["models"], json!(["all-MiniLM-L6-v2"]));
    assert_eq!(got["retrieved"], model);

    // Every text the model reads whole, from each client path, is the PyTorch reference's vector.
    let limit = reference["max_seq_length"].as_u64().unwrap();
    let cases: Vec<&Value> = reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["tokens_untruncated"].as_u64().unwrap() <= limit)
        .collect();
    assert!(cases.len() >= 12, "only {} reference texts", cases.len());
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    assert_eq!(got["texts"], json!(texts));
    let want: Vec<Vec<f32>> = cases.iter().map(|c| floats(&c["embedding"])).collect();
    let mut worst = 1.0f64;
    for path in ["list_float", "list_default", "langchain_documents"] {
        let vectors = got[path].as_array().unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!(vectors.len(), texts.len(), "{path}");
        for ((v, w), text) in vectors.iter().zip(&want).zip(&texts) {
            let v = floats(v);
            assert_eq!(v.len(), 384, "{path}");
            let cos = common::cosine(&v, w);
            worst = worst.min(cos);
            assert!(cos >= 0.9999, "{path}: cos {cos} with the reference for {text:?}");
        }
    }
    for path in ["single", "langchain_query"] {
        let v = if path == "single" { floats(&got[path]["embedding"]) } else { floats(&got[path]) };
        let cos = common::cosine(&v, &want[0]);
        worst = worst.min(cos);
        assert!(cos >= 0.9999, "{path}: cos {cos} for \"hello world\"");
    }
    assert_eq!(texts[0], "hello world");
    println!("lowest cosine with the PyTorch reference over {} texts and 5 client paths: {worst:.8}", texts.len());

    // Input order, usage in the model's tokens (special tokens included), and base64 on the wire is
    // exactly the float vector's little-endian bytes (which the client decodes by default).
    assert_eq!(got["list_index"], json!((0..texts.len()).collect::<Vec<_>>()));
    let tokens: u64 = cases.iter().map(|c| c["tokens_untruncated"].as_u64().unwrap()).sum();
    assert_eq!(got["list_usage"], json!({"prompt_tokens": tokens, "total_tokens": tokens}));
    assert_eq!(got["single"]["usage"], cases[0]["tokens_untruncated"]);
    assert_eq!(got["single"]["model"], model);
    for (i, raw) in got["raw_base64"].as_array().unwrap().iter().enumerate() {
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(raw.as_str().expect("base64 is a string")).unwrap();
        let decoded: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(decoded, floats(&got["list_float"][i]), "base64 of text {i}");
        assert_eq!(floats(&got["list_default"][i]), decoded, "the client's own decoding of text {i}");
    }

    // The movie documents' texts get the vector /v1/embed gives the documents they render.
    let documents: Vec<(usize, Value)> = texts
        .iter()
        .enumerate()
        .filter(|(_, t)| t.starts_with("{\n"))
        .map(|(i, t)| (i, serde_json::from_str(t).unwrap()))
        .collect();
    assert!(documents.len() >= 12);
    let body = json!({"movies": documents.iter().map(|(_, d)| d).collect::<Vec<_>>()});
    let embed: Value = server.post("/v1/embed", &body).await.json().await.unwrap();
    let mut worst_embed = 1.0f64;
    for ((i, _), e) in documents.iter().zip(embed["embeddings"].as_array().unwrap()) {
        let cos = common::cosine(&floats(&e["vector"]), &floats(&got["list_float"][*i]));
        worst_embed = worst_embed.min(cos);
        assert!(cos >= 0.9999, "text {i}: cos {cos} between /v1/embed's vector and the openai client's");
    }
    println!(
        "lowest cosine between /v1/embed and the openai client over {} documents: {worst_embed:.8}",
        documents.len()
    );

    // Each refusal is the client's own error class for its status, with OpenAI's error fields.
    let errors = &got["errors"];
    for (case, class, status, code, says) in [
        ("wrong_model", "NotFoundError", 404, "model_not_found", "text-embedding-3-small"),
        ("wrong_model_retrieve", "NotFoundError", 404, "model_not_found", "text-embedding-3-small"),
        ("oversized", "UnprocessableEntityError", 422, "invalid_request", "tokens long"),
        ("too_many", "UnprocessableEntityError", 422, "invalid_request", "too many texts"),
        ("empty_text", "UnprocessableEntityError", 422, "invalid_request", "is empty"),
        ("tokens", "UnprocessableEntityError", 422, "invalid_request", "token arrays are not supported"),
        ("dimensions", "UnprocessableEntityError", 422, "invalid_request", "cannot shorten"),
    ] {
        let e = &errors[case];
        assert_eq!((e["class"].as_str(), e["status"].as_u64()), (Some(class), Some(status)), "{case}: {e}");
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("invalid_request_error"), Some(code)),
            "{case}: {e}"
        );
        assert!(e["message"].as_str().unwrap().contains(says), "{case}: {e}");
    }
    server.stop().await.unwrap();
}
