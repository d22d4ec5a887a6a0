//! The three books of the lesson, from `../shared/data/text` beside the workspace; skipped with a
//! message when they are absent.
//!
//! `cargo test -p seqlab-tokenize --test books -- --nocapture` prints the vocabulary sizes.

use std::path::PathBuf;

use seqlab_tokenize::{read_text, CharOptions, Tokenizer, WordOptions, UNK};

const BOOKS: [&str; 3] = ["alice29.txt", "asyoulik.txt", "eighty.txt"];

/// The books' text, or `None` (with a message) when the data directory is absent.
fn books() -> Option<Vec<(&'static str, String)>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/text");
    if !dir.is_dir() {
        eprintln!("skipped: no books in {}", dir.display());
        return None;
    }
    Some(
        BOOKS
            .iter()
            .map(|name| (*name, read_text(&dir.join(name)).unwrap()))
            .collect(),
    )
}

fn with_min_freq(min_freq: usize) -> WordOptions {
    WordOptions {
        min_freq,
        ..WordOptions::default()
    }
}

/// Collapses every run of whitespace without a newline to one space and drops spaces next to
/// newlines, then splits into lines.
fn squeezed_lines(text: &str) -> Vec<String> {
    text.trim()
        .split('\n')
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Whether `decoded` is `original` with some words replaced by `<unk>`.
fn matches_with_unk(original: &str, decoded: &str) -> bool {
    fn matches(original: &str, pieces: &[&str]) -> bool {
        let Some((first, rest)) = pieces.split_first() else {
            return original.is_empty();
        };
        let Some(after) = original.strip_prefix(first) else {
            return false;
        };
        if rest.is_empty() {
            return after.is_empty();
        }
        // The unknown word: one or more characters that are not whitespace.
        after
            .char_indices()
            .take_while(|(_, c)| !c.is_whitespace())
            .any(|(i, c)| matches(&after[i + c.len_utf8()..], rest))
    }
    matches(original, &decoded.split(UNK).collect::<Vec<_>>())
}

/// Decodes the book's ids and checks that (1) the text re-encodes to the same ids — every token,
/// newline and `<unk>` in place — and (2) at least 99% of its lines equal the book's up to runs of
/// whitespace and `<unk>`. Returns the lines that differ.
fn check_word_round_trip(name: &str, text: &str, tokenizer: &Tokenizer) -> usize {
    let ids = tokenizer.encode(text).unwrap();
    let decoded = tokenizer.decode(&ids).unwrap();
    assert!(
        tokenizer.encode(&decoded).unwrap() == ids,
        "{name}: decoding changed the tokens"
    );

    let original = squeezed_lines(text);
    let decoded = squeezed_lines(&decoded);
    assert_eq!(original.len(), decoded.len(), "{name}: lines");
    let differ: Vec<_> = original
        .iter()
        .zip(&decoded)
        .filter(|(original, decoded)| !matches_with_unk(original, decoded))
        .collect();
    for (original, decoded) in differ.iter().take(5) {
        eprintln!("{name}:\n  book:    {original}\n  decoded: {decoded}");
    }
    assert!(
        differ.len() * 100 <= original.len(),
        "{name}: {} of {} lines differ",
        differ.len(),
        original.len()
    );
    differ.len()
}

#[test]
fn alice_word_tokenizer_with_min_freq_2_round_trips_its_own_text() {
    let Some(books) = books() else { return };
    let (name, text) = &books[0];
    let tokenizer = Tokenizer::build_word(&[text], &with_min_freq(2)).unwrap();
    let unk = tokenizer.unk_id().unwrap();
    let ids = tokenizer.encode(text).unwrap();
    assert!(ids.contains(&unk), "words seen once are <unk>");
    let differ = check_word_round_trip(name, text, &tokenizer);
    eprintln!("{name}: {differ} lines differ beyond whitespace and <unk>");
}

#[test]
fn every_book_round_trips_at_word_and_char_level() {
    let Some(books) = books() else { return };
    eprintln!("book           chars  words(min 1)  words(min 2)  lines differing (min 1)");
    for (name, text) in &books {
        let char_level = Tokenizer::build_char(&[text], &CharOptions::default()).unwrap();
        let ids = char_level.encode(text).unwrap();
        assert!(!ids.contains(&char_level.unk_id().unwrap()), "{name}");
        assert!(
            char_level.decode(&ids).unwrap() == *text,
            "{name}: char round trip"
        );

        let words = Tokenizer::build_word(&[text], &with_min_freq(1)).unwrap();
        let frequent_words = Tokenizer::build_word(&[text], &with_min_freq(2)).unwrap();
        let differ = check_word_round_trip(name, text, &words);
        eprintln!(
            "{name:<13} {:>6} {:>13} {:>13} {:>10}",
            char_level.vocab_size(),
            words.vocab_size(),
            frequent_words.vocab_size(),
            differ
        );
    }
}

#[test]
fn matches_with_unk_accepts_only_whole_words_in_place_of_unk() {
    assert!(matches_with_unk("the cat sat.", "the <unk> sat."));
    assert!(matches_with_unk("daisy-chain, too", "<unk>, too"));
    assert!(!matches_with_unk("the big cat sat.", "the <unk> sat."));
    assert!(!matches_with_unk("the  sat.", "the <unk>sat."));
    assert!(!matches_with_unk("the cat sat", "the cat sat."));
}
