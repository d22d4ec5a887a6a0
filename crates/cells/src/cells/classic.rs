//! The classic cells as PyTorch has them (`nn.RNN`, `nn.LSTM`, `nn.GRU`): one family, because they share
//! their parameters (`weight_ih`, `weight_hh`, `bias_ih`, `bias_hh` of G stacked gate blocks), their
//! composite step (the gates from `W_ih x + b_ih` and `W_hh h + b_hh`) and their fused kernel (the input
//! projection of every step as one product, one `h·W_hhᵀ` per step, the element-wise gate math per row).
//!
//! What differs between them — how many gate blocks, whether a cell tensor `c` rides beside `h`, the gate
//! math forward and backward — each cell states in its own [`Gates`] implementation ([`super::rnn`],
//! [`super::lstm`], [`super::gru`]); [`Classic`] turns any of them into a [`Cell`].

use std::marker::PhantomData;
use std::sync::Arc;

use candle_core::{DType, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::cell::{Cell, CellSpec, CellState, LayerInput, MemorySlot};

/// Parameters of one layer in one direction, shaped and named as PyTorch's.
#[derive(Debug, Clone)]
pub struct DirectionWeights {
    /// `weight_ih_l{k}`: (gates * hidden, input).
    pub w_ih: Tensor,
    /// `weight_hh_l{k}`: (gates * hidden, hidden).
    pub w_hh: Tensor,
    /// `bias_ih_l{k}`: (gates * hidden,), when the stack has biases.
    pub b_ih: Option<Tensor>,
    /// `bias_hh_l{k}`: (gates * hidden,), when the stack has biases.
    pub b_hh: Option<Tensor>,
}

impl DirectionWeights {
    /// Loads (or initialises with U(-1/sqrt(hidden), 1/sqrt(hidden)), as PyTorch does) the parameters
    /// `weight_ih_l{layer}{suffix}` etc. of a cell of `gates` gate blocks from `vb`.
    pub fn new(gates: usize, spec: &CellSpec, vb: &VarBuilder) -> Result<Self> {
        let (layer, suffix, hidden) = (spec.layer, spec.suffix(), spec.hidden_size);
        let rows = gates * hidden;
        let k = 1.0 / (hidden as f64).sqrt();
        let init = Init::Uniform { lo: -k, up: k };
        let w_ih = vb.get_with_hints(
            (rows, spec.input_size),
            &format!("weight_ih_l{layer}{suffix}"),
            init,
        )?;
        let w_hh =
            vb.get_with_hints((rows, hidden), &format!("weight_hh_l{layer}{suffix}"), init)?;
        let (b_ih, b_hh) = if spec.bias {
            (
                Some(vb.get_with_hints(rows, &format!("bias_ih_l{layer}{suffix}"), init)?),
                Some(vb.get_with_hints(rows, &format!("bias_hh_l{layer}{suffix}"), init)?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            w_ih,
            w_hh,
            b_ih,
            b_hh,
        })
    }

    /// `xs·W_ihᵀ + b_ih` for every step at once. xs: (batch, seq, input) → (batch, seq, gates * hidden).
    /// Uses the fused [`crate::linear`] op on f32 CPU tensors.
    pub fn project_inputs(&self, xs: &Tensor) -> Result<Tensor> {
        crate::linear(xs, &self.w_ih, self.b_ih.as_ref())
    }

    /// [`DirectionWeights::project_inputs`] as plain candle ops: the composite reference path's projection.
    fn project_inputs_composite(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch, seq_len, input) = xs.dims3()?;
        let xs = xs.reshape((batch * seq_len, input))?;
        let mut xp = xs.matmul(&self.w_ih.t()?)?;
        if let Some(b) = &self.b_ih {
            xp = xp.broadcast_add(b)?;
        }
        xp.reshape((batch, seq_len, ()))
    }

    /// `h·W_hhᵀ + b_hh`. h: (batch, hidden) → (batch, gates * hidden). `w_hh_t` is `W_hhᵀ`, made once by
    /// the caller.
    fn project_hidden(&self, h: &Tensor, w_hh_t: &Tensor) -> Result<Tensor> {
        let hp = h.matmul(w_hh_t)?;
        match &self.b_hh {
            Some(b) => hp.broadcast_add(b),
            None => Ok(hp),
        }
    }
}

/// What one classic cell is: its gate blocks and its gate math, forward and backward, as graphs of candle
/// ops (the composite path) and on raw rows (the fused kernels, [`crate::fused`]).
pub(crate) trait Gates: Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    /// Gate blocks stacked in the weights: 1 (RNN), 4 (LSTM), 3 (GRU).
    const GATES: usize;
    /// Whether a cell tensor `c` rides beside `h` (the LSTM's): the cell's one memory slot.
    const CELL_STATE: bool;
    /// Whether the kernels keep one auxiliary row per step for the backward pass (`aux`).
    const AUX: bool;
    /// Whether the gradient of the projected hidden state differs from that of the projected input (the
    /// GRU's candidate block, which the reset gate scales), so the kernels keep it apart.
    const SEPARATE_DPH: bool;

    /// The step's gate math from the projected input `xp` (`b_ih` included) and the projected hidden state
    /// `hp` (`b_hh` included), both (batch, gates * hidden), the old `h` and, for an LSTM, `c`: the new `h`
    /// and `c`.
    fn composite(
        xp: &Tensor,
        hp: &Tensor,
        h: &Tensor,
        c: Option<&Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)>;

    /// Forward of one row at one step on raw slices. `px` (gates·hidden) is the projected input with `b_ih`,
    /// `ph` the projected hidden state with `b_hh`. Updates `h` (and `c`) in place and records what the
    /// backward pass needs: `acts` (gates·hidden) the gate activations, and in `cprev` and `aux` what the
    /// cell keeps (empty slices where it keeps nothing).
    #[allow(clippy::too_many_arguments)]
    fn forward_row(
        px: &[f32],
        ph: &[f32],
        h: &mut [f32],
        c: &mut [f32],
        acts: &mut [f32],
        cprev: &mut [f32],
        aux: &mut [f32],
    );

    /// Backward of one row at one step. `dh` is the gradient reaching the new `h` (from the output and from
    /// the next step), `dc` the gradient reaching the new `c`, replaced in place by the gradient of the old
    /// `c`. Writes `dpx` (gates·hidden), the gradient of the projected input, `dph` that of the projected
    /// hidden state (only with [`Gates::SEPARATE_DPH`]), and `dh_direct`, the part of the old `h`'s gradient
    /// that does not go through W_hh.
    #[allow(clippy::too_many_arguments)]
    fn backward_row(
        dh: &[f32],
        dc: &mut [f32],
        acts: &[f32],
        hprev: &[f32],
        cprev: &[f32],
        aux: &[f32],
        dpx: &mut [f32],
        dph: &mut [f32],
        dh_direct: &mut [f32],
    );
}

/// A classic cell of gate math `G` as a [`Cell`]: PyTorch's parameters, composite path and fused kernels.
#[derive(Debug, Clone)]
pub(crate) struct Classic<G: Gates> {
    pub(crate) weights: DirectionWeights,
    hidden: usize,
    gates: PhantomData<G>,
}

impl<G: Gates> Classic<G> {
    /// The cell of `spec` with its parameters from `vb` (see [`DirectionWeights::new`]).
    pub(crate) fn build(spec: &CellSpec, vb: &VarBuilder) -> Result<Arc<dyn Cell>> {
        Ok(Arc::new(Classic::<G> {
            weights: DirectionWeights::new(G::GATES, spec, vb)?,
            hidden: spec.hidden_size,
            gates: PhantomData,
        }))
    }

    /// One step from the projected input (`b_ih` included) with `W_hhᵀ` given.
    fn step_projected(&self, xp: &Tensor, state: &CellState, w_hh_t: &Tensor) -> Result<CellState> {
        let hp = self.weights.project_hidden(&state.h, w_hh_t)?;
        let (h, c) = G::composite(xp, &hp, &state.h, state.memory.first())?;
        Ok(CellState {
            h,
            memory: c.into_iter().collect(),
        })
    }

    /// Whether every parameter is an f32 CPU tensor (the fused kernels' operands).
    fn on_cpu_f32(&self) -> bool {
        let w = &self.weights;
        let ok = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
        ok(&w.w_ih)
            && ok(&w.w_hh)
            && w.b_ih.as_ref().is_none_or(ok)
            && w.b_hh.as_ref().is_none_or(ok)
    }
}

impl<G: Gates> Cell for Classic<G> {
    fn input_size(&self) -> usize {
        self.weights.w_ih.dims().get(1).copied().unwrap_or(0)
    }

    fn hidden_size(&self) -> usize {
        self.hidden
    }

    fn memory(&self) -> Vec<MemorySlot> {
        if G::CELL_STATE {
            vec![MemorySlot {
                name: "c",
                what: "cell tensor",
                width: self.hidden,
                learned_init: true,
            }]
        } else {
            Vec::new()
        }
    }

    fn step(&self, x: &Tensor, state: &CellState) -> Result<CellState> {
        let xp = self.weights.project_inputs(&x.unsqueeze(1)?)?.squeeze(1)?;
        self.step_projected(&xp, state, &self.weights.w_hh.t()?)
    }

    fn forward_composite(
        &self,
        xs: &Tensor,
        masks: Option<&[Tensor]>,
        init: &CellState,
        reverse: bool,
    ) -> Result<(Tensor, CellState)> {
        let (_, seq_len, _) = xs.dims3()?;
        let xp = self.weights.project_inputs_composite(xs)?;
        let w_hh_t = self.weights.w_hh.t()?.contiguous()?;
        let mut state = init.clone();
        let mut outs = Vec::with_capacity(seq_len);
        for step in 0..seq_len {
            let t = if reverse { seq_len - 1 - step } else { step };
            let xp_t = xp.narrow(1, t, 1)?.squeeze(1)?;
            let next = self.step_projected(&xp_t, &state, &w_hh_t)?;
            match masks {
                Some(masks) => {
                    // Rows past their length keep their state and output zeros.
                    let m = &masks[t];
                    outs.push(next.h.broadcast_mul(m)?);
                    state = crate::cell::keep_where_invalid(&state, next, m)?;
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

    fn forward_fused(
        &self,
        input: &LayerInput<'_>,
        lengths: Option<&Arc<[usize]>>,
        init: &CellState,
        reverse: bool,
    ) -> Option<Result<(Tensor, CellState)>> {
        if !self.on_cpu_f32() {
            return None;
        }
        Some(crate::fused::forward::<G>(
            &self.weights,
            input,
            lengths.cloned(),
            init,
            reverse,
        ))
    }

    fn step_fused(&self, x: &Tensor, state: &CellState) -> Option<Result<CellState>> {
        crate::fused::step::applies(x, state, &self.weights)
            .then(|| crate::fused::step::step::<G>(&self.weights, self.hidden, x, state))
    }

    fn map_recurrent_weights(
        &self,
        f: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<Option<Arc<dyn Cell>>> {
        let w = &self.weights;
        let w_hh = f(&w.w_hh)?;
        if w_hh.dims() != w.w_hh.dims() {
            candle_core::bail!(
                "a mapped weight_hh must keep its shape {:?}, got {:?}",
                w.w_hh.dims(),
                w_hh.dims()
            );
        }
        Ok(Some(Arc::new(Classic::<G> {
            weights: DirectionWeights { w_hh, ..w.clone() },
            ..self.clone()
        })))
    }
}
