//! Fused CPU kernels for the whole-sequence path.
//!
//! One layer in one direction is one candle custom op ([`RecurrenceOp`]). Its forward computes the input
//! projection `xs·W_ihᵀ + b_ih` for all steps as one matrix product, then loops over time on raw buffers;
//! its hand-written backward runs one pass back over time for the gradients of the projected inputs and the
//! initial state, then computes dW_ih, dW_hh, the biases and dxs as single products over all steps. Only the
//! two truly sequential products (h·W_hhᵀ forward, dG·W_hh backward) run per step, each thread on its own
//! block of batch rows for the whole sequence, with no synchronisation between steps.
//!
//! Keeping the projection inside the op matters: as a separate candle op its (batch, seq, G·H) output and
//! gradient would go through candle's gradient store (a zero-filled buffer and an addition each), several
//! passes over the largest tensors of the step.
//!
//! The op takes three tensors: the layer input `xs` (batch, seq, in); the packed weights
//! [W_ih | W_hh | b_ih | b_hh] (G·H, in + H + 2), or [W_ih | W_hh] (G·H, in + H) without biases, the layout
//! cuDNN uses; and the initial state (S, batch, H) with S = 2 for an LSTM (h, c) and 1 otherwise. It returns
//! (batch, seq + S, H): the outputs of every step, then the final h (and c).

/// Compiles `$name` three times over the `#[inline(always)]` body `$body`: for AVX-512, for AVX2 with FMA,
/// and for the baseline, and picks one at run time, so that the element-wise loops vectorise as wide as the
/// CPU allows while the binary runs on any x86-64 (and any other architecture). A generic parameter (a
/// cell's gate math) is passed through to the body, which is then compiled three times per cell.
macro_rules! multiversion {
    ($(#[$doc:meta])* fn $name:ident $(<$g:ident: $bound:path>)? => $body:ident ( $($arg:ident : $ty:ty),* $(,)? )) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name$(<$g: $bound>)?($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn v4$(<$g: $bound>)?($($arg: $ty),*) {
                    $body$(::<$g>)?($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn v3$(<$g: $bound>)?($($arg: $ty),*) {
                    $body$(::<$g>)?($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("avx512dq")
                    && std::is_x86_feature_detected!("avx512bw")
                {
                    // SAFETY: the CPU has every feature `v4` is compiled for.
                    return unsafe { v4$(::<$g>)?($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has every feature `v3` is compiled for.
                    return unsafe { v3$(::<$g>)?($($arg),*) };
                }
            }
            $body$(::<$g>)?($($arg),*)
        }
    };
}

pub(crate) mod gemm;
mod head_loss;
mod kernel;
pub(crate) mod lanes;
mod linear;
mod loss;
pub(crate) mod math;
pub(crate) mod pool;
pub(crate) mod scan;
pub(crate) mod step;

pub use head_loss::linear_cross_entropy;
pub use linear::linear;
pub use loss::cross_entropy;

use std::sync::{Arc, Mutex};

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};

use crate::cell::{CellState, LayerInput};
use crate::cells::{DirectionWeights, Gates};
use kernel::{backward_block, forward_block, Dims, HiddenWeights, SavedMut, SavedRef};

/// One layer in one direction of a classic cell `G` on the fused kernels: `input` is the layer's input,
/// dense or (layer 0) token ids whose projected inputs are rows of a table (vocab, G·H).
pub(crate) fn forward<G: Gates>(
    w: &DirectionWeights,
    input: &LayerInput<'_>,
    lengths: Option<Arc<[usize]>>,
    init: &CellState,
    reverse: bool,
) -> Result<(Tensor, CellState)> {
    // Over token ids: the input projection of every possible token, looked up per step.
    let (xs, table) = match *input {
        LayerInput::Dense(xs) => (xs, None),
        LayerInput::Embedded { ids, table } => {
            (ids, Some(crate::linear(table, &w.w_ih, w.b_ih.as_ref())?))
        }
        LayerInput::OneHot(ids) => (
            ids,
            Some(match &w.b_ih {
                Some(b) => w.w_ih.t()?.broadcast_add(b)?,
                None => w.w_ih.t()?,
            }),
        ),
    };
    let (outputs, h, c) =
        run_direction::<G>(w, xs, table, lengths, &init.h, init.memory.first(), reverse)?;
    Ok((
        outputs,
        CellState {
            h,
            memory: c.into_iter().collect(),
        },
    ))
}

/// One direction of one layer. With `table` (vocab, G·H), `xs` holds token ids and step t of row b reads
/// table row ids[b, t] as its projected input; otherwise `xs` is the dense layer input.
#[allow(clippy::too_many_arguments)]
fn run_direction<G: Gates>(
    w: &DirectionWeights,
    xs: &Tensor,
    table: Option<Tensor>,
    lengths: Option<Arc<[usize]>>,
    h0: &Tensor,
    c0: Option<&Tensor>,
    reverse: bool,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let seq = xs.dim(1)?;
    let hidden = w.w_hh.dim(1)?;
    let state0 = match c0 {
        Some(c) => Tensor::stack(&[h0, c], 0)?,
        None => h0.unsqueeze(0)?.contiguous()?,
    };
    let (input, arg1, packed) = match table {
        Some(table) => {
            let ids: Vec<u32> = xs.flatten_all()?.to_vec1()?;
            let packed = match &w.b_hh {
                Some(b_hh) => Tensor::cat(&[&w.w_hh, &b_hh.unsqueeze(1)?], 1)?,
                None => w.w_hh.contiguous()?,
            };
            (Input::Table(Arc::from(ids)), table.contiguous()?, packed)
        }
        None => {
            let packed = match (&w.b_ih, &w.b_hh) {
                (Some(b_ih), Some(b_hh)) => Tensor::cat(
                    &[&w.w_ih, &w.w_hh, &b_ih.unsqueeze(1)?, &b_hh.unsqueeze(1)?],
                    1,
                )?,
                _ => Tensor::cat(&[&w.w_ih, &w.w_hh], 1)?,
            };
            (Input::Dense(w.w_ih.dim(1)?), xs.contiguous()?, packed)
        }
    };
    let op = RecurrenceOp::<G> {
        dims: Dims::of::<G>(seq, hidden, reverse),
        input,
        has_bias: w.b_hh.is_some(),
        lengths,
        saved: Mutex::new(None),
        gates: std::marker::PhantomData,
    };
    let res = arg1.apply_op3_arc(&packed, &state0, Arc::new(Box::new(op)))?;
    let outputs = res.narrow(1, 0, seq)?;
    let h = res.narrow(1, seq, 1)?.squeeze(1)?;
    let c = if G::CELL_STATE {
        Some(res.narrow(1, seq + 1, 1)?.squeeze(1)?)
    } else {
        None
    };
    Ok((outputs, h, c))
}

/// What the forward pass keeps for the backward pass, each (batch, seq, ·). Its buffers return to the pool
/// when it is dropped (after the backward pass, or with the graph).
struct Saved {
    acts: Vec<f32>,
    hprev: Vec<f32>,
    cprev: Vec<f32>,
    aux: Vec<f32>,
}

impl Drop for Saved {
    fn drop(&mut self) {
        for v in [
            &mut self.acts,
            &mut self.hprev,
            &mut self.cprev,
            &mut self.aux,
        ] {
            pool::give(std::mem::take(v));
        }
    }
}

/// What the op's first argument is.
#[derive(Debug, Clone)]
enum Input {
    /// The layer input (batch, seq, width); the packed weights are [W_ih | W_hh | b_ih | b_hh].
    Dense(usize),
    /// A table (vocab, G·H) of projected inputs (b_ih included) and these token ids, batch-major; the packed
    /// weights are [W_hh | b_hh].
    Table(Arc<[u32]>),
}

/// The recurrence of one layer in one direction of a classic cell `G` as a candle custom op (see the
/// module doc).
struct RecurrenceOp<G: Gates> {
    dims: Dims,
    input: Input,
    has_bias: bool,
    lengths: Option<Arc<[usize]>>,
    saved: Mutex<Option<Saved>>,
    gates: std::marker::PhantomData<G>,
}

/// The data of a contiguous CPU operand of a fused op; `what` names it in the error.
pub(crate) fn contiguous<'a, T: candle_core::WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> Result<&'a [T]> {
    let data = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("seqlab's fused ops need a contiguous {what}"),
    }
}

/// The f32 data of a contiguous CPU operand; `what` names it in the error.
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    contiguous(s, l, what)
}

/// Rows per thread when candle's threads split `batch` rows (at most one thread per row).
pub(crate) fn block_rows(batch: usize) -> usize {
    let threads = candle_core::utils::get_num_threads().clamp(1, batch.max(1));
    batch.div_ceil(threads)
}

/// W_hhᵀ as (H, ld), with `ld` padded past a multiple of 64 floats: power-of-two strides make the per-step
/// product's loads collide in the same cache sets.
fn transpose_padded(w: &[f32], rows: usize, cols: usize, w_rs: usize) -> (Vec<f32>, usize) {
    let ld = if rows.is_multiple_of(64) {
        rows + 16
    } else {
        rows
    };
    let mut t = vec![0.0f32; cols * ld];
    for r in 0..rows {
        for (c, v) in w[r * w_rs..r * w_rs + cols].iter().enumerate() {
            t[c * ld + r] = *v;
        }
    }
    (t, ld)
}

/// Column `col` of a row-major (rows × row_stride) matrix.
fn column(w: &[f32], rows: usize, row_stride: usize, col: usize) -> Vec<f32> {
    (0..rows).map(|r| w[r * row_stride + col]).collect()
}

/// The f32 data behind a contiguous CPU tensor's guard (`t.storage_and_layout()`), read in place: a
/// backward pass reads its inputs without copying them out.
pub(crate) fn guarded<'a, G: std::ops::Deref<Target = Storage>>(
    g: &'a (G, &'a Layout),
    what: &str,
) -> Result<&'a [f32]> {
    match &*g.0 {
        Storage::Cpu(s) => contiguous(s, g.1, what),
        _ => bail!("seqlab's fused ops run on the CPU only"),
    }
}

/// The element-wise sum of the threads' `parts` (partial weight gradients), each of `len`.
pub(crate) fn summed(parts: &[Vec<f32>], len: usize) -> Vec<f32> {
    let mut total = vec![0.0f32; len];
    for part in parts {
        for (a, b) in total.iter_mut().zip(part) {
            *a += b;
        }
    }
    total
}

/// The error of a fused op whose saved state's lock is poisoned (a thread panicked holding it).
pub(crate) fn poisoned<T>(_: T) -> candle_core::Error {
    candle_core::Error::Msg("a fused op's saved state is poisoned".into())
}

impl<G: Gates> RecurrenceOp<G> {
    /// Columns of W_ih in the packed weights: the input width, or none with a table.
    fn x_cols(&self) -> usize {
        match self.input {
            Input::Dense(width) => width,
            Input::Table(_) => 0,
        }
    }

    /// Column of b_ih in the packed weights (dense input with biases only).
    fn b_ih_col(&self) -> Option<usize> {
        match self.input {
            Input::Dense(width) if self.has_bias => Some(width + self.dims.hidden),
            _ => None,
        }
    }

    /// Column of b_hh in the packed weights.
    fn b_hh_col(&self) -> Option<usize> {
        self.has_bias
            .then(|| self.x_cols() + self.dims.hidden + usize::from(self.b_ih_col().is_some()))
    }

    /// Columns of the packed weights.
    fn packed_width(&self) -> usize {
        self.b_hh_col()
            .map_or(self.x_cols() + self.dims.hidden, |c| c + 1)
    }
}

impl<G: Gates> CustomOp3 for RecurrenceOp<G> {
    fn name(&self) -> &'static str {
        "seqlab-fused-recurrence"
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
        let d = self.dims;
        let (hid, gh, slots, seq) = (d.hidden, d.gh(), d.state_slots(), d.seq);
        let x_cols = self.x_cols();
        let ldp = self.packed_width();
        if l2.shape().dims() != [gh, ldp] {
            bail!(
                "fused recurrence: packed weights {:?}, expected ({gh}, {ldp})",
                l2.shape()
            );
        }
        let wp = f32_slice(s2, l2, "packed weights")?;
        let state0 = f32_slice(s3, l3, "initial state")?;
        let batch = l3.shape().dims3()?.1;
        let threads = candle_core::utils::get_num_threads();

        // The input projection of every step at once: xp = xs·W_ihᵀ (b_ih is added row by row in the
        // kernel, while each row is hot), or the table rows of the tokens.
        let bt = batch * seq;
        let mut xp = pool::take(bt * gh);
        match &self.input {
            Input::Table(ids) => {
                let (vocab, width) = l1.shape().dims2()?;
                if width != gh || ids.len() != bt {
                    bail!(
                        "fused recurrence: table {:?} for {} ids, expected (vocab, {gh}) for {bt}",
                        l1.shape(),
                        ids.len()
                    );
                }
                if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
                    bail!("token id {id} is outside the vocabulary of {vocab}");
                }
                // The rows are gathered by each block's thread, below.
            }
            Input::Dense(input) => {
                let input = *input;
                if l1.shape().dims() != [batch, seq, input] {
                    bail!(
                        "fused recurrence: input {:?}, expected ({batch}, {seq}, {input})",
                        l1.shape()
                    );
                }
                let xs = f32_slice(s1, l1, "layer input")?;
                gemm::matmul(
                    &mut xp,
                    gh,
                    gemm::MatRef::rows(xs, bt, input, input),
                    gemm::MatRef::rows(wp, gh, input, ldp).t(),
                    false,
                    threads,
                );
            }
        }

        let (w_t, ld) = transpose_padded(&wp[x_cols..], gh, hid, ldp);
        let b_ih = self.b_ih_col().map(|col| column(wp, gh, ldp, col));
        let b_hh = self.b_hh_col().map(|col| column(wp, gh, ldp, col));
        let weights = HiddenWeights {
            w_t: &w_t,
            ld,
            w: &wp[x_cols..],
            w_rs: ldp,
            bias: b_hh.as_deref(),
            bias_x: b_ih.as_deref(),
        };
        let mut res = vec![0.0f32; batch * (seq + slots) * hid];
        let mut saved = Saved {
            acts: pool::take(bt * gh),
            hprev: pool::take(bt * hid),
            cprev: pool::take(if G::CELL_STATE { bt * hid } else { 0 }),
            aux: pool::take(if G::AUX { bt * hid } else { 0 }),
        };
        let (h0, c0) = state0.split_at(batch * hid);
        let gather = match &self.input {
            Input::Table(ids) => Some((f32_slice(s1, l1, "input table")?, &ids[..])),
            Input::Dense(_) => None,
        };
        let rows = block_rows(batch);
        let chunk = |n: usize| (rows * seq * n).max(1);
        std::thread::scope(|scope| {
            let mut cprev = saved.cprev.chunks_mut(chunk(hid));
            let mut aux = saved.aux.chunks_mut(chunk(hid));
            let blocks = xp
                .chunks_mut(rows * seq * gh)
                .zip(res.chunks_mut(rows * (seq + slots) * hid))
                .zip(saved.acts.chunks_mut(rows * seq * gh))
                .zip(saved.hprev.chunks_mut(rows * seq * hid))
                .zip(h0.chunks(rows * hid))
                .enumerate();
            for (i, ((((xp, res), acts), hprev), h0)) in blocks {
                let n = h0.len() / hid;
                let lengths = self.lengths.as_deref().map(|l| &l[i * rows..i * rows + n]);
                let c0 = if G::CELL_STATE {
                    &c0[i * rows * hid..(i * rows + n) * hid]
                } else {
                    &[][..]
                };
                let saved = SavedMut {
                    acts,
                    hprev,
                    cprev: cprev.next().unwrap_or_default(),
                    aux: aux.next().unwrap_or_default(),
                };
                let weights = &weights;
                let gather =
                    gather.map(|(table, ids)| (table, &ids[i * rows * seq..(i * rows + n) * seq]));
                scope.spawn(move || {
                    if let Some((table, ids)) = gather {
                        for (row, &id) in xp.chunks_exact_mut(gh).zip(ids) {
                            row.copy_from_slice(&table[id as usize * gh..(id as usize + 1) * gh]);
                        }
                    }
                    forward_block::<G>(d, n, lengths, xp, weights, h0, c0, res, saved)
                });
            }
        });
        pool::give(xp);
        *self.saved.lock().map_err(poisoned)? = Some(saved);
        Ok((CpuStorage::F32(res), Shape::from((batch, seq + slots, hid))))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        packed: &Tensor,
        state0: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = self.dims;
        let (hid, gh, slots, seq) = (d.hidden, d.gh(), d.state_slots(), d.seq);
        let x_cols = self.x_cols();
        let ldp = self.packed_width();
        let Some(saved) = self.saved.lock().map_err(poisoned)?.take() else {
            bail!("the fused recurrence's backward pass ran twice on one forward pass");
        };
        let batch = state0.dim(1)?;
        let bt = batch * seq;
        let threads = candle_core::utils::get_num_threads();
        let grad_res = grad_res.contiguous()?;
        let (dres_storage, dres_layout) = grad_res.storage_and_layout();
        let (w_storage, w_layout) = packed.storage_and_layout();
        let (x_storage, x_layout) = xs.storage_and_layout();
        let (Storage::Cpu(dres_cpu), Storage::Cpu(w_cpu), Storage::Cpu(x_cpu)) =
            (&*dres_storage, &*w_storage, &*x_storage)
        else {
            bail!("the fused recurrence runs on the CPU only");
        };
        let dres = f32_slice(dres_cpu, dres_layout, "output gradient")?;
        let wp = f32_slice(w_cpu, w_layout, "packed weights")?;

        let weights = HiddenWeights {
            w_t: &[],
            ld: 0,
            w: &wp[x_cols..],
            w_rs: ldp,
            bias: None,
            bias_x: None,
        };
        let mut dxp = pool::take(bt * gh);
        let mut dph = pool::take(if G::SEPARATE_DPH { bt * gh } else { 0 });
        let mut dh0 = vec![0.0f32; batch * hid];
        let mut dc0 = vec![0.0f32; if slots == 2 { batch * hid } else { 0 }];
        let rows = block_rows(batch);
        let blocks_n = batch.div_ceil(rows);
        // Per-block partial sums of the bias gradients (b_ih, b_hh), combined below.
        let bias_len = if self.has_bias { gh } else { 0 };
        let mut db = vec![0.0f32; blocks_n * 2 * bias_len];
        let chunk = |n: usize| (rows * seq * n).max(1);
        std::thread::scope(|scope| {
            let mut cprev = saved.cprev.chunks(chunk(hid));
            let mut aux = saved.aux.chunks(chunk(hid));
            let mut dph_blocks = dph.chunks_mut(chunk(gh));
            let mut dc0_blocks = dc0.chunks_mut((rows * hid).max(1));
            let mut db_blocks = db.chunks_mut((2 * bias_len).max(1));
            let blocks = dxp
                .chunks_mut(rows * seq * gh)
                .zip(dres.chunks(rows * (seq + slots) * hid))
                .zip(saved.acts.chunks(rows * seq * gh))
                .zip(saved.hprev.chunks(rows * seq * hid))
                .zip(dh0.chunks_mut(rows * hid))
                .enumerate();
            for (i, ((((dxp, dres), acts), hprev), dh0)) in blocks {
                let n = dh0.len() / hid;
                let lengths = self.lengths.as_deref().map(|l| &l[i * rows..i * rows + n]);
                let saved = SavedRef {
                    acts,
                    hprev,
                    cprev: cprev.next().unwrap_or_default(),
                    aux: aux.next().unwrap_or_default(),
                };
                let dph = dph_blocks.next().unwrap_or_default();
                let dc0 = dc0_blocks.next().unwrap_or_default();
                let (db_x, db_h) = db_blocks.next().unwrap_or_default().split_at_mut(bias_len);
                let weights = &weights;
                scope.spawn(move || {
                    backward_block::<G>(
                        d, n, lengths, weights, saved, dres, dxp, dph, dh0, dc0, db_x, db_h,
                    )
                });
            }
        });
        drop(dres_storage);

        // Every weight gradient is one product over all batch·seq rows: dW_ih = dxpᵀ·xs,
        // dW_hh = dphᵀ·h_prev (dph is dxp but for a GRU's candidate block); the biases are column sums.
        let dph_all: &[f32] = if G::SEPARATE_DPH { &dph } else { &dxp };
        let mut dw = vec![0.0f32; gh * ldp];
        // dW_hh = dphᵀ·h_prev over all batch·seq rows; the biases' gradients are the summed columns.
        gemm::matmul(
            &mut dw[x_cols..],
            ldp,
            gemm::MatRef::rows(dph_all, bt, gh, gh).t(),
            gemm::MatRef::rows(&saved.hprev, bt, hid, hid),
            false,
            threads,
        );
        if let Some(col) = self.b_hh_col() {
            for r in 0..gh {
                dw[r * ldp + col] = db.chunks_exact(2 * gh).map(|block| block[gh + r]).sum();
            }
        }
        let d_input = match &self.input {
            Input::Table(ids) => {
                // The table row of a token collects the dxp rows of its steps: a scatter-add.
                // Each thread owns a range of the table's rows and scans every step for its tokens.
                let vocab = xs.dim(0)?;
                let mut dtable = vec![0.0f32; vocab * gh];
                let per = vocab.div_ceil(threads.max(1)).max(1);
                std::thread::scope(|scope| {
                    for (part, block) in dtable.chunks_mut(per * gh).enumerate() {
                        let (first, dxp) = (part * per, &dxp[..]);
                        scope.spawn(move || {
                            let last = first + block.len() / gh;
                            for (row, &id) in dxp.chunks_exact(gh).zip(ids.iter()) {
                                let id = id as usize;
                                if (first..last).contains(&id) {
                                    let acc = &mut block[(id - first) * gh..(id - first + 1) * gh];
                                    for (a, v) in acc.iter_mut().zip(row) {
                                        *a += v;
                                    }
                                }
                            }
                        });
                    }
                });
                Some(Tensor::from_vec(dtable, (vocab, gh), state0.device())?)
            }
            Input::Dense(input) => {
                let input = *input;
                let xv = f32_slice(x_cpu, x_layout, "layer input")?;
                // dW_ih = dxpᵀ·xs, one product over all rows.
                gemm::matmul(
                    &mut dw,
                    ldp,
                    gemm::MatRef::rows(&dxp, bt, gh, gh).t(),
                    gemm::MatRef::rows(xv, bt, input, input),
                    false,
                    threads,
                );
                if let Some(col) = self.b_ih_col() {
                    for r in 0..gh {
                        dw[r * ldp + col] = db.chunks_exact(2 * gh).map(|block| block[r]).sum();
                    }
                }
                // dxs = dxp·W_ih, only when the input needs a gradient.
                if xs.track_op() {
                    let mut dxs = vec![0.0f32; bt * input];
                    gemm::matmul(
                        &mut dxs,
                        input,
                        gemm::MatRef::rows(&dxp, bt, gh, gh),
                        gemm::MatRef::rows(wp, gh, input, ldp),
                        false,
                        threads,
                    );
                    Some(Tensor::from_vec(dxs, (batch, seq, input), state0.device())?)
                } else {
                    None
                }
            }
        };
        drop((w_storage, x_storage));
        pool::give(dxp);
        pool::give(dph);
        let dev = state0.device();
        let dw = Tensor::from_vec(dw, (gh, ldp), dev)?;
        let mut dstate = dh0;
        dstate.extend_from_slice(&dc0);
        let dstate = Tensor::from_vec(dstate, (slots, batch, hid), dev)?;
        Ok((d_input, Some(dw), Some(dstate)))
    }
}
