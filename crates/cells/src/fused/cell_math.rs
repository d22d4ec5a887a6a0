//! Per-row forward and backward of each cell on raw slices: the element-wise part of the fused kernels.
//!
//! Every function takes slices of the same length `hidden` (gate blocks split beforehand) and asserts it once
//! at the top, so that the loops run without bounds checks and vectorise.

use super::math::{sigmoid, tanh};
use crate::CellKind;

/// Forward of one row at one step. `px` (gates·hidden) is the projected input with `b_ih`, `ph` the projected
/// hidden state with `b_hh`. Updates `h` (and `c`) in place and records what the backward pass needs:
/// `acts` (gates·hidden) the gate activations, `cprev` the old `c` and `aux` tanh(c') for an LSTM, `aux` the
/// hidden part of the candidate, W_hn·h + b_hn, for a GRU.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_row(
    cell: CellKind,
    px: &[f32],
    ph: &[f32],
    h: &mut [f32],
    c: &mut [f32],
    acts: &mut [f32],
    cprev: &mut [f32],
    aux: &mut [f32],
) {
    let n = h.len();
    match cell {
        CellKind::Rnn | CellKind::RnnRelu => {
            assert!(px.len() == n && ph.len() == n && acts.len() == n);
            if cell == CellKind::Rnn {
                for j in 0..n {
                    h[j] = tanh(px[j] + ph[j]);
                }
            } else {
                for j in 0..n {
                    h[j] = (px[j] + ph[j]).max(0.0);
                }
            }
            acts.copy_from_slice(h);
        }
        CellKind::Lstm => {
            let (xi, xf, xg, xo) = split4(px, n);
            let (hi, hf, hg, ho) = split4(ph, n);
            let (ai, rest) = acts.split_at_mut(n);
            let (af, rest) = rest.split_at_mut(n);
            let (ag, ao) = rest.split_at_mut(n);
            assert!(c.len() == n && cprev.len() == n && aux.len() == n && ao.len() == n);
            for j in 0..n {
                let i = sigmoid(xi[j] + hi[j]);
                let f = sigmoid(xf[j] + hf[j]);
                let g = tanh(xg[j] + hg[j]);
                let o = sigmoid(xo[j] + ho[j]);
                let c_old = c[j];
                let c_new = f * c_old + i * g;
                let t = tanh(c_new);
                ai[j] = i;
                af[j] = f;
                ag[j] = g;
                ao[j] = o;
                cprev[j] = c_old;
                aux[j] = t;
                c[j] = c_new;
                h[j] = o * t;
            }
        }
        CellKind::Gru => {
            let (xr, xz, xn) = split3(px, n);
            let (hr, hz, hn) = split3(ph, n);
            let (ar, rest) = acts.split_at_mut(n);
            let (az, an) = rest.split_at_mut(n);
            assert!(an.len() == n && aux.len() == n);
            for j in 0..n {
                let r = sigmoid(xr[j] + hr[j]);
                let z = sigmoid(xz[j] + hz[j]);
                let cand = tanh(xn[j] + r * hn[j]);
                ar[j] = r;
                az[j] = z;
                an[j] = cand;
                aux[j] = hn[j];
                h[j] = cand + z * (h[j] - cand);
            }
        }
    }
}

/// Backward of one row at one step. `dh` is the gradient reaching the new `h` (from the output and from the
/// next step), `dc` the gradient reaching the new `c`, replaced in place by the gradient of the old `c`.
/// Writes `dpx` (gates·hidden), the gradient of the projected input, `dph` that of the projected hidden state
/// (the same as `dpx` but for a GRU's candidate block, so it is only written for a GRU), and `dh_direct`, the
/// part of the old `h`'s gradient that does not go through W_hh (GRU only; zero otherwise).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_row(
    cell: CellKind,
    dh: &[f32],
    dc: &mut [f32],
    acts: &[f32],
    hprev: &[f32],
    cprev: &[f32],
    aux: &[f32],
    dpx: &mut [f32],
    dph: &mut [f32],
    dh_direct: &mut [f32],
) {
    let n = dh.len();
    match cell {
        CellKind::Rnn | CellKind::RnnRelu => {
            assert!(acts.len() == n && dpx.len() == n && dh_direct.len() == n);
            if cell == CellKind::Rnn {
                for j in 0..n {
                    dpx[j] = dh[j] * (1.0 - acts[j] * acts[j]);
                }
            } else {
                for j in 0..n {
                    dpx[j] = if acts[j] > 0.0 { dh[j] } else { 0.0 };
                }
            }
            dh_direct.fill(0.0);
        }
        CellKind::Lstm => {
            let (ai, af, ag, ao) = split4(acts, n);
            let (di, rest) = dpx.split_at_mut(n);
            let (df, rest) = rest.split_at_mut(n);
            let (dg, dout) = rest.split_at_mut(n);
            assert!(dc.len() == n && cprev.len() == n && aux.len() == n && dout.len() == n);
            for j in 0..n {
                let (i, f, g, o, t) = (ai[j], af[j], ag[j], ao[j], aux[j]);
                let dct = dc[j] + dh[j] * o * (1.0 - t * t);
                di[j] = dct * g * i * (1.0 - i);
                df[j] = dct * cprev[j] * f * (1.0 - f);
                dg[j] = dct * i * (1.0 - g * g);
                dout[j] = dh[j] * t * o * (1.0 - o);
                dc[j] = dct * f;
            }
            dh_direct.fill(0.0);
        }
        CellKind::Gru => {
            let (ar, az, an) = split3(acts, n);
            let (dxr, rest) = dpx.split_at_mut(n);
            let (dxz, dxn) = rest.split_at_mut(n);
            let (dhr, rest) = dph.split_at_mut(n);
            let (dhz, dhn) = rest.split_at_mut(n);
            assert!(hprev.len() == n && aux.len() == n && dxn.len() == n && dhn.len() == n);
            assert!(dh_direct.len() == n);
            for j in 0..n {
                let (r, z, cand) = (ar[j], az[j], an[j]);
                let dcand = dh[j] * (1.0 - z) * (1.0 - cand * cand);
                let dr = dcand * aux[j] * r * (1.0 - r);
                let dz = dh[j] * (hprev[j] - cand) * z * (1.0 - z);
                dxr[j] = dr;
                dxz[j] = dz;
                dxn[j] = dcand;
                dhr[j] = dr;
                dhz[j] = dz;
                dhn[j] = dcand * r;
                dh_direct[j] = dh[j] * z;
            }
        }
    }
}

fn split3(v: &[f32], n: usize) -> (&[f32], &[f32], &[f32]) {
    let (a, rest) = v.split_at(n);
    let (b, c) = rest.split_at(n);
    assert_eq!(c.len(), n);
    (a, b, c)
}

fn split4(v: &[f32], n: usize) -> (&[f32], &[f32], &[f32], &[f32]) {
    let (a, rest) = v.split_at(n);
    let (b, rest) = rest.split_at(n);
    let (c, d) = rest.split_at(n);
    assert_eq!(d.len(), n);
    (a, b, c, d)
}
