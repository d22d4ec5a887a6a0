//! One time step of a classic cell for decoding, on raw buffers: no graph, no copies of the weights, one pass
//! over each weight matrix per step (matrix-vector products, each weight row kept in L1 while it meets every
//! batch row).
//!
//! Used only when nothing asks for gradients (no input, state or weight is a variable or the result of a
//! tracked op), which is how models loaded for generation and beam search run; otherwise the composite step
//! keeps its autograd.

use candle_core::{bail, DType, Result, Storage, Tensor};

use crate::cell::CellState;
use crate::cells::{DirectionWeights, Gates};

/// Whether [`step`] can serve this call.
pub(crate) fn applies(x: &Tensor, state: &CellState, w: &DirectionWeights) -> bool {
    let plain = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && !t.track_op();
    plain(x)
        && plain(&state.h)
        && state.memory.iter().all(plain)
        && plain(&w.w_ih)
        && plain(&w.w_hh)
        && w.b_ih.as_ref().is_none_or(plain)
        && w.b_hh.as_ref().is_none_or(plain)
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

/// See the module doc. `x` (batch, input) and the cell's state → the next state (its `h` the output).
pub(crate) fn step<G: Gates>(
    w: &DirectionWeights,
    hidden: usize,
    x: &Tensor,
    state: &CellState,
) -> Result<CellState> {
    let batch = x.dim(0)?;
    let gh = G::GATES * hidden;
    let mut h = with_data(&state.h.contiguous()?, <[f32]>::to_vec)?;
    let mut c = match state.memory.first() {
        Some(c) if G::CELL_STATE => with_data(&c.contiguous()?, <[f32]>::to_vec)?,
        _ => vec![0.0; batch * hidden],
    };
    let input = with_data(&x.contiguous()?, <[f32]>::to_vec)?;
    let (mut px, mut ph) = (vec![0.0f32; batch * gh], vec![0.0f32; batch * gh]);
    let mut acts = vec![0.0f32; gh];
    let mut cprev = vec![0.0f32; if G::CELL_STATE { hidden } else { 0 }];
    let mut aux = vec![0.0f32; if G::AUX { hidden } else { 0 }];
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
    with_data(&w.w_hh, |w_hh| {
        matvec(w_hh, hidden, b_hh.as_deref(), &h, &mut ph, gh)
    })?;
    for b in 0..batch {
        G::forward_row(
            &px[b * gh..(b + 1) * gh],
            &ph[b * gh..(b + 1) * gh],
            &mut h[b * hidden..(b + 1) * hidden],
            &mut c[b * hidden..(b + 1) * hidden],
            &mut acts,
            &mut cprev,
            &mut aux,
        );
    }
    let dev = x.device();
    let h = Tensor::from_vec(h, (batch, hidden), dev)?;
    let memory = if G::CELL_STATE {
        vec![Tensor::from_vec(c, (batch, hidden), dev)?]
    } else {
        Vec::new()
    };
    Ok(CellState { h, memory })
}
