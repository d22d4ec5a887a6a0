//! End-to-end tests of `seqlab lm train|generate|eval`, running the binary.
//!
//! They live here rather than in the workspace's root `tests/` because cargo gives the binary's path
//! (`CARGO_BIN_EXE_seqlab`) only to the tests of the package that builds it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../train/tests/fixtures")
}

/// A text of our own, and a tiny model trained on it.
struct Trained {
    _dir: tempfile::TempDir,
    text: PathBuf,
    model: PathBuf,
}

fn write_text(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(
            [
                "The cat sat on the mat, and the dog sat on the log.\n",
                "\"Where is the bird?\" asked the cat. The bird sang in the tree.\n",
            ][i % 2],
        );
    }
    let path = dir.join("text.txt");
    std::fs::write(&path, text).unwrap();
    path
}

fn train(tokenizer: &str) -> Trained {
    let dir = tempfile::tempdir().unwrap();
    let text = write_text(dir.path());
    let model = dir.path().join("lm");
    let out = stdout(&seqlab(&[
        "lm",
        "train",
        "--data",
        text.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--tokenizer",
        tokenizer,
        "--hidden",
        "16",
        "--embed",
        "8",
        "--steps",
        "12",
        "--batch",
        "4",
        "--seq-len",
        "12",
        "--eval-every",
        "6",
        "--lr",
        "0.01",
        "--seed",
        "3",
    ]));
    assert!(out.contains("finished at step 12/12"), "{out}");
    assert!(out.contains("best validation loss"), "{out}");
    Trained {
        _dir: dir,
        text,
        model,
    }
}

#[test]
fn train_writes_a_model_directory_and_generate_is_reproducible_with_a_seed() {
    let t = train("char");
    for file in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "metrics.csv",
        "loss.svg",
        "trainer/state.json",
    ] {
        assert!(t.model.join(file).is_file(), "{file} is missing");
    }
    let model = t.model.to_str().unwrap();
    let gen = |extra: &[&str]| {
        let mut args = vec![
            "lm", "generate", "--model", model, "--prompt", "The cat", "--length", "40",
        ];
        args.extend_from_slice(extra);
        stdout(&seqlab(&args))
    };
    let a = gen(&["--seed", "7"]);
    assert!(a.starts_with("The cat"), "{a:?}");
    // At most 40 tokens: fewer when the model produces <eos>.
    assert!(
        a.trim_end_matches('\n').chars().count() <= "The cat".len() + 40,
        "{a:?}"
    );
    assert_eq!(a, gen(&["--seed", "7"]));
    assert_ne!(a, gen(&["--seed", "8", "--temperature", "1.3"]));
    // Top-k 1 and temperature 0 are greedy decoding.
    let greedy = gen(&["--greedy"]);
    assert_eq!(greedy, gen(&["--top-k", "1", "--seed", "99"]));
    assert_eq!(greedy, gen(&["--temperature", "0"]));
    // Beam search of width 1 is greedy decoding too.
    assert_eq!(greedy, gen(&["--beam", "1"]));
    assert!(gen(&["--beam", "3"]).starts_with("The cat"));
}

#[test]
fn generate_handles_unknown_characters_and_an_empty_prompt() {
    let t = train("char");
    let model = t.model.to_str().unwrap();
    let output = seqlab(&[
        "lm",
        "generate",
        "--model",
        model,
        "--prompt",
        "Zebra ✓",
        "--length",
        "10",
    ]);
    let text = stdout(&output);
    assert!(text.starts_with("Zebra ✓"), "{text:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("<unk>"));
    let text = stdout(&seqlab(&[
        "lm", "generate", "--model", model, "--length", "10", "--seed", "1",
    ]));
    assert!(
        text.trim_end_matches('\n').chars().count() <= 10,
        "{text:?}"
    );
}

#[test]
fn a_word_model_generates_words_with_readable_spacing() {
    let t = train("word");
    let config = std::fs::read_to_string(t.model.join("config.json")).unwrap();
    assert!(config.contains("\"tokenizer\": \"word\""), "{config}");
    let text = stdout(&seqlab(&[
        "lm",
        "generate",
        "--model",
        t.model.to_str().unwrap(),
        "--prompt",
        "The cat",
        "--length",
        "30",
        "--seed",
        "2",
    ]));
    assert!(text.starts_with("The cat "), "{text:?}");
    assert!(!text.contains(" ,") && !text.contains(" ."), "{text:?}");
}

#[test]
fn eval_prints_loss_perplexity_and_bits() {
    let t = train("char");
    let out = stdout(&seqlab(&[
        "lm",
        "eval",
        "--model",
        t.model.to_str().unwrap(),
        "--data",
        t.text.to_str().unwrap(),
        "--json",
    ]));
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let loss = json["loss"].as_f64().unwrap();
    assert!((json["perplexity"].as_f64().unwrap() - loss.exp()).abs() < 1e-9);
    assert!(
        (json["bits_per_token"].as_f64().unwrap() - loss / std::f64::consts::LN_2).abs() < 1e-9
    );
    assert!(json["tokens"].as_u64().unwrap() > 2000);
    let out = stdout(&seqlab(&[
        "lm",
        "eval",
        "--model",
        t.model.to_str().unwrap(),
        "--data",
        t.text.to_str().unwrap(),
    ]));
    assert!(
        out.starts_with("loss ") && out.contains("perplexity") && out.contains("bits/token"),
        "{out}"
    );
}

#[test]
fn eval_of_a_pytorch_model_gives_pytorchs_loss() {
    for case in ["lm_lstm_embed_2layers", "lm_gru_onehot"] {
        let dir = fixtures().join(case);
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let out = stdout(&seqlab(&[
            "lm",
            "eval",
            "--model",
            dir.to_str().unwrap(),
            "--data",
            fixtures().join("lm_eval.txt").to_str().unwrap(),
            "--json",
            "--batch",
            &expected["batch"].to_string(),
            "--seq-len",
            &expected["seq_len"].to_string(),
        ]));
        let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let (ours, torch) = (
            json["loss"].as_f64().unwrap(),
            expected["loss"].as_f64().unwrap(),
        );
        assert!((ours - torch).abs() < 1e-4, "{case}: {ours} vs {torch}");
        assert_eq!(json["tokens"], expected["tokens"]);
    }
}

#[test]
fn resume_continues_a_run_to_more_steps() {
    let dir = tempfile::tempdir().unwrap();
    let text = write_text(dir.path());
    let model = dir.path().join("lm");
    let args = |steps: &'static str| {
        vec![
            "lm".to_string(),
            "train".into(),
            "--data".into(),
            text.display().to_string(),
            "--out".into(),
            model.display().to_string(),
            "--hidden".into(),
            "8".into(),
            "--batch".into(),
            "4".into(),
            "--seq-len".into(),
            "10".into(),
            "--steps".into(),
            steps.into(),
        ]
    };
    let run = |args: Vec<String>| seqlab(&args.iter().map(String::as_str).collect::<Vec<_>>());
    stdout(&run(args("4")));
    // Training into a model directory again needs --resume.
    let message = error(&run(args("8")));
    assert!(message.contains("--resume"), "{message}");
    let mut resume = args("8");
    resume.push("--resume".into());
    let out = stdout(&run(resume));
    assert!(out.contains("finished at step 8/8"), "{out}");
    let state = std::fs::read_to_string(model.join("trainer/state.json")).unwrap();
    assert!(state.contains("\"step\": 8"), "{state}");
}

#[test]
fn bad_input_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-model");
    let text = write_text(dir.path());
    let message = error(&seqlab(&[
        "lm",
        "eval",
        "--model",
        missing.to_str().unwrap(),
        "--data",
        text.to_str().unwrap(),
    ]));
    assert!(
        message.contains("no-model") && message.contains("not a model directory"),
        "{message}"
    );
    let message = error(&seqlab(&[
        "lm",
        "generate",
        "--model",
        missing.to_str().unwrap(),
    ]));
    assert!(message.contains("no-model"), "{message}");
    // A model directory of another task.
    let other = dir.path().join("classifier");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(
        other.join("config.json"),
        r#"{"format": "seqlab/1", "task": "classify", "model": {}}"#,
    )
    .unwrap();
    let message = error(&seqlab(&[
        "lm",
        "generate",
        "--model",
        other.to_str().unwrap(),
    ]));
    assert!(
        message.contains("config.json") && message.contains("classify"),
        "{message}"
    );
    let message = error(&seqlab(&[
        "lm",
        "train",
        "--data",
        "no/such/file.txt",
        "--out",
        dir.path().join("x").to_str().unwrap(),
    ]));
    assert!(message.contains("no/such/file.txt"), "{message}");
    let message = error(&seqlab(&[
        "lm",
        "train",
        "--data",
        text.to_str().unwrap(),
        "--out",
        "x",
        "--device",
        "cuda",
    ]));
    assert!(message.contains("CUDA"), "{message}");
    let message = error(&seqlab(&[
        "lm",
        "train",
        "--data",
        text.to_str().unwrap(),
        "--out",
        dir.path().join("y").to_str().unwrap(),
        "--batch",
        "100000",
    ]));
    assert!(message.contains("--batch"), "{message}");
    let fixture = fixtures().join("lm_gru_onehot");
    let message = error(&seqlab(&[
        "lm",
        "generate",
        "--model",
        fixture.to_str().unwrap(),
        "--top-p",
        "1.5",
    ]));
    assert!(message.contains("1.5"), "{message}");
}

/// The cargo registry copy of the default book, where this machine has one.
fn registry_book() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    std::fs::read_dir(home.join("registry/src"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("esaxx-rs-0.1.10/data/eighty.txt"))
        .find(|p| p.is_file())
}

#[test]
fn train_without_data_learns_the_default_book() {
    if registry_book().is_none() {
        eprintln!(
            "skipped: no esaxx-rs-0.1.10 in the cargo registry (the default book's offline source)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("eighty");
    let out = stdout(&seqlab(&[
        "lm",
        "train",
        "--out",
        model.to_str().unwrap(),
        "--hidden",
        "8",
        "--embed",
        "4",
        "--steps",
        "2",
        "--batch",
        "8",
        "--seq-len",
        "20",
    ]));
    assert!(out.contains("Around the World in 80 Days"), "{out}");
    // The Gutenberg header is gone: the text starts with the book itself.
    let text = stdout(&seqlab(&[
        "lm",
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--length",
        "5",
    ]));
    assert!(text.trim_end_matches('\n').chars().count() <= 5, "{text:?}");
}

#[test]
fn max_time_alone_trains_for_the_budget_and_saves_it_in_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let text = write_text(dir.path());
    let model = dir.path().join("lm");
    let out = stdout(&seqlab(&[
        "lm",
        "train",
        "--data",
        text.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--hidden",
        "16",
        "--embed",
        "8",
        "--batch",
        "4",
        "--seq-len",
        "12",
        "--max-time",
        "0.03",
    ]));
    // No step count: the 1.8 s decide, however many passes over the text they hold.
    let summary = out
        .lines()
        .find(|l| l.starts_with("stopped at --max-time at step "))
        .unwrap_or_else(|| panic!("{out}"));
    let steps = summary["stopped at --max-time at step ".len()..]
        .split(' ')
        .next()
        .unwrap();
    assert!(
        steps.parse::<usize>().is_ok(),
        "no step total expected: {summary}"
    );
    let config = std::fs::read_to_string(model.join("config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["train"]["max_time"], 0.03);
    assert_eq!(config["train"]["epochs"], serde_json::Value::Null);
}
