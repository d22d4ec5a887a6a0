//! Bad input gives a one-line error that names it, never a panic.

use std::path::{Path, PathBuf};

use seqlab_tokenize::{read_corpus, CharOptions, Error, Tokenizer, WordOptions};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The message is one line and contains `needle`.
fn assert_message(error: &Error, needle: &str) {
    let message = error.to_string();
    assert!(!message.contains('\n'), "more than one line: {message:?}");
    assert!(
        message.contains(needle),
        "{message:?} does not name {needle:?}"
    );
}

#[test]
fn an_empty_or_whitespace_only_corpus_is_an_error() {
    for texts in [&[][..], &[""], &[" \n\t ", "\n"]] {
        let error = Tokenizer::build_char(texts, &CharOptions::default()).unwrap_err();
        assert!(matches!(error, Error::EmptyCorpus), "{error:?}");
        let error = Tokenizer::build_word(texts, &WordOptions::default()).unwrap_err();
        assert!(matches!(error, Error::EmptyCorpus), "{error:?}");
    }
}

#[test]
fn corpus_file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.txt", b"some text\n");
    let blank = write(dir.path(), "blank.txt", b"  \r\n\n");
    let latin1 = write(dir.path(), "latin1.txt", b"na\xefve\n");
    let missing = dir.path().join("missing.txt");

    let error = read_corpus(&[good.clone(), blank]).unwrap_err();
    assert!(matches!(error, Error::EmptyFile { .. }), "{error:?}");
    assert_message(&error, "blank.txt");

    let error = read_corpus(&[good.clone(), latin1]).unwrap_err();
    assert!(matches!(error, Error::NotUtf8 { line: 1, .. }), "{error:?}");
    assert_message(&error, "latin1.txt");

    let error = read_corpus(&[good, missing]).unwrap_err();
    assert!(matches!(error, Error::Read { .. }), "{error:?}");
    assert_message(&error, "missing.txt");
}

#[test]
fn malformed_tokenizer_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[u8])] = &[
        ("empty.json", b""),
        ("truncated.json", b"{\"version\": \"1.0\", \"model\": {\"type\": \"WordLevel\""),
        ("not_a_tokenizer.json", b"{\"hello\": [1, 2, 3]}"),
        ("list.json", b"[1, 2, 3]"),
        (
            "bad_regex.json",
            br#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
                "pre_tokenizer":{"type":"Split","pattern":{"Regex":"(unclosed"},"behavior":"Removed","invert":true},
                "post_processor":null,"decoder":null,
                "model":{"type":"WordLevel","vocab":{"<unk>":0},"unk_token":"<unk>"}}"#,
        ),
    ];
    for (name, bytes) in cases {
        let error = Tokenizer::from_file(&write(dir.path(), name, bytes)).unwrap_err();
        assert!(
            matches!(error, Error::InvalidTokenizerFile { .. }),
            "{name}: {error:?}"
        );
        assert_message(&error, name);
        assert!(
            error.to_string().contains("is not a valid tokenizer.json"),
            "{error}"
        );
    }

    let error = Tokenizer::from_file(&write(dir.path(), "binary.json", b"\xff\xfe{}")).unwrap_err();
    assert!(matches!(error, Error::NotUtf8 { .. }), "{error:?}");
    assert_message(&error, "binary.json");

    let error = Tokenizer::from_file(&dir.path().join("absent.json")).unwrap_err();
    assert!(matches!(error, Error::Read { .. }), "{error:?}");
    assert_message(&error, "absent.json");
}

/// Regression (fuzz target `tokenizer_json`): the `tokenizers` crate panics on a malformed `decoder`
/// section instead of returning an error; loading must answer with an error all the same.
#[test]
fn a_malformed_decoder_section_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/char.tokenizer.json"),
    )
    .unwrap();
    let value: serde_json::Value = serde_json::from_str(&good).unwrap();
    assert!(value.get("decoder").is_some());
    let cases = [
        // Valid JSON, but no decoder the crate knows.
        (
            "unknown_decoder.json",
            good.replacen(
                "\"decoder\":",
                "\"decoder\": {\"type\": \"Nonexistent\"}, \"unused\":",
                1,
            ),
            "decoder",
        ),
        // Not JSON inside the decoder section (the fuzzer's input, reduced).
        (
            "broken_decoder.json",
            good.replacen(
                "\"decoder\":",
                "\"decoder\": {\", \"x\": 1}, \"unused\":",
                1,
            ),
            "line",
        ),
    ];
    for (name, text, needle) in cases {
        let error = Tokenizer::from_file(&write(dir.path(), name, text.as_bytes())).unwrap_err();
        assert!(
            matches!(error, Error::InvalidTokenizerFile { .. }),
            "{name}: {error:?}"
        );
        assert_message(&error, name);
        assert_message(&error, needle);
    }
}

#[test]
fn saving_into_a_missing_directory_names_the_file() {
    let tokenizer = Tokenizer::build_char(&["abc"], &CharOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let error = tokenizer
        .save(&dir.path().join("no/such/dir/tokenizer.json"))
        .unwrap_err();
    assert!(matches!(error, Error::Write { .. }), "{error:?}");
    assert_message(&error, "tokenizer.json");
}

#[test]
fn ids_outside_the_vocabulary_are_an_error() {
    let tokenizer = Tokenizer::build_word(&["a b c"], &WordOptions::default()).unwrap();
    let error = tokenizer.decode(&[4, 7, u32::MAX]).unwrap_err();
    assert!(
        matches!(
            error,
            Error::UnknownId {
                id: 7,
                vocab_size: 7
            }
        ),
        "{error:?}"
    );
    assert_message(&error, "token id 7");
}

#[test]
fn impossible_vocabulary_limits_are_errors() {
    let error = Tokenizer::build_word(
        &["a b c"],
        &WordOptions {
            max_size: Some(4),
            ..WordOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(error, Error::MaxSizeTooSmall { max_size: 4 }),
        "{error:?}"
    );
    assert_message(&error, "4");

    let error = Tokenizer::build_char(
        &["abc"],
        &CharOptions {
            min_freq: 2,
            ..CharOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(error, Error::NoTokens { min_freq: 2 }),
        "{error:?}"
    );
    assert_message(&error, "at least 2 times");
}

#[test]
fn unknown_text_never_fails() {
    let char_level = Tokenizer::build_char(&["abc"], &CharOptions::default()).unwrap();
    let word_level = Tokenizer::build_word(&["abc"], &WordOptions::default()).unwrap();
    let texts = [
        "",
        "\u{0}",
        "\u{10FFFF}\u{FFFD}",
        "<unk><pad",
        "ʼ’'-",
        "\u{301}\u{301}",
        "\n\r\t",
    ];
    for text in texts {
        for tokenizer in [&char_level, &word_level] {
            let ids = tokenizer.encode(text).unwrap();
            tokenizer.decode(&ids).unwrap();
        }
    }
    assert_eq!(word_level.encode("xyz, abc!").unwrap(), [1, 1, 4, 1]);
}
