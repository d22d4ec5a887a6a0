//! The [`Cell`] trait: one layer of a recurrent stack in one direction.
//!
//! A cell owns its parameters (named as its reference implementation names them), declares its state — the
//! output `h` and any number of memory tensors beside it — and runs one step as a graph of candle ops. That
//! is all a cell must do: the whole sequence then runs as a loop of steps (the composite path) on any device,
//! and every model and command accepts it. A cell may add a faster whole-sequence composite, a fused CPU
//! kernel with a hand-written backward ([`Cell::forward_fused`]) and a fused inference step
//! ([`Cell::step_fused`]); the stack ([`crate::Recurrent`]) uses them when they apply and falls back to the
//! composite path when they do not.

use std::sync::Arc;

use candle_core::{bail, Result, Tensor};

/// The state of one cell for a batch: its output `h` and its memory.
#[derive(Debug, Clone)]
pub struct CellState {
    /// The output of the last step, (batch, hidden): for the classic cells also the state the recurrence
    /// reads back.
    pub h: Tensor,
    /// The other tensors the recurrence carries, in the order of [`Cell::memory`], each (batch, width):
    /// an LSTM's cell tensor `c`; none for an RNN or a GRU.
    pub memory: Vec<Tensor>,
}

/// One memory tensor a cell carries beside `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySlot {
    /// Its name in checkpoints and parameter names (`c` for an LSTM, as PyTorch's `c_n`).
    pub name: &'static str,
    /// What it is, for messages ("cell tensor").
    pub what: &'static str,
    /// Its width per batch row.
    pub width: usize,
    /// Whether a model may set it from features through a learned map, as a translator's bridge sets an
    /// LSTM's `c` from the encoder's: true for values of any sign and scale (an LSTM's `c`), false for
    /// normalisers and stabilisers, which then start at zero.
    pub learned_init: bool,
}

/// What a stack asks of the registry to build one cell: the sizes, and where the cell sits (its parameter
/// names depend on it, as `weight_ih_l1_reverse` does in PyTorch).
#[derive(Debug, Clone, PartialEq)]
pub struct CellSpec {
    /// Width of each input step.
    pub input_size: usize,
    /// Width of `h`.
    pub hidden_size: usize,
    /// Whether the cell has bias vectors (PyTorch's `bias=True`).
    pub bias: bool,
    /// The layer of the stack, from 0.
    pub layer: usize,
    /// The stack's layers (an xLSTM block's initialisation depends on its place among them).
    pub layers: usize,
    /// Whether this is the backward direction of a bidirectional layer.
    pub reverse: bool,
    /// The stack's block arrangement and cell options.
    pub options: crate::CellOptions,
    /// Built inside a block, whose module names it: a cell that names its parameters under a per-layer
    /// module (minGRU's `{layer}.`) leaves that level out.
    pub nested: bool,
}

impl CellSpec {
    /// `_reverse` for the backward direction, else empty: PyTorch's suffix of parameter names.
    pub fn suffix(&self) -> &'static str {
        if self.reverse {
            "_reverse"
        } else {
            ""
        }
    }
}

/// What the first layer of a stack reads.
#[derive(Debug, Clone, Copy)]
pub enum LayerInput<'a> {
    /// Dense steps (batch, seq, input).
    Dense(&'a Tensor),
    /// Token ids (batch, seq) u32 standing for one-hot rows of width `input_size`.
    OneHot(&'a Tensor),
    /// Token ids (batch, seq) u32 looked up in an embedding `table` (vocab, input_size).
    Embedded {
        /// The ids.
        ids: &'a Tensor,
        /// The embedding.
        table: &'a Tensor,
    },
}

impl LayerInput<'_> {
    /// The dense steps this input stands for: the tensor itself, the one-hot rows of the ids (of width
    /// `width`), or the looked-up embeddings.
    pub fn dense(&self, width: usize) -> Result<Tensor> {
        match *self {
            LayerInput::Dense(xs) => Ok(xs.clone()),
            LayerInput::OneHot(ids) => {
                let (batch, seq_len) = ids.dims2()?;
                let flat: Vec<u32> = ids.flatten_all()?.to_vec1()?;
                if let Some(&bad) = flat.iter().find(|&&id| id as usize >= width) {
                    bail!("token id {bad} is outside the one-hot input size {width}");
                }
                crate::recurrent::one_hot(&flat, batch, seq_len, width, ids.device())
            }
            LayerInput::Embedded { ids, table } => {
                let (batch, seq_len) = ids.dims2()?;
                table
                    .index_select(&ids.flatten_all()?, 0)?
                    .reshape((batch, seq_len, table.dim(1)?))
            }
        }
    }
}

/// One layer of a recurrent stack in one direction: its parameters, its state and its step.
///
/// Implement [`Cell::hidden_size`], [`Cell::input_size`] and [`Cell::step`] (and [`Cell::memory`] when
/// the cell carries more than `h`); the rest has defaults that are correct for every cell. Register the
/// cell in [`crate::CellKind`] to make it buildable from a `config.json` and the command line.
pub trait Cell: std::fmt::Debug + Send + Sync {
    /// Width of each input step.
    fn input_size(&self) -> usize;

    /// Width of `h`, the output of each step.
    fn hidden_size(&self) -> usize;

    /// The memory tensors beside `h`, in order. None by default.
    fn memory(&self) -> Vec<MemorySlot> {
        Vec::new()
    }

    /// One step as a graph of candle ops (with autograd): `x` (batch, input) and the state before it →
    /// the state after it, whose `h` is the step's output.
    fn step(&self, x: &Tensor, state: &CellState) -> Result<CellState>;

    /// The whole sequence as a graph of candle ops: `xs` (batch, seq, input) from `init`, backwards in time
    /// when `reverse`. `masks[t]` (batch, 1) is 1 where step t of a row is valid (the row's length is past
    /// t), else 0: such steps output zeros and keep the state. Returns the outputs (batch, seq, hidden) and
    /// the final state.
    ///
    /// The default runs [`Cell::step`] once per time step; a cell may override it with a faster graph
    /// that computes the same thing (the classic cells project every step's input in one product).
    fn forward_composite(
        &self,
        xs: &Tensor,
        masks: Option<&[Tensor]>,
        init: &CellState,
        reverse: bool,
    ) -> Result<(Tensor, CellState)> {
        step_loop(self, xs, masks, init, reverse)
    }

    /// The whole sequence on a fused kernel with its own backward pass, when the cell has one for this input
    /// and these tensors (f32 on the CPU): the same result as [`Cell::forward_composite`] on
    /// `input.dense()`. `lengths` are the rows' valid lengths. `None` (the default): the stack runs the
    /// composite path.
    fn forward_fused(
        &self,
        input: &LayerInput<'_>,
        lengths: Option<&Arc<[usize]>>,
        init: &CellState,
        reverse: bool,
    ) -> Option<Result<(Tensor, CellState)>> {
        let _ = (input, lengths, init, reverse);
        None
    }

    /// One step without autograd on raw buffers, for decoding, when the cell has one and nothing asks for
    /// gradients: the same result as [`Cell::step`]. `None` (the default): the composite step runs.
    fn step_fused(&self, x: &Tensor, state: &CellState) -> Option<Result<CellState>> {
        let _ = (x, state);
        None
    }

    /// A copy of the cell whose hidden-to-hidden weights are `f(weight)` (the other parameters shared), for
    /// DropConnect on the recurrent weights (AWD-LSTM's weight drop); `None` (the default) when the cell
    /// has no such weights.
    fn map_recurrent_weights(
        &self,
        f: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<Option<Arc<dyn Cell>>> {
        let _ = f;
        Ok(None)
    }
}

/// The state after a masked step: `next` where the mask `m` (batch, 1) is 1, `old` where it is 0.
pub(crate) fn keep_where_invalid(
    old: &CellState,
    next: CellState,
    m: &Tensor,
) -> Result<CellState> {
    let mix =
        |old: &Tensor, new: Tensor| -> Result<Tensor> { old + (new - old)?.broadcast_mul(m)? };
    Ok(CellState {
        h: mix(&old.h, next.h)?,
        memory: old
            .memory
            .iter()
            .zip(next.memory)
            .map(|(o, n)| mix(o, n))
            .collect::<Result<_>>()?,
    })
}

/// [`Cell::forward_composite`]'s default: [`Cell::step`] once per time step, rows stopping at their masks.
/// A cell that overrides `forward_composite` calls it where its own path does not apply.
pub(crate) fn step_loop<C: Cell + ?Sized>(
    cell: &C,
    xs: &Tensor,
    masks: Option<&[Tensor]>,
    init: &CellState,
    reverse: bool,
) -> Result<(Tensor, CellState)> {
    let seq_len = xs.dim(1)?;
    let mut state = init.clone();
    let mut outs = Vec::with_capacity(seq_len);
    for step in 0..seq_len {
        let t = if reverse { seq_len - 1 - step } else { step };
        let x = xs.narrow(1, t, 1)?.squeeze(1)?;
        let next = cell.step(&x, &state)?;
        match masks {
            Some(masks) => {
                let m = &masks[t];
                outs.push(next.h.broadcast_mul(m)?);
                state = keep_where_invalid(&state, next, m)?;
            }
            None => {
                outs.push(next.h.clone());
                state = next;
            }
        }
    }
    if reverse {
        outs.reverse();
    }
    Ok((Tensor::stack(&outs, 1)?, state))
}
