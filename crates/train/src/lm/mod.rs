//! The language-model pipeline: train on a corpus ([`train_lm`]), load a model directory ([`load_lm`]),
//! measure a loss ([`evaluate`]), generate text ([`LoadedLm::generate`]).

mod dir;
mod generate;
mod train;

pub use dir::{
    cross_entropy, eval_rows, evaluate, load_lm, read_config, Evaluation, LmDirConfig, LoadedLm,
    EVAL_ROW_TOKENS,
};
pub use generate::{Decoding, Generated};
pub use train::{train_lm, unigram_loss, LmTrainConfig, LmTrainReport};

/// The format every `config.json` of a model directory states.
pub const FORMAT: &str = "seqlab/1";
/// The task of a language model's directory.
pub const TASK: &str = "lm";
