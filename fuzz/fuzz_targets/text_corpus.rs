//! Any bytes as a text corpus: read (BOM, CRLF, UTF-8 check) and, when readable, tokenized at char and word
//! level and split for validation. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|bytes: &[u8]| {
    let path = common::write("corpus.txt", bytes);
    let Ok(corpus) = seqlab_data::load_corpus(&[path.display().to_string()]) else {
        return;
    };
    let _ = seqlab_data::split_tail(&corpus.text, 0.1);
    for tokenizer in [
        seqlab_tokenize::Tokenizer::build_char(&[&corpus.text], &Default::default()),
        seqlab_tokenize::Tokenizer::build_word(&[&corpus.text], &Default::default()),
    ]
    .into_iter()
    .flatten()
    {
        if let Ok(ids) = tokenizer.encode(&corpus.text) {
            let _ = tokenizer.decode(&ids);
        }
    }
});
