//! The mLSTM cell's parallel form as one fused CPU op with a hand-written backward: the same numbers as
//! [`super::mlstm`]'s graph of candle ops (its reference), without the dozen passes candle's element-wise
//! ops and their gradients make over each (seq × seq) decay matrix.
//!
//! Each (row, head) pair is independent: the threads split the pairs, and each pair runs its products
//! (q·kᵀ, W·v and their gradients, seq × seq × dh) through the gemm crate and its element-wise math in
//! plain loops. The op takes [q | k | v] as the layer has them, (batch, seq, 3·I) with each I = heads·dh
//! head-major, the gate pre-activations [ĩ | f̃] (batch, seq, 2·heads), and the initial state packed per
//! pair p = row·heads + head as [C (dh·dh) | n (dh) | m] (P, dh² + dh + 1); it returns per pair
//! [h (seq·dh) | C | n | m] (P, seq·dh + dh² + dh + 1). Each pair gathers its strided inputs into dense
//! scratch first, so candle never transposes or stacks them.

use std::sync::Mutex;

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use crate::fused::gemm::{matmul, MatRef};
use crate::fused::math::{log_sigmoid, sigmoid};
use crate::fused::{f32_slice, guarded, poisoned, pool};

/// The package's ε.
const EPS: f32 = 1e-6;

/// Sizes.
#[derive(Debug, Clone, Copy)]
struct Dims {
    seq: usize,
    dh: usize,
}

impl Dims {
    fn state(&self) -> usize {
        self.dh * self.dh + self.dh + 1
    }
    fn out(&self) -> usize {
        self.seq * self.dh + self.state()
    }
}

/// Per pair, kept for the backward pass: D (seq²), then m, w0, den, den', argmax (seq each).
struct Saved {
    per_pair: Vec<f32>,
}

fn saved_len(d: Dims) -> usize {
    d.seq * d.seq + 5 * d.seq
}

pub(crate) struct MlstmOp {
    heads: usize,
    saved: Mutex<Option<Saved>>,
}

impl MlstmOp {
    pub(crate) fn new(heads: usize) -> Self {
        Self {
            heads,
            saved: Mutex::new(None),
        }
    }
}

/// Where pair `p` (row b, head h) reads its inputs in (batch, seq, 3·I) and (batch, seq, 2·heads).
#[derive(Clone, Copy)]
struct Layouts {
    heads: usize,
    seq: usize,
    dh: usize,
}

impl Layouts {
    fn width(&self) -> usize {
        self.heads * self.dh
    }
    /// q, k, v (seq × dh each, dense) and ĩ, f̃ (seq) of pair `p`.
    fn gather(&self, qkv: &[f32], gates: &[f32], p: usize) -> [Vec<f32>; 5] {
        let (b, h) = (p / self.heads, p % self.heads);
        let (i3, g2) = (3 * self.width(), 2 * self.heads);
        let part = |k: usize| -> Vec<f32> {
            let mut v = Vec::with_capacity(self.seq * self.dh);
            for t in 0..self.seq {
                let at = (b * self.seq + t) * i3 + k * self.width() + h * self.dh;
                v.extend_from_slice(&qkv[at..at + self.dh]);
            }
            v
        };
        let gate = |k: usize| -> Vec<f32> {
            (0..self.seq)
                .map(|t| gates[(b * self.seq + t) * g2 + k * self.heads + h])
                .collect()
        };
        [part(0), part(1), part(2), gate(0), gate(1)]
    }
    /// Adds pair `p`'s gradients of q, k, v and the gates into the whole ones.
    fn scatter(&self, dqkv: &mut [f32], dgates: &mut [f32], p: usize, parts: [&[f32]; 5]) {
        let (b, h) = (p / self.heads, p % self.heads);
        let (i3, g2) = (3 * self.width(), 2 * self.heads);
        for t in 0..self.seq {
            for (k, part) in parts[..3].iter().enumerate() {
                let at = (b * self.seq + t) * i3 + k * self.width() + h * self.dh;
                dqkv[at..at + self.dh].copy_from_slice(&part[t * self.dh..(t + 1) * self.dh]);
            }
            for k in 0..2 {
                dgates[(b * self.seq + t) * g2 + k * self.heads + h] = parts[3 + k][t];
            }
        }
    }
}

/// `dst (rows × cols) = a (rows × k) · b (k × cols)`, all row-major and dense; `bt`: b given as (cols × k).
#[allow(clippy::too_many_arguments)]
fn mm(
    dst: &mut [f32],
    a: &[f32],
    at: bool,
    b: &[f32],
    bt: bool,
    rows: usize,
    k: usize,
    cols: usize,
    acc: bool,
) {
    let lhs = if at {
        MatRef::rows(a, k, rows, rows).t()
    } else {
        MatRef::rows(a, rows, k, k)
    };
    let rhs = if bt {
        MatRef::rows(b, cols, k, k).t()
    } else {
        MatRef::rows(b, k, cols, cols)
    };
    matmul(dst, cols, lhs, rhs, acc, 1);
}

/// Forward of one pair: `q, k, v` (seq × dh), `gi, gf` (seq), `state` [C | n | m] → `out` [h | C | n | m],
/// `saved`.
#[allow(clippy::too_many_arguments)]
fn forward_pair(
    d: Dims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    gi: &[f32],
    gf: &[f32],
    state: &[f32],
    out: &mut [f32],
    saved: &mut [f32],
) {
    let (s, dh) = (d.seq, d.dh);
    let (c0, rest) = state.split_at(dh * dh);
    let (n0, m0) = rest.split_at(dh);
    let m0 = m0[0];
    let (dmat, rest) = saved.split_at_mut(s * s);
    let (m, rest) = rest.split_at_mut(s);
    let (w0, rest) = rest.split_at_mut(s);
    let (den, rest) = rest.split_at_mut(s);
    let (denp, am) = rest.split_at_mut(s);
    let scale = 1.0 / (dh as f32).sqrt();
    let ks: Vec<f32> = k.iter().map(|x| x * scale).collect();
    let mut cum = vec![0.0f32; s];
    let mut acc = 0.0f32;
    for t in 0..s {
        acc += log_sigmoid(gf[t]);
        cum[t] = acc;
    }
    for t in 0..s {
        let row = &mut dmat[t * s..(t + 1) * s];
        let a0 = cum[t] + m0;
        let (mut best, mut arg) = (a0, -1.0f32);
        for j in 0..=t {
            let l = cum[t] - cum[j] + gi[j];
            row[j] = l;
            if l > best {
                best = l;
                arg = j as f32;
            }
        }
        m[t] = best;
        am[t] = arg;
        for x in row[..=t].iter_mut() {
            *x = (*x - best).exp();
        }
        row[t + 1..].fill(0.0);
        w0[t] = (a0 - best).exp();
    }
    // W = (q·ksᵀ) ∘ D.
    let mut w = vec![0.0f32; s * s];
    mm(&mut w, q, false, &ks, true, s, dh, s, false);
    for (x, dd) in w.iter_mut().zip(dmat.iter()) {
        *x *= dd;
    }
    let (h, fin) = out.split_at_mut(s * dh);
    // num = W·v + w0 ∘ (q·C0).
    let mut qc = vec![0.0f32; s * dh];
    mm(&mut qc, q, false, c0, false, s, dh, dh, false);
    mm(h, &w, false, v, false, s, s, dh, false);
    for t in 0..s {
        let qn: f32 = q[t * dh..(t + 1) * dh]
            .iter()
            .zip(n0)
            .map(|(a, b)| a * b)
            .sum();
        let rowsum: f32 = w[t * s..t * s + t + 1].iter().sum();
        den[t] = rowsum + w0[t] * qn;
        denp[t] = den[t].abs().max((-m[t]).exp()) + EPS;
        for a in 0..dh {
            let x = &mut h[t * dh + a];
            *x = (*x + w0[t] * qc[t * dh + a]) / denp[t];
        }
    }
    // The state after the last step.
    let last = s - 1;
    let dl = &dmat[last * s..];
    let mut scaled = vec![0.0f32; s * dh];
    for j in 0..s {
        for a in 0..dh {
            scaled[j * dh + a] = ks[j * dh + a] * dl[j];
        }
    }
    let (cf, rest) = fin.split_at_mut(dh * dh);
    let (nf, mf) = rest.split_at_mut(dh);
    mm(cf, &scaled, true, v, false, dh, s, dh, false);
    for (x, c) in cf.iter_mut().zip(c0) {
        *x += w0[last] * c;
    }
    for a in 0..dh {
        nf[a] = w0[last] * n0[a] + (0..s).map(|j| scaled[j * dh + a]).sum::<f32>();
    }
    mf[0] = m[last];
}

/// Backward of one pair: from the output's gradient `dout` [dh | dC | dn | dm] to the gradients of q, k,
/// v, the gates and the initial state.
#[allow(clippy::too_many_arguments)]
fn backward_pair(
    d: Dims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    gf: &[f32],
    state: &[f32],
    out: &[f32],
    saved: &[f32],
    dout: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dgi: &mut [f32],
    dgf: &mut [f32],
    dstate: &mut [f32],
) {
    let (s, dh) = (d.seq, d.dh);
    let (c0, rest) = state.split_at(dh * dh);
    let (n0, _) = rest.split_at(dh);
    let (dmat, rest) = saved.split_at(s * s);
    let (m, rest) = rest.split_at(s);
    let (w0, rest) = rest.split_at(s);
    let (den, rest) = rest.split_at(s);
    let (denp, am) = rest.split_at(s);
    let h = &out[..s * dh];
    let (dh_out, rest) = dout.split_at(s * dh);
    let (dcf, rest) = rest.split_at(dh * dh);
    let (dnf, dmf) = rest.split_at(dh);
    let (dc0, rest) = dstate.split_at_mut(dh * dh);
    let (dn0, dm0) = rest.split_at_mut(dh);
    let scale = 1.0 / (dh as f32).sqrt();
    let ks: Vec<f32> = k.iter().map(|x| x * scale).collect();
    let mut sm = vec![0.0f32; s * s];
    mm(&mut sm, q, false, &ks, true, s, dh, s, false);
    let w: Vec<f32> = sm.iter().zip(dmat).map(|(a, b)| a * b).collect();
    let mut qc = vec![0.0f32; s * dh];
    mm(&mut qc, q, false, c0, false, s, dh, dh, false);

    let mut dnum = vec![0.0f32; s * dh];
    let mut dden = vec![0.0f32; s];
    let mut dm = vec![0.0f32; s];
    for t in 0..s {
        let row = t * dh..(t + 1) * dh;
        let dot: f32 = dh_out[row.clone()]
            .iter()
            .zip(&h[row.clone()])
            .map(|(a, b)| a * b)
            .sum();
        let ddenp = -dot / denp[t];
        let floor = (-m[t]).exp();
        if den[t].abs() >= floor {
            dden[t] = ddenp * den[t].signum();
        } else {
            dm[t] = -floor * ddenp;
        }
        for (x, g) in dnum[row.clone()].iter_mut().zip(&dh_out[row]) {
            *x = g / denp[t];
        }
    }
    // dW = dnum·vᵀ + dden (each row).
    let mut dw = vec![0.0f32; s * s];
    mm(&mut dw, &dnum, false, v, true, s, dh, s, false);
    for t in 0..s {
        for x in dw[t * s..(t + 1) * s].iter_mut() {
            *x += dden[t];
        }
    }
    // dv = Wᵀ·dnum.
    mm(dv, &w, true, &dnum, false, s, s, dh, false);
    // The initial state's terms: num += w0 ∘ (q·C0), den += w0 ∘ (q·n0).
    let mut dw0 = vec![0.0f32; s];
    let mut scaled = vec![0.0f32; s * dh]; // diag(w0)·dnum
    for t in 0..s {
        let qn: f32 = q[t * dh..(t + 1) * dh]
            .iter()
            .zip(n0)
            .map(|(a, b)| a * b)
            .sum();
        let dq_c: f32 = dnum[t * dh..(t + 1) * dh]
            .iter()
            .zip(&qc[t * dh..(t + 1) * dh])
            .map(|(a, b)| a * b)
            .sum();
        dw0[t] = dq_c + dden[t] * qn;
        for a in 0..dh {
            scaled[t * dh + a] = w0[t] * dnum[t * dh + a];
        }
    }
    // dq = diag(w0)·dnum·C0ᵀ + (dden ∘ w0)·n0ᵀ; dC0 = qᵀ·diag(w0)·dnum; dn0 = Σ dden·w0·q.
    mm(dq, &scaled, false, c0, true, s, dh, dh, false);
    mm(dc0, q, true, &scaled, false, dh, s, dh, false);
    dn0.fill(0.0);
    for t in 0..s {
        let g = dden[t] * w0[t];
        for a in 0..dh {
            dq[t * dh + a] += g * n0[a];
            dn0[a] += g * q[t * dh + a];
        }
    }
    // The final state: C = w0_L C0 + Σ_j D_Lj ks_j v_jᵀ, n = w0_L n0 + Σ_j D_Lj ks_j, m = m_L.
    let last = s - 1;
    let mut dd_last = vec![0.0f32; s];
    let mut dks = vec![0.0f32; s * dh];
    {
        let mut mv = vec![0.0f32; s * dh]; // v·dCᵀ: row j = dC·v_j
        mm(&mut mv, v, false, dcf, true, s, dh, dh, false);
        let mut nk = vec![0.0f32; s * dh]; // ks·dC: row j = dCᵀ·ks_j
        mm(&mut nk, &ks, false, dcf, false, s, dh, dh, false);
        let dl = &dmat[last * s..];
        for j in 0..s {
            let mut acc = 0.0f32;
            for a in 0..dh {
                let g = mv[j * dh + a] + dnf[a];
                acc += ks[j * dh + a] * g;
                dks[j * dh + a] += dl[j] * g;
                dv[j * dh + a] += dl[j] * nk[j * dh + a];
            }
            dd_last[j] = acc;
        }
        for (x, g) in dc0.iter_mut().zip(dcf) {
            *x += w0[last] * g;
        }
        for a in 0..dh {
            dn0[a] += w0[last] * dnf[a];
        }
        let dot_c: f32 = dcf.iter().zip(c0).map(|(a, b)| a * b).sum();
        let dot_n: f32 = dnf.iter().zip(n0).map(|(a, b)| a * b).sum();
        dw0[last] += dot_c + dot_n;
        dm[last] += dmf[0];
    }
    // dSm = dW ∘ D → dq += dSm·ks, dks += dSmᵀ·q; dD = dW ∘ Sm (+ the last row's), dlogD = dD ∘ D.
    let mut dsm = vec![0.0f32; s * s];
    let mut dlog = vec![0.0f32; s * s];
    for t in 0..s {
        for j in 0..=t {
            let i = t * s + j;
            dsm[i] = dw[i] * dmat[i];
            dlog[i] = dw[i] * sm[i] * dmat[i];
        }
    }
    for (j, extra) in dd_last.iter().enumerate() {
        dlog[last * s + j] += extra * dmat[last * s + j];
    }
    mm(dq, &dsm, false, &ks, false, s, s, dh, true);
    mm(&mut dks, &dsm, true, q, false, s, s, dh, true);
    for (x, g) in dk.iter_mut().zip(&dks) {
        *x = g * scale;
    }
    // m_t: D and w0 depend on it; it is the largest of a0_t and logD[t, ·].
    let mut da0 = vec![0.0f32; s];
    for t in 0..s {
        let row_sum: f32 = dlog[t * s..t * s + t + 1].iter().sum();
        da0[t] = dw0[t] * w0[t];
        let total = dm[t] - row_sum - da0[t];
        if am[t] < 0.0 {
            da0[t] += total;
        } else {
            dlog[t * s + am[t] as usize] += total;
        }
    }
    // logD[t, j] = F_t − F_j + ĩ_j; a0_t = F_t + m0; F = cumsum(log σ(f̃)).
    let mut dcum = vec![0.0f32; s];
    dgi.fill(0.0);
    for t in 0..s {
        let mut row_sum = 0.0f32;
        for j in 0..=t {
            let g = dlog[t * s + j];
            row_sum += g;
            dcum[j] -= g;
            dgi[j] += g;
        }
        dcum[t] += row_sum + da0[t];
    }
    dm0[0] = da0.iter().sum();
    let mut acc = 0.0f32;
    for t in (0..s).rev() {
        acc += dcum[t];
        dgf[t] = acc * sigmoid(-gf[t]);
    }
}

impl CustomOp3 for MlstmOp {
    fn name(&self) -> &'static str {
        "seqlab-mlstm"
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
        let (batch, seq, i3) = l1.shape().dims3()?;
        let heads = self.heads;
        let dh = i3 / 3 / heads;
        let pairs = batch * heads;
        let d = Dims { seq, dh };
        let lay = Layouts { heads, seq, dh };
        if i3 != 3 * heads * dh
            || l2.shape().dims() != [batch, seq, 2 * heads]
            || l3.shape().dims() != [pairs, d.state()]
        {
            bail!(
                "fused mLSTM: q, k, v {:?}, gates {:?}, state {:?}, {heads} heads",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let qkv = f32_slice(s1, l1, "q, k, v")?;
        let gates = f32_slice(s2, l2, "gates")?;
        let state = f32_slice(s3, l3, "state")?;
        let mut out = vec![0.0f32; pairs * d.out()];
        let mut saved = pool::take(pairs * saved_len(d));
        let n = crate::fused::block_rows(pairs);
        std::thread::scope(|scope| {
            for (i, (out, saved)) in out
                .chunks_mut(n * d.out())
                .zip(saved.chunks_mut(n * saved_len(d)))
                .enumerate()
            {
                scope.spawn(move || {
                    for (local, (out, saved)) in out
                        .chunks_mut(d.out())
                        .zip(saved.chunks_mut(saved_len(d)))
                        .enumerate()
                    {
                        let p = i * n + local;
                        let [q, k, v, gi, gf] = lay.gather(qkv, gates, p);
                        forward_pair(
                            d,
                            &q,
                            &k,
                            &v,
                            &gi,
                            &gf,
                            &state[p * d.state()..(p + 1) * d.state()],
                            out,
                            saved,
                        );
                    }
                });
            }
        });
        *self.saved.lock().map_err(poisoned)? = Some(Saved { per_pair: saved });
        Ok((CpuStorage::F32(out), Shape::from((pairs, d.out()))))
    }

    fn bwd(
        &self,
        qkv: &Tensor,
        gates: &Tensor,
        state: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (batch, seq, i3) = qkv.dims3()?;
        let heads = self.heads;
        let dh = i3 / 3 / heads;
        let pairs = batch * heads;
        let d = Dims { seq, dh };
        let lay = Layouts { heads, seq, dh };
        let device = qkv.device().clone();
        let Some(saved) = self.saved.lock().map_err(poisoned)?.take() else {
            bail!("the fused mLSTM's backward pass ran twice on one forward pass");
        };
        let owned = [
            qkv.contiguous()?,
            gates.contiguous()?,
            state.contiguous()?,
            res.contiguous()?,
            grad_res.contiguous()?,
        ];
        let guards: Vec<_> = owned.iter().map(|t| t.storage_and_layout()).collect();
        let qkv = guarded(&guards[0], "q, k, v")?;
        let gates = guarded(&guards[1], "gates")?;
        let state = guarded(&guards[2], "state")?;
        let res = guarded(&guards[3], "outputs")?;
        let dres = guarded(&guards[4], "output gradient")?;
        let sd = seq * dh;
        let mut dqkv = vec![0.0f32; batch * seq * i3];
        let mut dgates = vec![0.0f32; batch * seq * 2 * heads];
        let mut dstate = vec![0.0f32; pairs * d.state()];
        // Per pair, the gradients are written into per-thread blocks, then placed.
        let n = crate::fused::block_rows(pairs);
        let blocks: Vec<(usize, Vec<f32>, Vec<f32>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..pairs.div_ceil(n))
                .map(|i| {
                    let saved = &saved.per_pair;
                    scope.spawn(move || {
                        let (p0, p1) = (i * n, ((i + 1) * n).min(pairs));
                        let count = p1 - p0;
                        let mut grads = vec![0.0f32; count * (3 * sd + 2 * seq)];
                        let mut ds = vec![0.0f32; count * d.state()];
                        for (local, (g, ds)) in grads
                            .chunks_mut(3 * sd + 2 * seq)
                            .zip(ds.chunks_mut(d.state()))
                            .enumerate()
                        {
                            let p = p0 + local;
                            let [q, k, v, _, gf_in] = lay.gather(qkv, gates, p);
                            let (gq, rest) = g.split_at_mut(sd);
                            let (gk, rest) = rest.split_at_mut(sd);
                            let (gv, rest) = rest.split_at_mut(sd);
                            let (gi, gf) = rest.split_at_mut(seq);
                            backward_pair(
                                d,
                                &q,
                                &k,
                                &v,
                                &gf_in,
                                &state[p * d.state()..(p + 1) * d.state()],
                                &res[p * d.out()..(p + 1) * d.out()],
                                &saved[p * saved_len(d)..(p + 1) * saved_len(d)],
                                &dres[p * d.out()..(p + 1) * d.out()],
                                gq,
                                gk,
                                gv,
                                gi,
                                gf,
                                ds,
                            );
                        }
                        (p0, grads, ds)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for (p0, grads, ds) in blocks {
            let count = ds.len() / d.state();
            for local in 0..count {
                let p = p0 + local;
                let g = &grads[local * (3 * sd + 2 * seq)..(local + 1) * (3 * sd + 2 * seq)];
                let (gq, rest) = g.split_at(sd);
                let (gk, rest) = rest.split_at(sd);
                let (gv, rest) = rest.split_at(sd);
                let (gi, gf) = rest.split_at(seq);
                lay.scatter(&mut dqkv, &mut dgates, p, [gq, gk, gv, gi, gf]);
            }
            let start = p0 * d.state();
            dstate[start..start + ds.len()].copy_from_slice(&ds);
        }
        pool::give(saved.per_pair);
        Ok((
            Some(Tensor::from_vec(dqkv, (batch, seq, i3), &device)?),
            Some(Tensor::from_vec(dgates, (batch, seq, 2 * heads), &device)?),
            Some(Tensor::from_vec(dstate, (pairs, d.state()), &device)?),
        ))
    }
}
