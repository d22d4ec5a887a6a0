//! End-to-end tests of `seqlab classify train|eval|predict`, running the binary.

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

/// AG News-style CSV of our own: class 1 is about sport, 2 about food, with quoted fields, doubled quotes
/// and a comma inside quotes.
fn write_csv(dir: &Path, name: &str, n: usize, offset: usize) -> PathBuf {
    let sport = ["goal", "match", "team", "coach", "league", "score"];
    let food = ["bread", "soup", "cheese", "oven", "recipe", "taste"];
    let mut text = String::new();
    for i in offset..offset + n {
        let (class, words) = if i % 2 == 0 { (1, sport) } else { (2, food) };
        let len = 1 + (i * 5) % 6;
        let body: Vec<&str> = (0..len).map(|j| words[(i + j) % 6]).collect();
        text.push_str(&format!(
            "\"{class}\",\"The \"\"{}\"\" story\",\"{}, and more {}\"\n",
            words[i % 6],
            body.join(" "),
            words[(i + 1) % 6]
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

struct Trained {
    dir: tempfile::TempDir,
    model: PathBuf,
    test: PathBuf,
}

fn train() -> Trained {
    let dir = tempfile::tempdir().unwrap();
    let data = write_csv(dir.path(), "news-train.csv", 120, 0);
    let test = write_csv(dir.path(), "news-test.csv", 40, 500);
    std::fs::write(dir.path().join("news-classes.txt"), "sport\nfood\n").unwrap();
    let model = dir.path().join("clf");
    let out = seqlab(&[
        "classify",
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--hidden",
        "12",
        "--embed",
        "8",
        "--batch",
        "8",
        "--epochs",
        "6",
        "--lr",
        "0.01",
        "--warmup",
        "5",
        "--pool",
        "mean",
        "--seed",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let text = stdout(&out);
    assert!(stderr.contains("class names from"), "{stderr}");
    assert!(text.contains("finished at step"), "{text}");
    assert!(text.contains("2 classes (sport, food)"), "{text}");
    Trained { dir, model, test }
}

#[test]
fn train_eval_and_predict_end_to_end() {
    let t = train();
    let model = t.model.to_str().unwrap();
    for file in [
        "config.json",
        "tokenizer.json",
        "labels.json",
        "model.safetensors",
    ] {
        assert!(t.model.join(file).is_file(), "{file} is missing");
    }
    let labels: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(t.model.join("labels.json")).unwrap())
            .unwrap();
    assert_eq!(labels, ["sport", "food"]);

    let json = stdout(&seqlab(&[
        "classify",
        "eval",
        "--model",
        model,
        "--data",
        t.test.to_str().unwrap(),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert!(v["accuracy"].as_f64().unwrap() >= 0.95, "{v}");
    assert!(v["macro_f1"].as_f64().unwrap() >= 0.95, "{v}");
    assert_eq!(v["labels"], serde_json::json!(["sport", "food"]));
    let confusion: Vec<Vec<usize>> = serde_json::from_value(v["confusion"].clone()).unwrap();
    assert_eq!(confusion.iter().flatten().sum::<usize>(), 40);
    assert_eq!(v["per_class"][0]["label"], "sport");

    let text = stdout(&seqlab(&[
        "classify",
        "eval",
        "--model",
        model,
        "--data",
        t.test.to_str().unwrap(),
    ]));
    assert!(
        text.contains("accuracy") && text.contains("confusion"),
        "{text}"
    );

    let out = stdout(&seqlab(&[
        "classify",
        "predict",
        "--model",
        model,
        "The \"coach\" story team coach, and more league",
        "The \"soup\" story bread soup, and more oven",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("sport\t"), "{out}");
    assert!(lines[1].starts_with("food\t"), "{out}");
    let p: f64 = lines[0].split('\t').nth(1).unwrap().parse().unwrap();
    assert!(p > 0.5 && p <= 1.0);

    let input = t.dir.path().join("input.txt");
    std::fs::write(&input, "The \"goal\" story match goal, and more team\nThe \"cheese\" story oven cheese, and more recipe\n").unwrap();
    let out = stdout(&seqlab(&[
        "classify",
        "predict",
        "--model",
        model,
        "--input",
        input.to_str().unwrap(),
        "--top",
        "2",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    let cells: Vec<&str> = lines[1].split('\t').collect();
    assert_eq!(cells.len(), 4, "{out}");
    assert_eq!((cells[0], cells[2]), ("food", "sport"));
    let sum: f64 = cells[1].parse::<f64>().unwrap() + cells[3].parse::<f64>().unwrap();
    assert!((sum - 1.0).abs() < 2e-4, "{out}");
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let t = train();
    let model = t.model.to_str().unwrap();
    let dir = t.dir.path();

    // An unknown label at eval (class 3 of a two-class model), with its line.
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "1,a,goal\n3,b,soup\n").unwrap();
    let e = error(&seqlab(&[
        "classify",
        "eval",
        "--model",
        model,
        "--data",
        bad.to_str().unwrap(),
    ]));
    assert!(
        e.contains("bad.csv, line 2: bad label \"3\"") && e.contains("a class from 1 to 2"),
        "{e}"
    );

    // A TSV label the model does not know.
    let tsv = dir.join("bad.tsv");
    std::fs::write(&tsv, "sport\tgoal\nweather\train\n").unwrap();
    let e = error(&seqlab(&[
        "classify",
        "eval",
        "--model",
        model,
        "--data",
        tsv.to_str().unwrap(),
    ]));
    assert!(e.contains("bad.tsv, line 2: bad label \"weather\""), "{e}");

    // A malformed CSV row, named by its line.
    std::fs::write(&bad, "1,a,goal\n2,\"unclosed,soup\n").unwrap();
    let e = error(&seqlab(&[
        "classify",
        "eval",
        "--model",
        model,
        "--data",
        bad.to_str().unwrap(),
    ]));
    assert!(
        e.contains("bad.csv, line 2") && e.contains("quoted field"),
        "{e}"
    );

    // An empty text, at training and at prediction.
    std::fs::write(&bad, "1,a,goal\n2,,\n").unwrap();
    let out = dir.join("never");
    let e = error(&seqlab(&[
        "classify",
        "train",
        "--data",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--labels",
        dir.join("news-classes.txt").to_str().unwrap(),
    ]));
    assert!(e.ends_with("bad.csv, line 2: the text is empty"), "{e}");
    let e = error(&seqlab(&[
        "classify", "predict", "--model", model, "goal", "  ",
    ]));
    assert!(e.contains("text 2 is empty"), "{e}");

    // A model directory of another task, both ways.
    let lm = dir.join("lm");
    std::fs::create_dir(&lm).unwrap();
    std::fs::write(
        lm.join("config.json"),
        r#"{"format":"seqlab/1","task":"lm","model":{},"train":{}}"#,
    )
    .unwrap();
    let e = error(&seqlab(&[
        "classify",
        "predict",
        "--model",
        lm.to_str().unwrap(),
        "goal",
    ]));
    assert!(
        e.contains("is a model of task \"lm\", not \"classify\""),
        "{e}"
    );
    let e = error(&seqlab(&["lm", "generate", "--model", model]));
    assert!(
        e.contains("is a model of task \"classify\", not \"lm\""),
        "{e}"
    );

    // Training into a directory that holds a model.
    let data = dir.join("news-train.csv");
    let e = error(&seqlab(&[
        "classify",
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        model,
    ]));
    assert!(e.contains("already holds a model"), "{e}");
}
