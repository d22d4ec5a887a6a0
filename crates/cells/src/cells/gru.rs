//! The GRU (`nn.GRU`): gate order r, z, n, the reset gate applied *after* the hidden product as PyTorch and
//! cuDNN do (not the original paper's variant): `n = tanh(W_in x + b_in + r·(W_hn h + b_hn))`,
//! `h' = (1 − z)·n + z·h`.

use candle_core::{Result, Tensor, D};

use super::classic::Gates;
use crate::fused::lanes::{chunks, load, store, W};
use crate::fused::math::{sigmoid, tanh};

/// The GRU's gate math (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gru;

impl Gates for Gru {
    const GATES: usize = 3;
    const CELL_STATE: bool = false;
    const AUX: bool = true;
    const SEPARATE_DPH: bool = true;

    fn composite(
        xp: &Tensor,
        hp: &Tensor,
        h: &Tensor,
        _c: Option<&Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let x = xp.chunk(3, D::Minus1)?;
        let hh = hp.chunk(3, D::Minus1)?;
        let r = candle_nn::ops::sigmoid(&(&x[0] + &hh[0])?)?;
        let z = candle_nn::ops::sigmoid(&(&x[1] + &hh[1])?)?;
        let n = (&x[2] + (r * &hh[2])?)?.tanh()?;
        // h' = (1 - z) * n + z * h = n + z * (h - n)
        let h = (&n + (z * (h - &n)?)?)?;
        Ok((h, None))
    }

    /// Keeps r, z and the candidate in `acts` and the hidden part of the candidate, W_hn·h + b_hn, in `aux`.
    #[inline(always)]
    fn forward_row(
        px: &[f32],
        ph: &[f32],
        h: &mut [f32],
        _c: &mut [f32],
        acts: &mut [f32],
        _cprev: &mut [f32],
        aux: &mut [f32],
    ) {
        let n = h.len();
        chunks!(n, |j, w| {
            let (xr, hr) = (load(px, j, w), load(ph, j, w));
            let (xz, hz) = (load(px, n + j, w), load(ph, n + j, w));
            let (xn, hn) = (load(px, 2 * n + j, w), load(ph, 2 * n + j, w));
            let h_old = load(h, j, w);
            let (mut r, mut z, mut cand, mut h_new) = ([0.0; W], [0.0; W], [0.0; W], [0.0; W]);
            for k in 0..W {
                r[k] = sigmoid(xr[k] + hr[k]);
                z[k] = sigmoid(xz[k] + hz[k]);
                cand[k] = tanh(xn[k] + r[k] * hn[k]);
                h_new[k] = cand[k] + z[k] * (h_old[k] - cand[k]);
            }
            store(acts, j, w, &r);
            store(acts, n + j, w, &z);
            store(acts, 2 * n + j, w, &cand);
            store(aux, j, w, &hn);
            store(h, j, w, &h_new);
        })
    }

    #[inline(always)]
    fn backward_row(
        dh: &[f32],
        _dc: &mut [f32],
        acts: &[f32],
        hprev: &[f32],
        _cprev: &[f32],
        aux: &[f32],
        dpx: &mut [f32],
        dph: &mut [f32],
        dh_direct: &mut [f32],
    ) {
        let n = dh.len();
        chunks!(n, |j, w| {
            let (r, z, cand) = (
                load(acts, j, w),
                load(acts, n + j, w),
                load(acts, 2 * n + j, w),
            );
            let (hn, hp, d) = (load(aux, j, w), load(hprev, j, w), load(dh, j, w));
            let (mut dr, mut dz, mut dcand, mut dhn, mut direct) =
                ([0.0; W], [0.0; W], [0.0; W], [0.0; W], [0.0; W]);
            for k in 0..W {
                dcand[k] = d[k] * (1.0 - z[k]) * (1.0 - cand[k] * cand[k]);
                dr[k] = dcand[k] * hn[k] * r[k] * (1.0 - r[k]);
                dz[k] = d[k] * (hp[k] - cand[k]) * z[k] * (1.0 - z[k]);
                dhn[k] = dcand[k] * r[k];
                direct[k] = d[k] * z[k];
            }
            store(dpx, j, w, &dr);
            store(dpx, n + j, w, &dz);
            store(dpx, 2 * n + j, w, &dcand);
            store(dph, j, w, &dr);
            store(dph, n + j, w, &dz);
            store(dph, 2 * n + j, w, &dhn);
            store(dh_direct, j, w, &direct);
        })
    }
}
