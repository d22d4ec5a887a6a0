//! End-to-end tests of `seqlab translate train|eval|run`, running the binary on a toy reversal task, bad
//! inputs included.

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
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("note:")).collect();
    assert_eq!(lines.len(), 1, "expected one line, got {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0].to_string()
}

const WORDS: [&str; 6] = ["ant", "bee", "cat", "dog", "eel", "fox"];

/// Pairs "w1 .. wk<TAB>WK .. W1", plus the bad lines given.
fn write_pairs(path: &Path, n: usize, extra: &str) {
    let mut state = 11u64;
    let mut text = String::new();
    for _ in 0..n {
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        let len = 2 + next() % 4;
        let words: Vec<&str> = (0..len).map(|_| WORDS[next() % WORDS.len()]).collect();
        let target: Vec<String> = words.iter().rev().map(|w| w.to_uppercase()).collect();
        text.push_str(&format!("{}\t{}\n", words.join(" "), target.join(" ")));
    }
    text.push_str(extra);
    std::fs::write(path, text).unwrap();
}

struct Trained {
    dir: tempfile::TempDir,
    model: PathBuf,
}

fn train() -> Trained {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pairs.tsv");
    write_pairs(&data, 2000, "a line without a tab\n\tan empty source\n");
    let model = dir.path().join("model");
    let out = stdout(&seqlab(&[
        "translate",
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--min-freq",
        "1",
        "--valid-fraction",
        "0.03",
        "--embed",
        "16",
        "--hidden",
        "32",
        "--dropout",
        "0",
        "--attention",
        "additive",
        "--max-source-tokens",
        "12",
        "--batch",
        "32",
        "--lr",
        "0.01",
        "--steps",
        "300",
        "--eval-every",
        "100",
        "--threads",
        "2",
    ]));
    assert!(out.contains("2 malformed lines skipped"), "{out}");
    assert!(out.contains("finished at step 300/300"), "{out}");
    Trained { dir, model }
}

#[test]
fn translate_train_eval_run_end_to_end() {
    let t = train();
    let model = t.model.to_str().unwrap();
    let json: Value = serde_json::from_str(&stdout(&seqlab(&[
        "translate",
        "eval",
        "--model",
        model,
        "--json",
    ])))
    .unwrap();
    let greedy = json["bleu"].as_f64().unwrap();
    assert!(greedy > 60.0, "{json}");
    assert_eq!(json["sentences"], 60);
    assert_eq!(json["precisions"].as_array().unwrap().len(), 4);
    let hyps = t.dir.path().join("hyps.txt");
    let beam: Value = serde_json::from_str(&stdout(&seqlab(&[
        "translate",
        "eval",
        "--model",
        model,
        "--beam",
        "4",
        "--json",
        "--output",
        hyps.to_str().unwrap(),
    ])))
    .unwrap();
    assert_eq!(beam["decoding"], "beam 4");
    assert!(
        beam["bleu"].as_f64().unwrap() >= greedy - 2.0,
        "{beam} vs {json}"
    );
    assert_eq!(std::fs::read_to_string(&hyps).unwrap().lines().count(), 60);

    let svg = t.dir.path().join("attention.svg");
    let out = stdout(&seqlab(&[
        "translate",
        "run",
        "--model",
        model,
        "cat dog eel",
        "bee ant",
        "--plot-attention",
        svg.to_str().unwrap(),
    ]));
    assert_eq!(out, "EEL DOG CAT\nANT BEE\n");
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(
        picture.starts_with("<svg")
            && picture.contains(">eel</text>")
            && picture.contains(">EEL</text>")
    );
    assert_eq!(
        picture.matches("<title>").count(),
        3 * 4,
        "3 source tokens x (3 words + <eos>)"
    );
    assert!(t.dir.path().join("attention-2.svg").is_file());

    let input = t.dir.path().join("input.txt");
    std::fs::write(&input, "fox fox cat\n").unwrap();
    let out = stdout(&seqlab(&[
        "translate",
        "run",
        "--model",
        model,
        "--input",
        input.to_str().unwrap(),
        "--beam",
        "3",
    ]));
    assert_eq!(out, "CAT FOX FOX\n");
}

#[test]
fn translate_bad_inputs_give_one_line_errors() {
    let t = train();
    let model = t.model.to_str().unwrap();
    let long = "cat ".repeat(20);
    let message = error(&seqlab(&[
        "translate",
        "run",
        "--model",
        model,
        long.trim(),
    ]));
    assert!(
        message.contains("sentence 1 has 20 source tokens, more than the 12"),
        "{message}"
    );

    let data = t.dir.path().join("long.tsv");
    std::fs::write(&data, format!("cat dog\tDOG CAT\n{long}\tCAT\n")).unwrap();
    let message = error(&seqlab(&[
        "translate",
        "eval",
        "--model",
        model,
        "--data",
        data.to_str().unwrap(),
    ]));
    assert!(
        message.contains("long.tsv, line 2: the source has 20 tokens"),
        "{message}"
    );

    let strict = t.dir.path().join("strict.tsv");
    write_pairs(&strict, 50, "no tab here\n");
    let message = error(&seqlab(&[
        "translate",
        "train",
        "--data",
        strict.to_str().unwrap(),
        "--out",
        t.dir.path().join("strict-model").to_str().unwrap(),
        "--strict",
        "--steps",
        "1",
    ]));
    assert!(
        message.contains("strict.tsv, line 51: no tab between the source and the target"),
        "{message}"
    );

    let empty = t.dir.path().join("empty-side.tsv");
    std::fs::write(&empty, "cat dog\t   \n").unwrap();
    let message = error(&seqlab(&[
        "translate",
        "eval",
        "--model",
        model,
        "--data",
        empty.to_str().unwrap(),
    ]));
    assert!(
        message.contains("empty-side.tsv holds no source<TAB>target pairs (1 lines skipped"),
        "{message}"
    );

    let message = error(&seqlab(&[
        "translate",
        "run",
        "--model",
        model,
        "--beam",
        "0",
        "cat",
    ]));
    assert!(message.contains("--beam must be at least 1"), "{message}");
    let message = error(&seqlab(&["translate", "run", "--model", model]));
    assert!(message.contains("give sentences to translate"), "{message}");
    let missing = t.dir.path().join("nothing");
    let message = error(&seqlab(&[
        "translate",
        "eval",
        "--model",
        missing.to_str().unwrap(),
    ]));
    assert!(message.contains("is not a model directory"), "{message}");
}
