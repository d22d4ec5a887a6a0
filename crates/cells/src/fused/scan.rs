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
//! The op takes the layer input `xs` (batch, seq, I) — or, for token ids, a table of every token's projection
//! (vocab, B·H) — the packed weights [W | b | u] (B·H, I + columns for the bias and the recurrent vector, when
//! the cell has them) and the initial state `h0` (batch, H), and returns (batch, seq + 1, H): the outputs of
//! every step, then the final state. The projection happens inside the op, as in the classic cells' kernel:
//! as a candle op of its own, its (batch, seq, B·H) output and gradient would pass through candle's gradient
//! store (a zero-filled buffer and an addition each: a quarter of a minGRU step in profiles). The backward
//! pass walks time back once per row with the outputs as the states (a step's `h_{t-1}` is the output of the
//! step before it), then takes dW, dxs and the table's gradient as single products or a scatter-add. Rows past
//! their length keep their state, output zeros and pass their gradient through unchanged, as in the classic
//! cells' kernels.

use std::sync::Arc;

use std::sync::Mutex;

use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};

use super::gemm::{matmul, MatRef};
use super::{contiguous, pool};

/// The element-wise math of one scanned cell.
pub(crate) trait Scan: Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    /// Blocks of H in each step's projection: 1 (IndRNN), 2 (minGRU), 3 (minLSTM).
    const BLOCKS: usize;
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

/// What the scan reads as its input.
#[derive(Debug, Clone)]
pub(crate) enum ScanInput {
    /// The layer input (batch, seq, I), projected inside the op by the packed W.
    Dense,
    /// Token ids, batch-major; the op's first operand is a table (vocab, B·H) of every token's projection
    /// (bias included), and the packed weights hold no W.
    Table(Arc<[u32]>),
}

/// Runs the scan of `S`: `xs` (batch, seq, I) projected by `w` (B·H, I) and `b` (B·H), or with `table`
/// (vocab, B·H) the rows of the token ids `xs` (batch, seq) u32; from `h0` (batch, H); `u` is the recurrent
/// vector (H) of the cells that have one. Returns the outputs (batch, seq, H) and the final state (batch, H).
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan<S: Scan>(
    xs: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    u: Option<&Tensor>,
    table: Option<&Tensor>,
    h0: &Tensor,
    lengths: Option<Arc<[usize]>>,
    reverse: bool,
) -> Result<(Tensor, Tensor)> {
    let seq = xs.dim(1)?;
    let (rows, input) = w.dims2()?;
    let hidden = rows / S::BLOCKS;
    let (arg1, mut columns, input_kind, x_cols) = match table {
        Some(table) => {
            let ids: Vec<u32> = xs.flatten_all()?.to_vec1()?;
            let vocab = table.dim(0)?;
            if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
                bail!("token id {bad} is outside the input size {vocab}");
            }
            (
                table.contiguous()?,
                Vec::new(),
                ScanInput::Table(Arc::from(ids)),
                0,
            )
        }
        None => (xs.contiguous()?, vec![w.clone()], ScanInput::Dense, input),
    };
    // With a table, the bias is in the table already.
    let has_bias = b.is_some() && table.is_none();
    if let (Some(b), true) = (b, has_bias) {
        columns.push(b.unsqueeze(1)?);
    }
    let has_u = u.is_some();
    if let Some(u) = u {
        columns.push(u.unsqueeze(1)?);
    }
    let packed = if columns.is_empty() {
        // Nothing but the table: a placeholder operand.
        Tensor::zeros((rows, 1), DType::F32, xs.device())?
    } else {
        Tensor::cat(&columns, 1)?
    };
    let op = ScanOp::<S> {
        seq,
        hidden,
        reverse,
        input: input_kind,
        x_cols,
        has_bias,
        has_u,
        lengths,
        saved: Mutex::new(None),
        cell: std::marker::PhantomData,
    };
    let res = arg1.apply_op3_arc(&packed, &h0.contiguous()?, Arc::new(Box::new(op)))?;
    Ok((res.narrow(1, 0, seq)?, res.narrow(1, seq, 1)?.squeeze(1)?))
}

pub(crate) struct ScanOp<S: Scan> {
    seq: usize,
    hidden: usize,
    reverse: bool,
    input: ScanInput,
    /// Columns of W in the packed weights (0 with a table).
    x_cols: usize,
    has_bias: bool,
    has_u: bool,
    lengths: Option<Arc<[usize]>>,
    /// The projections of the forward pass, for the backward pass.
    saved: Mutex<Option<Vec<f32>>>,
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

    /// Columns of the packed weights.
    fn packed_width(&self) -> usize {
        (self.x_cols + usize::from(self.has_bias) + usize::from(self.has_u)).max(1)
    }

    /// Column of u in the packed weights.
    fn u_col(&self) -> usize {
        self.x_cols + usize::from(self.has_bias)
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
        let len = op.len_of(first_row + b);
        let times: Vec<usize> = op.times(len).collect();
        // Steps past the length have no gradient (the buffer comes from the pool with stale contents).
        dp[(b * seq + len) * bh..(b + 1) * seq * bh].fill(0.0);
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
        let bh = S::BLOCKS * hid;
        let (batch, h0_width) = l3.shape().dims2()?;
        let ldp = self.packed_width();
        if h0_width != hid || l2.shape().dims() != [bh, ldp] {
            bail!(
                "fused scan: state {:?} and packed weights {:?}, expected ({batch}, {hid}) and ({bh}, {ldp})",
                l3.shape(),
                l2.shape()
            );
        }
        let wp: &[f32] = contiguous(s2, l2, "packed weights")?;
        let h0: &[f32] = contiguous(s3, l3, "initial state")?;
        let bt = batch * seq;
        let threads = candle_core::utils::get_num_threads();
        // Every step's projection at once: one product (bias added after), or the table's rows.
        let mut p = pool::take(bt * bh);
        match &self.input {
            ScanInput::Dense => {
                let input = self.x_cols;
                if l1.shape().dims() != [batch, seq, input] {
                    bail!(
                        "fused scan: input {:?}, expected ({batch}, {seq}, {input})",
                        l1.shape()
                    );
                }
                let xs: &[f32] = contiguous(s1, l1, "layer input")?;
                matmul(
                    &mut p,
                    bh,
                    MatRef::rows(xs, bt, input, input),
                    MatRef::rows(wp, bh, input, ldp).t(),
                    false,
                    threads,
                );
                if self.has_bias {
                    let bias: Vec<f32> = (0..bh).map(|r| wp[r * ldp + input]).collect();
                    for row in p.chunks_exact_mut(bh) {
                        for (v, b) in row.iter_mut().zip(&bias) {
                            *v += b;
                        }
                    }
                }
            }
            ScanInput::Table(ids) => {
                let table: &[f32] = contiguous(s1, l1, "input table")?;
                for (row, &id) in p.chunks_exact_mut(bh).zip(ids.iter()) {
                    let id = id as usize;
                    row.copy_from_slice(&table[id * bh..(id + 1) * bh]);
                }
            }
        }
        let u: Vec<f32> = if self.has_u {
            (0..hid).map(|r| wp[r * ldp + self.u_col()]).collect()
        } else {
            Vec::new()
        };
        let mut res = vec![0.0f32; batch * (seq + 1) * hid];
        let rows = block_rows(batch);
        std::thread::scope(|scope| {
            for (i, (res, h0)) in res
                .chunks_mut(rows * (seq + 1) * hid)
                .zip(h0.chunks(rows * hid))
                .enumerate()
            {
                let p = &p[i * rows * seq * bh..];
                let u = &u[..];
                scope.spawn(move || forward_rows::<S>(self, i * rows, p, u, h0, res));
            }
        });
        let mut saved = self.saved.lock().map_err(poisoned)?;
        if let Some(old) = saved.replace(p) {
            pool::give(old);
        }
        Ok((CpuStorage::F32(res), Shape::from((batch, seq + 1, hid))))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        packed: &Tensor,
        h0: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (seq, hid) = (self.seq, self.hidden);
        let batch = h0.dim(0)?;
        let bh = S::BLOCKS * hid;
        let bt = batch * seq;
        let ldp = self.packed_width();
        let threads = candle_core::utils::get_num_threads();
        let Some(p) = self.saved.lock().map_err(poisoned)?.take() else {
            bail!("the fused scan's backward pass ran twice on one forward pass");
        };
        let grad_res = grad_res.contiguous()?;
        let (x_storage, x_layout) = xs.storage_and_layout();
        let (w_storage, w_layout) = packed.storage_and_layout();
        let (h0_storage, h0_layout) = h0.storage_and_layout();
        let (res_storage, res_layout) = res.storage_and_layout();
        let (dres_storage, dres_layout) = grad_res.storage_and_layout();
        let (
            Storage::Cpu(x_cpu),
            Storage::Cpu(w_cpu),
            Storage::Cpu(h0_cpu),
            Storage::Cpu(res_cpu),
            Storage::Cpu(dres_cpu),
        ) = (
            &*x_storage,
            &*w_storage,
            &*h0_storage,
            &*res_storage,
            &*dres_storage,
        )
        else {
            bail!("the fused scan runs on the CPU only");
        };
        let wp: &[f32] = contiguous(w_cpu, w_layout, "packed weights")?;
        let h0v: &[f32] = contiguous(h0_cpu, h0_layout, "initial state")?;
        let resv: &[f32] = contiguous(res_cpu, res_layout, "outputs")?;
        let dresv: &[f32] = contiguous(dres_cpu, dres_layout, "output gradient")?;
        let u: Vec<f32> = if self.has_u {
            (0..hid).map(|r| wp[r * ldp + self.u_col()]).collect()
        } else {
            Vec::new()
        };

        let mut dp = pool::take(bt * bh);
        let mut dh0 = vec![0.0f32; batch * hid];
        let rows = block_rows(batch);
        let blocks = batch.div_ceil(rows);
        let u_len = u.len();
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
                let p = &p[i * rows * seq * bh..];
                let h0 = &h0v[i * rows * hid..i * rows * hid + dh0.len()];
                let (res, dres) = (
                    &resv[i * rows * (seq + 1) * hid..],
                    &dresv[i * rows * (seq + 1) * hid..],
                );
                let u = &u[..];
                scope.spawn(move || {
                    backward_rows::<S>(self, i * rows, p, u, h0, res, dres, dp, dh0, du)
                });
            }
        });
        drop((h0_storage, res_storage, dres_storage));
        pool::give(p);

        // The packed weights' gradient: dW = dpᵀ·xs, the bias and u columns.
        let mut dw = vec![0.0f32; bh * ldp];
        if self.has_bias {
            let col = self.x_cols;
            for row in dp.chunks_exact(bh) {
                for (r, v) in row.iter().enumerate() {
                    dw[r * ldp + col] += v;
                }
            }
        }
        if self.has_u {
            let col = self.u_col();
            for block in du.chunks_exact(u_len) {
                for (r, v) in block.iter().enumerate() {
                    dw[r * ldp + col] += v;
                }
            }
        }
        let dev = h0.device();
        let d_input = match &self.input {
            ScanInput::Dense => {
                let input = self.x_cols;
                let xv: &[f32] = contiguous(x_cpu, x_layout, "layer input")?;
                matmul(
                    &mut dw,
                    ldp,
                    MatRef::rows(&dp, bt, bh, bh).t(),
                    MatRef::rows(xv, bt, input, input),
                    true,
                    threads,
                );
                if xs.track_op() {
                    let mut dxs = vec![0.0f32; bt * input];
                    matmul(
                        &mut dxs,
                        input,
                        MatRef::rows(&dp, bt, bh, bh),
                        MatRef::rows(wp, bh, input, ldp),
                        false,
                        threads,
                    );
                    Some(Tensor::from_vec(dxs, (batch, seq, input), dev)?)
                } else {
                    None
                }
            }
            ScanInput::Table(ids) => {
                // The table row of a token collects the dp rows of its steps: a scatter-add.
                let vocab = xs.dim(0)?;
                let mut dtable = vec![0.0f32; vocab * bh];
                for (row, &id) in dp.chunks_exact(bh).zip(ids.iter()) {
                    let acc = &mut dtable[id as usize * bh..(id as usize + 1) * bh];
                    for (a, v) in acc.iter_mut().zip(row) {
                        *a += v;
                    }
                }
                Some(Tensor::from_vec(dtable, (vocab, bh), dev)?)
            }
        };
        drop((x_storage, w_storage));
        pool::give(dp);
        Ok((
            d_input,
            Some(Tensor::from_vec(dw, (bh, ldp), dev)?),
            Some(Tensor::from_vec(dh0, (batch, hid), dev)?),
        ))
    }
}

fn poisoned<T>(_: T) -> candle_core::Error {
    candle_core::Error::Msg("the fused scan's saved projections are poisoned".into())
}
