//! One time step of a one-directional stack for decoding, on raw buffers: no graph, no copies of the
//! weights, one pass over each weight matrix per step (matrix-vector products, each weight row kept in L1
//! while it meets every batch row).
//!
//! Used only when nothing asks for gradients (no input, state or weight is a variable or the result of a
//! tracked op), which is how models loaded for generation and beam search run; otherwise the composite step
//! keeps its autograd.

use candle_core::{bail, DType, Result, Storage, Tensor};

use super::cell_math::forward_row;
use crate::cell::DirectionWeights;
use crate::{CellKind, State};

/// Whether [`step`] can serve this call.
pub(crate) fn applies(x: &Tensor, state: &State, weights: &[DirectionWeights]) -> bool {
    let plain = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && !t.track_op();
    plain(x)
        && plain(&state.h)
        && state.c.as_ref().is_none_or(plain)
        && weights.iter().all(|w| {
            plain(&w.w_ih)
                && plain(&w.w_hh)
                && w.b_ih.as_ref().is_none_or(plain)
                && w.b_hh.as_ref().is_none_or(plain)
        })
}

/// A contiguous f32 copy-free view of `t`'s data, handed to `f`.
fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        bail!("the fused step runs on the CPU only");
    };
    let data = cpu.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(f(&data[a..b])),
        None => bail!("the fused step needs contiguous tensors"),
    }
}

/// out[b, r] = bias[r] + Σ_k w[r, k]·x[b, k] for every batch row b: w (rows × k) row-major, out (batch ×
/// rows). Large weights are split in two halves of rows, one per thread: a step is bound by reading the
/// weights, and two cores read twice as fast.
fn matvec(w: &[f32], k: usize, bias: Option<&[f32]>, xs: &[f32], out: &mut [f32], rows: usize) {
    let batch = xs.len() / k;
    let mut out_t = vec![0.0f32; rows * batch];
    let half = rows / 2;
    if rows * k >= PARALLEL_ELEMENTS && candle_core::utils::get_num_threads() > 1 {
        let (lo, hi) = out_t.split_at_mut(half * batch);
        rayon::join(
            || matvec_rows(w, k, bias, xs, lo, 0..half),
            || matvec_rows(w, k, bias, xs, hi, half..rows),
        );
    } else {
        matvec_rows(w, k, bias, xs, &mut out_t, 0..rows);
    }
    // out_t is (rows × batch): transpose into (batch × rows).
    for r in 0..rows {
        for b in 0..batch {
            out[b * rows + r] = out_t[r * batch + b];
        }
    }
}

/// Weights of at least this many elements are read by two threads.
const PARALLEL_ELEMENTS: usize = 1 << 18;

multiversion! {
    /// Rows `range` of the product into `out` ((range.len() × batch), row-major).
    fn matvec_rows => matvec_rows_impl(
        w: &[f32],
        k: usize,
        bias: Option<&[f32]>,
        xs: &[f32],
        out: &mut [f32],
        range: std::ops::Range<usize>,
    )
}

#[inline(always)]
fn matvec_rows_impl(
    w: &[f32],
    k: usize,
    bias: Option<&[f32]>,
    xs: &[f32],
    out: &mut [f32],
    range: std::ops::Range<usize>,
) {
    let batch = xs.len() / k;
    for (i, r) in range.enumerate() {
        let wr = &w[r * k..(r + 1) * k];
        let b0 = bias.map_or(0.0, |b| b[r]);
        for b in 0..batch {
            out[i * batch + b] = b0 + dot(wr, &xs[b * k..(b + 1) * k]);
        }
    }
}

/// A dot product with 4×16 independent partial sums, so that it vectorises and pipelines.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 64;
    let n = a.len().min(b.len());
    let mut acc = [0.0f32; L];
    let (mut ca, mut cb) = (a[..n].chunks_exact(L), b[..n].chunks_exact(L));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..L {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    acc.iter().sum::<f32>() + tail
}

/// See the module doc. `x` (batch, input); returns the last layer's h (batch, hidden) and the next state.
pub(crate) fn step(
    cell: CellKind,
    hidden: usize,
    weights: &[DirectionWeights],
    x: &Tensor,
    state: &State,
) -> Result<(Tensor, State)> {
    let batch = x.dim(0)?;
    let gh = cell.gates() * hidden;
    let layers = weights.len();
    let lstm = cell.has_cell_state();
    let mut h_all = with_data(&state.h.contiguous()?, <[f32]>::to_vec)?;
    let mut c_all = match &state.c {
        Some(c) => with_data(&c.contiguous()?, <[f32]>::to_vec)?,
        None => vec![0.0; layers * batch * hidden],
    };
    let mut input = with_data(&x.contiguous()?, <[f32]>::to_vec)?;
    let (mut px, mut ph) = (vec![0.0f32; batch * gh], vec![0.0f32; batch * gh]);
    let (mut acts, mut cprev, mut aux) =
        (vec![0.0f32; gh], vec![0.0f32; hidden], vec![0.0f32; hidden]);
    for (layer, w) in weights.iter().enumerate() {
        let in_width = w.w_ih.dim(1)?;
        let b_ih = w
            .b_ih
            .as_ref()
            .map(|b| with_data(b, <[f32]>::to_vec))
            .transpose()?;
        let b_hh = w
            .b_hh
            .as_ref()
            .map(|b| with_data(b, <[f32]>::to_vec))
            .transpose()?;
        with_data(&w.w_ih, |w_ih| {
            matvec(w_ih, in_width, b_ih.as_deref(), &input, &mut px, gh)
        })?;
        let base = layer * batch * hidden;
        let h = &mut h_all[base..base + batch * hidden];
        with_data(&w.w_hh, |w_hh| {
            matvec(w_hh, hidden, b_hh.as_deref(), h, &mut ph, gh)
        })?;
        let c = &mut c_all[base..base + batch * hidden];
        for b in 0..batch {
            forward_row(
                cell,
                &px[b * gh..(b + 1) * gh],
                &ph[b * gh..(b + 1) * gh],
                &mut h[b * hidden..(b + 1) * hidden],
                &mut c[b * hidden..(b + 1) * hidden],
                &mut acts,
                &mut cprev[..if lstm { hidden } else { 0 }],
                &mut aux[..if lstm || cell == CellKind::Gru {
                    hidden
                } else {
                    0
                }],
            );
        }
        input = h.to_vec();
    }
    let dev = x.device();
    let y = Tensor::from_vec(input, (batch, hidden), dev)?;
    let h = Tensor::from_vec(h_all, (layers, batch, hidden), dev)?;
    let c = if lstm {
        Some(Tensor::from_vec(c_all, (layers, batch, hidden), dev)?)
    } else {
        None
    };
    Ok((y, State { h, c }))
}
