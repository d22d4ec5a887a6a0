//! Fused CPU kernels for the whole-sequence path.
//!
//! One layer in one direction runs as: the input projection `xs·W_ihᵀ + b_ih` for all steps as one matrix
//! product (an ordinary candle op, so autograd gives dW_ih and dxs as single large products too), then the
//! recurrence as one candle custom op ([`RecurrenceOp`]) whose forward loops over time on raw buffers and whose
//! hand-written backward computes, in one pass back over time, the gradients of the projected inputs and of the
//! initial state, then dW_hh and db_hh as one product over all steps. Only the two truly sequential products
//! (h·W_hhᵀ forward, dG·W_hh backward) run per step, on each thread's own block of batch rows.
//!
//! The op takes three tensors: `xp` (batch, seq, G·H), `w` = W_hh (G·H, H) or [W_hh | b_hh] (G·H, H + 1), and
//! the initial state (S, batch, H) with S = 2 for an LSTM (h, c) and 1 otherwise. It returns (batch, seq + S, H):
//! the outputs of every step, then the final h (and c).

mod cell_math;
mod gemm;
mod kernel;
mod linear;
mod math;

pub use linear::linear;

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
    if !(xs.device().is_cpu() && xs.dtype() == DType::F32) {
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
    let (_, seq, _) = xs.dims3()?;
    let hidden = w.w_hh.dim(1)?;
    let xp = w.project_inputs(xs)?.contiguous()?;
    let w_arg = match &w.b_hh {
        Some(b) => Tensor::cat(&[&w.w_hh, &b.unsqueeze(1)?], 1)?,
        None => w.w_hh.contiguous()?,
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
        has_bias: w.b_hh.is_some(),
        lengths,
        saved: Mutex::new(None),
    };
    let res = xp.apply_op3_arc(&w_arg, &state0, Arc::new(Box::new(op)))?;
    let outputs = res.narrow(1, 0, seq)?;
    let h = res.narrow(1, seq, 1)?.squeeze(1)?;
    let c = if cell.has_cell_state() {
        Some(res.narrow(1, seq + 1, 1)?.squeeze(1)?)
    } else {
        None
    };
    Ok((outputs, h, c))
}

/// What the forward pass keeps for the backward pass, each (batch, seq, ·).
struct Saved {
    acts: Vec<f32>,
    hprev: Vec<f32>,
    cprev: Vec<f32>,
    aux: Vec<f32>,
}

/// The recurrence of one layer in one direction as a candle custom op (see the module doc).
struct RecurrenceOp {
    dims: Dims,
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

fn bias_column(w: &[f32], gh: usize, w_rs: usize, hidden: usize) -> Vec<f32> {
    (0..gh).map(|r| w[r * w_rs + hidden]).collect()
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
        let (hid, gh, slots, seq) = (d.hidden, d.gh(), d.state_slots(), d.seq);
        let (batch, seq_in, gh_in) = l1.shape().dims3()?;
        if seq_in != seq || gh_in != gh {
            bail!(
                "fused recurrence: projected input {:?}, expected (batch, {seq}, {gh})",
                l1.shape()
            );
        }
        let xp = f32_slice(s1, l1, "projected input")?;
        let w = f32_slice(s2, l2, "recurrent weight")?;
        let state0 = f32_slice(s3, l3, "initial state")?;
        let w_rs = if self.has_bias { hid + 1 } else { hid };
        let (w_t, ld) = transpose_padded(w, gh, hid, w_rs);
        let bias = self.has_bias.then(|| bias_column(w, gh, w_rs, hid));
        let weights = HiddenWeights {
            w_t: &w_t,
            ld,
            w,
            w_rs,
            bias: bias.as_deref(),
        };
        let lstm = d.cell.has_cell_state();
        let gru = d.cell == CellKind::Gru;
        let mut res = vec![0.0f32; batch * (seq + slots) * hid];
        let mut saved = Saved {
            acts: vec![0.0; batch * seq * gh],
            hprev: vec![0.0; batch * seq * hid],
            cprev: vec![0.0; if lstm { batch * seq * hid } else { 0 }],
            aux: vec![0.0; if lstm || gru { batch * seq * hid } else { 0 }],
        };
        let (h0, c0) = state0.split_at(batch * hid);
        let rows = block_rows(batch);
        let chunk = |n: usize| (rows * seq * n).max(1);
        std::thread::scope(|scope| {
            let mut cprev = saved.cprev.chunks_mut(chunk(hid));
            let mut aux = saved.aux.chunks_mut(chunk(hid));
            let blocks = xp
                .chunks(rows * seq * gh)
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
        *self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned".into()))? = Some(saved);
        Ok((CpuStorage::F32(res), Shape::from((batch, seq + slots, hid))))
    }

    fn bwd(
        &self,
        _xp: &Tensor,
        w: &Tensor,
        state0: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = self.dims;
        let (hid, gh, slots, seq) = (d.hidden, d.gh(), d.state_slots(), d.seq);
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned".into()))?
            .take();
        let Some(saved) = saved else {
            bail!("the fused recurrence's backward pass ran twice on one forward pass");
        };
        let batch = state0.dim(1)?;
        let grad_res = grad_res.contiguous()?;
        let (dres_storage, dres_layout) = grad_res.storage_and_layout();
        let (w_storage, w_layout) = w.storage_and_layout();
        let (Storage::Cpu(dres_cpu), Storage::Cpu(w_cpu)) = (&*dres_storage, &*w_storage) else {
            bail!("the fused recurrence runs on the CPU only");
        };
        let dres = f32_slice(dres_cpu, dres_layout, "output gradient")?;
        let wv = f32_slice(w_cpu, w_layout, "recurrent weight")?;
        let w_rs = if self.has_bias { hid + 1 } else { hid };
        let weights = HiddenWeights {
            w_t: &[],
            ld: 0,
            w: wv,
            w_rs,
            bias: None,
        };
        let gru = d.cell == CellKind::Gru;
        let mut dxp = vec![0.0f32; batch * seq * gh];
        let mut dph = vec![0.0f32; if gru { batch * seq * gh } else { 0 }];
        let mut dh0 = vec![0.0f32; batch * hid];
        let mut dc0 = vec![0.0f32; if slots == 2 { batch * hid } else { 0 }];
        let rows = block_rows(batch);
        let chunk = |n: usize| (rows * seq * n).max(1);
        std::thread::scope(|scope| {
            let mut cprev = saved.cprev.chunks(chunk(hid));
            let mut aux = saved.aux.chunks(chunk(hid));
            let mut dph_blocks = dph.chunks_mut(chunk(gh));
            let mut dc0_blocks = dc0.chunks_mut((rows * hid).max(1));
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
                let weights = &weights;
                scope.spawn(move || {
                    backward_block(d, n, lengths, weights, saved, dres, dxp, dph, dh0, dc0)
                });
            }
        });
        drop(dres_storage);
        drop(w_storage);

        // dW_hh = Σ over every (row, step) of dphᵀ·h_prev: one product over batch·seq; db_hh its column sums.
        let dph_all: &[f32] = if gru { &dph } else { &dxp };
        let bt = batch * seq;
        let mut dw = vec![0.0f32; gh * w_rs];
        gemm::matmul(
            &mut dw,
            w_rs,
            gemm::MatRef::rows(dph_all, bt, gh, gh).t(),
            gemm::MatRef::rows(&saved.hprev, bt, hid, hid),
            false,
            candle_core::utils::get_num_threads(),
        );
        if self.has_bias {
            let mut db = vec![0.0f32; gh];
            for row in dph_all.chunks_exact(gh) {
                for (s, v) in db.iter_mut().zip(row) {
                    *s += v;
                }
            }
            for (r, v) in db.into_iter().enumerate() {
                dw[r * w_rs + hid] = v;
            }
        }
        let dev = state0.device();
        let dxp = Tensor::from_vec(dxp, (batch, seq, gh), dev)?;
        let dw = Tensor::from_vec(dw, (gh, w_rs), dev)?;
        let mut dstate = dh0;
        dstate.extend_from_slice(&dc0);
        let dstate = Tensor::from_vec(dstate, (slots, batch, hid), dev)?;
        Ok((Some(dxp), Some(dw), Some(dstate)))
    }
}
