//! The character-level tokenizer: one token per Unicode scalar value.

use tokenizers::decoders::fuse::Fuse;
use tokenizers::pre_tokenizers::split::Split;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

use crate::error::{Error, Result};
use crate::vocab::{self, Pipeline};

/// Matches any single character, newlines included (`.` would skip `\n`). Changing it changes the
/// saved format: a tokenizer.json is recognised as a char tokenizer by this exact pattern.
pub(crate) const CHAR_PATTERN: &str = r"[\s\S]";

/// How to build a character-level tokenizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharOptions {
    /// Apply Unicode NFC first, so that `é` is one token whether the text spells it with one code
    /// point or two. Default `true`.
    pub nfc: bool,
    /// Lowercase the text first (a smaller vocabulary, as in the lesson's first models). Default `false`.
    pub lowercase: bool,
    /// Keep only characters that occur at least this often; rarer ones become `<unk>`. Default 1
    /// (every character of the corpus); 0 means 1.
    pub min_freq: usize,
    /// The largest vocabulary, the four special tokens included; the most frequent characters are
    /// kept. Default `None` (no limit).
    pub max_size: Option<usize>,
}

impl Default for CharOptions {
    fn default() -> Self {
        Self {
            nfc: true,
            lowercase: false,
            min_freq: 1,
            max_size: None,
        }
    }
}

/// Splits the text into single characters; every character, whitespace included, is kept.
pub(crate) fn pre_tokenizer() -> Result<PreTokenizerWrapper> {
    let split = Split::new(
        tokenizers::pre_tokenizers::split::SplitPattern::Regex(CHAR_PATTERN.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(Error::tokenizers)?;
    Ok(split.into())
}

pub(crate) fn build(texts: &[&str], options: &CharOptions) -> Result<tokenizers::Tokenizer> {
    let pipeline = Pipeline {
        normalizer: vocab::normalizer(options.nfc, options.lowercase),
        pre_tokenizer: pre_tokenizer()?,
        // Concatenates the characters, so that Python's `decode` gives the text back too.
        decoder: Some(Fuse::new().into()),
    };
    vocab::train(texts, pipeline, options.min_freq, options.max_size)
}
