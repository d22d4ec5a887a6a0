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
/// CPU allows while the binary runs on any x86-64 (and any other architecture).
macro_rules! multiversion {
    ($(#[$doc:meta])* fn $name:ident => $body:ident ( $($arg:ident : $ty:ty),* $(,)? )) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn v4($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn v3($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("avx512dq")
                    && std::is_x86_feature_detected!("avx512bw")
                {
                    // SAFETY: the CPU has every feature `v4` is compiled for.
                    return unsafe { v4($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has every feature `v3` is compiled for.
                    return unsafe { v3($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

mod cell_math;
mod gemm;
mod kernel;
mod linear;
mod loss;
mod math;
mod pool;
pub(crate) mod step;

pub use linear::linear;
pub use loss::cross_entropy;

use std::sync::{Arc, Mutex};

use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};

use crate::cell::DirectionWeights;
use crate::{CellKind, Recurrent, State};
use kernel::{backward_block, forward_block, Dims, HiddenWeights, SavedMut, SavedRef};

/// Runs `forward` on the fused kernels when the input is f32 on the CPU, else on the composite path.
pub(crate) fn forward(
    rnn: &Recurrent,
    xs: &Tensor,
    lengths: Option<&[usize]>,
    init: Option<&State>,
    train: bool,
) -> Result<(Tensor, State)> {
    // Token ids (u32) mean one-hot input to layer 0: see `Recurrent::forward_one_hot`.
    if !(xs.device().is_cpu() && matches!(xs.dtype(), DType::F32 | DType::U32)) {
        return rnn.forward_composite(xs, lengths, init, train);
    }
    let cell = rnn.config().cell;
    let lengths: Option<Arc<[usize]>> = lengths.map(Arc::from);
    rnn.run_layers(xs, init, train, |w, layer_in, h0, c0, reverse| {
        run_direction(cell, w, layer_in, lengths.clone(), h0, c0, reverse)
    })
}

fn run_direction(
    cell: CellKind,
    w: &DirectionWeights,
    xs: &Tensor,
    lengths: Option<Arc<[usize]>>,
    h0: &Tensor,
    c0: Option<&Tensor>,
    reverse: bool,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let one_hot = xs.dtype() == DType::U32;
    let seq = xs.dim(1)?;
    let input = w.w_ih.dim(1)?;
    let hidden = w.w_hh.dim(1)?;
    let packed = match (&w.b_ih, &w.b_hh) {
        (Some(b_ih), Some(b_hh)) => Tensor::cat(
            &[&w.w_ih, &w.w_hh, &b_ih.unsqueeze(1)?, &b_hh.unsqueeze(1)?],
            1,
        )?,
        _ => Tensor::cat(&[&w.w_ih, &w.w_hh], 1)?,
    };
    let state0 = match c0 {
        Some(c) => Tensor::stack(&[h0, c], 0)?,
        None => h0.unsqueeze(0)?.contiguous()?,
    };
    let op = RecurrenceOp {
        dims: Dims {
            cell,
            seq,
            hidden,
            reverse,
        },
        input,
        one_hot,
        has_bias: w.b_hh.is_some(),
        lengths,
        saved: Mutex::new(None),
    };
    let res = xs
        .contiguous()?
        .apply_op3_arc(&packed, &state0, Arc::new(Box::new(op)))?;
    let outputs = res.narrow(1, 0, seq)?;
    let h = res.narrow(1, seq, 1)?.squeeze(1)?;
    let c = if cell.has_cell_state() {
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

/// The recurrence of one layer in one direction as a candle custom op (see the module doc).
struct RecurrenceOp {
    dims: Dims,
    /// Width of the layer input.
    input: usize,
    /// The input is token ids (batch, seq) u32 standing for one-hot rows of width `input`.
    one_hot: bool,
    has_bias: bool,
    lengths: Option<Arc<[usize]>>,
    saved: Mutex<Option<Saved>>,
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("the fused recurrence needs a contiguous {what}"),
    }
}

/// Threads for the per-step loops: candle's thread count, at most one per batch row.
fn block_rows(batch: usize) -> usize {
    let threads = candle_core::utils::get_num_threads().clamp(1, batch.max(1));
    batch.div_ceil(threads)
}

/// W_hhᵀ as (H, ld), with `ld` padded past a multiple of 64 floats: power-of-two strides make the per-step
/// product's loads collide in the same cache sets.
fn transpose_padded(w: &[f32], rows: usize, cols: usize, w_rs: usize) -> (Vec<f32>, usize) {
    let ld = if rows % 64 == 0 { rows + 16 } else { rows };
    let mut t = vec![0.0f32; cols * ld];
    for r in 0..rows {
        for (c, v) in w[r * w_rs..r * w_rs + cols].iter().enumerate() {
            t[c * ld + r] = *v;
        }
    }
    (t, ld)
}

/// The u32 data of a contiguous storage.
fn u32_slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [u32]> {
    let data = s.as_slice::<u32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("the fused recurrence needs contiguous token ids"),
    }
}

/// The first `cols` columns of a (rows × row_stride) row-major matrix, transposed: (cols × rows).
fn transpose_block(w: &[f32], rows: usize, cols: usize, row_stride: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; cols * rows];
    for r in 0..rows {
        for (c, v) in w[r * row_stride..r * row_stride + cols].iter().enumerate() {
            t[c * rows + r] = *v;
        }
    }
    t
}

/// Column `col` of a row-major (rows × row_stride) matrix.
fn column(w: &[f32], rows: usize, row_stride: usize, col: usize) -> Vec<f32> {
    (0..rows).map(|r| w[r * row_stride + col]).collect()
}

fn poisoned<T>(_: T) -> candle_core::Error {
    candle_core::Error::Msg("the fused recurrence's saved state is poisoned".into())
}

impl RecurrenceOp {
    /// Columns of the packed weights: in + H (+ 2 bias columns).
    fn packed_width(&self) -> usize {
        self.input + self.dims.hidden + if self.has_bias { 2 } else { 0 }
    }
}

impl CustomOp3 for RecurrenceOp {
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
        let (hid, gh, slots, seq, input) = (d.hidden, d.gh(), d.state_slots(), d.seq, self.input);
        let (batch, seq_in, input_in) = if self.one_hot {
            let (b, s) = l1.shape().dims2()?;
            (b, s, input)
        } else {
            l1.shape().dims3()?
        };
        let ldp = self.packed_width();
        if seq_in != seq || input_in != input || l2.shape().dims() != [gh, ldp] {
            bail!(
                "fused recurrence: input {:?} and weights {:?}, expected (batch, {seq}, {input}) and ({gh}, {ldp})",
                l1.shape(),
                l2.shape()
            );
        }
        let wp = f32_slice(s2, l2, "packed weights")?;
        let state0 = f32_slice(s3, l3, "initial state")?;
        let threads = candle_core::utils::get_num_threads();

        // The input projection of every step at once: xp = xs·W_ihᵀ + b_ih, (batch·seq, G·H).
        // (b_ih is added row by row in the kernel, while each row is hot.)
        let bt = batch * seq;
        let mut xp = pool::take(bt * gh);
        if self.one_hot {
            // A one-hot row times W_ihᵀ is a column of W_ih: gather them from W_ihᵀ.
            let ids = u32_slice(s1, l1)?;
            let w_ih_t = transpose_block(wp, gh, input, ldp);
            for (row, &id) in xp.chunks_exact_mut(gh).zip(ids) {
                let id = id as usize;
                if id >= input {
                    bail!("token id {id} is outside the one-hot input size {input}");
                }
                row.copy_from_slice(&w_ih_t[id * gh..(id + 1) * gh]);
            }
        } else {
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

        let (w_t, ld) = transpose_padded(&wp[input..], gh, hid, ldp);
        let b_ih = self.has_bias.then(|| column(wp, gh, ldp, input + hid));
        let b_hh = self.has_bias.then(|| column(wp, gh, ldp, input + hid + 1));
        let weights = HiddenWeights {
            w_t: &w_t,
            ld,
            w: &wp[input..],
            w_rs: ldp,
            bias: b_hh.as_deref(),
            bias_x: b_ih.as_deref(),
        };
        let lstm = d.cell.has_cell_state();
        let gru = d.cell == CellKind::Gru;
        let mut res = vec![0.0f32; batch * (seq + slots) * hid];
        let mut saved = Saved {
            acts: pool::take(bt * gh),
            hprev: pool::take(bt * hid),
            cprev: pool::take(if lstm { bt * hid } else { 0 }),
            aux: pool::take(if lstm || gru { bt * hid } else { 0 }),
        };
        let (h0, c0) = state0.split_at(batch * hid);
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
                let c0 = if lstm {
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
                scope.spawn(move || forward_block(d, n, lengths, xp, weights, h0, c0, res, saved));
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
        let (hid, gh, slots, seq, input) = (d.hidden, d.gh(), d.state_slots(), d.seq, self.input);
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
            w: &wp[input..],
            w_rs: ldp,
            bias: None,
            bias_x: None,
        };
        let gru = d.cell == CellKind::Gru;
        let mut dxp = pool::take(bt * gh);
        let mut dph = pool::take(if gru { bt * gh } else { 0 });
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
                    backward_block(
                        d, n, lengths, weights, saved, dres, dxp, dph, dh0, dc0, db_x, db_h,
                    )
                });
            }
        });
        drop(dres_storage);

        // Every weight gradient is one product over all batch·seq rows: dW_ih = dxpᵀ·xs,
        // dW_hh = dphᵀ·h_prev (dph is dxp but for a GRU's candidate block); the biases are column sums.
        let dph_all: &[f32] = if gru { &dph } else { &dxp };
        let mut dw = vec![0.0f32; gh * ldp];
        if self.one_hot {
            // dW_ih's column `id` collects the dxp rows of that token: a scatter-add into W_ihᵀ's rows.
            let ids = u32_slice(x_cpu, x_layout)?;
            let mut dw_ih_t = vec![0.0f32; input * gh];
            for (row, &id) in dxp.chunks_exact(gh).zip(ids) {
                let acc = &mut dw_ih_t[id as usize * gh..(id as usize + 1) * gh];
                for (a, v) in acc.iter_mut().zip(row) {
                    *a += v;
                }
            }
            for r in 0..gh {
                for c in 0..input {
                    dw[r * ldp + c] = dw_ih_t[c * gh + r];
                }
            }
        } else {
            let xv = f32_slice(x_cpu, x_layout, "layer input")?;
            gemm::matmul(
                &mut dw,
                ldp,
                gemm::MatRef::rows(&dxp, bt, gh, gh).t(),
                gemm::MatRef::rows(xv, bt, input, input),
                false,
                threads,
            );
        }
        gemm::matmul(
            &mut dw[input..],
            ldp,
            gemm::MatRef::rows(dph_all, bt, gh, gh).t(),
            gemm::MatRef::rows(&saved.hprev, bt, hid, hid),
            false,
            threads,
        );
        if self.has_bias {
            for r in 0..gh {
                let (mut sx, mut sh) = (0.0f32, 0.0f32);
                for block in db.chunks_exact(2 * gh) {
                    sx += block[r];
                    sh += block[gh + r];
                }
                dw[r * ldp + input + hid] = sx;
                dw[r * ldp + input + hid + 1] = sh;
            }
        }
        // dxs = dxp·W_ih, only when the input needs a gradient (a one-hot input does not).
        let dxs = if xs.track_op() && !self.one_hot {
            let mut dxs = vec![0.0f32; bt * input];
            gemm::matmul(
                &mut dxs,
                input,
                gemm::MatRef::rows(&dxp, bt, gh, gh),
                gemm::MatRef::rows(wp, gh, input, ldp),
                false,
                threads,
            );
            Some(dxs)
        } else {
            None
        };
        drop((w_storage, x_storage));
        pool::give(dxp);
        pool::give(dph);
        let dev = state0.device();
        let dxs = dxs
            .map(|v| Tensor::from_vec(v, (batch, seq, input), dev))
            .transpose()?;
        let dw = Tensor::from_vec(dw, (gh, ldp), dev)?;
        let mut dstate = dh0;
        dstate.extend_from_slice(&dc0);
        let dstate = Tensor::from_vec(dstate, (slots, batch, hid), dev)?;
        Ok((dxs, Some(dw), Some(dstate)))
    }
}
