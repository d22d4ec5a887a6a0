//! The Elman RNN (`nn.RNN`): `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`, or relu instead of tanh.

use candle_core::{Result, Tensor};

use super::classic::Gates;
use crate::fused::lanes::{chunks, load, store, W};
use crate::fused::math::tanh;

/// The RNN with tanh (`nonlinearity='tanh'`, PyTorch's default).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RnnTanh;

/// The RNN with relu (`nonlinearity='relu'`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RnnRelu;

/// The RNN's activation: tanh or relu, forward and backward (through its output).
trait Activation: Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    fn composite(x: &Tensor) -> Result<Tensor>;
    fn apply(x: f32) -> f32;
    /// The gradient of the input from that of the output, `d`, and the output `a`.
    fn grad(d: f32, a: f32) -> f32;
}

impl Activation for RnnTanh {
    fn composite(x: &Tensor) -> Result<Tensor> {
        x.tanh()
    }
    #[inline(always)]
    fn apply(x: f32) -> f32 {
        tanh(x)
    }
    #[inline(always)]
    fn grad(d: f32, a: f32) -> f32 {
        d * (1.0 - a * a)
    }
}

impl Activation for RnnRelu {
    fn composite(x: &Tensor) -> Result<Tensor> {
        x.relu()
    }
    #[inline(always)]
    fn apply(x: f32) -> f32 {
        x.max(0.0)
    }
    #[inline(always)]
    fn grad(d: f32, a: f32) -> f32 {
        if a > 0.0 {
            d
        } else {
            0.0
        }
    }
}

impl<A: Activation> Gates for A {
    const GATES: usize = 1;
    const CELL_STATE: bool = false;
    const AUX: bool = false;
    const SEPARATE_DPH: bool = false;

    fn composite(
        xp: &Tensor,
        hp: &Tensor,
        _h: &Tensor,
        _c: Option<&Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        Ok((A::composite(&(xp + hp)?)?, None))
    }

    /// Keeps the output in `acts`.
    #[inline(always)]
    fn forward_row(
        px: &[f32],
        ph: &[f32],
        h: &mut [f32],
        _c: &mut [f32],
        acts: &mut [f32],
        _cprev: &mut [f32],
        _aux: &mut [f32],
    ) {
        chunks!(h.len(), |j, w| {
            let (x, p) = (load(px, j, w), load(ph, j, w));
            let mut out = [0.0; W];
            for k in 0..W {
                out[k] = A::apply(x[k] + p[k]);
            }
            store(h, j, w, &out);
            store(acts, j, w, &out);
        })
    }

    #[inline(always)]
    fn backward_row(
        dh: &[f32],
        _dc: &mut [f32],
        acts: &[f32],
        _hprev: &[f32],
        _cprev: &[f32],
        _aux: &[f32],
        dpx: &mut [f32],
        _dph: &mut [f32],
        dh_direct: &mut [f32],
    ) {
        chunks!(dh.len(), |j, w| {
            let (d, a) = (load(dh, j, w), load(acts, j, w));
            let mut out = [0.0; W];
            for k in 0..W {
                out[k] = A::grad(d[k], a[k]);
            }
            store(dpx, j, w, &out);
        });
        dh_direct.fill(0.0);
    }
}
