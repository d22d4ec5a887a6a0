//! A language model trained in PyTorch, saved from its state_dict with the documented names, gives the same
//! evaluation loss in seqlab as in PyTorch. Fixtures: tests/reference/make_lm_fixture.py.

use std::path::{Path, PathBuf};

use candle_core::Device;
use seqlab_tokenize::Kind;
use seqlab_train::load_lm;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

fn check(case: &str) {
    let dir = fixtures().join(case);
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let lm = load_lm(&dir, &Device::Cpu).unwrap();
    // The tokenizer made by Python's `tokenizers` is recognised as seqlab's own char tokenizer.
    assert_eq!(lm.tokenizer.kind(), Kind::Char);
    let text = seqlab_tokenize::read_text(&fixtures().join("lm_eval.txt")).unwrap();
    let batch = expected["batch"].as_u64().unwrap() as usize;
    let seq_len = expected["seq_len"].as_u64().unwrap() as usize;
    let eval = lm.evaluate_text(&text, Some(batch), Some(seq_len)).unwrap();
    let torch_loss = expected["loss"].as_f64().unwrap();
    assert_eq!(eval.tokens as u64, expected["tokens"].as_u64().unwrap());
    assert!(
        (eval.loss - torch_loss).abs() < 1e-4,
        "{case}: seqlab {} vs PyTorch {torch_loss}",
        eval.loss
    );
}

#[test]
fn lstm_with_embedding_two_layers_matches_torch_eval_loss() {
    check("lm_lstm_embed_2layers");
}

#[test]
fn gru_with_one_hot_input_matches_torch_eval_loss() {
    check("lm_gru_onehot");
}
