//! Building a vocabulary: the shared half of the char and word tokenizers.
//!
//! Both are a `WordLevel` model (one id per token string) behind a normalizer and a `Split`
//! pre-tokenizer; they differ only in those two components. The vocabulary is counted by the
//! `tokenizers` crate's own `WordLevelTrainer`, so the tokens counted are exactly the tokens that
//! encoding produces, in Rust and in Python alike.

use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::wordlevel::{WordLevel, WordLevelTrainer};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::{Lowercase, NormalizerWrapper, Sequence, NFC};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::AddedToken;

use crate::error::{Error, Result};
use crate::specials::{SPECIAL_TOKENS, UNK};

/// The components that make a char or a word tokenizer what it is.
pub(crate) struct Pipeline {
    pub(crate) normalizer: Option<NormalizerWrapper>,
    pub(crate) pre_tokenizer: PreTokenizerWrapper,
    pub(crate) decoder: Option<DecoderWrapper>,
}

/// The normalizer for the options: NFC first (so that lowercasing sees composed characters), then
/// lowercasing; none when neither is asked for.
pub(crate) fn normalizer(nfc: bool, lowercase: bool) -> Option<NormalizerWrapper> {
    let mut steps: Vec<NormalizerWrapper> = Vec::new();
    if nfc {
        steps.push(NFC.into());
    }
    if lowercase {
        steps.push(Lowercase.into());
    }
    match steps.len() {
        0 => None,
        1 => steps.pop(),
        _ => Some(Sequence::new(steps).into()),
    }
}

/// Counts the tokens of `texts` through `pipeline` and keeps, after the four specials, those that occur
/// at least `min_freq` times, most frequent first (ties in code-point order of the token), until the
/// vocabulary holds `max_size` entries, specials included.
pub(crate) fn train(
    texts: &[&str],
    pipeline: Pipeline,
    min_freq: usize,
    max_size: Option<usize>,
) -> Result<tokenizers::Tokenizer> {
    if texts.iter().all(|text| text.trim().is_empty()) {
        return Err(Error::EmptyCorpus);
    }
    if let Some(max_size) = max_size {
        if max_size <= SPECIAL_TOKENS.len() {
            return Err(Error::MaxSizeTooSmall { max_size });
        }
    }
    let min_freq = min_freq.max(1);
    let model = WordLevel::builder()
        .unk_token(UNK.to_string())
        .build()
        .map_err(Error::tokenizers)?;
    let mut tokenizer = tokenizers::Tokenizer::new(model);
    tokenizer
        .with_normalizer(pipeline.normalizer)
        .map_err(Error::tokenizers)?;
    tokenizer.with_pre_tokenizer(Some(pipeline.pre_tokenizer));
    tokenizer.with_decoder(pipeline.decoder);

    let trainer = WordLevelTrainer::builder()
        .min_frequency(min_freq as u64)
        .vocab_size(max_size.unwrap_or(usize::MAX))
        .show_progress(false)
        .special_tokens(
            SPECIAL_TOKENS
                .iter()
                .map(|token| AddedToken::from(*token, true))
                .collect(),
        )
        .build()
        .map_err(Error::tokenizers)?;
    // Lines are independent units for both kinds (no token spans a newline, and NFC never composes
    // across one), so feeding them one by one lets the trainer count in parallel.
    let lines = texts.iter().flat_map(|text| text.split_inclusive('\n'));
    tokenizer
        .train(&mut TrainerWrapper::from(trainer), lines)
        .map_err(Error::tokenizers)?;
    if tokenizer.get_vocab_size(true) <= SPECIAL_TOKENS.len() {
        return Err(Error::NoTokens { min_freq });
    }
    Ok(tokenizer)
}
