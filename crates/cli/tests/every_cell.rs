//! Every cell of the registry in every pipeline, through the binary: a few training steps, then the
//! model directory is read back and used (generate, eval, run), plain and in residual blocks. A cell that
//! only some pipelines accepted would fail here.

use std::path::Path;
use std::process::{Command, Output};

use seqlab_cells::CellKind;

fn seqlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seqlab"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the seqlab binary runs")
}

fn ok(args: &[&str]) -> String {
    let output = seqlab(args);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The data of the four pipelines, written once into `dir`.
fn data(dir: &Path) {
    std::fs::write(
        dir.join("text.txt"),
        "the cat sat on the mat. the dog sat on the log.\n".repeat(20),
    )
    .unwrap();
    let mut tsv = String::new();
    for i in 0..40 {
        let (label, text) = [
            ("animal", "the cat and the dog"),
            ("food", "bread and cheese"),
        ][i % 2];
        tsv.push_str(&format!("{label}\t{text} {i}\n"));
    }
    std::fs::write(dir.join("labelled.tsv"), tsv).unwrap();
    let mut pairs = String::new();
    for i in 0..40 {
        let words = ["ant bee", "cat dog", "eel fox"][i % 3];
        pairs.push_str(&format!("{words}\t{}\n", words.to_uppercase()));
    }
    std::fs::write(dir.join("pairs.tsv"), pairs).unwrap();
    ok(&[
        "data",
        "shapes",
        "--out",
        p(&dir.join("shapes")),
        "--count",
        "24",
        "--size",
        "16",
        "--seed",
        "1",
    ]);
}

#[test]
fn every_cell_trains_and_serves_in_every_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    data(d);
    let common = [
        "--hidden",
        "8",
        "--steps",
        "3",
        "--eval-every",
        "3",
        "--threads",
        "1",
    ];
    let (text, labelled, pairs) = (
        d.join("text.txt"),
        d.join("labelled.tsv"),
        d.join("pairs.tsv"),
    );
    for cell in CellKind::ALL {
        // The xLSTM kinds are residual blocks themselves.
        let blocks: &[&str] = if cell.is_block() {
            &["plain"]
        } else {
            &["plain", "residual"]
        };
        for &block in blocks {
            let name = format!("{cell}-{block}");
            let stack = [&common[..], &["--cell", cell.as_str(), "--block", block]].concat();

            let lm = d.join(format!("lm-{name}"));
            let mut args = vec!["lm", "train", "--data", p(&text), "--out", p(&lm)];
            args.extend([
                "--embed",
                "8",
                "--batch",
                "2",
                "--seq-len",
                "8",
                "--layers",
                "2",
            ]);
            args.extend(&stack);
            ok(&args);
            let sample = ok(&[
                "lm",
                "generate",
                "--model",
                p(&lm),
                "--prompt",
                "the",
                "--length",
                "5",
            ]);
            assert!(sample.starts_with("the"), "{name}: {sample}");
            ok(&[
                "lm",
                "eval",
                "--model",
                p(&lm),
                "--data",
                p(&text),
                "--json",
            ]);

            let classify = d.join(format!("classify-{name}"));
            let mut args = vec![
                "classify",
                "train",
                "--data",
                p(&labelled),
                "--out",
                p(&classify),
            ];
            args.extend(["--embed", "8", "--batch", "4"]);
            args.extend(&stack);
            ok(&args);
            let label = ok(&[
                "classify",
                "predict",
                "--model",
                p(&classify),
                "bread and cheese",
            ]);
            assert!(
                label.starts_with("animal") || label.starts_with("food"),
                "{label}"
            );

            let translate = d.join(format!("translate-{name}"));
            let mut args = vec![
                "translate",
                "train",
                "--data",
                p(&pairs),
                "--out",
                p(&translate),
            ];
            args.extend([
                "--embed",
                "8",
                "--batch",
                "4",
                "--min-freq",
                "1",
                "--bidirectional",
            ]);
            args.extend(&stack);
            ok(&args);
            ok(&[
                "translate",
                "run",
                "--model",
                p(&translate),
                "--beam",
                "2",
                "cat dog",
            ]);

            let caption = d.join(format!("caption-{name}"));
            let shapes = d.join("shapes");
            let (images, captions) = (shapes.join("images"), shapes.join("captions.txt"));
            let mut args = vec![
                "caption",
                "train",
                "--images",
                p(&images),
                "--captions",
                p(&captions),
                "--out",
                p(&caption),
            ];
            args.extend([
                "--image-size",
                "16",
                "--channels",
                "4,4",
                "--embed",
                "8",
                "--batch",
                "4",
            ]);
            // A residual block does not read back an h set from the image: the image is its first input.
            if block == "residual" {
                args.extend(["--inject", "first"]);
            }
            args.extend(&stack);
            ok(&args);
            let image = shapes.join("images/shape_00000.png");
            ok(&["caption", "run", "--model", p(&caption), p(&image)]);
        }
    }
}

#[test]
fn a_residual_block_with_inject_init_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    data(d);
    let shapes = d.join("shapes");
    let out = d.join("caption");
    let output = seqlab(&[
        "caption",
        "train",
        "--images",
        p(&shapes.join("images")),
        "--captions",
        p(&shapes.join("captions.txt")),
        "--out",
        p(&out),
        "--block",
        "residual",
        "--steps",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--inject first"), "{stderr}");
    assert!(!out.exists());
}
