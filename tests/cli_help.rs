//! Every command's `--help`, as the binary prints it, against the text kept in `tests/fixtures/help/`
//! (one file a command, named by its words: `cinevec-catalog-export.txt` is `cinevec catalog export
//! --help`). The files were written by the binary before the command line was split into `src/cli/`;
//! a change of a flag or of its help shows here as a diff, and the file is then rewritten on purpose
//! (`CINEVEC_BLESS_HELP=1 cargo test --test cli_help`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/help")
}

/// `cinevec <words> --help` with no `CINEVEC_*` variable set (help shows the values of those set).
fn help(words: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cinevec"));
    for (name, _) in std::env::vars() {
        if name.starts_with("CINEVEC_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd.args(words).arg("--help").output().expect("run cinevec");
    assert!(out.status.success(), "cinevec {words:?} --help failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

#[test]
fn every_commands_help_is_unchanged() {
    let bless = std::env::var_os("CINEVEC_BLESS_HELP").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures/help")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 19, "expected a help file for every command, found {}", files.len());
    let mut differ = Vec::new();
    for file in &files {
        let stem = file.file_stem().unwrap().to_str().unwrap();
        let words: Vec<&str> = stem.split('-').collect();
        assert_eq!(words[0], "cinevec", "{stem}: help files are named cinevec-<command words>");
        // Command names hold dashes too (`bench-titles`): the longest run of words that is one command.
        let words = command_words(&words[1..]);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let now = help(&words);
        let kept = std::fs::read_to_string(file).unwrap();
        if now != kept {
            if bless {
                std::fs::write(file, &now).unwrap();
            } else {
                differ.push(format!("{stem}:\n--- kept\n{kept}\n--- now\n{now}"));
            }
        }
    }
    assert!(differ.is_empty(), "help changed for {} command(s):\n{}", differ.len(), differ.join("\n"));
}

/// The subcommand path of a file name's words: `catalog export` stays two words, `bench titles`
/// joins to `bench-titles` (the only subcommands with subcommands of their own are `model` and
/// `catalog`).
fn command_words(words: &[&str]) -> Vec<String> {
    match words.first() {
        None => Vec::new(),
        Some(&first) if first == "model" || first == "catalog" => {
            std::iter::once(first.to_string()).chain((words.len() > 1).then(|| words[1..].join("-"))).collect()
        }
        Some(_) => vec![words.join("-")],
    }
}

#[test]
fn a_help_file_names_a_command_that_exists() {
    // The walk above would pass on an empty folder; `cinevec --help` lists the visible commands, and
    // each must have its file.
    let top = help(&[]);
    let listed: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(listed.len() >= 6, "commands listed: {listed:?}");
    for command in listed {
        let file = fixtures().join(format!("cinevec-{command}.txt"));
        assert!(file.exists(), "no help file for `cinevec {command}` ({})", file.display());
    }
}
