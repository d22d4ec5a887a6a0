//! The translation pipeline: train an encoder-decoder with attention on `source<TAB>target` pairs
//! ([`train_translator`]), load its model directory ([`load_translator`]), translate with greedy decoding or
//! beam search ([`LoadedTranslator::translate`]), measure corpus BLEU of free-running decodes
//! ([`LoadedTranslator::evaluate`]), and draw the attention as a heat map ([`attention_svg`]).
//!
//! A translator's directory holds `config.json` (task `translate`), `tokenizer.source.json`,
//! `tokenizer.target.json`, `model.safetensors`, `trainer/`, `metrics.csv` and `loss.svg`.

mod data;
mod dir;
mod plot;
mod train;

pub use data::{encode_pairs, EncodedPairs};
pub use dir::{
    load_translator, read_config, Decoding, LoadedTranslator, TranslateDirConfig, TranslateEval,
    Translation,
};
pub use plot::attention_svg;
pub use train::{train_translator, TranslateTrainConfig, TranslateTrainReport};

/// The task of a translator's directory.
pub const TASK: &str = "translate";
/// The source side's tokenizer file in a model directory.
pub const SOURCE_TOKENIZER: &str = "tokenizer.source.json";
/// The target side's tokenizer file in a model directory.
pub const TARGET_TOKENIZER: &str = "tokenizer.target.json";
