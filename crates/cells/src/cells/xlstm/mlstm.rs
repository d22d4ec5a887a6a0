//! The mLSTM block: the package's `mLSTMBlock` (its `mLSTMLayer` and `mLSTMCell`, no feed-forward).
//!
//! Per head, with k scaled by 1/√dh, the matrix memory and its normaliser under exponential gating with a
//! stabiliser m (as the package's `recurrent_step_stabilized_simple`):
//!
//! ```text
//! m' = max(log σ(f̃) + m, ĩ)    f = exp(log σ(f̃) + m − m')    i = exp(ĩ − m')
//! C' = f·C + i·k vᵀ             n' = f·n + i·k                 h = qᵀC' / (max(|qᵀn'|, exp(−m')) + ε)
//! ```
//!
//! Training runs the whole sequence at once in the parallel form (the package's
//! `parallel_stabilized_simple`), extended to start from any state: with F_t the cumulative log forget
//! gates, step t weighs step j ≤ t by exp(F_t − F_j + ĩ_j − m_t) and the initial state by
//! exp(F_t + m_0 − m_t), m_t the largest of these exponents, which is the recurrent form's m_t exactly. So
//! the parallel form and the recurrent step give the same outputs and states (to rounding), and a
//! language model carries the state from batch to batch as with any cell.
//!
//! The layer: `x, z = proj_up(x)`; `x_c = SiLU(conv(x))`; q, k from `x_c`, v from `x` (block-diagonal, blocks
//! of 4); the gates `igate`, `fgate` (Linear(3·I, heads)) read `[q, k, v]`; the cell's output goes through
//! a per-head norm (`outnorm`), plus `learnable_skip ⊙ x_c`, times SiLU(z), through `proj_down`.
//!
//! Parameters, under `{layer}.`: `xlstm_norm.weight`; `xlstm.proj_up.weight` (2·I, H);
//! `xlstm.{q,k,v}_proj.weight` (I/4, 4, 4); `xlstm.conv1d.conv.{weight,bias}`;
//! `xlstm.mlstm_cell.{igate,fgate}.{weight,bias}`; `xlstm.mlstm_cell.outnorm.weight`;
//! `xlstm.learnable_skip` (I,); `xlstm.proj_down.weight` (H, I).

use candle_core::{bail, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use super::{
    headwise, log_sigmoid, norm, norm_weight, set_fresh, slot, small_init, up_width, wang_init,
    BlockKind, CausalConv, Core, Plan, KERNEL,
};
use crate::cell::MemorySlot;

/// The package's ε in the normaliser.
const EPS: f64 = 1e-6;

/// The width of an mLSTM block's inner (up-projected) features.
fn inner_width(width: usize) -> usize {
    up_width(2.0, width)
}

/// The state slots of an mLSTM block of `width` with `heads` heads: its convolution window and the cell's
/// C, n, m.
pub(crate) fn slots(width: usize, heads: usize) -> Vec<MemorySlot> {
    let inner = inner_width(width);
    let dh = inner / heads.max(1);
    vec![
        slot("m_conv", "mLSTM convolution window", (KERNEL - 1) * inner),
        slot("m_C", "mLSTM matrix memory", heads * dh * dh),
        slot("m_n", "mLSTM normaliser", heads * dh),
        slot("m_m", "mLSTM stabiliser", heads),
    ]
}

/// An mLSTM block (see the module doc).
#[derive(Debug)]
pub(crate) struct MlstmBlock {
    norm: Tensor,
    proj_up: Tensor,
    qkv: [Tensor; 3],
    conv: CausalConv,
    igate: (Tensor, Tensor),
    fgate: (Tensor, Tensor),
    outnorm: Tensor,
    skip: Tensor,
    proj_down: Tensor,
    heads: usize,
    width: usize,
    inner: usize,
}

/// The gates' inputs and the heads of q, k, v, for the cell.
struct Split {
    /// (batch, heads, seq, dh) each.
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// (batch, heads, seq).
    i: Tensor,
    f: Tensor,
}

/// The cell's inputs as the layer computes them: [q | k | v] (batch, seq, 3·I) and the gate
/// pre-activations [ĩ | f̃] (batch, seq, 2·heads).
struct Heads {
    qkv: Tensor,
    gates: Tensor,
    heads: usize,
}

impl Heads {
    /// Per head, for the graph of candle ops.
    fn split(&self) -> Result<Split> {
        let (batch, seq, i3) = self.qkv.dims3()?;
        let (nh, inner) = (self.heads, i3 / 3);
        let part = |k: usize| -> Result<Tensor> {
            self.qkv
                .narrow(D::Minus1, k * inner, inner)?
                .reshape((batch, seq, nh, inner / nh))?
                .transpose(1, 2)?
                .contiguous()
        };
        let gate = |k: usize| -> Result<Tensor> {
            self.gates
                .narrow(D::Minus1, k * nh, nh)?
                .transpose(1, 2)?
                .contiguous()
        };
        Ok(Split {
            q: part(0)?,
            k: part(1)?,
            v: part(2)?,
            i: gate(0)?,
            f: gate(1)?,
        })
    }
}

impl MlstmBlock {
    pub(crate) fn new(width: usize, plan: &Plan, vb: &VarBuilder) -> Result<Self> {
        let heads = plan.heads;
        let inner = inner_width(width);
        if heads == 0 || !inner.is_multiple_of(heads) {
            bail!(
                "an mLSTM block of width {width} has {inner} inner features, which {heads} heads do not divide"
            );
        }
        let layer = vb.pp("xlstm");
        let proj = |name: &str| {
            layer
                .pp(name)
                .get_with_hints((inner / 4, 4, 4), "weight", small_init(width))
        };
        let cell = layer.pp("mlstm_cell");
        let igate = (
            cell.pp("igate")
                .get_with_hints((heads, 3 * inner), "weight", Init::Const(0.0))?,
            cell.pp("igate").get_with_hints(
                heads,
                "bias",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.1,
                },
            )?,
        );
        let linspace: Vec<f32> = (0..heads)
            .map(|h| {
                if heads > 1 {
                    3.0 + 3.0 * h as f32 / (heads - 1) as f32
                } else {
                    3.0
                }
            })
            .collect();
        let fgate = (
            cell.pp("fgate")
                .get_with_hints((heads, 3 * inner), "weight", Init::Const(0.0))?,
            set_fresh(&cell.pp("fgate"), "bias", linspace)?,
        );
        Ok(Self {
            norm: norm_weight(vb, "xlstm_norm", width)?,
            proj_up: layer.pp("proj_up").get_with_hints(
                (2 * inner, width),
                "weight",
                small_init(width),
            )?,
            qkv: [proj("q_proj")?, proj("k_proj")?, proj("v_proj")?],
            conv: CausalConv::new(&layer, inner)?,
            igate,
            fgate,
            outnorm: norm_weight(&cell, "outnorm", inner)?,
            skip: layer.get_with_hints(inner, "learnable_skip", Init::Const(1.0))?,
            proj_down: layer.pp("proj_down").get_with_hints(
                (width, inner),
                "weight",
                wang_init(width, plan.blocks),
            )?,
            heads,
            width,
            inner,
        })
    }

    fn dh(&self) -> usize {
        self.inner / self.heads
    }

    /// From the normalised input's up-projection to the cell's inputs: (heads, x_c, z).
    fn project(
        &self,
        normed: &Tensor,
        window: &Tensor,
        fused: bool,
    ) -> Result<(Heads, Tensor, Tensor, Tensor)> {
        let up = crate::linear(normed, &self.proj_up, None)?;
        let xm = up.narrow(D::Minus1, 0, self.inner)?;
        let z = up.narrow(D::Minus1, self.inner, self.inner)?;
        let (xc, window) = self.conv.forward(&xm.contiguous()?, window, fused)?;
        let [wq, wk, wv] = &self.qkv;
        let (q, k, v) = (
            headwise(&xc, wq, fused)?,
            headwise(&xc, wk, fused)?,
            headwise(&xm, wv, fused)?,
        );
        let qkv = Tensor::cat(&[&q, &k, &v], D::Minus1)?;
        // Both gates in one product: [W_i; W_f], [b_i; b_f].
        let w = Tensor::cat(&[&self.igate.0, &self.fgate.0], 0)?;
        let b = Tensor::cat(&[&self.igate.1, &self.fgate.1], 0)?;
        let gates = crate::linear(&qkv, &w, Some(&b))?;
        let heads = Heads {
            qkv,
            gates,
            heads: self.heads,
        };
        Ok((heads, xc, z, window))
    }

    /// From the cell's output (batch, heads, seq, dh) to the block's output.
    fn finish(
        &self,
        xs: &Tensor,
        h: &Tensor,
        xc: &Tensor,
        z: &Tensor,
        fused: bool,
    ) -> Result<Tensor> {
        let (batch, _, seq, _) = h.dims4()?;
        let h = h.transpose(1, 2)?.reshape((batch, seq, self.inner))?;
        let h = norm(&h, &self.outnorm, self.heads, fused)?;
        let h = (h + xc.broadcast_mul(&self.skip)?)?;
        let h = (h * candle_nn::ops::silu(z)?)?;
        xs + crate::linear(&h, &self.proj_down, None)?
    }

    /// The cell's state from the block's slots: C (batch, heads, dh, dh), n (batch, heads, dh), m (batch,
    /// heads).
    fn cell_state(&self, state: &[Tensor]) -> Result<[Tensor; 3]> {
        let batch = state[1].dim(0)?;
        let (nh, dh) = (self.heads, self.dh());
        Ok([
            state[1].reshape((batch, nh, dh, dh))?,
            state[2].reshape((batch, nh, dh))?,
            state[3].clone(),
        ])
    }

    fn slots_of(&self, window: Tensor, cell: [Tensor; 3]) -> Result<Vec<Tensor>> {
        let [c, n, m] = cell;
        let batch = c.dim(0)?;
        Ok(vec![
            window,
            c.reshape((batch, self.heads * self.dh() * self.dh()))?,
            n.reshape((batch, self.heads * self.dh()))?,
            m,
        ])
    }
}

/// The parallel form over a whole sequence from the state `[C, n, m]`: the outputs (batch, heads, seq,
/// dh) and the final state.
fn parallel(x: &Heads, state: [&Tensor; 3]) -> Result<(Tensor, [Tensor; 3])> {
    let x = &x.split()?;
    let [c0, n0, m0] = state;
    let (_, _, seq, dh) = x.q.dims4()?;
    let ks = (&x.k / (dh as f64).sqrt())?;
    let log_f = log_sigmoid(&x.f)?;
    let cum = log_f.cumsum(2)?; // F_t, (batch, heads, seq)
                                // log D[t, j] = F_t − F_j + ĩ_j for j ≤ t.
    let log_d = cum
        .unsqueeze(3)?
        .broadcast_sub(&(&cum - &x.i)?.unsqueeze(2)?)?;
    // Above the diagonal: −10³⁰, which exp takes to 0.
    let causal: Vec<f32> = (0..seq)
        .flat_map(|t| (0..seq).map(move |j| if j <= t { 0.0 } else { -1e30 }))
        .collect();
    let causal = Tensor::from_vec(causal, (seq, seq), x.q.device())?.to_dtype(x.q.dtype())?;
    let log_d = log_d.broadcast_add(&causal)?;
    // The initial state's weight exp(F_t + m_0 − m_t).
    let log_w0 = cum.broadcast_add(&m0.unsqueeze(2)?)?;
    // The stabiliser: h does not depend on it (but for the ε), the carried state does (C and n are scaled
    // by exp(−m)), so gradients go through it.
    let m = log_w0.maximum(&log_d.max_keepdim(3)?.squeeze(3)?)?; // (batch, heads, seq)
    let d = log_d.broadcast_sub(&m.unsqueeze(3)?)?.exp()?;
    let w0 = (&log_w0 - &m)?.exp()?.unsqueeze(3)?; // (batch, heads, seq, 1)
    let weighted = (x.q.matmul(&ks.transpose(2, 3)?)? * &d)?; // (batch, heads, seq, seq)
    let num = (weighted.matmul(&x.v)? + w0.broadcast_mul(&x.q.matmul(c0)?)?)?;
    let den = (weighted.sum_keepdim(3)? + w0.broadcast_mul(&x.q.matmul(&n0.unsqueeze(3)?)?)?)?;
    let den = (den.abs()?.maximum(&m.neg()?.exp()?.unsqueeze(3)?)? + EPS)?;
    let h = num.broadcast_div(&den)?;
    // The state after the last step.
    let last_d = d.narrow(2, seq - 1, 1)?; // (batch, heads, 1, seq)
    let last_w0 = w0.narrow(2, seq - 1, 1)?; // (batch, heads, 1, 1)
    let c = (last_w0.broadcast_mul(c0)?
        + ks.broadcast_mul(&last_d.transpose(2, 3)?)?
            .transpose(2, 3)?
            .matmul(&x.v)?)?;
    let n = (last_w0.squeeze(3)?.broadcast_mul(n0)? + last_d.matmul(&ks)?.squeeze(2)?)?;
    let m_last = m.narrow(2, seq - 1, 1)?.squeeze(2)?;
    Ok((h, [c, n, m_last]))
}

/// [`parallel`] on the fused op (f32 on the CPU).
fn parallel_fused(x: &Heads, state: [&Tensor; 3]) -> Result<(Tensor, [Tensor; 3])> {
    let [c0, n0, m0] = state;
    let (batch, seq, i3) = x.qkv.dims3()?;
    let (heads, dh) = (x.heads, i3 / 3 / x.heads);
    let pairs = batch * heads;
    let flat = |t: &Tensor, width: usize| t.contiguous()?.reshape((pairs, width));
    let packed = Tensor::cat(&[flat(c0, dh * dh)?, flat(n0, dh)?, flat(m0, 1)?], 1)?;
    let op = super::mlstm_op::MlstmOp::new(heads);
    let res = x.qkv.contiguous()?.apply_op3_arc(
        &x.gates.contiguous()?,
        &packed,
        std::sync::Arc::new(Box::new(op)),
    )?;
    let part = |start: usize, len: usize| res.narrow(1, start, len);
    let h = part(0, seq * dh)?.reshape((batch, heads, seq, dh))?;
    let c = part(seq * dh, dh * dh)?.reshape((batch, heads, dh, dh))?;
    let n = part(seq * dh + dh * dh, dh)?.reshape((batch, heads, dh))?;
    let m = part(seq * dh + dh * dh + dh, 1)?.reshape((batch, heads))?;
    Ok((h, [c, n, m]))
}

/// One recurrent step (seq 1 in `x`) from `[C, n, m]`: the output (batch, heads, 1, dh) and the state.
fn recurrent_step(x: &Heads, state: [&Tensor; 3]) -> Result<(Tensor, [Tensor; 3])> {
    let x = &x.split()?;
    let [c, n, m] = state;
    let dh = x.q.dim(3)?;
    let (q, k, v) = (x.q.squeeze(2)?, x.k.squeeze(2)?, x.v.squeeze(2)?); // (batch, heads, dh)
    let (it, ft) = (x.i.squeeze(2)?, x.f.squeeze(2)?); // (batch, heads)
    let log_f = log_sigmoid(&ft)?;
    let m_new = (&log_f + m)?.maximum(&it)?;
    let f = ((log_f + m)? - &m_new)?.exp()?;
    let i = (&it - &m_new)?.exp()?;
    let ks = (k / (dh as f64).sqrt())?;
    let outer = ks.unsqueeze(3)?.matmul(&v.unsqueeze(2)?)?; // (batch, heads, dh, dh)
    let c_new = (c.broadcast_mul(&f.unsqueeze(2)?.unsqueeze(3)?)?
        + outer.broadcast_mul(&i.unsqueeze(2)?.unsqueeze(3)?)?)?;
    let n_new = (n.broadcast_mul(&f.unsqueeze(2)?)? + ks.broadcast_mul(&i.unsqueeze(2)?)?)?;
    let q1 = q.unsqueeze(2)?; // (batch, heads, 1, dh)
    let num = q1.matmul(&c_new)?; // (batch, heads, 1, dh)
    let qn = q1.matmul(&n_new.unsqueeze(3)?)?; // (batch, heads, 1, 1)
    let floor = m_new.neg()?.exp()?.unsqueeze(2)?.unsqueeze(3)?;
    let den = (qn.abs()?.maximum(&floor)? + EPS)?;
    Ok((num.broadcast_div(&den)?, [c_new, n_new, m_new]))
}

impl MlstmBlock {
    fn run(
        &self,
        xs: &Tensor,
        state: &[Tensor],
        fused: bool,
        cell: impl Fn(&Heads, [&Tensor; 3]) -> Result<(Tensor, [Tensor; 3])>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        if state.len() != 4 {
            bail!("an mLSTM block's state has 4 tensors, got {}", state.len());
        }
        let normed = norm(xs, &self.norm, 1, fused)?;
        let (heads, xc, z, window) = self.project(&normed, &state[0], fused)?;
        let [c, n, m] = self.cell_state(state)?;
        let (h, next) = cell(&heads, [&c, &n, &m])?;
        let out = self.finish(xs, &h, &xc, &z, fused)?;
        Ok((out, self.slots_of(window, next)?))
    }
}

impl Core for MlstmBlock {
    fn kind(&self) -> BlockKind {
        BlockKind::M
    }

    fn slots(&self) -> Vec<MemorySlot> {
        slots(self.width, self.heads)
    }

    fn sequence(
        &self,
        xs: &Tensor,
        state: &[Tensor],
        fused: bool,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        if super::on_cpu(xs, fused) {
            self.run(xs, state, true, parallel_fused)
        } else {
            self.run(xs, state, false, parallel)
        }
    }

    fn step(&self, x: &Tensor, state: &[Tensor]) -> Result<(Tensor, Vec<Tensor>)> {
        let (out, state) = self.run(&x.unsqueeze(1)?, state, false, recurrent_step)?;
        Ok((out.squeeze(1)?, state))
    }
}
