//! The LSTM (`nn.LSTM`, no projection): gate order i, f, g, o; `c' = f·c + i·g`, `h' = o·tanh(c')`.

use candle_core::{bail, Result, Tensor, D};

use super::classic::Gates;
use crate::fused::lanes::{chunks, load, store, W};
use crate::fused::math::{sigmoid, tanh};

/// The LSTM's gate math (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Lstm;

impl Gates for Lstm {
    const GATES: usize = 4;
    const CELL_STATE: bool = true;
    const AUX: bool = true;
    const SEPARATE_DPH: bool = false;

    fn composite(
        xp: &Tensor,
        hp: &Tensor,
        _h: &Tensor,
        c: Option<&Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let Some(c) = c else {
            bail!("an LSTM step needs a cell state");
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

    /// Keeps the gates i, f, g, o in `acts`, the old `c` in `cprev` and tanh(c') in `aux`.
    #[inline(always)]
    fn forward_row(
        px: &[f32],
        ph: &[f32],
        h: &mut [f32],
        c: &mut [f32],
        acts: &mut [f32],
        cprev: &mut [f32],
        aux: &mut [f32],
    ) {
        let n = h.len();
        chunks!(n, |j, w| {
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
        })
    }

    #[inline(always)]
    fn backward_row(
        dh: &[f32],
        dc: &mut [f32],
        acts: &[f32],
        _hprev: &[f32],
        cprev: &[f32],
        aux: &[f32],
        dpx: &mut [f32],
        _dph: &mut [f32],
        dh_direct: &mut [f32],
    ) {
        let n = dh.len();
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
}
