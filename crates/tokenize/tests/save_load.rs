//! Saving and loading a standard tokenizer.json.

use seqlab_tokenize::{CharOptions, Kind, Tokenizer, WordOptions};

const TEXT: &str = "Two lines, one \"quote\".\nDon't stop -- ünïcode here.\n";

fn check_round_trip(tokenizer: &Tokenizer, kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, "an older file").unwrap();
    tokenizer.save(&path).unwrap();

    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["tokenizer.json"],
        "no temporary file is left behind"
    );

    let loaded = Tokenizer::from_file(&path).unwrap();
    assert_eq!(loaded.kind(), kind);
    assert_eq!(loaded.vocab_size(), tokenizer.vocab_size());
    assert_eq!(loaded.specials(), tokenizer.specials());
    let probe = "Two \"lines\" -- don't stop, ünïcode!\nNew words too.";
    let ids = tokenizer.encode(probe).unwrap();
    assert_eq!(loaded.encode(probe).unwrap(), ids);
    assert_eq!(
        loaded.decode(&ids).unwrap(),
        tokenizer.decode(&ids).unwrap()
    );
}

#[test]
fn a_saved_char_tokenizer_loads_as_the_same_char_tokenizer() {
    let tokenizer = Tokenizer::build_char(&[TEXT], &CharOptions::default()).unwrap();
    check_round_trip(&tokenizer, Kind::Char);
}

#[test]
fn a_saved_word_tokenizer_loads_as_the_same_word_tokenizer() {
    let options = WordOptions {
        lowercase: true,
        ..WordOptions::default()
    };
    let tokenizer = Tokenizer::build_word(&[TEXT], &options).unwrap();
    check_round_trip(&tokenizer, Kind::Word);
}
