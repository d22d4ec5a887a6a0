//! What the `seqlab serve` tests share: tiny trained model directories of every task, and a server process
//! on an ephemeral loopback port.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn seqlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seqlab"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the seqlab binary runs")
}

pub fn ok(args: &[&str]) -> String {
    let output = seqlab(args);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The text the language model learns: lowercase letters, spaces and a full stop only.
pub const TEXT: &str = "the cat sat on the mat. the dog sat on the log. ";

/// A char language model trained for a few steps on [`TEXT`], in `dir/lm`.
pub fn lm(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("text.txt"), TEXT.repeat(40)).unwrap();
    let out = dir.join("lm");
    ok(&[
        "lm",
        "train",
        "--data",
        p(&dir.join("text.txt")),
        "--out",
        p(&out),
        "--hidden",
        "32",
        "--embed",
        "16",
        "--batch",
        "8",
        "--seq-len",
        "16",
        "--steps",
        "60",
        "--lr",
        "0.01",
        "--eval-every",
        "60",
        "--threads",
        "1",
    ]);
    out
}

/// A classifier, a translator and a captioner trained for a few steps, in `dir/{classify,translate,caption}`;
/// returns them and an image the captioner reads.
pub fn other_tasks(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
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
    let mut tsv = String::new();
    for i in 0..40 {
        let (label, text) = [
            ("animal", "the cat and the dog"),
            ("food", "bread and cheese"),
        ][i % 2];
        tsv.push_str(&format!("{label}\t{text} {i}\n"));
    }
    std::fs::write(dir.join("labelled.tsv"), tsv).unwrap();
    let classify = dir.join("classify");
    let labelled = dir.join("labelled.tsv");
    let mut args = vec![
        "classify",
        "train",
        "--data",
        p(&labelled),
        "--out",
        p(&classify),
    ];
    args.extend(["--embed", "8", "--batch", "4"]);
    args.extend(common);
    ok(&args);

    let mut pairs = String::new();
    for i in 0..40 {
        let words = ["ant bee", "cat dog", "eel fox"][i % 3];
        pairs.push_str(&format!("{words}\t{}\n", words.to_uppercase()));
    }
    std::fs::write(dir.join("pairs.tsv"), pairs).unwrap();
    let translate = dir.join("translate");
    let pairs = dir.join("pairs.tsv");
    let mut args = vec![
        "translate",
        "train",
        "--data",
        p(&pairs),
        "--out",
        p(&translate),
    ];
    args.extend(["--embed", "8", "--batch", "4", "--min-freq", "1"]);
    args.extend(common);
    ok(&args);

    let shapes = dir.join("shapes");
    ok(&[
        "data",
        "shapes",
        "--out",
        p(&shapes),
        "--count",
        "24",
        "--size",
        "16",
        "--seed",
        "1",
    ]);
    let caption = dir.join("caption");
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
    args.extend(common);
    ok(&args);
    (
        classify,
        translate,
        caption,
        shapes.join("images/shape_00000.png"),
    )
}

/// A running `seqlab serve`, killed when dropped.
pub struct Serving {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Serving {
    /// Starts `seqlab serve --port 0 ARGS` and waits for the address it prints.
    pub fn start(args: &[&str]) -> Serving {
        let mut child = Command::new(env!("CARGO_BIN_EXE_seqlab"))
            .args(["serve", "--port", "0"])
            .args(args)
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("seqlab serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let Some(Ok(line)) = lines.next() else {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    std::io::Read::read_to_string(&mut stderr, &mut err).ok();
                }
                panic!("seqlab serve ended before listening: {err}");
            };
            if let Some(rest) = line.strip_prefix("listening on ") {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Serving { child, base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A POST of JSON: the status and the JSON body, whatever the status.
pub fn post(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    post_raw(url, "application/json", body.to_string().as_bytes())
}

/// A POST of bytes: the status and the JSON body.
pub fn post_raw(url: &str, content_type: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let response = ureq::post(url)
        .set("Content-Type", content_type)
        .send_bytes(body);
    answer(response)
}

pub fn get(url: &str) -> (u16, serde_json::Value) {
    answer(ureq::get(url).call())
}

fn answer(response: Result<ureq::Response, ureq::Error>) -> (u16, serde_json::Value) {
    let response = match response {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap();
    let json =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, json)
}

/// The data lines of a server-sent-event stream, in order (`[DONE]` included).
pub fn stream(url: &str, body: &serde_json::Value) -> Vec<String> {
    let response = ureq::post(url)
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .expect("the stream starts");
    assert_eq!(
        response.header("content-type"),
        Some("text/event-stream"),
        "a stream is server-sent events"
    );
    BufReader::new(response.into_reader())
        .lines()
        .map(Result::unwrap)
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect()
}
