//! The recurrent state carried between calls.

use candle_core::{Result, Tensor};

use crate::CellState;

/// The state of a [`crate::Recurrent`] stack, laid out as PyTorch lays out `h_n` (and `c_n`).
///
/// Rows are layer-major: row `layer * directions + direction`, direction 0 forward, 1 backward.
#[derive(Debug, Clone)]
pub struct State {
    /// Hidden state (the output of each layer's last step), shape (layers * directions, batch, hidden).
    pub h: Tensor,
    /// The cells' memory beside `h`, in the order of [`crate::Recurrent::memory`], each (layers *
    /// directions, batch, width): an LSTM's cell state `c`; none for an RNN or a GRU.
    pub memory: Vec<Tensor>,
}

impl State {
    /// A state of `h` and `memory`.
    pub fn new(h: Tensor, memory: Vec<Tensor>) -> State {
        State { h, memory }
    }

    /// A state detached from the autograd graph: what truncated backpropagation through time carries from
    /// one batch to the next.
    pub fn detach(&self) -> State {
        State {
            h: self.h.detach(),
            memory: self.memory.iter().map(Tensor::detach).collect(),
        }
    }

    /// Keeps the batch rows `indices` (u32, shape (n,)) of every state tensor, in that order: how beam
    /// search reorders its hypotheses.
    pub fn select_rows(&self, indices: &Tensor) -> Result<State> {
        // index_select wants contiguous tensors; a state straight from `forward` can be a view.
        let select = |t: &Tensor| t.contiguous()?.index_select(indices, 1);
        Ok(State {
            h: select(&self.h)?,
            memory: self.memory.iter().map(select).collect::<Result<_>>()?,
        })
    }

    /// Batch size of the state.
    pub fn batch(&self) -> Result<usize> {
        self.h.dim(1)
    }

    /// Row `row` (a layer and direction) of every tensor: one cell's state.
    pub fn row(&self, row: usize) -> Result<CellState> {
        Ok(CellState {
            h: self.h.get(row)?,
            memory: self
                .memory
                .iter()
                .map(|m| m.get(row))
                .collect::<Result<_>>()?,
        })
    }

    /// The state whose rows are `rows`, in order.
    pub fn from_rows(rows: &[CellState]) -> Result<State> {
        let hs: Vec<&Tensor> = rows.iter().map(|r| &r.h).collect();
        let slots = rows.first().map_or(0, |r| r.memory.len());
        let memory = (0..slots)
            .map(|k| {
                let ts = rows
                    .iter()
                    .map(|r| {
                        r.memory
                            .get(k)
                            .ok_or_else(|| candle_core::Error::Msg("rows of unequal memory".into()))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Tensor::stack(&ts, 0)
            })
            .collect::<Result<_>>()?;
        Ok(State {
            h: Tensor::stack(&hs, 0)?,
            memory,
        })
    }
}
