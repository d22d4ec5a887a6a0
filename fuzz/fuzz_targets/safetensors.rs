//! Any bytes as a safetensors file: read as a checkpoint's tensors, and as the weights of a tiny language
//! model whose config.json and tokenizer.json are good. Must never panic.
#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;

mod common;

/// A good config.json and tokenizer.json beside the fuzzed model.safetensors.
fn model_dir() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let tokenizer =
            seqlab_tokenize::Tokenizer::build_char(&["abc"], &Default::default()).expect("a tokenizer");
        tokenizer
            .save(&common::scratch().join("tokenizer.json"))
            .expect("saving the tokenizer");
        let config = format!(
            r#"{{"format": "seqlab/1", "task": "lm", "model": {{"vocab_size": {}, "embed": 4, "cell": "lstm", "hidden": 3, "layers": 1, "dropout": 0.0}}, "train": {{}}}}"#,
            tokenizer.vocab_size()
        );
        common::write("config.json", config.as_bytes());
    });
}

fuzz_target!(|bytes: &[u8]| {
    model_dir();
    let path = common::write("model.safetensors", bytes);
    let _ = seqlab_train::checkpoint::load_tensors(&path, &candle_core::Device::Cpu);
    if let Ok(lm) = seqlab_train::load_lm(common::scratch(), &candle_core::Device::Cpu) {
        let _ = lm.evaluate_text("abcab", None, None);
    }
});
