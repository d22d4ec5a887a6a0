//! The character-level tokenizer: one token per Unicode scalar value, whitespace included.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use seqlab_tokenize::{CharOptions, Kind, Tokenizer, BOS, EOS, PAD, UNK};

fn without_nfc() -> CharOptions {
    CharOptions {
        nfc: false,
        ..CharOptions::default()
    }
}

fn tokens(tokenizer: &Tokenizer, text: &str) -> Vec<String> {
    let ids = tokenizer.encode(text).unwrap();
    ids.iter()
        .map(|&id| tokenizer.id_to_token(id).unwrap())
        .collect()
}

#[test]
fn specials_come_first_then_characters_by_frequency() {
    let tokenizer = Tokenizer::build_char(&["abracadabra"], &CharOptions::default()).unwrap();
    assert_eq!(tokenizer.kind(), Kind::Char);
    let vocab: Vec<String> = (0..tokenizer.vocab_size() as u32)
        .map(|id| tokenizer.id_to_token(id).unwrap())
        .collect();
    assert_eq!(vocab, [PAD, UNK, BOS, EOS, "a", "b", "r", "c", "d"]);
    assert_eq!(tokenizer.token_to_id("a"), Some(4));
    let specials = tokenizer.specials();
    assert_eq!(
        (specials.pad, specials.unk, specials.bos, specials.eos),
        (Some(0), Some(1), Some(2), Some(3))
    );
}

#[test]
fn every_whitespace_character_is_a_token() {
    let text = "one two\tthree\n\nfour\r\nfive\u{a0}six\u{3000}seven\u{2028}";
    let tokenizer = Tokenizer::build_char(&[text], &CharOptions::default()).unwrap();
    let expected: Vec<String> = text.chars().map(String::from).collect();
    assert_eq!(tokens(&tokenizer, text), expected);
    assert_eq!(
        tokenizer.decode(&tokenizer.encode(text).unwrap()).unwrap(),
        text
    );
}

#[test]
fn nfc_makes_composed_and_decomposed_accents_one_token() {
    let tokenizer = Tokenizer::build_char(&["café"], &CharOptions::default()).unwrap();
    let composed = tokenizer.encode("caf\u{e9}").unwrap();
    assert_eq!(tokenizer.encode("cafe\u{301}").unwrap(), composed);
    assert_eq!(composed.len(), 4);
    assert!(!composed.contains(&1), "no <unk> in {composed:?}");

    let tokenizer = Tokenizer::build_char(&["cafe\u{301}"], &without_nfc()).unwrap();
    assert_eq!(
        tokens(&tokenizer, "cafe\u{301}"),
        ["c", "a", "f", "e", "\u{301}"]
    );
}

#[test]
fn lowercasing_folds_capitals_into_one_token() {
    let options = CharOptions {
        lowercase: true,
        ..CharOptions::default()
    };
    let tokenizer = Tokenizer::build_char(&["Aa"], &options).unwrap();
    assert_eq!(tokenizer.vocab_size(), 5);
    assert_eq!(
        tokenizer.decode(&tokenizer.encode("AaA").unwrap()).unwrap(),
        "aaa"
    );
}

#[test]
fn min_freq_and_max_size_limit_the_vocabulary() {
    let corpus = "aaaa bbb cc d";
    let min3 = CharOptions {
        min_freq: 3,
        ..CharOptions::default()
    };
    let tokenizer = Tokenizer::build_char(&[corpus], &min3).unwrap();
    assert_eq!(tokens(&tokenizer, "abcd "), ["a", "b", UNK, UNK, " "]);

    let six = CharOptions {
        max_size: Some(6),
        ..CharOptions::default()
    };
    let tokenizer = Tokenizer::build_char(&[corpus], &six).unwrap();
    assert_eq!(tokenizer.vocab_size(), 6);
    assert_eq!(tokens(&tokenizer, "ab c"), ["a", UNK, " ", UNK]);
}

#[test]
fn unknown_characters_become_unk_and_decode_visibly() {
    let tokenizer = Tokenizer::build_char(&["abc"], &CharOptions::default()).unwrap();
    let ids = tokenizer.encode("a🦀c\u{0}").unwrap();
    assert_eq!(ids, [4, 1, 6, 1]);
    assert_eq!(tokenizer.decode(&ids).unwrap(), "a<unk>c<unk>");
}

#[test]
fn decoding_leaves_out_pad_bos_and_eos() {
    let tokenizer = Tokenizer::build_char(&["hi"], &CharOptions::default()).unwrap();
    let mut ids = vec![2];
    ids.extend(tokenizer.encode("hi").unwrap());
    ids.extend([3, 0, 0]);
    assert_eq!(tokenizer.decode(&ids).unwrap(), "hi");
}

/// A random string drawn from every corner of Unicode: ASCII, whitespace of all kinds, accents and
/// combining marks, other scripts, emoji beyond the BMP, controls, and any scalar value at all.
fn random_text(rng: &mut StdRng) -> String {
    const PICKS: &[&str] = &[
        "abcXYZ019",
        " \t\n\r\u{b}\u{c}\u{85}\u{a0}\u{2028}\u{2029}\u{3000}",
        ",.;:!?'\"`()-—",
        "éüñçÅØ",
        "\u{301}\u{308}\u{327}",
        "ΣσςЖж中文日本語한국어",
        "🦀🌊👩‍👩‍👧🏳️‍🌈",
        "\u{0}\u{1}\u{7f}\u{feff}\u{fffd}",
    ];
    let len = rng.random_range(0..40);
    (0..len)
        .map(|_| {
            if rng.random_bool(0.2) {
                // Any scalar value; `char` excludes the surrogates.
                loop {
                    if let Some(c) = char::from_u32(rng.random_range(0..=0x10FFFF)) {
                        return c;
                    }
                }
            }
            let pick: Vec<char> = PICKS[rng.random_range(0..PICKS.len())].chars().collect();
            pick[rng.random_range(0..pick.len())]
        })
        .collect()
}

/// Property: without NFC, a char tokenizer built on a text decodes its encoding to exactly that text;
/// with NFC, to the text in NFC.
#[test]
fn char_round_trip_is_exact_for_arbitrary_unicode() {
    let mut rng = StdRng::seed_from_u64(29);
    for case in 0..300 {
        let text = random_text(&mut rng);
        let corpus = format!("{text} seed");
        let tokenizer = Tokenizer::build_char(&[&corpus], &without_nfc()).unwrap();
        let ids = tokenizer.encode(&text).unwrap();
        assert_eq!(ids.len(), text.chars().count(), "case {case}: {text:?}");
        assert!(!ids.contains(&1), "case {case}: <unk> in {text:?}");
        assert_eq!(tokenizer.decode(&ids).unwrap(), text, "case {case}");

        let tokenizer = Tokenizer::build_char(&[&corpus], &CharOptions::default()).unwrap();
        let decoded = tokenizer.decode(&tokenizer.encode(&text).unwrap()).unwrap();
        assert_eq!(decoded, nfc(&text), "case {case}: {text:?}");
    }
}

/// Property: text outside the vocabulary never fails; each unknown character becomes one `<unk>`.
#[test]
fn char_encoding_of_unseen_text_maps_each_unknown_character_to_unk() {
    let mut rng = StdRng::seed_from_u64(80);
    let corpus: String = (0..50).map(|_| random_text(&mut rng)).collect();
    let tokenizer = Tokenizer::build_char(&[&corpus], &without_nfc()).unwrap();
    for case in 0..300 {
        let text = random_text(&mut rng);
        let expected: String = text
            .chars()
            .map(|c| {
                if corpus.contains(c) {
                    c.to_string()
                } else {
                    UNK.to_string()
                }
            })
            .collect();
        let decoded = tokenizer.decode(&tokenizer.encode(&text).unwrap()).unwrap();
        assert_eq!(decoded, expected, "case {case}: {text:?}");
    }
}

/// NFC as the `tokenizers` normalizer computes it.
fn nfc(text: &str) -> String {
    use tokenizers::normalizers::NFC;
    use tokenizers::{NormalizedString, Normalizer};
    let mut normalized = NormalizedString::from(text);
    NFC.normalize(&mut normalized).unwrap();
    normalized.get().to_string()
}
