//! The fused element-wise scan of the cells whose gates read the input only (minGRU, minLSTM) or whose
//! recurrence is element-wise (IndRNN): `h_t = f(p_t, h_{t-1})`, each unit on its own, where `p_t` is the
//! step's projected input, computed for every step at once beforehand (one matrix product, outside this op).
//!
//! Why a sequential scan and not a parallel one: a parallel (log-depth) scan does about twice the work of the
//! sequential one plus a pass of logarithms and exponentials (the papers' log-space form), and buys its
//! depth with parallelism a GPU has and two CPU cores do not. Here every (row, unit) recurrence is
//! independent, so the batch rows are split between the threads, and each thread walks time once,
//! vectorising across units: memory-bound, and exactly one pass over the projections forward and one back.
//!
//! The op takes the projections `p` (batch, seq, B·H), the recurrent vector `u` (H; a placeholder of one
//! element for the cells without one) and the initial state `h0` (batch, H), and returns (batch, seq + 1, H):
//! the outputs of every step, then the final state. Its backward pass walks time back once per row with the
//! outputs as the saved states (a step's `h_{t-1}` is the output of the step before it), so nothing is saved
//! beside the op's own output. Rows past their length keep their state, output zeros and pass their gradient
//! through unchanged, as in the classic cells' kernels.

use std::sync::Arc;

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};

use super::contiguous;

/// The element-wise math of one scanned cell.
pub(crate) trait Scan: Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    /// Blocks of H in each step's projection: 1 (IndRNN), 2 (minGRU), 3 (minLSTM).
    const BLOCKS: usize;
    /// Whether it reads a recurrent vector `u` (H): IndRNN's.
    const RECURRENT: bool;
    /// The op's name.
    const NAME: &'static str;

    /// One step of one row: `p` (B·H) the step's projection, `u` (H) the recurrent vector (empty for the
    /// cells without one); `h` holds `h_{t-1}` and is replaced by `h_t`.
    fn forward_row(p: &[f32], u: &[f32], h: &mut [f32]);

    /// The backward of one step of one row: `dh` holds the gradient reaching `h_t` and is replaced by that
    /// of `h_{t-1}`; writes the projection's gradient `dp` (B·H) and adds to `du` (H; empty without `u`).
    #[allow(clippy::too_many_arguments)]
    fn backward_row(
        p: &[f32],
        u: &[f32],
        h_prev: &[f32],
        h_new: &[f32],
        dh: &mut [f32],
        dp: &mut [f32],
        du: &mut [f32],
    );
}

/// Runs the scan of `S` over the projections `p` (batch, seq, B·H) from `h0` (batch, H): the outputs
/// (batch, seq, H) and the final state (batch, H). `u` is the recurrent vector (H) of the cells that have
/// one.
pub(crate) fn scan<S: Scan>(
    p: &Tensor,
    u: Option<&Tensor>,
    h0: &Tensor,
    lengths: Option<Arc<[usize]>>,
    reverse: bool,
) -> Result<(Tensor, Tensor)> {
    let (_, seq, width) = p.dims3()?;
    let hidden = width / S::BLOCKS;
    let u = match u {
        Some(u) => u.contiguous()?,
        None => Tensor::zeros(1, p.dtype(), p.device())?,
    };
    let op = ScanOp::<S> {
        seq,
        hidden,
        reverse,
        has_u: S::RECURRENT,
        lengths,
        cell: std::marker::PhantomData,
    };
    let res = p
        .contiguous()?
        .apply_op3_arc(&u, &h0.contiguous()?, Arc::new(Box::new(op)))?;
    Ok((res.narrow(1, 0, seq)?, res.narrow(1, seq, 1)?.squeeze(1)?))
}

pub(crate) struct ScanOp<S: Scan> {
    seq: usize,
    hidden: usize,
    reverse: bool,
    has_u: bool,
    lengths: Option<Arc<[usize]>>,
    cell: std::marker::PhantomData<S>,
}

impl<S: Scan> ScanOp<S> {
    /// The times a row of valid length `len` processes, in order.
    fn times(&self, len: usize) -> impl DoubleEndedIterator<Item = usize> + Clone {
        let reverse = self.reverse;
        (0..len).map(move |k| if reverse { len - 1 - k } else { k })
    }

    fn len_of(&self, row: usize) -> usize {
        self.lengths.as_ref().map_or(self.seq, |l| l[row])
    }
}

/// Threads for the per-row loops: candle's thread count, at most one per batch row.
fn block_rows(batch: usize) -> usize {
    let threads = candle_core::utils::get_num_threads().clamp(1, batch.max(1));
    batch.div_ceil(threads)
}

multiversion! {
    /// Forward of `rows` rows.
    fn forward_rows<S: Scan> => forward_rows_impl(
        op: &ScanOp<S>,
        first_row: usize,
        p: &[f32],
        u: &[f32],
        h0: &[f32],
        res: &mut [f32],
    )
}

#[inline(always)]
fn forward_rows_impl<S: Scan>(
    op: &ScanOp<S>,
    first_row: usize,
    p: &[f32],
    u: &[f32],
    h0: &[f32],
    res: &mut [f32],
) {
    let (seq, hid) = (op.seq, op.hidden);
    let bh = S::BLOCKS * hid;
    let rows = h0.len() / hid;
    for b in 0..rows {
        let mut h = h0[b * hid..(b + 1) * hid].to_vec();
        let out = &mut res[b * (seq + 1) * hid..(b + 1) * (seq + 1) * hid];
        // Rows past their length output zeros there (the buffer is fresh, zero-filled).
        for t in op.times(op.len_of(first_row + b)) {
            S::forward_row(&p[(b * seq + t) * bh..(b * seq + t + 1) * bh], u, &mut h);
            out[t * hid..(t + 1) * hid].copy_from_slice(&h);
        }
        out[seq * hid..].copy_from_slice(&h);
    }
}

multiversion! {
    /// Backward of `rows` rows: writes `dp` and `dh0` of the rows and adds to `du`.
    fn backward_rows<S: Scan> => backward_rows_impl(
        op: &ScanOp<S>,
        first_row: usize,
        p: &[f32],
        u: &[f32],
        h0: &[f32],
        res: &[f32],
        dres: &[f32],
        dp: &mut [f32],
        dh0: &mut [f32],
        du: &mut [f32],
    )
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_rows_impl<S: Scan>(
    op: &ScanOp<S>,
    first_row: usize,
    p: &[f32],
    u: &[f32],
    h0: &[f32],
    res: &[f32],
    dres: &[f32],
    dp: &mut [f32],
    dh0: &mut [f32],
    du: &mut [f32],
) {
    let (seq, hid) = (op.seq, op.hidden);
    let bh = S::BLOCKS * hid;
    let rows = h0.len() / hid;
    for b in 0..rows {
        let out = &res[b * (seq + 1) * hid..(b + 1) * (seq + 1) * hid];
        let dout = &dres[b * (seq + 1) * hid..(b + 1) * (seq + 1) * hid];
        let mut dh = dout[seq * hid..].to_vec();
        let times: Vec<usize> = op.times(op.len_of(first_row + b)).collect();
        // Invalid steps (past the length) have no gradient: the buffer is fresh, zero-filled.
        for (k, &t) in times.iter().enumerate().rev() {
            for (d, o) in dh.iter_mut().zip(&dout[t * hid..(t + 1) * hid]) {
                *d += o;
            }
            let h_prev = match k {
                0 => &h0[b * hid..(b + 1) * hid],
                _ => &out[times[k - 1] * hid..(times[k - 1] + 1) * hid],
            };
            let at = (b * seq + t) * bh;
            S::backward_row(
                &p[at..at + bh],
                u,
                h_prev,
                &out[t * hid..(t + 1) * hid],
                &mut dh,
                &mut dp[at..at + bh],
                du,
            );
        }
        dh0[b * hid..(b + 1) * hid].copy_from_slice(&dh);
    }
}

impl<S: Scan> CustomOp3 for ScanOp<S> {
    fn name(&self) -> &'static str {
        S::NAME
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
        let (seq, hid) = (self.seq, self.hidden);
        let (batch, h0_width) = l3.shape().dims2()?;
        if l1.shape().dims() != [batch, seq, S::BLOCKS * hid] || h0_width != hid {
            bail!(
                "fused scan: projections {:?} and state {:?}, expected ({batch}, {seq}, {}) and ({batch}, {hid})",
                l1.shape(),
                l3.shape(),
                S::BLOCKS * hid
            );
        }
        let p: &[f32] = contiguous(s1, l1, "projections")?;
        let u: &[f32] = contiguous(s2, l2, "recurrent weights")?;
        let u = if self.has_u { u } else { &[][..] };
        let h0: &[f32] = contiguous(s3, l3, "initial state")?;
        let mut res = vec![0.0f32; batch * (seq + 1) * hid];
        let rows = block_rows(batch);
        let bh = S::BLOCKS * hid;
        std::thread::scope(|scope| {
            for (i, (res, h0)) in res
                .chunks_mut(rows * (seq + 1) * hid)
                .zip(h0.chunks(rows * hid))
                .enumerate()
            {
                let p = &p[i * rows * seq * bh..];
                scope.spawn(move || forward_rows::<S>(self, i * rows, p, u, h0, res));
            }
        });
        Ok((CpuStorage::F32(res), Shape::from((batch, seq + 1, hid))))
    }

    fn bwd(
        &self,
        p: &Tensor,
        u: &Tensor,
        h0: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (seq, hid) = (self.seq, self.hidden);
        let batch = h0.dim(0)?;
        let bh = S::BLOCKS * hid;
        let grad_res = grad_res.contiguous()?;
        let (p_storage, p_layout) = p.storage_and_layout();
        let (u_storage, u_layout) = u.storage_and_layout();
        let (h0_storage, h0_layout) = h0.storage_and_layout();
        let (res_storage, res_layout) = res.storage_and_layout();
        let (dres_storage, dres_layout) = grad_res.storage_and_layout();
        let (
            Storage::Cpu(p_cpu),
            Storage::Cpu(u_cpu),
            Storage::Cpu(h0_cpu),
            Storage::Cpu(res_cpu),
            Storage::Cpu(dres_cpu),
        ) = (
            &*p_storage,
            &*u_storage,
            &*h0_storage,
            &*res_storage,
            &*dres_storage,
        )
        else {
            bail!("the fused scan runs on the CPU only");
        };
        let pv: &[f32] = contiguous(p_cpu, p_layout, "projections")?;
        let uv: &[f32] = contiguous(u_cpu, u_layout, "recurrent weights")?;
        let uv = if self.has_u { uv } else { &[][..] };
        let h0v: &[f32] = contiguous(h0_cpu, h0_layout, "initial state")?;
        let resv: &[f32] = contiguous(res_cpu, res_layout, "outputs")?;
        let dresv: &[f32] = contiguous(dres_cpu, dres_layout, "output gradient")?;
        let mut dp = vec![0.0f32; batch * seq * bh];
        let mut dh0 = vec![0.0f32; batch * hid];
        let rows = block_rows(batch);
        let blocks = batch.div_ceil(rows);
        let u_len = uv.len();
        let mut du = vec![0.0f32; blocks * u_len];
        std::thread::scope(|scope| {
            let mut du_blocks = du.chunks_mut(u_len.max(1));
            for (i, (dp, dh0)) in dp
                .chunks_mut(rows * seq * bh)
                .zip(dh0.chunks_mut(rows * hid))
                .enumerate()
            {
                let du = if u_len > 0 {
                    du_blocks.next().unwrap_or_default()
                } else {
                    &mut [][..]
                };
                let (p, h0) = (&pv[i * rows * seq * bh..], &h0v[i * rows * hid..]);
                let h0 = &h0[..dh0.len()];
                let (res, dres) = (
                    &resv[i * rows * (seq + 1) * hid..],
                    &dresv[i * rows * (seq + 1) * hid..],
                );
                scope.spawn(move || {
                    backward_rows::<S>(self, i * rows, p, uv, h0, res, dres, dp, dh0, du)
                });
            }
        });
        drop((p_storage, u_storage, h0_storage, res_storage, dres_storage));
        let dev = h0.device();
        let du = if self.has_u {
            let mut total = vec![0.0f32; u_len];
            for block in du.chunks_exact(u_len) {
                for (t, v) in total.iter_mut().zip(block) {
                    *t += v;
                }
            }
            Some(Tensor::from_vec(total, u_len, dev)?)
        } else {
            None
        };
        Ok((
            Some(Tensor::from_vec(dp, (batch, seq, bh), dev)?),
            du,
            Some(Tensor::from_vec(dh0, (batch, hid), dev)?),
        ))
    }
}
