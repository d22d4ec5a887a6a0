//! The recurrent state carried between calls.

use candle_core::{Result, Tensor};

/// The state of a [`crate::Recurrent`] stack, laid out as PyTorch lays out `h_n` (and `c_n`).
///
/// Rows are layer-major: row `layer * directions + direction`, direction 0 forward, 1 backward.
#[derive(Debug, Clone)]
pub struct State {
    /// Hidden state, shape (layers * directions, batch, hidden).
    pub h: Tensor,
    /// Cell state of an LSTM, shape (layers * directions, batch, hidden); `None` for RNN and GRU.
    pub c: Option<Tensor>,
}

impl State {
    /// A state detached from the autograd graph: what truncated backpropagation through time carries from
    /// one batch to the next.
    pub fn detach(&self) -> State {
        State {
            h: self.h.detach(),
            c: self.c.as_ref().map(Tensor::detach),
        }
    }

    /// Keeps the batch rows `indices` (u32, shape (n,)) of every state tensor, in that order: how beam
    /// search reorders its hypotheses.
    pub fn select_rows(&self, indices: &Tensor) -> Result<State> {
        // index_select wants contiguous tensors; a state straight from `forward` can be a view.
        Ok(State {
            h: self.h.contiguous()?.index_select(indices, 1)?,
            c: match &self.c {
                Some(c) => Some(c.contiguous()?.index_select(indices, 1)?),
                None => None,
            },
        })
    }

    /// Batch size of the state.
    pub fn batch(&self) -> Result<usize> {
        self.h.dim(1)
    }
}
