//! Per-row forward and backward of each cell on raw slices: the element-wise part of the fused kernels.
//!
//! The rows are processed in chunks of [`W`] lanes copied into local arrays: with a fixed trip count and no
//! aliasing to prove, LLVM turns each chunk's arithmetic into whole-vector instructions (a plain loop over a
//! dozen slices stayed scalar: 33% of a small LSTM's training step in profiles).

use super::math::{sigmoid, tanh};
use crate::CellKind;

/// Lanes per chunk: one AVX-512 register of f32.
const W: usize = 16;

type Lane = [f32; W];

/// Element `j..j + w` of `src` into a zero-padded chunk.
#[inline(always)]
fn load(src: &[f32], j: usize, w: usize) -> Lane {
    let mut a = [0.0; W];
    if w == W {
        a.copy_from_slice(&src[j..j + W]);
    } else {
        a[..w].copy_from_slice(&src[j..j + w]);
    }
    a
}

/// The first `w` lanes of `a` into `dst[j..j + w]`.
#[inline(always)]
fn store(dst: &mut [f32], j: usize, w: usize, a: &Lane) {
    if w == W {
        dst[j..j + W].copy_from_slice(a);
    } else {
        dst[j..j + w].copy_from_slice(&a[..w]);
    }
}

/// Runs `$body` for each chunk `$j..$j + $w` of `0..$n`. A macro rather than a function taking a closure:
/// closures are not inlined into the `#[target_feature]` callers, and then run without their vector width.
macro_rules! chunks {
    ($n:expr, |$j:ident, $w:ident| $body:block) => {{
        let n = $n;
        let mut $j = 0;
        while $j < n {
            let $w = (n - $j).min(W);
            $body
            $j += $w;
        }
    }};
}

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
        CellKind::Rnn | CellKind::RnnRelu => chunks!(n, |j, w| {
            let (x, p) = (load(px, j, w), load(ph, j, w));
            let mut out = [0.0; W];
            if cell == CellKind::Rnn {
                for k in 0..W {
                    out[k] = tanh(x[k] + p[k]);
                }
            } else {
                for k in 0..W {
                    out[k] = (x[k] + p[k]).max(0.0);
                }
            }
            store(h, j, w, &out);
            store(acts, j, w, &out);
        }),
        CellKind::Lstm => chunks!(n, |j, w| {
            let (xi, hi) = (load(px, j, w), load(ph, j, w));
            let (xf, hf) = (load(px, n + j, w), load(ph, n + j, w));
            let (xg, hg) = (load(px, 2 * n + j, w), load(ph, 2 * n + j, w));
            let (xo, ho) = (load(px, 3 * n + j, w), load(ph, 3 * n + j, w));
            let c_old = load(c, j, w);
            let (mut i, mut f, mut g, mut o) = ([0.0; W], [0.0; W], [0.0; W], [0.0; W]);
            let (mut c_new, mut t, mut h_new) = ([0.0; W], [0.0; W], [0.0; W]);
            for k in 0..W {
                i[k] = sigmoid(xi[k] + hi[k]);
                f[k] = sigmoid(xf[k] + hf[k]);
                g[k] = tanh(xg[k] + hg[k]);
                o[k] = sigmoid(xo[k] + ho[k]);
                c_new[k] = f[k] * c_old[k] + i[k] * g[k];
                t[k] = tanh(c_new[k]);
                h_new[k] = o[k] * t[k];
            }
            store(acts, j, w, &i);
            store(acts, n + j, w, &f);
            store(acts, 2 * n + j, w, &g);
            store(acts, 3 * n + j, w, &o);
            store(cprev, j, w, &c_old);
            store(aux, j, w, &t);
            store(c, j, w, &c_new);
            store(h, j, w, &h_new);
        }),
        CellKind::Gru => chunks!(n, |j, w| {
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
        }),
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
            chunks!(n, |j, w| {
                let (d, a) = (load(dh, j, w), load(acts, j, w));
                let mut out = [0.0; W];
                if cell == CellKind::Rnn {
                    for k in 0..W {
                        out[k] = d[k] * (1.0 - a[k] * a[k]);
                    }
                } else {
                    for k in 0..W {
                        out[k] = if a[k] > 0.0 { d[k] } else { 0.0 };
                    }
                }
                store(dpx, j, w, &out);
            });
            dh_direct.fill(0.0);
        }
        CellKind::Lstm => {
            chunks!(n, |j, w| {
                let (i, f) = (load(acts, j, w), load(acts, n + j, w));
                let (g, o) = (load(acts, 2 * n + j, w), load(acts, 3 * n + j, w));
                let (t, cp) = (load(aux, j, w), load(cprev, j, w));
                let (d, dcn) = (load(dh, j, w), load(dc, j, w));
                let (mut di, mut df, mut dg, mut dout, mut dco) =
                    ([0.0; W], [0.0; W], [0.0; W], [0.0; W], [0.0; W]);
                for k in 0..W {
                    let dct = dcn[k] + d[k] * o[k] * (1.0 - t[k] * t[k]);
                    di[k] = dct * g[k] * i[k] * (1.0 - i[k]);
                    df[k] = dct * cp[k] * f[k] * (1.0 - f[k]);
                    dg[k] = dct * i[k] * (1.0 - g[k] * g[k]);
                    dout[k] = d[k] * t[k] * o[k] * (1.0 - o[k]);
                    dco[k] = dct * f[k];
                }
                store(dpx, j, w, &di);
                store(dpx, n + j, w, &df);
                store(dpx, 2 * n + j, w, &dg);
                store(dpx, 3 * n + j, w, &dout);
                store(dc, j, w, &dco);
            });
            dh_direct.fill(0.0);
        }
        CellKind::Gru => chunks!(n, |j, w| {
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
        }),
    }
}
