//! The word-level tokenizer: words and punctuation as tokens, newlines kept, readable decoding.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use seqlab_tokenize::{Kind, Tokenizer, WordOptions, UNK};

fn tokens(tokenizer: &Tokenizer, text: &str) -> Vec<String> {
    let ids = tokenizer.encode(text).unwrap();
    ids.iter()
        .map(|&id| tokenizer.id_to_token(id).unwrap())
        .collect()
}

fn word_tokenizer(corpus: &str) -> Tokenizer {
    Tokenizer::build_word(&[corpus], &WordOptions::default()).unwrap()
}

/// Collapses every run of whitespace without a newline to one space and drops spaces next to newlines.
fn squeeze(text: &str) -> String {
    text.split('\n')
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn words_punctuation_and_newlines_are_separate_tokens() {
    let text = "Alice's cat didn't stop; the well-known rabbit (late) ran!\n\n\"Oh,\" said O'Brien -- twice.";
    let tokenizer = word_tokenizer(text);
    assert_eq!(tokenizer.kind(), Kind::Word);
    assert_eq!(
        tokens(&tokenizer, text),
        [
            "Alice's",
            "cat",
            "didn't",
            "stop",
            ";",
            "the",
            "well-known",
            "rabbit",
            "(",
            "late",
            ")",
            "ran",
            "!",
            "\n",
            "\n",
            "\"",
            "Oh",
            ",",
            "\"",
            "said",
            "O'Brien",
            "-",
            "-",
            "twice",
            "."
        ]
    );
}

#[test]
fn curly_apostrophes_numbers_and_abbreviations_stay_whole() {
    let text = "It’s 7.45 a.m. on the 2nd, and 1,000 people paid 12% more; e.g. me.";
    let tokenizer = word_tokenizer(text);
    assert_eq!(
        tokens(&tokenizer, text),
        [
            "It’s", "7.45", "a.m.", "on", "the", "2nd", ",", "and", "1,000", "people", "paid",
            "12", "%", "more", ";", "e.g.", "me", "."
        ]
    );
}

#[test]
fn whitespace_other_than_newlines_separates_and_disappears() {
    let text = "a\tb\u{a0}c\u{3000}d\u{2028}e \r\n f";
    let tokenizer = word_tokenizer(text);
    assert_eq!(
        tokens(&tokenizer, text),
        ["a", "b", "c", "d", "e", "\n", "f"]
    );
}

#[test]
fn lowercasing_merges_capitalised_words() {
    let options = WordOptions {
        lowercase: true,
        ..WordOptions::default()
    };
    let tokenizer = Tokenizer::build_word(&["The cat saw the CAT."], &options).unwrap();
    assert_eq!(tokenizer.vocab_size(), 4 + 4, "the, cat, saw, .");
    assert_eq!(tokens(&tokenizer, "THE Cat"), ["the", "cat"]);
}

#[test]
fn min_freq_and_max_size_choose_the_most_frequent_words() {
    let corpus = "the cat and the dog and the bird";
    let min2 = WordOptions {
        min_freq: 2,
        ..WordOptions::default()
    };
    let tokenizer = Tokenizer::build_word(&[corpus], &min2).unwrap();
    assert_eq!(tokenizer.vocab_size(), 4 + 2);
    assert_eq!(
        tokens(&tokenizer, "the cat and the fish"),
        ["the", UNK, "and", "the", UNK]
    );

    let five = WordOptions {
        max_size: Some(5),
        ..WordOptions::default()
    };
    let tokenizer = Tokenizer::build_word(&[corpus], &five).unwrap();
    assert_eq!(tokenizer.vocab_size(), 5);
    assert_eq!(tokenizer.id_to_token(4).as_deref(), Some("the"));
}

#[test]
fn unknown_words_become_unk_and_decode_visibly() {
    let tokenizer = word_tokenizer("the cat sat.");
    let ids = tokenizer.encode("the zebra sat, purring.").unwrap();
    assert_eq!(
        ids.iter()
            .filter(|&&id| Some(id) == tokenizer.unk_id())
            .count(),
        3
    );
    assert_eq!(
        tokenizer.decode(&ids).unwrap(),
        "the <unk> sat <unk> <unk>."
    );
}

#[test]
fn decode_is_readable_english() {
    let text = "Alice said, \"no.\" (Really?) Yes: it's Bob's; don't -- wait!";
    let tokenizer = word_tokenizer(text);
    assert_eq!(
        tokenizer.decode(&tokenizer.encode(text).unwrap()).unwrap(),
        "Alice said, \"no.\" (Really?) Yes: it's Bob's; don't--wait!"
    );
}

/// Ordinary prose with quotes (both styles), apostrophes, dashes and paragraphs round-trips up to
/// whitespace runs. Dashes are written unspaced (`sea-wall--the`), the convention the decoder restores;
/// a spaced ` -- ` comes back unspaced.
#[test]
fn word_round_trip_of_prose_is_exact_up_to_whitespace_runs() {
    let prose = "\
  The tide was out when Mara reached the harbour. `You're late,' said the
harbourmaster, not unkindly; `the boats left at dawn.'

  `I know,' she said. `I'll wait.' She sat on the sea-wall--the old one,
half-ruined--and watched the gulls' quarrels over the nets.

\"Wait for what?\" asked a boy (he couldn't have been more than ten). \"Nobody
comes back before dark.\"

  She didn't answer. The lighthouse-keeper's daughter's words were in her
head: 'tis never too late, 'tis only later. At 6:30 the first sail showed;
by 7.45 there were twelve!
";
    let tokenizer = word_tokenizer(prose);
    let ids = tokenizer.encode(prose).unwrap();
    assert!(!ids.contains(&1));
    assert_eq!(
        squeeze(&tokenizer.decode(&ids).unwrap()).trim(),
        squeeze(prose).trim()
    );
}

#[test]
fn literal_special_tokens_in_text_are_special() {
    let tokenizer = word_tokenizer("end of story");
    assert_eq!(
        tokenizer.encode("story<eos>").unwrap(),
        [
            tokenizer.token_to_id("story").unwrap(),
            tokenizer.eos_id().unwrap()
        ]
    );
}

/// Property: whatever a model samples, decoding gives text, and that text encodes back to the same
/// tokens wherever it can: every sampled sequence of words, marks and newlines except special tokens.
#[test]
fn decoding_any_ids_gives_text_that_encodes_back_to_them() {
    let corpus = "`Well,' said he -- \"it's (mostly) fine; isn't it?\"\n\nO'Brien's well-made 2nd boat: 7.45 a.m.! Don't...";
    let tokenizer = word_tokenizer(corpus);
    let first_word = 4;
    let mut rng = StdRng::seed_from_u64(7);
    for case in 0..500 {
        let len = rng.random_range(0..30);
        let ids: Vec<u32> = (0..len)
            .map(|_| rng.random_range(first_word..tokenizer.vocab_size() as u32))
            .collect();
        let text = tokenizer.decode(&ids).unwrap();
        assert_eq!(
            tokenizer.encode(&text).unwrap(),
            ids,
            "case {case}: {text:?}"
        );
    }
}
