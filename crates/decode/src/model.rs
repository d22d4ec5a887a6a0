//! The one thing decoding asks of a model.

use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// A model that can be decoded one token at a time: a language model, a translator's decoder, a
/// captioner's decoder. Decoding knows nothing else about it.
///
/// Rows of a batch are independent sequences. The caller brings the model to the state before the first
/// decoded position (by running it over a prompt, encoding a source sentence or an image) and hands that
/// state to [`crate::generate()`] or [`crate::beam_search`].
pub trait StepModel {
    /// Everything the model carries from one step to the next (hidden states, encoder outputs, ...), with
    /// the batch as one of its dimensions.
    type State: Clone;

    /// One step: feeds `tokens` (shape `(batch,)`, u32) to the model in `state` and returns the logits of
    /// the next token (shape `(batch, vocab)`, any float dtype) and the state after the step.
    fn step(
        &self,
        tokens: &Tensor,
        state: &Self::State,
    ) -> candle_core::Result<(Tensor, Self::State)>;

    /// Keeps the batch rows `indices` (shape `(n,)`, u32) of every tensor of `state`, in that order; rows may
    /// repeat. Beam search uses it to reorder and duplicate hypotheses, generation to drop finished rows.
    fn select(&self, state: &Self::State, indices: &Tensor) -> candle_core::Result<Self::State>;
}

/// Checks that `tokens` is a non-empty `(batch,)` u32 tensor and returns the batch size. `expected` names
/// the shape in the error.
pub(crate) fn check_first_tokens(tokens: &Tensor, expected: &'static str) -> Result<usize> {
    let bad = || Error::InvalidFirstTokens {
        expected,
        dims: tokens.dims().to_vec(),
        dtype: tokens.dtype(),
    };
    match tokens.dims() {
        &[batch] if batch > 0 && tokens.dtype() == DType::U32 => Ok(batch),
        _ => Err(bad()),
    }
}

/// Copies the logits a step returned for `batch` rows to the CPU as one flat f32 vector (row after row) and
/// returns it with the vocabulary size.
pub(crate) fn logits_rows(logits: &Tensor, batch: usize) -> Result<(Vec<f32>, usize)> {
    let vocab = match logits.dims() {
        &[rows, vocab] if rows == batch => vocab,
        dims => {
            return Err(Error::LogitsShape {
                batch,
                dims: dims.to_vec(),
            })
        }
    };
    let flat = if logits.dtype() == DType::F32 {
        logits.flatten_all()?
    } else {
        logits.to_dtype(DType::F32)?.flatten_all()?
    };
    Ok((flat.to_vec1::<f32>()?, vocab))
}
