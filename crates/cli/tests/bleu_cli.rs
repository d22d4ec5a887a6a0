//! End-to-end tests of `seqlab bleu`, running the binary on files written from the sacreBLEU fixture
//! (crates/train/tests/fixtures/bleu_sacrebleu.json, made by tests/reference/make_bleu_fixture.py).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn seqlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seqlab"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the seqlab binary runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "seqlab failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The one-line error of a failed run.
fn error(output: &Output) -> String {
    assert!(!output.status.success(), "seqlab should have failed");
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0].to_string()
}

fn case(name: &str) -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../train/tests/fixtures/bleu_sacrebleu.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
        .clone()
}

fn write_lines(path: &Path, lines: &Value) {
    let lines: Vec<&str> = lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Writes a fixture case as files: the hypotheses and one file per reference stream.
fn files(dir: &Path, case: &Value) -> (PathBuf, Vec<PathBuf>) {
    let hyp = dir.join("hyp.txt");
    write_lines(&hyp, &case["hypotheses"]);
    let refs = case["references"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(k, stream)| {
            let path = dir.join(format!("ref{k}.txt"));
            write_lines(&path, stream);
            path
        })
        .collect();
    (hyp, refs)
}

fn args<'a>(hyp: &'a Path, refs: &'a [PathBuf], json: bool) -> Vec<&'a str> {
    let mut args = vec!["bleu", "--hyp", hyp.to_str().unwrap(), "--ref"];
    args.extend(refs.iter().map(|r| r.to_str().unwrap()));
    if json {
        args.push("--json");
    }
    args
}

#[test]
fn bleu_json_matches_sacrebleu_with_two_reference_files() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "classic_two_refs",
        "unicode_accents",
        "numbers_commas_periods",
        "empty_hypothesis",
    ] {
        let case = case(name);
        let (hyp, refs) = files(dir.path(), &case);
        let json: Value = serde_json::from_str(&stdout(&seqlab(&args(&hyp, &refs, true)))).unwrap();
        let expected = &case["expected"];
        for key in ["score", "bp"] {
            let (got, want) = (json[key].as_f64().unwrap(), expected[key].as_f64().unwrap());
            assert!(
                (got - want).abs() < 0.01,
                "{name}: {key} {got} vs sacreBLEU {want}"
            );
        }
        for key in ["sys_len", "ref_len"] {
            assert_eq!(json[key], expected[key], "{name}: {key}");
        }
        let precisions = json["precisions"].as_array().unwrap();
        assert_eq!(precisions.len(), 4);
        for (got, want) in precisions
            .iter()
            .zip(expected["precisions"].as_array().unwrap())
        {
            assert!(
                (got.as_f64().unwrap() - want.as_f64().unwrap()).abs() < 0.01,
                "{name}"
            );
        }
    }
}

#[test]
fn bleu_prints_sacrebleus_line_without_json() {
    let dir = tempfile::tempdir().unwrap();
    let case = case("classic_two_refs");
    let (hyp, refs) = files(dir.path(), &case);
    let out = stdout(&seqlab(&args(&hyp, &refs, false)));
    let score = case["expected"]["score"].as_f64().unwrap();
    assert!(out.starts_with(&format!("BLEU = {score:.2} ")), "{out}");
    assert!(out.contains("hyp_len = 30 ref_len = 30"), "{out}");
}

#[test]
fn bleu_rejects_files_of_different_line_counts() {
    let dir = tempfile::tempdir().unwrap();
    let hyp = dir.path().join("hyp.txt");
    let short = dir.path().join("short.txt");
    std::fs::write(&hyp, "a b c\nd e f\n").unwrap();
    std::fs::write(&short, "a b c\n").unwrap();
    let message = error(&seqlab(&args(&hyp, std::slice::from_ref(&short), false)));
    assert!(message.contains("short.txt has 1 lines"), "{message}");
    assert!(message.contains("hyp.txt have 2"), "{message}");

    let missing = dir.path().join("missing.txt");
    let message = error(&seqlab(&args(&hyp, std::slice::from_ref(&missing), false)));
    assert!(
        message.contains("cannot read") && message.contains("missing.txt"),
        "{message}"
    );

    let bad = dir.path().join("latin1.txt");
    std::fs::write(&bad, b"ok\ncaf\xe9\n").unwrap();
    let message = error(&seqlab(&args(&hyp, std::slice::from_ref(&bad), false)));
    assert!(
        message.contains("latin1.txt is not UTF-8 (line 2)"),
        "{message}"
    );
}
