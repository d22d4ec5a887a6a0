//! `x·Wᵀ + b` as one custom op with its own backward: dW and db as one product and one pass over the rows,
//! and dx only when x needs a gradient (a one-hot input does not).
//!
//! candle's composite `matmul` + `broadcast_add` computes the gradient of every operand and reduces the bias
//! gradient with a strided sum over rows, which profiles showed at 17% of a char model's training step.

use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};

use super::gemm::{matmul, MatRef};

/// `xs·Wᵀ + b` over the last dimension of `xs` (…, in) with `w` (out, in) and `b` (out,): the fused op on f32
/// CPU tensors, candle's composite ops elsewhere. Returns (…, out).
pub fn linear(xs: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let (out_dim, in_dim) = w.dims2()?;
    let dims = xs.dims();
    let Some((&last, lead)) = dims.split_last() else {
        bail!("linear: expected an input of shape (…, {in_dim}), got a scalar");
    };
    if last != in_dim {
        bail!("linear: expected an input of shape (…, {in_dim}), got {dims:?}");
    }
    let rows: usize = lead.iter().product();
    let mut out_shape = lead.to_vec();
    out_shape.push(out_dim);
    let fused = xs.device().is_cpu()
        && xs.dtype() == DType::F32
        && w.dtype() == DType::F32
        && b.is_some_and(|b| b.dtype() == DType::F32);
    match b {
        Some(b) if fused => {
            let x2 = xs.reshape((rows, in_dim))?.contiguous()?;
            let y = x2.apply_op3(&w.contiguous()?, &b.contiguous()?, LinearOp)?;
            y.reshape(out_shape)
        }
        _ => {
            let x2 = xs.reshape((rows, in_dim))?;
            let mut y = x2.matmul(&w.t()?)?;
            if let Some(b) = b {
                y = y.broadcast_add(b)?;
            }
            y.reshape(out_shape)
        }
    }
}

struct LinearOp;

fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    super::contiguous(s, l, "linear operand")
}

fn threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// `b + x·Wᵀ` for row-major `x` (n × k), `w` (m × k) and `b` (m): (n × m), row-major.
pub(super) fn forward_rows(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    n: usize,
    k: usize,
    m: usize,
) -> Vec<f32> {
    let mut y = Vec::with_capacity(n * m);
    for _ in 0..n {
        y.extend_from_slice(b);
    }
    if n > 0 {
        matmul(
            &mut y,
            m,
            MatRef::rows(x, n, k, k),
            MatRef::rows(w, m, k, k).t(),
            true,
            threads(),
        );
    }
    y
}

/// The gradients of `y = b + x·Wᵀ` from `dy` (n × m): dx (n × k, only `with_dx`), dW (m × k) and db (m).
pub(super) fn backward_rows(
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    n: usize,
    k: usize,
    m: usize,
    with_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let mut dw = vec![0.0f32; m * k];
    let mut db = vec![0.0f32; m];
    if n == 0 {
        return (with_dx.then(Vec::new), dw, db);
    }
    let dx = with_dx.then(|| {
        let mut dx = vec![0.0f32; n * k];
        matmul(
            &mut dx,
            k,
            MatRef::rows(dy, n, m, m),
            MatRef::rows(w, m, k, k),
            false,
            threads(),
        );
        dx
    });
    matmul(
        &mut dw,
        k,
        MatRef::rows(dy, n, m, m).t(),
        MatRef::rows(x, n, k, k),
        false,
        threads(),
    );
    for row in dy.chunks_exact(m) {
        for (s, v) in db.iter_mut().zip(row) {
            *s += v;
        }
    }
    (dx, dw, db)
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "seqlab-linear"
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
        let (n, k) = l1.shape().dims2()?;
        let (m, _) = l2.shape().dims2()?;
        let (x, w, b) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
        let y = forward_rows(x, w, b, n, k, m);
        Ok((CpuStorage::F32(y), Shape::from((n, m))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, k) = x.dims2()?;
        let (m, _) = w.dims2()?;
        let dy = dy.contiguous()?;
        let (dy_s, dy_l) = dy.storage_and_layout();
        let (x_s, x_l) = x.storage_and_layout();
        let (w_s, w_l) = w.storage_and_layout();
        let (Storage::Cpu(dy_c), Storage::Cpu(x_c), Storage::Cpu(w_c)) = (&*dy_s, &*x_s, &*w_s)
        else {
            bail!("linear: the fused backward runs on the CPU only");
        };
        let (dyv, xv, wv) = (slice(dy_c, dy_l)?, slice(x_c, x_l)?, slice(w_c, w_l)?);
        let (dx, dw, db) = backward_rows(dyv, xv, wv, n, k, m, x.track_op());
        drop((dy_s, x_s, w_s));
        let dev = x.device();
        let dx = dx.map(|v| Tensor::from_vec(v, (n, k), dev)).transpose()?;
        Ok((
            dx,
            Some(Tensor::from_vec(dw, (m, k), dev)?),
            Some(Tensor::from_vec(db, m, dev)?),
        ))
    }
}
