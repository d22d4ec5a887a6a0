//! IndRNN (Li, Li, Cook, Zhu, Gao, "Independently Recurrent Neural Network", CVPR 2018): each unit recurs
//! on itself only, `h_t = relu(W x_t + b + u ⊙ h_{t−1})`, so the recurrence is element-wise and the only
//! large product is the input projection of every step at once.
//!
//! Parameters as the PyTorch implementations name them: `weight_ih_l{k}` (H, I), `weight_hh_l{k}` (H,) — the
//! recurrent vector u — and `bias_ih_l{k}` (H,), `_reverse` for the backward direction. The paper's
//! constraint on |u| (a relu recurrence explodes when |u| > 1 over long sequences) is
//! [`crate::CellOptions::bound`]: u is clamped to [−bound, bound] in every pass, so its gradient stops at
//! the bound. Initialisation: W and b as PyTorch's `nn.RNN`, u from U(0, 1) (the paper's range for relu).

use std::sync::Arc;

use candle_core::{DType, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::cell::{Cell, CellSpec, CellState, LayerInput};
use crate::fused::lanes::{chunks, load, store, W};
use crate::fused::scan::{scan, Scan};

/// An IndRNN layer in one direction.
#[derive(Debug, Clone)]
pub(crate) struct IndRnn {
    /// `weight_ih` (H, I).
    w: Tensor,
    /// `weight_hh` (H,): u.
    u: Tensor,
    /// `bias_ih` (H,), when the stack has biases.
    b: Option<Tensor>,
    bound: Option<f32>,
}

impl IndRnn {
    pub(crate) fn build(spec: &CellSpec, vb: &VarBuilder) -> Result<Arc<dyn Cell>> {
        let (layer, suffix, hidden) = (spec.layer, spec.suffix(), spec.hidden_size);
        let k = 1.0 / (hidden as f64).sqrt();
        let init = Init::Uniform { lo: -k, up: k };
        let w = vb.get_with_hints(
            (hidden, spec.input_size),
            &format!("weight_ih_l{layer}{suffix}"),
            init,
        )?;
        let u = vb.get_with_hints(
            hidden,
            &format!("weight_hh_l{layer}{suffix}"),
            Init::Uniform { lo: 0.0, up: 1.0 },
        )?;
        let b = if spec.bias {
            Some(vb.get_with_hints(hidden, &format!("bias_ih_l{layer}{suffix}"), init)?)
        } else {
            None
        };
        Ok(Arc::new(IndRnn {
            w,
            u,
            b,
            bound: spec.options.bound,
        }))
    }

    /// u as this pass uses it: clamped to the bound, if any.
    fn u(&self) -> Result<Tensor> {
        match self.bound {
            Some(bound) => self.u.clamp(-bound, bound),
            None => Ok(self.u.clone()),
        }
    }

    /// The scan over `input`: dense steps projected inside the op, or token ids read from a table of every
    /// token's projection (bias included).
    fn run(
        &self,
        input: &LayerInput<'_>,
        lengths: Option<&Arc<[usize]>>,
        h0: &Tensor,
        reverse: bool,
    ) -> Result<(Tensor, Tensor)> {
        let (w, b, u) = (&self.w, self.b.as_ref(), self.u()?);
        let lengths = lengths.cloned();
        let (ids, table) = match *input {
            LayerInput::Dense(xs) => {
                return scan::<IndRnnScan>(xs, w, b, Some(&u), None, h0, lengths, reverse)
            }
            LayerInput::OneHot(ids) => (
                ids,
                match b {
                    Some(b) => w.t()?.broadcast_add(b)?,
                    None => w.t()?,
                },
            ),
            LayerInput::Embedded { ids, table } => (ids, crate::linear(table, w, b)?),
        };
        scan::<IndRnnScan>(ids, w, None, Some(&u), Some(&table), h0, lengths, reverse)
    }
}

impl Cell for IndRnn {
    fn input_size(&self) -> usize {
        self.w.dims().get(1).copied().unwrap_or(0)
    }

    fn hidden_size(&self) -> usize {
        self.u.elem_count()
    }

    fn step(&self, x: &Tensor, state: &CellState) -> Result<CellState> {
        let mut pre = x.matmul(&self.w.t()?)?;
        if let Some(b) = &self.b {
            pre = pre.broadcast_add(b)?;
        }
        let h = (pre + state.h.broadcast_mul(&self.u()?)?)?.relu()?;
        Ok(CellState {
            h,
            memory: Vec::new(),
        })
    }

    fn forward_fused(
        &self,
        input: &LayerInput<'_>,
        lengths: Option<&Arc<[usize]>>,
        init: &CellState,
        reverse: bool,
    ) -> Option<Result<(Tensor, CellState)>> {
        if !(self.w.device().is_cpu() && self.w.dtype() == DType::F32) {
            return None;
        }
        Some((|| {
            let (outputs, h) = self.run(input, lengths, &init.h, reverse)?;
            Ok((
                outputs,
                CellState {
                    h,
                    memory: Vec::new(),
                },
            ))
        })())
    }

    fn step_fused(&self, x: &Tensor, state: &CellState) -> Option<Result<CellState>> {
        if self.w.track_op() || self.u.track_op() {
            return None;
        }
        let xs = match x.unsqueeze(1) {
            Ok(xs) => xs,
            Err(e) => return Some(Err(e)),
        };
        self.forward_fused(&LayerInput::Dense(&xs), None, state, false)
            .map(|r| r.map(|(_, state)| state))
    }

    fn map_recurrent_weights(
        &self,
        f: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<Option<Arc<dyn Cell>>> {
        Ok(Some(Arc::new(IndRnn {
            u: f(&self.u)?,
            ..self.clone()
        })))
    }
}

/// IndRNN's element-wise recurrence.
#[derive(Debug, Clone, Copy, Default)]
struct IndRnnScan;

impl Scan for IndRnnScan {
    const BLOCKS: usize = 1;
    const NAME: &'static str = "seqlab-indrnn-scan";

    #[inline(always)]
    fn forward_row(p: &[f32], u: &[f32], h: &mut [f32]) {
        chunks!(h.len(), |j, w| {
            let (pre, uu, hp) = (load(p, j, w), load(u, j, w), load(h, j, w));
            let mut out = [0.0; W];
            for k in 0..W {
                out[k] = (pre[k] + uu[k] * hp[k]).max(0.0);
            }
            store(h, j, w, &out);
        })
    }

    #[inline(always)]
    fn backward_row(
        _p: &[f32],
        u: &[f32],
        h_prev: &[f32],
        h_new: &[f32],
        dh: &mut [f32],
        dp: &mut [f32],
        du: &mut [f32],
    ) {
        chunks!(dh.len(), |j, w| {
            let (uu, hp, hn, d) = (
                load(u, j, w),
                load(h_prev, j, w),
                load(h_new, j, w),
                load(dh, j, w),
            );
            let mut acc = load(du, j, w);
            let (mut dpre, mut dprev) = ([0.0; W], [0.0; W]);
            for k in 0..W {
                dpre[k] = if hn[k] > 0.0 { d[k] } else { 0.0 };
                acc[k] += dpre[k] * hp[k];
                dprev[k] = dpre[k] * uu[k];
            }
            store(dp, j, w, &dpre);
            store(du, j, w, &acc);
            store(dh, j, w, &dprev);
        })
    }
}
