//! The sLSTM block: the package's `sLSTMBlock` (its `sLSTMLayer` with the vanilla cell, then the gated
//! feed-forward), and the sLSTM recurrence as a fused CPU op with a hand-written backward.
//!
//! The cell, per step, from the gate pre-activations `raw = W x + b + R h` in the order i, f, z, o (R
//! block-diagonal over the heads):
//!
//! ```text
//! log f = log σ(f̃)           m' = max(log f + m, ĩ)   (m' = ĩ where n = 0: a fresh state)
//! i' = exp(ĩ − m')            f' = min(exp(log f + m − m'), 1)
//! c' = f'·c + i'·tanh(z̃)      n' = f'·n + i'            h' = σ(õ)·c'/n'
//! ```
//!
//! `m` rescales `c` and `n` alike, so `h` does not depend on it; the fused backward still follows it
//! through the max as autograd does, so its gradients equal the composite path's for every input,
//! the initial state's `m` included.
//!
//! Parameters, under `{layer}.`: `xlstm_norm.weight`; `xlstm.conv1d.conv.{weight,bias}`;
//! `xlstm.{f,i,z,o}gate.weight` (heads, dh, dh) — the package feeds `fgate` into the input-gate slot and
//! `igate` into the forget-gate slot, and so does seqlab; `xlstm.slstm_cell._recurrent_kernel_`
//! (heads, 4·dh, dh) and `xlstm.slstm_cell._bias_` (4·H, gate-major), the vanilla backend's layouts;
//! `xlstm.group_norm.weight`; `ffn_norm.weight`; `ffn.proj_up.weight` (2·U, H); `ffn.proj_down.weight`.

use std::sync::{Arc, Mutex};

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, D};
use candle_nn::{Init, VarBuilder};

use super::{
    headwise, norm, norm_weight, set_fresh, slot, small_init, up_width, wang_init, BlockKind,
    CausalConv, Core, Plan, KERNEL,
};
use crate::cell::MemorySlot;
use crate::fused::gemm::{matmul, MatRef};
use crate::fused::lanes::{chunks, load, store, W};
use crate::fused::math::{exp, log_sigmoid, sigmoid, tanh};
use crate::fused::{f32_slice, guarded, poisoned, pool};

/// The state slots of an sLSTM block of `width`: its convolution window and the cell's h, c, n, m.
pub(crate) fn slots(width: usize) -> Vec<MemorySlot> {
    vec![
        slot("s_conv", "sLSTM convolution window", (KERNEL - 1) * width),
        slot("s_h", "sLSTM hidden state", width),
        slot("s_c", "sLSTM cell state", width),
        slot("s_n", "sLSTM normaliser", width),
        slot("s_m", "sLSTM stabiliser", width),
    ]
}

/// An sLSTM block (see the module doc).
#[derive(Debug)]
pub(crate) struct SlstmBlock {
    norm: Tensor,
    conv: CausalConv,
    /// The input-slot, forget-slot, z and o projections (heads, dh, dh): the package's fgate, igate, zgate,
    /// ogate.
    gates: [Tensor; 4],
    /// (heads, 4·dh, dh).
    recurrent: Tensor,
    /// (4·H,).
    bias: Tensor,
    group_norm: Tensor,
    ffn_norm: Tensor,
    ffn_up: Tensor,
    ffn_down: Tensor,
    heads: usize,
    width: usize,
}

/// The package's "powerlaw_blockdependent" forget-gate bias of one head of `dh` units, block `index` of
/// `blocks`: from +5 down to −7.
fn forget_bias(dh: usize, index: usize, blocks: usize) -> Vec<f32> {
    let ratio = if blocks > 1 {
        index as f64 / (blocks - 1) as f64
    } else {
        0.0
    };
    (0..dh)
        .map(|j| {
            let x = j as f64 / (dh - 1) as f64;
            (-(-5.0 + 12.0 * x.powf(0.3 + 1.3 * ratio))) as f32
        })
        .collect()
}

impl SlstmBlock {
    pub(crate) fn new(width: usize, plan: &Plan, vb: &VarBuilder) -> Result<Self> {
        let heads = plan.heads;
        if heads == 0 || !width.is_multiple_of(heads) || width / heads < 2 {
            bail!(
                "an sLSTM block of width {width} needs a number of heads that divides it into heads of at \
                 least 2 units, got {heads}"
            );
        }
        let dh = width / heads;
        let layer = vb.pp("xlstm");
        let gate = |name: &str| {
            layer
                .pp(name)
                .get_with_hints((heads, dh, dh), "weight", small_init(width))
        };
        let cell = layer.pp("slstm_cell");
        let recurrent =
            cell.get_with_hints((heads, 4 * dh, dh), "_recurrent_kernel_", Init::Const(0.0))?;
        let mut bias = vec![0.0f32; 4 * width];
        let profile = forget_bias(dh, plan.index, plan.blocks);
        for h in 0..heads {
            bias[width + h * dh..width + (h + 1) * dh].copy_from_slice(&profile);
        }
        let bias = set_fresh(&cell, "_bias_", bias)?;
        let up = up_width(1.3, width);
        Ok(Self {
            norm: norm_weight(vb, "xlstm_norm", width)?,
            conv: CausalConv::new(&layer, width)?,
            gates: [
                gate("fgate")?,
                gate("igate")?,
                gate("zgate")?,
                gate("ogate")?,
            ],
            recurrent,
            bias,
            group_norm: norm_weight(&layer, "group_norm", width)?,
            ffn_norm: norm_weight(vb, "ffn_norm", width)?,
            ffn_up: vb.pp("ffn").pp("proj_up").get_with_hints(
                (2 * up, width),
                "weight",
                small_init(width),
            )?,
            ffn_down: vb.pp("ffn").pp("proj_down").get_with_hints(
                (width, up),
                "weight",
                wang_init(width, plan.blocks),
            )?,
            heads,
            width,
        })
    }

    /// The gate pre-activations of every step, (batch, seq, 4·H) gate-major with the bias, from the
    /// normalised input `n` and its convolution `xc`.
    fn pre_activations(&self, n: &Tensor, xc: &Tensor, fused: bool) -> Result<Tensor> {
        let [gi, gf, gz, go] = &self.gates;
        let pre = Tensor::cat(
            &[
                headwise(xc, gi, fused)?,
                headwise(xc, gf, fused)?,
                headwise(n, gz, fused)?,
                headwise(n, go, fused)?,
            ],
            D::Minus1,
        )?;
        pre.broadcast_add(&self.bias)
    }

    fn ffn(&self, x: &Tensor) -> Result<Tensor> {
        let p = crate::linear(x, &self.ffn_up, None)?;
        let up = self.ffn_up.dim(0)? / 2;
        let gated = (p.narrow(D::Minus1, 0, up)?.gelu_erf()? * p.narrow(D::Minus1, up, up)?)?;
        crate::linear(&gated, &self.ffn_down, None)
    }
}

impl Core for SlstmBlock {
    fn kind(&self) -> BlockKind {
        BlockKind::S
    }

    fn slots(&self) -> Vec<MemorySlot> {
        slots(self.width)
    }

    fn sequence(
        &self,
        xs: &Tensor,
        state: &[Tensor],
        fused: bool,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let [window, h, c, n, m] = state else {
            bail!("an sLSTM block's state has 5 tensors, got {}", state.len());
        };
        let normed = norm(xs, &self.norm, 1, fused)?;
        let (xc, window) = self.conv.forward(&normed, window, fused)?;
        let pre = self.pre_activations(&normed, &xc, fused)?;
        let on_cpu = super::on_cpu(&pre, fused);
        let (hs, [h, c, n, m]) = if on_cpu {
            recurrence_fused(&pre, &self.recurrent, [h, c, n, m], self.heads)?
        } else {
            recurrence(&pre, &self.recurrent, [h, c, n, m], self.heads)?
        };
        let a = (xs + norm(&hs, &self.group_norm, self.heads, fused)?)?;
        let out = (&a + self.ffn(&norm(&a, &self.ffn_norm, 1, fused)?)?)?;
        Ok((out, vec![window, h, c, n, m]))
    }

    fn step(&self, x: &Tensor, state: &[Tensor]) -> Result<(Tensor, Vec<Tensor>)> {
        let (out, state) = self.sequence(&x.unsqueeze(1)?, state, false)?;
        Ok((out.squeeze(1)?, state))
    }
}

/// R·h per head: `h` (batch, H), `recurrent` (heads, 4·dh, dh) → (batch, 4·H) gate-major.
fn recurrent_product(h: &Tensor, recurrent: &Tensor, heads: usize) -> Result<Tensor> {
    let (batch, width) = h.dims2()?;
    let dh = width / heads;
    h.reshape((batch, heads, dh))?
        .transpose(0, 1)?
        .contiguous()?
        .matmul(&recurrent.transpose(1, 2)?)? // (heads, batch, 4·dh)
        .reshape((heads, batch, 4, dh))?
        .permute((1, 2, 0, 3))?
        .reshape((batch, 4 * width))
}

/// One step of the cell as candle ops: `raw` (batch, 4·H) the input's pre-activations.
fn cell_step(
    raw: &Tensor,
    recurrent: &Tensor,
    state: [&Tensor; 4],
    heads: usize,
) -> Result<[Tensor; 4]> {
    let [h, c, n, m] = state;
    let raw = (raw + recurrent_product(h, recurrent, heads)?)?;
    let g = raw.chunk(4, D::Minus1)?;
    let (it, ft, zt, ot) = (&g[0], &g[1], &g[2], &g[3]);
    let log_f = super::log_sigmoid(ft)?;
    let fresh = n.eq(0.0)?;
    let m_new = fresh.where_cond(it, &it.maximum(&(&log_f + m)?)?)?;
    let i = (it - &m_new)?.exp()?.minimum(1.0)?;
    let f = ((log_f + m)? - &m_new)?.exp()?.minimum(1.0)?;
    let c_new = ((&f * c)? + (&i * zt.tanh()?)?)?;
    let n_new = ((f * n)? + i)?;
    let h_new = (candle_nn::ops::sigmoid(ot)? * (&c_new / &n_new)?)?;
    Ok([h_new, c_new, n_new, m_new])
}

/// The recurrence over `pre` (batch, seq, 4·H) as candle ops, one step at a time: the outputs
/// (batch, seq, H) and the final h, c, n, m.
fn recurrence(
    pre: &Tensor,
    recurrent: &Tensor,
    state: [&Tensor; 4],
    heads: usize,
) -> Result<(Tensor, [Tensor; 4])> {
    let seq = pre.dim(1)?;
    let mut s = state.map(Tensor::clone);
    let mut outs = Vec::with_capacity(seq);
    for t in 0..seq {
        let raw = pre.narrow(1, t, 1)?.squeeze(1)?;
        s = cell_step(&raw, recurrent, [&s[0], &s[1], &s[2], &s[3]], heads)?;
        outs.push(s[0].clone());
    }
    Ok((Tensor::stack(&outs, 1)?, s))
}

/// The recurrence on the fused op.
fn recurrence_fused(
    pre: &Tensor,
    recurrent: &Tensor,
    state: [&Tensor; 4],
    heads: usize,
) -> Result<(Tensor, [Tensor; 4])> {
    let (_, seq, _) = pre.dims3()?;
    let init = Tensor::stack(&state, 0)?;
    let op = SlstmOp {
        heads,
        saved: Mutex::new(None),
    };
    let res =
        pre.contiguous()?
            .apply_op3_arc(&recurrent.contiguous()?, &init, Arc::new(Box::new(op)))?;
    let last = |k: usize| -> Result<Tensor> { res.narrow(1, seq + k, 1)?.squeeze(1) };
    Ok((
        res.narrow(1, 0, seq)?,
        [last(0)?, last(1)?, last(2)?, last(3)?],
    ))
}

/// The sLSTM recurrence of one block as a candle custom op: (pre (batch, seq, 4·H) with the bias,
/// recurrent (heads, 4·dh, dh), init (4, batch, H)) → (batch, seq + 4, H): every step's h, then the final
/// h, c, n, m.
struct SlstmOp {
    heads: usize,
    saved: Mutex<Option<Saved>>,
}

/// Per step, kept for the backward pass: i', f', tanh z̃, σ(õ), σ(−f̃) and 1 where m' came from the forget
/// path, else 0 (acts, (batch, seq, 6·H)); c, n ((batch, seq, 2·H)).
struct Saved {
    acts: Vec<f32>,
    cn: Vec<f32>,
}

impl Drop for Saved {
    fn drop(&mut self) {
        pool::give(std::mem::take(&mut self.acts));
        pool::give(std::mem::take(&mut self.cn));
    }
}

/// The sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Dims {
    seq: usize,
    hidden: usize,
    heads: usize,
}

impl Dims {
    fn dh(&self) -> usize {
        self.hidden / self.heads
    }
}

/// `ry` (rows, heads·4·dh), head-major, = each row's h (row stride `rs` in `h`) times Rᵀ per head.
fn heads_product(ry: &mut [f32], h: &[f32], rs: usize, rows: usize, r: &[f32], d: Dims) {
    let (dh, g) = (d.dh(), 4 * d.dh());
    for head in 0..d.heads {
        matmul(
            &mut ry[head * g..],
            d.heads * g,
            MatRef::rows(&h[head * dh..], rows, dh, rs),
            MatRef::rows(&r[head * g * dh..(head + 1) * g * dh], g, dh, dh).t(),
            false,
            1,
        );
    }
}

/// The forward pass of `rows` batch rows: `pre` (rows, seq, 4H), `init` the rows' h, c, n, m (each
/// (rows, H)), `res` (rows, seq + 4, H), `acts` (rows, seq, 6H), `cn` (rows, seq, 2H).
#[allow(clippy::too_many_arguments)]
fn forward_rows(
    d: Dims,
    pre: &[f32],
    r: &[f32],
    init: [&[f32]; 4],
    res: &mut [f32],
    acts: &mut [f32],
    cn: &mut [f32],
) {
    let (seq, hid, heads, dh) = (d.seq, d.hidden, d.heads, d.dh());
    let rows = init[0].len() / hid;
    let ld = (seq + 4) * hid;
    let mut ry = vec![0.0f32; rows * 4 * hid];
    let mut raw = vec![0.0f32; 4 * hid];
    let mut state: Vec<[Vec<f32>; 3]> = (0..rows)
        .map(|b| {
            let row = |s: &[f32]| s[b * hid..(b + 1) * hid].to_vec();
            [row(init[1]), row(init[2]), row(init[3])]
        })
        .collect();
    for t in 0..seq {
        if t == 0 {
            heads_product(&mut ry, init[0], hid, rows, r, d);
        } else {
            heads_product(&mut ry, &res[(t - 1) * hid..], ld, rows, r, d);
        }
        for (b, [c, n, m]) in state.iter_mut().enumerate() {
            let p = &pre[(b * seq + t) * 4 * hid..(b * seq + t + 1) * 4 * hid];
            let ryb = &ry[b * 4 * hid..(b + 1) * 4 * hid];
            for g in 0..4 {
                for head in 0..heads {
                    let (dst, src) = (g * hid + head * dh, head * 4 * dh + g * dh);
                    for j in 0..dh {
                        raw[dst + j] = p[dst + j] + ryb[src + j];
                    }
                }
            }
            let a = &mut acts[(b * seq + t) * 6 * hid..(b * seq + t + 1) * 6 * hid];
            let (cs, ns) =
                cn[(b * seq + t) * 2 * hid..(b * seq + t + 1) * 2 * hid].split_at_mut(hid);
            let out = &mut res[b * ld + t * hid..b * ld + (t + 1) * hid];
            step_row(&raw, c, n, m, a, out);
            cs.copy_from_slice(c);
            ns.copy_from_slice(n);
        }
    }
    for (b, [c, n, m]) in state.iter().enumerate() {
        let base = b * ld + seq * hid;
        let last = res[base - hid..base].to_vec();
        res[base..base + hid].copy_from_slice(&last);
        res[base + hid..base + 2 * hid].copy_from_slice(c);
        res[base + 2 * hid..base + 3 * hid].copy_from_slice(n);
        res[base + 3 * hid..base + 4 * hid].copy_from_slice(m);
    }
}

/// One row's element-wise step: `raw` (4H) → c, n, m updated in place, h into `out`, the activations into
/// `a` (6H).
#[inline(always)]
fn step_row(
    raw: &[f32],
    c: &mut [f32],
    n: &mut [f32],
    m: &mut [f32],
    a: &mut [f32],
    out: &mut [f32],
) {
    let hid = c.len();
    chunks!(hid, |j, w| {
        let (it, ft, zt, ot) = (
            load(raw, j, w),
            load(raw, hid + j, w),
            load(raw, 2 * hid + j, w),
            load(raw, 3 * hid + j, w),
        );
        let (cp, np, mp) = (load(c, j, w), load(n, j, w), load(m, j, w));
        let (mut ip, mut fp, mut z, mut o, mut sf, mut path) =
            ([0.0; W], [0.0; W], [0.0; W], [0.0; W], [0.0; W], [0.0; W]);
        let (mut cn, mut nn, mut mn, mut h) = ([0.0; W], [0.0; W], [0.0; W], [0.0; W]);
        for k in 0..W {
            let s = sigmoid(ft[k]);
            let log_f = log_sigmoid(ft[k]);
            let forget = log_f + mp[k];
            let from_forget = np[k] != 0.0 && forget > it[k];
            mn[k] = if from_forget { forget } else { it[k] };
            path[k] = if from_forget { 1.0 } else { 0.0 };
            ip[k] = exp(it[k] - mn[k]).min(1.0);
            fp[k] = exp(log_f + mp[k] - mn[k]).min(1.0);
            z[k] = tanh(zt[k]);
            o[k] = sigmoid(ot[k]);
            sf[k] = 1.0 - s;
            cn[k] = fp[k] * cp[k] + ip[k] * z[k];
            nn[k] = fp[k] * np[k] + ip[k];
            h[k] = o[k] * cn[k] / nn[k];
        }
        store(c, j, w, &cn);
        store(n, j, w, &nn);
        store(m, j, w, &mn);
        store(out, j, w, &h);
        store(a, j, w, &ip);
        store(a, hid + j, w, &fp);
        store(a, 2 * hid + j, w, &z);
        store(a, 3 * hid + j, w, &o);
        store(a, 4 * hid + j, w, &sf);
        store(a, 5 * hid + j, w, &path);
    })
}

/// The backward pass of `rows` batch rows. `dres` (rows, seq + 4, H);
/// `init` the rows' initial h, c, n; writes `dpre` (rows, seq, 4H) gate-major, `dry` (rows, seq,
/// heads·4·dh) head-major (the same numbers, for dR), `dinit` (4, rows, H).
#[allow(clippy::too_many_arguments)]
fn backward_rows(
    d: Dims,
    dres: &[f32],
    r: &[f32],
    init: [&[f32]; 3],
    acts: &[f32],
    cn: &[f32],
    dpre: &mut [f32],
    dry: &mut [f32],
    dinit: &mut [f32],
) {
    let (seq, hid, heads, dh) = (d.seq, d.hidden, d.heads, d.dh());
    let rows = init[0].len() / hid;
    let ld = (seq + 4) * hid;
    let g4 = 4 * hid;
    // The recurrent gradient into each row's h, and the carried dc, dn.
    let mut dh_rec = vec![0.0f32; rows * hid];
    let mut dc = vec![0.0f32; rows * hid];
    let mut dn = vec![0.0f32; rows * hid];
    let mut dm = vec![0.0f32; rows * hid];
    for b in 0..rows {
        let base = b * ld + seq * hid;
        dh_rec[b * hid..(b + 1) * hid].copy_from_slice(&dres[base..base + hid]);
        dc[b * hid..(b + 1) * hid].copy_from_slice(&dres[base + hid..base + 2 * hid]);
        dn[b * hid..(b + 1) * hid].copy_from_slice(&dres[base + 2 * hid..base + 3 * hid]);
        dm[b * hid..(b + 1) * hid].copy_from_slice(&dres[base + 3 * hid..base + 4 * hid]);
    }
    let mut draw = vec![0.0f32; g4];
    let mut grad_h = vec![0.0f32; hid];
    for t in (0..seq).rev() {
        for b in 0..rows {
            let bt = b * seq + t;
            for (k, v) in grad_h.iter_mut().enumerate() {
                *v = dres[b * ld + t * hid + k] + dh_rec[b * hid + k];
            }
            let (cp, np) = if t == 0 {
                (
                    &init[1][b * hid..(b + 1) * hid],
                    &init[2][b * hid..(b + 1) * hid],
                )
            } else {
                let prev = &cn[(bt - 1) * 2 * hid..bt * 2 * hid];
                (&prev[..hid], &prev[hid..])
            };
            let now = &cn[bt * 2 * hid..(bt + 1) * 2 * hid];
            back_row(
                &acts[bt * 6 * hid..(bt + 1) * 6 * hid],
                &now[..hid],
                &now[hid..],
                cp,
                np,
                &grad_h,
                &mut dc[b * hid..(b + 1) * hid],
                &mut dn[b * hid..(b + 1) * hid],
                &mut dm[b * hid..(b + 1) * hid],
                &mut draw,
            );
            dpre[bt * g4..(bt + 1) * g4].copy_from_slice(&draw);
            let dy = &mut dry[bt * g4..(bt + 1) * g4];
            for g in 0..4 {
                for head in 0..heads {
                    let (src, dst) = (g * hid + head * dh, head * 4 * dh + g * dh);
                    dy[dst..dst + dh].copy_from_slice(&draw[src..src + dh]);
                }
            }
        }
        // dh_{t-1} from the recurrence: per head, dry_t (rows × 4dh) · R_h (4dh × dh).
        for head in 0..heads {
            let g = 4 * dh;
            matmul(
                &mut dh_rec[head * dh..],
                hid,
                MatRef::rows(&dry[t * g4 + head * g..], rows, g, seq * g4),
                MatRef::rows(&r[head * g * dh..(head + 1) * g * dh], g, dh, dh),
                false,
                1,
            );
        }
    }
    let (dh0, rest) = dinit.split_at_mut(rows * hid);
    let (dc0, rest) = rest.split_at_mut(rows * hid);
    let (dn0, dm0) = rest.split_at_mut(rows * hid);
    dh0.copy_from_slice(&dh_rec);
    dc0.copy_from_slice(&dc);
    dn0.copy_from_slice(&dn);
    dm0.copy_from_slice(&dm);
}

/// One row's element-wise backward step: from dh and the carried dc, dn, dm (updated in place to the
/// previous step's) to the pre-activations' gradient `draw` (4H).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn back_row(
    a: &[f32],
    c: &[f32],
    n: &[f32],
    cp: &[f32],
    np: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    dn: &mut [f32],
    dm: &mut [f32],
    draw: &mut [f32],
) {
    let hid = c.len();
    chunks!(hid, |j, w| {
        let (ip, fp, z, o, sf, path) = (
            load(a, j, w),
            load(a, hid + j, w),
            load(a, 2 * hid + j, w),
            load(a, 3 * hid + j, w),
            load(a, 4 * hid + j, w),
            load(a, 5 * hid + j, w),
        );
        let (cv, nv, cpv, npv, dhv) = (
            load(c, j, w),
            load(n, j, w),
            load(cp, j, w),
            load(np, j, w),
            load(dh, j, w),
        );
        let (dcv, dnv, dmv) = (load(dc, j, w), load(dn, j, w), load(dm, j, w));
        let (mut di, mut df, mut dz, mut doo, mut dcp, mut dnp, mut dmp) = (
            [0.0; W], [0.0; W], [0.0; W], [0.0; W], [0.0; W], [0.0; W], [0.0; W],
        );
        for k in 0..W {
            let inv = 1.0 / nv[k];
            let ratio = cv[k] * inv;
            doo[k] = dhv[k] * ratio * o[k] * (1.0 - o[k]);
            let dct = dcv[k] + dhv[k] * o[k] * inv;
            let dnt = dnv[k] - dhv[k] * o[k] * ratio * inv;
            let dfp = dct * cpv[k] + dnt * npv[k];
            let dip = dct * z[k] + dnt;
            dz[k] = dct * ip[k] * (1.0 - z[k] * z[k]);
            // i' = exp(ĩ − m'), f' = exp(log f + m − m'); m' = ĩ or log f + m (`path`).
            let (gi, gf) = (dip * ip[k], dfp * fp[k]);
            let dm_new = dmv[k] - gi - gf;
            di[k] = gi + (1.0 - path[k]) * dm_new;
            df[k] = (gf + path[k] * dm_new) * sf[k];
            dmp[k] = gf + path[k] * dm_new;
            dcp[k] = dct * fp[k];
            dnp[k] = dnt * fp[k];
        }
        store(draw, j, w, &di);
        store(draw, hid + j, w, &df);
        store(draw, 2 * hid + j, w, &dz);
        store(draw, 3 * hid + j, w, &doo);
        store(dc, j, w, &dcp);
        store(dn, j, w, &dnp);
        store(dm, j, w, &dmp);
    })
}

impl CustomOp3 for SlstmOp {
    fn name(&self) -> &'static str {
        "seqlab-slstm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, seq, g4) = l1.shape().dims3()?;
        let hid = g4 / 4;
        let d = Dims {
            seq,
            hidden: hid,
            heads: self.heads,
        };
        if l2.shape().dims() != [d.heads, 4 * d.dh(), d.dh()]
            || l3.shape().dims() != [4, batch, hid]
        {
            bail!(
                "fused sLSTM: recurrent {:?} and state {:?} for pre-activations {:?}",
                l2.shape(),
                l3.shape(),
                l1.shape()
            );
        }
        let pre = f32_slice(s1, l1, "pre-activations")?;
        let r = f32_slice(s2, l2, "recurrent kernel")?;
        let init = f32_slice(s3, l3, "initial state")?;
        let mut res = vec![0.0f32; batch * (seq + 4) * hid];
        let mut saved = Saved {
            acts: pool::take(batch * seq * 6 * hid),
            cn: pool::take(batch * seq * 2 * hid),
        };
        let rows = crate::fused::block_rows(batch);
        std::thread::scope(|scope| {
            let blocks = pre
                .chunks(rows * seq * g4)
                .zip(res.chunks_mut(rows * (seq + 4) * hid))
                .zip(saved.acts.chunks_mut(rows * seq * 6 * hid))
                .zip(saved.cn.chunks_mut(rows * seq * 2 * hid))
                .enumerate();
            for (i, (((pre, res), acts), cn)) in blocks {
                let n = pre.len() / (seq * g4);
                let slot = |k: usize| {
                    &init[k * batch * hid + i * rows * hid..k * batch * hid + (i * rows + n) * hid]
                };
                let init = [slot(0), slot(1), slot(2), slot(3)];
                scope.spawn(move || forward_rows(d, pre, r, init, res, acts, cn));
            }
        });
        *self.saved.lock().map_err(poisoned)? = Some(saved);
        Ok((CpuStorage::F32(res), Shape::from((batch, seq + 4, hid))))
    }

    fn bwd(
        &self,
        pre: &Tensor,
        recurrent: &Tensor,
        init: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (batch, seq, g4) = pre.dims3()?;
        let hid = g4 / 4;
        let d = Dims {
            seq,
            hidden: hid,
            heads: self.heads,
        };
        let Some(saved) = self.saved.lock().map_err(poisoned)?.take() else {
            bail!("the fused sLSTM's backward pass ran twice on one forward pass");
        };
        let owned = [
            grad_res.contiguous()?,
            init.contiguous()?,
            recurrent.contiguous()?,
            res.contiguous()?,
        ];
        let guards: Vec<_> = owned.iter().map(|t| t.storage_and_layout()).collect();
        let dres = guarded(&guards[0], "output gradient")?;
        let init = guarded(&guards[1], "initial state")?;
        let r = guarded(&guards[2], "recurrent kernel")?;
        let res = guarded(&guards[3], "outputs")?;
        let mut dpre = vec![0.0f32; batch * seq * g4];
        let mut dry = pool::take(batch * seq * g4);
        let mut dinit_blocks: Vec<Vec<f32>> = Vec::new();
        let rows = crate::fused::block_rows(batch);
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            let blocks = dres
                .chunks(rows * (seq + 4) * hid)
                .zip(saved.acts.chunks(rows * seq * 6 * hid))
                .zip(saved.cn.chunks(rows * seq * 2 * hid))
                .zip(dpre.chunks_mut(rows * seq * g4))
                .zip(dry.chunks_mut(rows * seq * g4))
                .enumerate();
            for (i, ((((dres, acts), cn), dpre), dry)) in blocks {
                let n = dres.len() / ((seq + 4) * hid);
                let slot = |k: usize| {
                    &init[k * batch * hid + i * rows * hid..k * batch * hid + (i * rows + n) * hid]
                };
                let init = [slot(0), slot(1), slot(2)];
                handles.push(scope.spawn(move || {
                    let mut dinit = vec![0.0f32; 4 * n * hid];
                    backward_rows(d, dres, r, init, acts, cn, dpre, dry, &mut dinit);
                    dinit
                }));
            }
            for h in handles {
                dinit_blocks.push(h.join().unwrap_or_default());
            }
        });
        // dinit as (4, batch, H) from the blocks' (4, rows, H).
        let mut dinit = vec![0.0f32; 4 * batch * hid];
        let mut row0 = 0;
        for block in &dinit_blocks {
            let n = block.len() / (4 * hid);
            for k in 0..4 {
                dinit[(k * batch + row0) * hid..(k * batch + row0 + n) * hid]
                    .copy_from_slice(&block[k * n * hid..(k + 1) * n * hid]);
            }
            row0 += n;
        }
        // hprev (batch·seq, H): each step's input h.
        let mut hprev = pool::take(batch * seq * hid);
        for b in 0..batch {
            for t in 0..seq {
                let dst = &mut hprev[(b * seq + t) * hid..(b * seq + t + 1) * hid];
                if t == 0 {
                    dst.copy_from_slice(&init[b * hid..(b + 1) * hid]);
                } else {
                    let src = b * (seq + 4) * hid + (t - 1) * hid;
                    dst.copy_from_slice(&res[src..src + hid]);
                }
            }
        }
        // dR_h (4dh × dh) = Σ_{b,t} dry_h[b,t]ᵀ · hprev_h[b,t].
        let (dh, g) = (d.dh(), 4 * d.dh());
        let mut dr = vec![0.0f32; d.heads * g * dh];
        let threads = candle_core::utils::get_num_threads();
        for head in 0..d.heads {
            matmul(
                &mut dr[head * g * dh..(head + 1) * g * dh],
                dh,
                MatRef::rows(&dry[head * g..], batch * seq, g, g4).t(),
                MatRef::rows(&hprev[head * dh..], batch * seq, dh, hid),
                false,
                threads,
            );
        }
        pool::give(dry);
        pool::give(hprev);
        drop(saved);
        let device = pre.device();
        Ok((
            Some(Tensor::from_vec(dpre, (batch, seq, g4), device)?),
            Some(Tensor::from_vec(dr, (d.heads, g, dh), device)?),
            Some(Tensor::from_vec(dinit, (4, batch, hid), device)?),
        ))
    }
}
