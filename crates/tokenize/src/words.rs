//! The word-level tokenizer: words, numbers and punctuation marks as tokens, newlines kept.

use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

use crate::error::{Error, Result};
use crate::vocab::{self, Pipeline};

/// One token, tried in this order at each position (Oniguruma syntax, the regex engine of both the
/// Rust and the Python `tokenizers`):
///
/// 1. a newline, so that line and paragraph breaks survive;
/// 2. an abbreviation of single letters with dots: `a.m.`, `e.g.`, `U.S.A.`;
/// 3. a number with inner separators: `2.9`, `1,000`, `8:45`;
/// 4. a word: letters, digits and marks, with inner apostrophes and hyphens (`don't`, `Alice's`,
///    `well-known`, `2nd`);
/// 5. any other single character that is not whitespace: punctuation and symbols, one per token.
///
/// Whitespace other than newlines separates tokens and is dropped. Changing the pattern changes the
/// saved format: a tokenizer.json is recognised as a word tokenizer by this exact pattern.
pub(crate) const WORD_PATTERN: &str = concat!(
    r"\n",
    r"|(?:\p{L}\.){2,}",
    r"|\p{N}+(?:[.,:]\p{N}+)+",
    r"|[\p{L}\p{N}\p{M}]+(?:['’\-][\p{L}\p{N}\p{M}]+)*",
    r"|[^\s\p{Z}\p{L}\p{N}\p{M}]",
);

/// How to build a word-level tokenizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordOptions {
    /// Lowercase the text first: `The` and `the` become one token. Default `false`, so that generated
    /// text keeps its capitals.
    pub lowercase: bool,
    /// Apply Unicode NFC first, so that a word has one spelling however its accents are encoded.
    /// Default `true`.
    pub nfc: bool,
    /// Keep only words that occur at least this often; rarer ones become `<unk>`. Default 1 (every
    /// word of the corpus); 2 drops the many words seen once, which a model cannot learn anyway.
    /// 0 means 1.
    pub min_freq: usize,
    /// The largest vocabulary, the four special tokens included; the most frequent words are kept.
    /// Default `None` (no limit).
    pub max_size: Option<usize>,
}

impl Default for WordOptions {
    fn default() -> Self {
        Self {
            lowercase: false,
            nfc: true,
            min_freq: 1,
            max_size: None,
        }
    }
}

/// Keeps every match of [`WORD_PATTERN`] as a token and drops what lies between (whitespace).
pub(crate) fn pre_tokenizer() -> Result<PreTokenizerWrapper> {
    let split = Split::new(
        SplitPattern::Regex(WORD_PATTERN.into()),
        SplitDelimiterBehavior::Removed,
        true,
    )
    .map_err(Error::tokenizers)?;
    Ok(split.into())
}

pub(crate) fn build(texts: &[&str], options: &WordOptions) -> Result<tokenizers::Tokenizer> {
    let pipeline = Pipeline {
        normalizer: vocab::normalizer(options.nfc, options.lowercase),
        pre_tokenizer: pre_tokenizer()?,
        // No `tokenizers` decoder can put spaces back by context; `Tokenizer::decode` does it
        // (see `detokenize`), and Python's `decode` joins the tokens with spaces.
        decoder: None,
    };
    vocab::train(texts, pipeline, options.min_freq, options.max_size)
}
