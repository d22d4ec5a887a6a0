//! seqlab's tokenizer.json files encode identically in Python's `tokenizers`, and tokenizer.json files
//! made by Python load and encode identically here.
//!
//! The fixtures in `tests/fixtures/` come from `tests/reference/tokenizer_interop.py` (workspace root);
//! its header gives the commands that regenerate them.

use std::path::{Path, PathBuf};

use seqlab_tokenize::{CharOptions, Kind, Tokenizer, WordOptions};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The tokenizers seqlab writes for the Python script, from the committed corpus.
fn seqlab_tokenizers() -> Vec<(&'static str, Tokenizer)> {
    let corpus = seqlab_tokenize::read_text(&fixtures().join("interop_corpus.txt")).unwrap();
    let lowercase_min2 = WordOptions {
        lowercase: true,
        min_freq: 2,
        ..WordOptions::default()
    };
    vec![
        (
            "char.tokenizer.json",
            Tokenizer::build_char(&[&corpus], &CharOptions::default()).unwrap(),
        ),
        (
            "word.tokenizer.json",
            Tokenizer::build_word(&[&corpus], &WordOptions::default()).unwrap(),
        ),
        (
            "word_lowercase_min2.tokenizer.json",
            Tokenizer::build_word(&[&corpus], &lowercase_min2).unwrap(),
        ),
    ]
}

/// The committed tokenizer.json files are what the code builds today, so the Python ids below are
/// about today's tokenizers. `SEQLAB_BLESS=1` rewrites them (then rerun the Python script).
#[test]
fn committed_seqlab_tokenizer_files_are_what_seqlab_builds() {
    let bless = std::env::var_os("SEQLAB_BLESS").is_some();
    for (name, tokenizer) in seqlab_tokenizers() {
        let path = fixtures().join(name);
        if bless {
            tokenizer.save(&path).unwrap();
            eprintln!("wrote {}", path.display());
            continue;
        }
        let built: serde_json::Value =
            serde_json::from_str(&tokenizer.as_hf().to_string(false).unwrap()).unwrap();
        assert!(
            built == read_json(&path),
            "{name} differs from what seqlab builds now; regenerate the fixtures with the commands \
             in tests/reference/tokenizer_interop.py"
        );
    }
}

#[test]
fn seqlab_encodes_every_sentence_to_the_ids_python_gives() {
    let fixture = read_json(&fixtures().join("interop_ids.json"));
    let sentences: Vec<&str> = fixture["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let results = fixture["results"].as_object().unwrap();
    assert_eq!(results.len(), 5, "three seqlab and two Python tokenizers");
    for (name, rows) in results {
        let tokenizer = Tokenizer::from_file(&fixtures().join(name)).unwrap();
        let expected_kind = match name.as_str() {
            "char.tokenizer.json" => Kind::Char,
            n if n.starts_with("word") => Kind::Word,
            _ => Kind::Other,
        };
        assert_eq!(tokenizer.kind(), expected_kind, "{name}");
        for (sentence, row) in sentences.iter().zip(rows.as_array().unwrap()) {
            let python: Vec<u32> = serde_json::from_value(row["ids"].clone()).unwrap();
            let ids = tokenizer.encode(sentence).unwrap();
            assert_eq!(ids, python, "{name} encodes {sentence:?}");

            // Python's decode leaves out every special token; seqlab's keeps `<unk>` visible. Where
            // neither appears, and for every char-level decode, the two agree. Word-level decodes
            // differ by design: Python joins the tokens with spaces.
            let decoded = tokenizer.decode(&ids).unwrap();
            let python_decoded = row["decoded"].as_str().unwrap();
            let added = tokenizer.as_hf().get_added_tokens_decoder();
            let specials = ids
                .iter()
                .any(|id| added.get(id).is_some_and(|token| token.special));
            if expected_kind != Kind::Word && !specials {
                assert_eq!(decoded, python_decoded, "{name} decodes {sentence:?}");
            }
        }
    }
}

#[test]
fn seqlab_tokenizers_find_their_specials_and_python_ones_theirs() {
    for name in ["char.tokenizer.json", "word.tokenizer.json"] {
        let tokenizer = Tokenizer::from_file(&fixtures().join(name)).unwrap();
        let ids = [
            tokenizer.pad_id(),
            tokenizer.unk_id(),
            tokenizer.bos_id(),
            tokenizer.eos_id(),
        ];
        assert_eq!(ids, [Some(0), Some(1), Some(2), Some(3)], "{name}");
    }
    let bpe = Tokenizer::from_file(&fixtures().join("python_bpe.tokenizer.json")).unwrap();
    let ids = [bpe.pad_id(), bpe.unk_id(), bpe.bos_id(), bpe.eos_id()];
    assert_eq!(
        ids,
        [Some(1), Some(0), Some(2), Some(3)],
        "[UNK] [PAD] <s> </s>"
    );
    let wordpiece =
        Tokenizer::from_file(&fixtures().join("python_wordpiece.tokenizer.json")).unwrap();
    let ids = [
        wordpiece.pad_id(),
        wordpiece.unk_id(),
        wordpiece.bos_id(),
        wordpiece.eos_id(),
    ];
    assert_eq!(
        ids,
        [Some(0), Some(1), Some(2), Some(3)],
        "[PAD] [UNK] [CLS] [SEP]"
    );
}
