//! `seqlab_train::bleu` gives what the `sacrebleu` package gives: every score, brevity penalty, precision,
//! length, count and total of 31 corpora (unicode, punctuation, numbers, entities, empty hypotheses, several and
//! missing references, BLEU-1..3, lowercase, pre-tokenized, no smoothing), and the 13a tokenisation of awkward
//! lines. Fixture: tests/reference/make_bleu_fixture.py.

use std::path::Path;

use seqlab_train::bleu::{
    corpus_bleu, corpus_bleu_multi, corpus_bleu_with, corpus_stats, tokenize_13a, Bleu,
    BleuOptions, Smoothing, Tokenize,
};
use serde_json::Value;

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bleu_sacrebleu.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Reference streams (with `null` for a missing reference) turned into references per hypothesis.
fn per_hypothesis(streams: &Value, n: usize) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| {
            streams
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|stream| stream[i].as_str().map(str::to_string))
                .collect()
        })
        .collect()
}

fn options(value: &Value) -> BleuOptions {
    let mut options = BleuOptions::default();
    if let Some(n) = value.get("max_ngram_order") {
        options.max_order = n.as_u64().unwrap() as usize;
    }
    if let Some(lowercase) = value.get("lowercase") {
        options.lowercase = lowercase.as_bool().unwrap();
    }
    match value.get("tokenize").and_then(Value::as_str) {
        Some("none") => options.tokenize = Tokenize::None,
        Some(other) => panic!("fixture tokenizer {other} is not supported"),
        None => {}
    }
    match value.get("smooth_method").and_then(Value::as_str) {
        Some("none") => options.smoothing = Smoothing::None,
        Some(other) => panic!("fixture smoothing {other} is not supported"),
        None => {}
    }
    options
}

fn assert_matches(name: &str, bleu: &Bleu, expected: &Value) {
    let close = |a: f64, b: f64, what: &str| {
        assert!(
            (a - b).abs() < 0.01,
            "{name}: {what} is {a}, sacreBLEU says {b}"
        );
    };
    close(bleu.score, expected["score"].as_f64().unwrap(), "score");
    close(bleu.bp, expected["bp"].as_f64().unwrap(), "bp");
    assert_eq!(
        bleu.sys_len as u64,
        expected["sys_len"].as_u64().unwrap(),
        "{name}: sys_len"
    );
    assert_eq!(
        bleu.ref_len as u64,
        expected["ref_len"].as_u64().unwrap(),
        "{name}: ref_len"
    );
    let precisions = expected["precisions"].as_array().unwrap();
    assert_eq!(precisions.len(), bleu.max_order, "{name}: max order");
    for (n, p) in precisions.iter().enumerate() {
        close(
            bleu.precisions[n],
            p.as_f64().unwrap(),
            &format!("precision {}", n + 1),
        );
    }
    for (n, c) in expected["counts"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            bleu.counts[n] as u64,
            c.as_u64().unwrap(),
            "{name}: count {}",
            n + 1
        );
    }
    for (n, t) in expected["totals"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            bleu.totals[n] as u64,
            t.as_u64().unwrap(),
            "{name}: total {}",
            n + 1
        );
    }
}

#[test]
fn corpus_bleu_matches_sacrebleu_on_every_fixture_case() {
    let fixture = fixture();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let hyps = strings(&case["hypotheses"]);
        let refs = per_hypothesis(&case["references"], hyps.len());
        let options = options(&case["options"]);
        let expected = &case["expected"];
        assert_matches(name, &corpus_bleu_with(&hyps, &refs, &options), expected);
        if options == BleuOptions::default() {
            assert_matches(name, &corpus_bleu_multi(&hyps, &refs), expected);
            let complete = case["references"]
                .as_array()
                .unwrap()
                .iter()
                .all(|stream| stream.as_array().unwrap().iter().all(Value::is_string));
            if complete {
                let streams: Vec<Vec<String>> = case["references"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(strings)
                    .collect();
                assert_matches(name, &corpus_bleu(&hyps, &streams), expected);
            }
        }
    }
}

#[test]
fn tokenize_13a_matches_sacrebleu() {
    let fixture = fixture();
    for line in fixture["tokenize_13a"].as_array().unwrap() {
        let input = line["line"].as_str().unwrap();
        assert_eq!(
            tokenize_13a(input),
            line["tokens"].as_str().unwrap(),
            "line {input:?}"
        );
    }
}

#[test]
fn one_pass_of_statistics_gives_every_bleu_n() {
    // BLEU-1..3 from the statistics of one pass equal the fixture's runs with max_ngram_order = n.
    let fixture = fixture();
    let cases = fixture["cases"].as_array().unwrap();
    let case = |name: &str| cases.iter().find(|c| c["name"] == name).unwrap();
    let first = case("bleu1_order");
    let hyps = strings(&first["hypotheses"]);
    let refs = per_hypothesis(&first["references"], hyps.len());
    let stats = corpus_stats(&hyps, &refs, Tokenize::ThirteenA, false);
    for (n, name) in [(1, "bleu1_order"), (2, "bleu2_order"), (3, "bleu3_order")] {
        assert_matches(
            name,
            &stats.bleu(n, Smoothing::Exp),
            &case(name)["expected"],
        );
    }
}

#[test]
fn missing_stream_entries_count_as_missing_references() {
    let hyps = ["the cat sat", "a dog"];
    // The second stream has no entry for the second sentence: same as one reference there.
    let streams = vec![vec!["the cat sat", "a dog"], vec!["the cat sat down"]];
    let per_hyp = vec![vec!["the cat sat", "the cat sat down"], vec!["a dog"]];
    assert_eq!(
        corpus_bleu(&hyps, &streams),
        corpus_bleu_multi(&hyps, &per_hyp)
    );
}
