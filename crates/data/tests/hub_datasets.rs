//! Hub datasets read from a pre-filled cache in hf-hub's own layout, never from the network.
//!
//! Each test builds `<cache>/datasets--OWNER--NAME/refs/refs/convert/parquet` (a commit hash) and
//! `snapshots/<commit>/<config>/<split>/NNNN.parquet`, as a download leaves them, and reads it through a
//! [`Hub`] with that cache folder and an endpoint where no server answers: the code path a real download
//! takes once the files are on disk. The parquet files are written by the test from real rows of
//! `../shared/data` (skipped with a message when absent) and rows of its own.

use std::path::{Path, PathBuf};

use seqlab_data::{
    caption_rows, labelled_rows, load_corpus_with, text_rows, translation_pairs, Column, Columns,
    Error, Hub, HubDataset, Table,
};

const COMMIT: &str = "4f1c0d9e2b7a6c5d8e9f0a1b2c3d4e5f60718293";
/// No server listens here: any attempt to use the network fails at once.
const NOWHERE: &str = "http://127.0.0.1:9";

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

/// A cache folder and a hub that only it can answer.
fn cache() -> (tempfile::TempDir, Hub) {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new(dir.path()).with_endpoint(NOWHERE);
    (dir, hub)
}

/// Writes `tables` as `<config>/<split>/NNNN.parquet` files of the parquet revision of `repo`, the way hf-hub
/// lays out a download: the ref names the commit, the snapshot file is a link to a blob.
fn put_split(cache: &Path, repo: &str, config: &str, split: &str, tables: &[Table]) -> PathBuf {
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
    for (i, table) in tables.iter().enumerate() {
        let blob = folder.join("blobs").join(format!("{config}-{split}-{i}"));
        table.write_parquet(&blob).unwrap();
        let file = dir.join(format!("{i:04}.parquet"));
        #[cfg(unix)]
        std::os::unix::fs::symlink(&blob, &file).unwrap();
        #[cfg(not(unix))]
        std::fs::rename(&blob, &file).unwrap();
    }
    dir
}

fn text(name: &str, values: &[&str]) -> Column {
    Column::text(name, values.iter().map(|v| v.to_string()).collect())
}

/// BBC News rows (class, title, description; classes 1-based) as AG News lays them out: `text`, and
/// `label` a class label with names.
fn bbc_rows(shared: &Path, take: usize) -> (Vec<String>, Vec<String>, Vec<String>) {
    let names: Vec<String> =
        std::fs::read_to_string(shared.join("classification/bbc-news-classes.txt"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bbc.csv");
    let body = std::fs::read_to_string(shared.join("classification/bbc-news-train.csv")).unwrap();
    std::fs::write(&csv, format!("class,title,description\n{body}")).unwrap();
    let table = Table::read(&csv, &["class", "description"]).unwrap();
    let classes = table.text("class").unwrap();
    let texts = table.text("description").unwrap()[..take].to_vec();
    let labels = classes[..take]
        .iter()
        .map(|c| names[c.parse::<usize>().unwrap() - 1].clone())
        .collect();
    (texts, labels, names)
}

#[test]
fn a_classification_split_reads_text_and_class_names_from_the_cache() {
    let Some(shared) = shared() else { return };
    let (dir, hub) = cache();
    let (mut texts, mut labels, names) = bbc_rows(&shared, 300);
    // Two files of one split, and a test split beside it.
    let first = Table::new(
        "a",
        vec![
            Column::text("text", texts[..200].to_vec()),
            Column::text("label", labels[..200].to_vec()).with_class_names(names.clone()),
        ],
    )
    .unwrap();
    texts.push("Our own row: the striker scored twice.".to_string());
    labels.push("sports".to_string());
    let second = Table::new(
        "b",
        vec![
            Column::text("text", texts[200..].to_vec()),
            Column::text("label", labels[200..].to_vec()).with_class_names(names.clone()),
        ],
    )
    .unwrap();
    put_split(
        dir.path(),
        "someone/news",
        "default",
        "train",
        &[first, second],
    );
    let test = Table::new(
        "t",
        vec![
            text("text", &["Markets fell."]),
            text("label", &["business"]).with_class_names(names.clone()),
        ],
    )
    .unwrap();
    put_split(dir.path(), "someone/news", "default", "test", &[test]);

    let files = hub
        .split(&HubDataset::parse("hf://datasets/someone/news:train").unwrap())
        .unwrap();
    assert!(files.from_cache);
    assert_eq!(files.config, "default");
    assert_eq!(files.files.len(), 2);
    let rows = labelled_rows(&hub, "hf://datasets/someone/news:train", &Columns::new()).unwrap();
    assert_eq!(rows.texts, texts);
    assert_eq!(rows.labels, labels);
    assert_eq!(rows.class_names.as_deref(), Some(&names[..]));
    let test = labelled_rows(&hub, "hf://datasets/someone/news:test", &Columns::new()).unwrap();
    assert_eq!(
        (test.texts, test.labels),
        (vec!["Markets fell.".into()], vec!["business".into()])
    );
}

#[test]
fn translation_pairs_come_from_a_struct_column_with_the_catalogues_columns() {
    let Some(shared) = shared() else { return };
    let (dir, hub) = cache();
    let tsv = std::fs::read_to_string(shared.join("translation/bible-en-es.tsv")).unwrap();
    let mut pairs: Vec<(String, String)> = tsv
        .lines()
        .take(100)
        .map(|line| {
            let mut fields = line.split('\t');
            (
                fields.next().unwrap().to_string(),
                fields.next().unwrap().to_string(),
            )
        })
        .collect();
    pairs.push(("Good night.".into(), "Buenas noches.".into()));
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
    // Helsinki-NLP/opus_books is in the catalogue: its columns are translation.en and translation.es.
    put_split(
        dir.path(),
        "Helsinki-NLP/opus_books",
        "en-es",
        "train",
        &[table],
    );
    for spec in [
        "hf://datasets/Helsinki-NLP/opus_books:en-es/train",
        // The only config that has the split.
        "hf://datasets/Helsinki-NLP/opus_books:train",
    ] {
        let read = translation_pairs(&hub, spec, &Columns::new()).unwrap();
        assert_eq!(read, pairs, "{spec}");
    }
    // Columns chosen by flag, the other way round.
    let flags = Columns::new()
        .with("source", Some("translation.es"))
        .with("target", Some("translation.en"));
    let reversed =
        translation_pairs(&hub, "hf://datasets/Helsinki-NLP/opus_books", &flags).unwrap();
    assert_eq!(reversed[0], (pairs[0].1.clone(), pairs[0].0.clone()));
}

#[test]
fn a_language_model_corpus_is_the_text_column_of_a_split() {
    let Some(shared) = shared() else { return };
    let (dir, hub) = cache();
    let alice = seqlab_tokenize::read_text(&shared.join("text/alice29.txt")).unwrap();
    let lines: Vec<String> = alice.lines().map(str::to_string).collect();
    // One row per line, as the hub converts a text file.
    put_split(
        dir.path(),
        "someone/alice",
        "default",
        "train",
        &[Table::new("alice", vec![Column::text("text", lines)]).unwrap()],
    );
    // One row holding the whole text, as tiny_shakespeare is laid out (a catalogue entry).
    let play = seqlab_tokenize::read_text(&shared.join("text/asyoulik.txt")).unwrap();
    put_split(
        dir.path(),
        "karpathy/tiny_shakespeare",
        "default",
        "validation",
        &[Table::new("play", vec![Column::text("text", vec![play.clone()])]).unwrap()],
    );
    let corpus = load_corpus_with(
        &hub,
        &[
            "hf://datasets/someone/alice".to_string(),
            "hf://datasets/karpathy/tiny_shakespeare:validation".to_string(),
        ],
        None,
    )
    .unwrap();
    let expected = format!("{}\n{}", alice.trim_end_matches('\n'), play);
    assert_eq!(corpus.text.trim_end(), expected.trim_end());
    assert!(corpus.description.contains("hf://datasets/someone/alice"));
}

#[test]
fn captions_pair_each_image_with_each_caption_column() {
    let Some(shared) = shared() else { return };
    let (dir, hub) = cache();
    let images_dir = shared.join("captions/emoji/images");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&images_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let images: Vec<Vec<u8>> = names[..4]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    // jxie/flickr8k's layout: an image column and caption_0 ... caption_4.
    let mut columns = vec![Column::bytes("image", images.clone())];
    for k in 0..5 {
        let captions = (0..4).map(|i| format!("emoji {i} caption {k}")).collect();
        columns.push(Column::text(format!("caption_{k}"), captions));
    }
    put_split(
        dir.path(),
        "jxie/flickr8k",
        "default",
        "train",
        &[Table::new("emoji", columns).unwrap()],
    );
    let rows = caption_rows(&hub, "hf://datasets/jxie/flickr8k", &Columns::new()).unwrap();
    assert_eq!(rows.len(), 20);
    assert_eq!(rows[0].image, images[0]);
    assert_eq!(rows[0].caption, "emoji 0 caption 0");
    assert_eq!(rows[6].image, images[1]);
    assert_eq!(rows[6].caption, "emoji 1 caption 1");
    assert!(rows[0].image.starts_with(b"\x89PNG"));
}

#[test]
fn tables_need_no_shared_data_and_text_files_of_a_repo_work_too() {
    let (dir, hub) = cache();
    // A TSV file in a dataset repository at revision main, read through the hub cache.
    let folder = dir.path().join("datasets--someone--pairs");
    std::fs::create_dir_all(folder.join("refs")).unwrap();
    std::fs::write(folder.join("refs/main"), COMMIT).unwrap();
    let data = folder.join("snapshots").join(COMMIT).join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("pairs.tsv"),
        "en\tfr\nHello.\tBonjour.\nYes.\tOui.\n",
    )
    .unwrap();
    let flags = Columns::new()
        .with("source", Some("en"))
        .with("target", Some("fr"));
    let pairs =
        translation_pairs(&hub, "hf://datasets/someone/pairs/data/pairs.tsv", &flags).unwrap();
    assert_eq!(
        pairs,
        [
            ("Hello.".to_string(), "Bonjour.".to_string()),
            ("Yes.".into(), "Oui.".into())
        ]
    );
    // A local parquet file works as a hub split does.
    let local = dir.path().join("local.parquet");
    Table::new("mine", vec![text("text", &["one", "two"])])
        .unwrap()
        .write_parquet(&local)
        .unwrap();
    let rows = text_rows(&hub, local.to_str().unwrap(), &Columns::new()).unwrap();
    assert_eq!(rows, ["one", "two"]);
}

#[test]
fn a_missing_column_names_the_source_the_column_and_the_flag() {
    let (dir, hub) = cache();
    put_split(
        dir.path(),
        "someone/news",
        "default",
        "train",
        &[Table::new("n", vec![text("body", &["x"]), text("topic", &["y"])]).unwrap()],
    );
    let error =
        labelled_rows(&hub, "hf://datasets/someone/news:train", &Columns::new()).unwrap_err();
    assert!(matches!(error, Error::MissingColumn { .. }), "{error:?}");
    let message = error.to_string();
    for part in [
        "hf://datasets/someone/news:train",
        "no column \"text\"",
        "its columns: body, topic",
        "--text-column",
    ] {
        assert!(message.contains(part), "{part} not in {message}");
    }
    let flags = Columns::new().with("text", Some("body"));
    let message = labelled_rows(&hub, "hf://datasets/someone/news", &flags)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("no column \"label\"") && message.contains("--label-column"),
        "{message}"
    );
}

#[test]
fn a_corrupt_parquet_file_is_an_error_naming_the_file() {
    let (dir, hub) = cache();
    let split = put_split(
        dir.path(),
        "someone/broken",
        "default",
        "train",
        &[Table::new("b", vec![text("text", &["a", "b", "c"])]).unwrap()],
    );
    let file = split.join("0000.parquet");
    let bytes = std::fs::read(&file).unwrap();
    let target = std::fs::canonicalize(&file).unwrap();
    // Damaged pages, intact footer: the snappy data no longer decodes.
    let mut damaged = bytes.clone();
    for byte in &mut damaged[4..bytes.len() / 3] {
        *byte ^= 0x5a;
    }
    std::fs::write(&target, &damaged).unwrap();
    let message = text_rows(&hub, "hf://datasets/someone/broken", &Columns::new())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("0000.parquet") && message.contains("not a readable parquet file"),
        "{message}"
    );
    // Truncated: the footer is gone.
    std::fs::write(&target, &bytes[..bytes.len() / 2]).unwrap();
    let error = text_rows(&hub, "hf://datasets/someone/broken", &Columns::new()).unwrap_err();
    assert!(matches!(error, Error::Parquet { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("0000.parquet") && message.contains("not a readable parquet file"),
        "{message}"
    );
    // Not parquet at all.
    std::fs::write(&target, "text\nthis is a CSV file\n").unwrap();
    let message = text_rows(&hub, "hf://datasets/someone/broken", &Columns::new())
        .unwrap_err()
        .to_string();
    assert!(message.contains("0000.parquet"), "{message}");
}

#[test]
fn without_cache_or_network_one_sentence_says_what_and_how_to_pass_a_local_file() {
    let (dir, hub) = cache();
    for hub in [hub.clone(), hub.clone().with_offline(true)] {
        let error = text_rows(
            &hub,
            "hf://datasets/karpathy/tiny_shakespeare:train",
            &Columns::new(),
        )
        .unwrap_err();
        assert!(matches!(error, Error::NotCached { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.starts_with("cannot fetch hf://datasets/karpathy/tiny_shakespeare:train"),
            "{message}"
        );
        assert!(message.contains(&dir.path().display().to_string()));
        assert!(message.contains("pass a local file instead"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
    // Half a split (an interrupted download: files come last to first) is not taken for the whole.
    let table = Table::new("t", vec![text("text", &["a"])]).unwrap();
    let split = put_split(
        dir.path(),
        "someone/half",
        "default",
        "train",
        &[table.clone(), table],
    );
    std::fs::remove_file(split.join("0000.parquet")).unwrap();
    let dataset = HubDataset::parse("hf://datasets/someone/half").unwrap();
    assert_eq!(hub.cached_split(&dataset).unwrap(), None);
    assert!(matches!(
        hub.split(&dataset).unwrap_err(),
        Error::NotCached { .. }
    ));
}
