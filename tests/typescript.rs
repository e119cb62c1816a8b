//! A typed TypeScript client made from `openapi.yaml`, against the real server (real default model,
//! a private copy of the 300-movie slice of imdb5000) on port 0: `openapi-typescript` generates the
//! types from the spec, `tsc --strict` compiles `tests/browser/client/` (which fails on a field the
//! spec names differently from what the program reads, on an `any`, and on an answer the spec types
//! as nothing), and node runs it: every read route and two writes (add, then delete) through
//! `openapi-fetch`, each answer's shape checked; then README's "From a frontend" (`client/example.ts`).
//!
//! Needs the model and ../shared (as the server tests), Node.js 20+ and `npm ci --prefix
//! tests/browser` (scripts/test.sh does both). The generated types land in
//! `tests/browser/client/generated/`, the compiled program in `tests/browser/client/dist/`.

mod common;
mod serving;

use serving::{config, fixture_copy, Server, KEY};
use std::process::{Command, Output};

/// Run a Node package's command line from tests/browser (as `npm run` would, without needing npm).
fn node(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new("node")
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(common::browser_dir())
        .output()
        .expect("cannot run node")
}

fn succeeded(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the model, ../shared and Node.js with `npm ci --prefix tests/browser`: run scripts/test.sh"]
async fn a_client_generated_from_the_spec_compiles_strictly_and_works_against_the_server() {
    common::node_ready(&["openapi-typescript", "openapi-fetch", "typescript"], "the typed client check");
    // The types and the build, from scratch: nothing left from an earlier spec is compiled.
    let client = common::browser_dir().join("client");
    let _ = std::fs::remove_dir_all(client.join("generated"));
    let _ = std::fs::remove_dir_all(client.join("dist"));
    // `npm run client:types` and `npm run client:build` (package.json), spelled out.
    let types = node(
        &[
            "node_modules/openapi-typescript/bin/cli.js",
            "../../openapi.yaml",
            "--default-non-nullable",
            "false",
            "-o",
            "client/generated/api.d.ts",
        ],
        &[],
    );
    succeeded("openapi-typescript", &types);
    let generated = std::fs::read_to_string(client.join("generated/api.d.ts")).unwrap();
    for operation in ["getMovie", "similarById", "createEmbeddings", "addMovie", "map"] {
        assert!(generated.contains(&format!("    {operation}: {{")), "no operation {operation} in the generated types");
    }
    let build = node(&["node_modules/typescript/bin/tsc", "-p", "client"], &[]);
    succeeded("tsc --strict (tests/browser/client/tsconfig.json)", &build);
    assert!(client.join("dist/check.js").is_file() && client.join("dist/example.js").is_file(), "tsc wrote no dist/");

    let dir = fixture_copy();
    let server = Server::start(config(dir.path())).await;
    let base = server.base.clone();
    let run = tokio::task::spawn_blocking(move || {
        node(
            &["client/dist/check.js"],
            &[("CINEVEC_URL", &base), ("CINEVEC_API_KEY", KEY), ("CINEVEC_MOVIE", "tt0499549")],
        )
    })
    .await
    .unwrap();
    // README's "From a frontend" (client/example.ts): five films more like The Dark Knight, one a line.
    let base = server.base.clone();
    let example = tokio::task::spawn_blocking(move || node(&["client/dist/example.js"], &[("CINEVEC_URL", &base)]))
        .await
        .unwrap();
    server.stop().await.unwrap();
    let printed = succeeded("README's example (node client/dist/example.js)", &example);
    println!("{printed}");
    assert_eq!(printed.lines().count(), 5, "README's example printed {printed:?}");
    for line in printed.lines() {
        let score: f64 = line.split(' ').next().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
        assert!(score > 0.0 && score <= 1.0, "README's example: {line:?} does not start with a score");
    }
    let stdout = succeeded("the typed client (node client/dist/check.js)", &run);
    println!("{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    let checked: u32 = last
        .strip_prefix("the typed client: ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the typed client did not finish: {last:?}"));
    assert!(checked >= 25, "only {checked} answers checked");
}

/// Needs neither the model nor Node.js: README's "From a frontend" shows `client/example.ts` as it is.
#[test]
fn the_readme_shows_the_example_as_compiled_and_run() {
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let example = std::fs::read_to_string(common::browser_dir().join("client/example.ts")).unwrap();
    assert!(
        readme.contains(&format!("```ts\n{example}```")),
        "README.md's \"From a frontend\" differs from tests/browser/client/example.ts: copy the file into it"
    );
}
