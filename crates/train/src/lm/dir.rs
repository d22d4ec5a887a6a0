//! A language model's directory: loading it, and measuring its loss on a text.

use std::path::Path;

use candle_core::{Device, Tensor};
use seqlab_cells::State;
use seqlab_data::StreamBatches;
use seqlab_models::{LanguageModel, Mode};
use seqlab_tokenize::Tokenizer;

use super::LmPipeline;
use crate::error::Result;
use crate::model_dir::{read_model_dir, ModelDir};
use crate::pipeline::{load, Loaded};

/// A language model's `config.json`.
pub type LmDirConfig = ModelDir<LmPipeline>;

/// A language model loaded from its directory.
#[derive(Debug)]
pub struct LoadedLm {
    /// Its `config.json`.
    pub config: LmDirConfig,
    /// Its `tokenizer.json`.
    pub tokenizer: Tokenizer,
    /// The weights of `model.safetensors`.
    pub model: LanguageModel,
}

/// The loss of a model on a text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy per token, in nats.
    pub loss: f64,
    /// Tokens predicted.
    pub tokens: usize,
}

impl Evaluation {
    /// `exp(loss)`.
    pub fn perplexity(&self) -> f64 {
        self.loss.exp()
    }

    /// The loss in bits per token.
    pub fn bits_per_token(&self) -> f64 {
        self.loss / std::f64::consts::LN_2
    }
}

/// Mean cross-entropy of `logits` (batch, seq, vocab) against `targets` (batch, seq) u32, with the fused op
/// of the cells crate.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let (batch, seq_len, vocab) = logits.dims3()?;
    seqlab_cells::cross_entropy(
        &logits.reshape((batch * seq_len, vocab))?,
        &targets.flatten_all()?,
        None,
    )
}

/// The loss of `model` on the token stream `ids`, laid out as for training ([`StreamBatches`] with no
/// offset, `batch` rows of `seq_len` steps, the state carried from batch to batch, every row starting from
/// the zero state and `start`), averaged over every predicted token. This is what `seqlab lm eval` reports.
pub fn evaluate(
    model: &LanguageModel,
    ids: &[u32],
    start: Option<u32>,
    batch: usize,
    seq_len: usize,
) -> Result<Evaluation> {
    let batches = StreamBatches::new(ids, start, batch, seq_len, 0, "evaluation text")?;
    let device = Device::Cpu;
    let mut state: Option<State> = None;
    let mut sum = 0.0f64;
    for b in batches.iter() {
        let (xs, ys) = b.tensors(&device)?;
        let (logits, next) = model.forward(&xs, state.as_ref(), Mode::Eval)?;
        state = Some(next.detach());
        let loss = cross_entropy(&logits, &ys)?.to_scalar::<f32>()? as f64;
        sum += loss * b.tokens() as f64;
    }
    Ok(Evaluation {
        loss: sum / batches.tokens() as f64,
        tokens: batches.tokens(),
    })
}

/// Reads and checks `dir/config.json`: format `seqlab/1`, task `lm`.
pub fn read_config(dir: &Path) -> Result<LmDirConfig> {
    read_model_dir(dir)
}

/// Loads a language model's directory: `config.json`, `tokenizer.json` and `model.safetensors` (the best
/// checkpoint), checking that they agree. Errors name the file and, for weights, the tensor.
pub fn load_lm(dir: &Path, device: &Device) -> Result<LoadedLm> {
    let Loaded {
        config,
        artifacts,
        model,
    } = load::<LmPipeline>(dir, device)?;
    Ok(LoadedLm {
        config,
        tokenizer: artifacts,
        model,
    })
}

impl LoadedLm {
    /// The loss on `text` with `rows` rows (default: [`eval_rows`] of the text and the training batch) of
    /// `seq_len` steps (default: the training sequence length); see [`evaluate`].
    pub fn evaluate_text(
        &self,
        text: &str,
        rows: Option<usize>,
        seq_len: Option<usize>,
    ) -> Result<Evaluation> {
        let ids = self.tokenizer.encode(text)?;
        let rows = rows.unwrap_or_else(|| eval_rows(ids.len(), self.config.train.batch));
        let seq_len = seq_len.unwrap_or(self.config.train.seq_len);
        evaluate(&self.model, &ids, self.tokenizer.bos_id(), rows, seq_len)
    }
}

/// Tokens per row below which evaluation uses fewer rows than the training batch.
pub const EVAL_ROW_TOKENS: usize = 2000;

/// The rows an evaluation lays a text of `tokens` tokens out in: one per [`EVAL_ROW_TOKENS`] tokens, at least
/// 1 and at most `max_rows` (the training batch).
///
/// Each row starts from the zero state and `<bos>`, so its first few tokens are predicted with little
/// context; long rows keep that cost negligible (a few hundredths of a nat), where 64 rows of a short
/// validation text would inflate its loss. Few rows are still fast: each is a long sequence.
pub fn eval_rows(tokens: usize, max_rows: usize) -> usize {
    (tokens / EVAL_ROW_TOKENS).clamp(1, max_rows.max(1))
}
