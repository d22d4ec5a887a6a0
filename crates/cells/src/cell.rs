//! The weights of one layer in one direction and the composite (graph of candle ops) cell update.
//!
//! This is the reference implementation: every operation is an ordinary candle op with autograd, so it runs
//! on any device and its gradients come for free. The fused CPU kernels are tested against it.

use candle_core::{Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use crate::CellKind;

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
    /// `weight_ih_l{layer}{suffix}` etc. from `vb`.
    pub fn new(
        cell: CellKind,
        input: usize,
        hidden: usize,
        bias: bool,
        layer: usize,
        reverse: bool,
        vb: &VarBuilder,
    ) -> Result<Self> {
        let suffix = if reverse { "_reverse" } else { "" };
        let rows = cell.gates() * hidden;
        let k = 1.0 / (hidden as f64).sqrt();
        let init = Init::Uniform { lo: -k, up: k };
        let w_ih =
            vb.get_with_hints((rows, input), &format!("weight_ih_l{layer}{suffix}"), init)?;
        let w_hh =
            vb.get_with_hints((rows, hidden), &format!("weight_hh_l{layer}{suffix}"), init)?;
        let (b_ih, b_hh) = if bias {
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
    pub(crate) fn project_inputs_composite(&self, xs: &Tensor) -> Result<Tensor> {
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

    /// One step of the cell from the projected input `xp` (batch, gates * hidden; `b_ih` included) and the
    /// previous `h` (batch, hidden) and, for an LSTM, `c`. Returns the new `h` and `c`.
    pub fn step(
        &self,
        cell: CellKind,
        xp: &Tensor,
        h: &Tensor,
        c: Option<&Tensor>,
        w_hh_t: &Tensor,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let hp = self.project_hidden(h, w_hh_t)?;
        match cell {
            CellKind::Rnn => Ok(((xp + hp)?.tanh()?, None)),
            CellKind::RnnRelu => Ok(((xp + hp)?.relu()?, None)),
            CellKind::Lstm => {
                let c = match c {
                    Some(c) => c,
                    None => candle_core::bail!("an LSTM step needs a cell state"),
                };
                let gates = (xp + hp)?.chunk(4, D::Minus1)?;
                let i = candle_nn::ops::sigmoid(&gates[0])?;
                let f = candle_nn::ops::sigmoid(&gates[1])?;
                let g = gates[2].tanh()?;
                let o = candle_nn::ops::sigmoid(&gates[3])?;
                let c = ((f * c)? + (i * g)?)?;
                let h = (o * c.tanh()?)?;
                Ok((h, Some(c)))
            }
            CellKind::Gru => {
                let x = xp.chunk(3, D::Minus1)?;
                let hh = hp.chunk(3, D::Minus1)?;
                let r = candle_nn::ops::sigmoid(&(&x[0] + &hh[0])?)?;
                let z = candle_nn::ops::sigmoid(&(&x[1] + &hh[1])?)?;
                let n = (&x[2] + (r * &hh[2])?)?.tanh()?;
                // h' = (1 - z) * n + z * h = n + z * (h - n)
                let h = (&n + (z * (h - &n)?)?)?;
                Ok((h, None))
            }
        }
    }
}
