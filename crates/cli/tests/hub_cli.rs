//! End-to-end tests of the Hugging Face Hub path: `seqlab data list|fetch`, and each pipeline training from an
//! `hf://datasets/...` split, all from a hub cache the test fills in hf-hub's own layout, never the network.
//!
//! The binary runs as a subprocess with `HF_HUB_CACHE` pointing at the test's cache, `HF_HUB_OFFLINE=1` and an
//! `HF_ENDPOINT` where no server listens, so the environment of the test process itself is never touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use seqlab_data::{Column, Table};

const COMMIT: &str = "9e1c0d9e2b7a6c5d8e9f0a1b2c3d4e5f60718293";

fn seqlab(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seqlab"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("HF_HOME")
        .env("HF_HUB_CACHE", cache)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
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
    lines[0].to_string()
}

fn shared() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {} is absent (the shared real data)",
            dir.display()
        );
        None
    }
}

/// Writes `table` as `<config>/<split>/0000.parquet` of the hub's parquet revision of `repo`, as a download
/// leaves it: `refs/refs/convert/parquet` names the commit, the snapshot file links to a blob.
fn put_split(cache: &Path, repo: &str, config: &str, split: &str, table: &Table) -> PathBuf {
    let folder = cache.join(format!("datasets--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(folder.join("refs/refs/convert")).unwrap();
    std::fs::write(folder.join("refs/refs/convert/parquet"), COMMIT).unwrap();
    let dir = folder
        .join("snapshots")
        .join(COMMIT)
        .join(config)
        .join(split);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(folder.join("blobs")).unwrap();
    let blob = folder.join("blobs").join(format!("{config}-{split}"));
    table.write_parquet(&blob).unwrap();
    let file = dir.join("0000.parquet");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&blob, &file).unwrap();
    #[cfg(not(unix))]
    std::fs::rename(&blob, &file).unwrap();
    dir
}

/// tiny_shakespeare's layout (one `text` row per split), filled with As You Like It and our own lines.
fn shakespeare_cache(shared: &Path) -> tempfile::TempDir {
    let cache = tempfile::tempdir().unwrap();
    let play = seqlab_tokenize::read_text(&shared.join("text/asyoulik.txt")).unwrap();
    let (train, valid) = play.split_at(play.len() - 6_000);
    for (split, text) in [("train", train), ("validation", valid)] {
        let text = format!("{text}\nROSALIND: Our own line, written by the test.\n");
        let table = Table::new(split, vec![Column::text("text", vec![text])]).unwrap();
        put_split(
            cache.path(),
            "karpathy/tiny_shakespeare",
            "default",
            split,
            &table,
        );
    }
    cache
}

#[test]
fn data_list_shows_the_catalogue_and_what_the_cache_holds() {
    let cache = tempfile::tempdir().unwrap();
    let table = Table::new("t", vec![Column::text("text", vec!["x".into()])]).unwrap();
    put_split(
        cache.path(),
        "karpathy/tiny_shakespeare",
        "default",
        "validation",
        &table,
    );
    let out = stdout(&seqlab(cache.path(), &["data", "list"]));
    for part in [
        "ag_news  (seqlab classify)",
        "--data hf://datasets/fancyzhx/ag_news:train",
        "--data hf://datasets/Helsinki-NLP/opus_books:en-es/train",
        "--source-column translation.en, --target-column translation.es",
        "--data hf://datasets/jxie/flickr8k:train",
        "--caption-column caption_0,caption_1",
        "splits: train, validation, test   in the cache: validation",
        "licence: public domain",
    ] {
        assert!(out.contains(part), "{part:?} not in:\n{out}");
    }
    assert!(out.contains(&cache.path().display().to_string()), "{out}");
}

#[test]
fn data_fetch_uses_the_cache_and_offline_says_how_to_pass_a_local_file() {
    let cache = tempfile::tempdir().unwrap();
    let table = Table::new("t", vec![Column::text("text", vec!["x".into()])]).unwrap();
    let dir = put_split(
        cache.path(),
        "karpathy/tiny_shakespeare",
        "default",
        "validation",
        &table,
    );
    let out = stdout(&seqlab(
        cache.path(),
        &["data", "fetch", "tiny_shakespeare", "--split", "validation"],
    ));
    assert!(
        out.contains(&format!("already in the cache at {}", dir.display())),
        "{out}"
    );
    assert!(
        out.contains("seqlab lm train --data hf://datasets/karpathy/tiny_shakespeare:validation")
    );
    // The train split is not in the cache, and the network may not be used.
    let message = error(&seqlab(
        cache.path(),
        &["data", "fetch", "tiny_shakespeare"],
    ));
    assert!(
        message.starts_with("error: cannot fetch hf://datasets/karpathy/tiny_shakespeare:train"),
        "{message}"
    );
    assert!(message.contains("pass a local file instead"), "{message}");
    let message = error(&seqlab(cache.path(), &["data", "fetch", "imagenet"]));
    assert!(
        message.contains("no dataset named \"imagenet\""),
        "{message}"
    );
    let message = error(&seqlab(
        cache.path(),
        &["data", "fetch", "ag_news", "--split", "dev"],
    ));
    assert!(message.contains("no split \"dev\""), "{message}");
}

#[test]
fn lm_trains_from_a_hub_split_in_the_cache() {
    let Some(shared) = shared() else { return };
    let cache = shakespeare_cache(&shared);
    let model = cache.path().join("lm");
    let out = stdout(&seqlab(
        cache.path(),
        &[
            "lm",
            "train",
            "--data",
            "hf://datasets/karpathy/tiny_shakespeare:train",
            "--valid",
            "hf://datasets/karpathy/tiny_shakespeare:validation",
            "--out",
            model.to_str().unwrap(),
            "--hidden",
            "16",
            "--embed",
            "8",
            "--steps",
            "3",
            "--eval-every",
            "3",
            "--batch",
            "4",
            "--seq-len",
            "16",
            "--threads",
            "1",
        ],
    ));
    assert!(
        out.contains("data: hf://datasets/karpathy/tiny_shakespeare:train"),
        "{out}"
    );
    assert!(out.contains("finished at step 3/3"), "{out}");
    assert!(out.contains("best validation loss"), "{out}");
    // The addresses are saved as they are, so a resumed run reads the same cache.
    let config = std::fs::read_to_string(model.join("config.json")).unwrap();
    assert!(
        config.contains("hf://datasets/karpathy/tiny_shakespeare:validation"),
        "{config}"
    );
    // A text column that is not there names the column and the flag.
    let message = error(&seqlab(
        cache.path(),
        &[
            "lm",
            "train",
            "--data",
            "hf://datasets/karpathy/tiny_shakespeare:train",
            "--text-column",
            "content",
            "--out",
            cache.path().join("lm2").to_str().unwrap(),
        ],
    ));
    for part in [
        "hf://datasets/karpathy/tiny_shakespeare:train",
        "0000.parquet",
        "no column \"content\" (its columns: text)",
        "--text-column",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
}

/// AG News' layout (`text`, and `label` a class label with names) filled with BBC News rows and our own.
fn news_cache(shared: &Path) -> tempfile::TempDir {
    let cache = tempfile::tempdir().unwrap();
    let names: Vec<String> =
        std::fs::read_to_string(shared.join("classification/bbc-news-classes.txt"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
    let dir = tempfile::tempdir().unwrap();
    for (split, file, take) in [
        ("train", "bbc-news-train.csv", 150),
        ("test", "bbc-news-test.csv", 40),
    ] {
        let body = std::fs::read_to_string(shared.join("classification").join(file)).unwrap();
        let csv = dir.path().join(file);
        std::fs::write(&csv, format!("class,title,description\n{body}")).unwrap();
        let rows = Table::read(&csv, &["class", "description"]).unwrap();
        let mut texts = rows.text("description").unwrap()[..take].to_vec();
        let mut labels: Vec<String> = rows.text("class").unwrap()[..take]
            .iter()
            .map(|c| names[c.parse::<usize>().unwrap() - 1].clone())
            .collect();
        texts.push("Our own row: the striker scored twice in the cup final.".to_string());
        labels.push(labels[0].clone());
        let table = Table::new(
            split,
            vec![
                Column::text("text", texts),
                Column::text("label", labels).with_class_names(names.clone()),
            ],
        )
        .unwrap();
        put_split(cache.path(), "fancyzhx/ag_news", "default", split, &table);
    }
    cache
}

#[test]
fn classify_trains_and_evaluates_from_hub_splits_in_the_cache() {
    let Some(shared) = shared() else { return };
    let cache = news_cache(&shared);
    let model = cache.path().join("classifier");
    let out = stdout(&seqlab(
        cache.path(),
        &[
            "classify",
            "train",
            "--data",
            "hf://datasets/fancyzhx/ag_news:train",
            "--out",
            model.to_str().unwrap(),
            "--hidden",
            "8",
            "--embed",
            "8",
            "--batch",
            "16",
            "--epochs",
            "1",
            "--threads",
            "1",
        ],
    ));
    assert!(out.contains("finished at step"), "{out}");
    // The classes are the label names the parquet file gives, not numbers.
    assert!(out.contains("classes (business, "), "{out}");
    let json = stdout(&seqlab(
        cache.path(),
        &[
            "classify",
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data",
            "hf://datasets/fancyzhx/ag_news:test",
            "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let confusion: Vec<Vec<usize>> = serde_json::from_value(v["confusion"].clone()).unwrap();
    assert_eq!(confusion.iter().flatten().sum::<usize>(), 41, "{v}");
}

#[test]
fn caption_trains_from_a_hub_split_with_images_as_bytes() {
    let Some(shared) = shared() else { return };
    let cache = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(shared.join("captions/emoji/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let images: Vec<Vec<u8>> = files[..10]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    // jxie/flickr8k's layout: the image as bytes, and five caption columns.
    let mut columns = vec![Column::bytes("image", images)];
    for k in 0..5 {
        let captions = (0..10)
            .map(|i| {
                format!(
                    "a {} emoji number {i}",
                    ["yellow", "round", "small", "bright", "happy"][k]
                )
            })
            .collect();
        columns.push(Column::text(format!("caption_{k}"), captions));
    }
    let table = Table::new("emoji", columns).unwrap();
    put_split(cache.path(), "jxie/flickr8k", "default", "train", &table);
    let model = cache.path().join("captioner");
    let out = stdout(&seqlab(
        cache.path(),
        &[
            "caption",
            "train",
            "--data",
            "hf://datasets/jxie/flickr8k:train",
            "--out",
            model.to_str().unwrap(),
            "--image-size",
            "16",
            "--channels",
            "4,8",
            "--hidden",
            "16",
            "--embed",
            "8",
            "--batch",
            "8",
            "--steps",
            "3",
            "--eval-every",
            "3",
            "--threads",
            "1",
        ],
    ));
    assert!(
        out.contains("data: 9 training images (45 captions), 1 validation images"),
        "{out}"
    );
    // The split was written out once as captions.txt and images/ inside the hub cache.
    let extracted = cache.path().join("seqlab-extracted");
    let folder = std::fs::read_dir(&extracted)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let captions = std::fs::read_to_string(folder.join("captions.txt")).unwrap();
    assert_eq!(captions.lines().count(), 1 + 50, "{captions}");
    assert!(folder.join("images/000009.png").is_file());
}

#[test]
fn translate_trains_from_a_hub_split_with_a_struct_column() {
    let Some(shared) = shared() else { return };
    let cache = tempfile::tempdir().unwrap();
    let tsv = std::fs::read_to_string(shared.join("translation/bible-en-es.tsv")).unwrap();
    let mut pairs: Vec<(String, String)> = tsv
        .lines()
        .take(60)
        .map(|line| {
            let mut fields = line.split('\t');
            (
                fields.next().unwrap().to_string(),
                fields.next().unwrap().to_string(),
            )
        })
        .collect();
    pairs.push(("Good night.".into(), "Buenas noches.".into()));
    // Helsinki-NLP/opus_books' layout: config en-es, a `translation` struct of `en` and `es`.
    let table = Table::new(
        "bible",
        vec![
            Column::text("id", (0..pairs.len()).map(|i| i.to_string()).collect()),
            Column::text(
                "translation.en",
                pairs.iter().map(|p| p.0.clone()).collect(),
            ),
            Column::text(
                "translation.es",
                pairs.iter().map(|p| p.1.clone()).collect(),
            ),
        ],
    )
    .unwrap();
    put_split(
        cache.path(),
        "Helsinki-NLP/opus_books",
        "en-es",
        "train",
        &table,
    );
    let model = cache.path().join("translator");
    let out = stdout(&seqlab(
        cache.path(),
        &[
            "translate",
            "train",
            "--data",
            "hf://datasets/Helsinki-NLP/opus_books:en-es/train",
            "--out",
            model.to_str().unwrap(),
            "--max-words",
            "40",
            "--hidden",
            "16",
            "--embed",
            "8",
            "--batch",
            "8",
            "--steps",
            "3",
            "--eval-every",
            "3",
            "--threads",
            "1",
        ],
    ));
    // 61 rows of the struct column: 5 longer than --max-words, 3 held out for validation.
    assert!(
        out.contains("data: 53 training pairs, 3 validation pairs"),
        "{out}"
    );
    assert!(out.contains("finished at step 3/3"), "{out}");
}

/// Short news-like rows of two topics, written by the test: (text, topic).
fn topic_rows(n: usize, offset: usize) -> Vec<(String, String)> {
    let sport = ["striker", "goal", "match", "coach", "league", "cup"];
    let business = ["shares", "market", "profit", "bank", "prices", "investors"];
    (0..n)
        .map(|i| {
            let k = i + offset;
            let (words, topic) = if k.is_multiple_of(2) {
                (&sport, "sport")
            } else {
                (&business, "business")
            };
            let text = format!(
                "the {} and the {} made news on day {k} with the {}",
                words[k % 6],
                words[(k / 2 + 1) % 6],
                words[(k / 3 + 2) % 6]
            );
            (text, topic.to_string())
        })
        .collect()
}

fn topic_table(rows: &[(String, String)], text: &str, label: &str) -> Table {
    Table::new(
        "topics",
        vec![
            Column::text(text, rows.iter().map(|r| r.0.clone()).collect()),
            Column::text(label, rows.iter().map(|r| r.1.clone()).collect()),
        ],
    )
    .unwrap()
}

#[test]
fn classify_reads_columns_named_by_the_column_flags() {
    // A dataset the catalogue does not know, whose columns are not `text` and `label`.
    let cache = tempfile::tempdir().unwrap();
    let repo = "seqlab-tests/topics";
    for (split, rows) in [("train", topic_rows(40, 0)), ("test", topic_rows(10, 40))] {
        put_split(
            cache.path(),
            repo,
            "default",
            split,
            &topic_table(&rows, "body", "topic"),
        );
    }
    let model = cache.path().join("classifier");
    let model = model.to_str().unwrap();
    let train_args = |extra: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "classify",
            "train",
            "--data",
            "hf://datasets/seqlab-tests/topics:train",
            "--out",
            model,
            "--hidden",
            "8",
            "--embed",
            "8",
            "--batch",
            "8",
            "--epochs",
            "1",
            "--threads",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        seqlab(cache.path(), &args)
    };
    // Without the flags the default columns are looked for, and the message says which flag to use.
    let message = error(&run(&train_args(&[])));
    for part in [
        "hf://datasets/seqlab-tests/topics:train",
        "0000.parquet",
        "no column \"text\"",
        "its columns: body, topic",
        "--text-column",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    assert!(!Path::new(model).join("config.json").exists());
    let message = error(&run(&train_args(&["--text-column", "body"])));
    assert!(
        message.contains("no column \"label\"") && message.contains("--label-column"),
        "{message}"
    );

    // With them, it trains; the columns are saved for --resume and eval.
    let out = stdout(&run(&train_args(&[
        "--text-column",
        "body",
        "--label-column",
        "topic",
    ])));
    assert!(out.contains("2 classes (business, sport)"), "{out}");
    assert!(out.contains("finished at step"), "{out}");
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(model).join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["train"]["text_column"], "body", "{config}");
    assert_eq!(config["train"]["label_column"], "topic", "{config}");
    // --resume reads the saved columns (the flags are not given again).
    let resumed = stdout(&seqlab(
        cache.path(),
        &[
            "classify",
            "train",
            "--resume",
            "--data",
            "hf://datasets/seqlab-tests/topics:train",
            "--out",
            model,
            "--epochs",
            "2",
            "--threads",
            "1",
        ],
    ));
    assert!(resumed.contains("finished at step 10/10"), "{resumed}");

    // eval takes the training run's columns by default ...
    let eval = |extra: &[&str]| {
        let mut args = vec!["classify", "eval", "--model", model, "--json"];
        args.extend(extra);
        seqlab(cache.path(), &args)
    };
    let json = stdout(&eval(&["--data", "hf://datasets/seqlab-tests/topics:test"]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["examples"], 10, "{v}");
    // ... and its own flags for a table with other names (here a local parquet file).
    let local = cache.path().join("topics-test.parquet");
    topic_table(&topic_rows(6, 50), "content", "category")
        .write_parquet(&local)
        .unwrap();
    let local = local.to_str().unwrap();
    let json = stdout(&eval(&[
        "--data",
        local,
        "--text-column",
        "content",
        "--label-column",
        "category",
    ]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["examples"], 6, "{v}");

    // A wrong column name is one line naming the column and the flag.
    let message = error(&eval(&[
        "--data",
        "hf://datasets/seqlab-tests/topics:test",
        "--label-column",
        "topc",
    ]));
    for part in [
        "no column \"topc\"",
        "its columns: body, topic",
        "--label-column",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    // A CSV or TSV file has its own layout: the column flags are refused, not ignored.
    let tsv = cache.path().join("topics.tsv");
    std::fs::write(&tsv, "sport\tthe striker scored\nbusiness\tshares fell\n").unwrap();
    let message = error(&eval(&[
        "--data",
        tsv.to_str().unwrap(),
        "--text-column",
        "body",
    ]));
    assert!(
        message.contains("--text-column names a column of a table")
            && message.contains("topics.tsv"),
        "{message}"
    );
}

/// Short sentence pairs written by the test, in a struct column `pair` of fields `en` and `es`: the names
/// neither the catalogue nor the defaults (`source`, `target`) know.
fn phrase_table(n: usize, offset: usize, source: &str, target: &str) -> Table {
    let en = ["cat", "dog", "house", "tree", "river", "bread"];
    let es = ["gato", "perro", "casa", "árbol", "río", "pan"];
    let (sources, targets): (Vec<String>, Vec<String>) = (offset..offset + n)
        .map(|k| {
            let (a, b) = (k % 6, (k / 6 + 1) % 6);
            (
                format!("the {} and the {}", en[a], en[b]),
                format!("el {} y el {}", es[a], es[b]),
            )
        })
        .unzip();
    Table::new(
        "phrases",
        vec![
            Column::text("id", (offset..offset + n).map(|i| i.to_string()).collect()),
            Column::text(source, sources),
            Column::text(target, targets),
        ],
    )
    .unwrap()
}

#[test]
fn translate_reads_columns_named_by_the_column_flags() {
    let cache = tempfile::tempdir().unwrap();
    let repo = "seqlab-tests/phrases";
    for (split, n, offset) in [("train", 40, 0), ("test", 8, 40)] {
        let table = phrase_table(n, offset, "pair.en", "pair.es");
        put_split(cache.path(), repo, "default", split, &table);
    }
    let model = cache.path().join("translator");
    let model = model.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "translate",
            "train",
            "--data",
            "hf://datasets/seqlab-tests/phrases:train",
            "--out",
            model,
            "--hidden",
            "8",
            "--embed",
            "8",
            "--batch",
            "8",
            "--min-freq",
            "1",
            "--eval-every",
            "2",
            "--threads",
            "1",
        ];
        args.extend(extra);
        seqlab(cache.path(), &args)
    };
    // Without the flags the default columns are looked for, and the message says which flag to use.
    let message = error(&run(&["--steps", "2"]));
    for part in [
        "hf://datasets/seqlab-tests/phrases:train",
        "0000.parquet",
        "no column \"source\"",
        "pair.en",
        "--source-column",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    assert!(!Path::new(model).join("config.json").exists());
    let message = error(&run(&["--steps", "2", "--source-column", "pair.en"]));
    assert!(
        message.contains("no column \"target\"") && message.contains("--target-column"),
        "{message}"
    );

    // With them (struct fields in the dot form), it trains; the columns are saved for --resume and eval.
    let columns = ["--source-column", "pair.en", "--target-column", "pair.es"];
    let out = stdout(&run(&[&["--steps", "2"][..], &columns].concat()));
    assert!(
        out.contains("data: 38 training pairs, 2 validation pairs"),
        "{out}"
    );
    assert!(out.contains("finished at step 2/2"), "{out}");
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(model).join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["train"]["source_column"], "pair.en", "{config}");
    assert_eq!(config["train"]["target_column"], "pair.es", "{config}");
    // --resume reads the saved columns (the flags are not given again).
    let resumed = stdout(&run(&["--resume", "--steps", "4"]));
    assert!(resumed.contains("finished at step 4/4"), "{resumed}");

    // eval takes the training run's columns by default, for another split and for the held-out pairs ...
    let eval = |extra: &[&str]| {
        let mut args = vec!["translate", "eval", "--model", model, "--json"];
        args.extend(extra);
        seqlab(cache.path(), &args)
    };
    let json = stdout(&eval(&[
        "--data",
        "hf://datasets/seqlab-tests/phrases:test",
    ]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["sentences"], 8, "{v}");
    let json = stdout(&eval(&[]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["sentences"], 2, "{v}");
    // ... and its own flags for a table with other names (here a local parquet file).
    let local = cache.path().join("phrases-test.parquet");
    phrase_table(5, 50, "english", "spanish")
        .write_parquet(&local)
        .unwrap();
    let local = local.to_str().unwrap();
    let json = stdout(&eval(&[
        "--data",
        local,
        "--source-column",
        "english",
        "--target-column",
        "spanish",
    ]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["sentences"], 5, "{v}");

    // A wrong column name is one line naming the column and the flag.
    let message = error(&eval(&[
        "--data",
        "hf://datasets/seqlab-tests/phrases:test",
        "--target-column",
        "pair.fr",
    ]));
    for part in ["no column \"pair.fr\"", "pair.es", "--target-column"] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    // A parallel text file has its own layout: the column flags are refused, not ignored.
    let tsv = cache.path().join("phrases.tsv");
    std::fs::write(&tsv, "the cat\tel gato\n").unwrap();
    let message = error(&eval(&[
        "--data",
        tsv.to_str().unwrap(),
        "--source-column",
        "pair.en",
    ]));
    assert!(
        message.contains("--source-column names a column of a table")
            && message.contains("phrases.tsv"),
        "{message}"
    );
}

/// A captioning table drawn by the test (`seqlab data shapes`' images, as PNG bytes), with an image column
/// `photo` and two caption columns `alt_a` and `alt_b`: names neither the catalogue nor the defaults
/// (`image`, `caption`) know.
fn shapes_table(dir: &Path, count: usize, seed: u64) -> Table {
    let config = seqlab_data::ShapesConfig {
        count,
        size: 16,
        seed,
        ..seqlab_data::ShapesConfig::default()
    };
    seqlab_data::generate_shapes(dir, &config).unwrap();
    let items = seqlab_data::read_captions(&dir.join("captions.txt")).unwrap();
    let photos = items
        .iter()
        .map(|item| std::fs::read(dir.join("images").join(&item.image)).unwrap())
        .collect();
    let caption = |k: usize| items.iter().map(|item| item.captions[k].clone()).collect();
    Table::new(
        "shapes",
        vec![
            Column::bytes("photo", photos),
            Column::text("alt_a", caption(0)),
            Column::text("alt_b", caption(1)),
        ],
    )
    .unwrap()
}

#[test]
fn caption_reads_columns_named_by_the_column_flags() {
    let cache = tempfile::tempdir().unwrap();
    let drawn = cache.path().join("drawn");
    for (split, count, seed) in [("train", 10, 1), ("test", 4, 2)] {
        let table = shapes_table(&drawn.join(split), count, seed);
        put_split(
            cache.path(),
            "seqlab-tests/shapes",
            "default",
            split,
            &table,
        );
    }
    let model = cache.path().join("captioner");
    let model = model.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "caption",
            "train",
            "--data",
            "hf://datasets/seqlab-tests/shapes:train",
            "--out",
            model,
            "--image-size",
            "16",
            "--channels",
            "4,8",
            "--hidden",
            "8",
            "--embed",
            "8",
            "--batch",
            "8",
            "--steps",
            "2",
            "--eval-every",
            "2",
            "--threads",
            "1",
        ];
        args.extend(extra);
        seqlab(cache.path(), &args)
    };
    // Without the flags the default columns are looked for, and the message says which flag to use.
    let message = error(&run(&[]));
    for part in [
        "hf://datasets/seqlab-tests/shapes:train",
        "no column \"image\"",
        "photo",
        "--image-column",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    assert!(!Path::new(model).join("config.json").exists());
    let message = error(&run(&["--image-column", "photo"]));
    assert!(
        message.contains("no column \"caption\"") && message.contains("--caption-column"),
        "{message}"
    );

    // With them (two caption columns, comma-separated), it trains; the columns are saved for eval.
    let out = stdout(&run(&[
        "--image-column",
        "photo",
        "--caption-column",
        "alt_a,alt_b",
    ]));
    assert!(
        out.contains("data: 9 training images (18 captions), 1 validation images"),
        "{out}"
    );
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(model).join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["train"]["image_column"], "photo", "{config}");
    assert_eq!(config["train"]["caption_column"], "alt_a,alt_b", "{config}");

    // eval takes the training run's columns by default, and needs no --images for a table.
    let eval = |extra: &[&str]| {
        let mut args = vec!["caption", "eval", "--model", model, "--json"];
        args.extend(extra);
        seqlab(cache.path(), &args)
    };
    let test = "hf://datasets/seqlab-tests/shapes:test";
    let json = stdout(&eval(&["--data", test]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["images"], 4, "{v}");
    // ... or its own flags: one caption column, read as given.
    let json = stdout(&eval(&["--data", test, "--caption-column", "alt_b"]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["images"], 4, "{v}");

    // A wrong column name is one line naming the column and the flag.
    let message = error(&eval(&["--data", test, "--caption-column", "alt_c"]));
    for part in ["no column \"alt_c\"", "alt_a", "--caption-column"] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    // A captions.txt file has its own layout: the column flags are refused, not ignored; and it needs
    // --images.
    let captions = drawn.join("test/captions.txt");
    let captions = captions.to_str().unwrap();
    let images = drawn.join("test/images");
    let message = error(&eval(&[
        "--captions",
        captions,
        "--images",
        images.to_str().unwrap(),
        "--image-column",
        "photo",
    ]));
    assert!(
        message.contains("--image-column names a column of a table")
            && message.contains("captions.txt"),
        "{message}"
    );
    let message = error(&eval(&["--captions", captions]));
    assert!(
        message.contains("--images") && message.contains("captions.txt"),
        "{message}"
    );
    // The same file with --images and the saved columns evaluates (they apply to tables only).
    let json = stdout(&eval(&[
        "--captions",
        captions,
        "--images",
        images.to_str().unwrap(),
    ]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["images"], 4, "{v}");
}

/// `seqlab images` reads the hub's MNIST through candle-datasets, which asks hf-hub for the files of the
/// parquet revision and finds them in the cache: 28×28 PNGs in a struct column and an integer label.
#[cfg(feature = "images")]
#[test]
fn images_train_from_the_hubs_mnist_in_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    for (split, count) in [("train", 24), ("test", 8)] {
        let dir = scratch.path().join(split);
        let config = seqlab_data::ShapesConfig {
            count,
            size: 28,
            ..seqlab_data::ShapesConfig::default()
        };
        seqlab_data::generate_shapes(&dir, &config).unwrap();
        let items = seqlab_data::read_captions(&dir.join("captions.txt")).unwrap();
        let pngs = items
            .iter()
            .map(|item| std::fs::read(dir.join("images").join(&item.image)).unwrap())
            .collect();
        let labels = (0..items.len()).map(|i| (i % 3).to_string()).collect();
        let table = Table::new(
            "mnist",
            vec![
                Column::bytes("image", pngs),
                Column::text("label", labels).with_class_names(vec![
                    "0".into(),
                    "1".into(),
                    "2".into(),
                ]),
            ],
        )
        .unwrap();
        put_split(cache.path(), "ylecun/mnist", "mnist", split, &table);
    }
    let model = scratch.path().join("model");
    let out = stdout(&seqlab(
        cache.path(),
        &[
            "images",
            "train",
            "--data",
            "hub:mnist",
            "--out",
            model.to_str().unwrap(),
            "--valid",
            "4",
            "--hidden",
            "8",
            "--steps",
            "3",
        ],
    ));
    assert!(
        out.contains("data: 20 training images, 4 validation images, 3 classes"),
        "{out}"
    );
    let eval: serde_json::Value = serde_json::from_str(&stdout(&seqlab(
        cache.path(),
        &[
            "images",
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--json",
        ],
    )))
    .unwrap();
    assert_eq!(eval["examples"], 8);
    // A set the cache does not hold is one line, after hf-hub finds no server.
    let e = error(&seqlab(
        cache.path(),
        &[
            "images",
            "train",
            "--data",
            "hub:fashion-mnist",
            "--out",
            scratch.path().join("f").to_str().unwrap(),
        ],
    ));
    assert!(
        e.contains("cannot load hub:fashion-mnist from the hub"),
        "{e}"
    );
}
