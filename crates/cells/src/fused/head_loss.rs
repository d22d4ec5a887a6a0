//! The output layer and its loss as one op: `cross_entropy(xs·Wᵀ + b, targets)` with the logits kept inside.
//!
//! As two ops (`linear`, then `cross_entropy`), the logits' gradient — rows × vocabulary, 30 MB for a batch of
//! 64 verses over 4000 target words — passes through candle's gradient store on its way from the loss to the
//! layer, and every pass there is a zero-filled tensor of that size plus an addition into it (three passes when
//! reshapes sit between the two). A profile of translation training put those passes at about 15% of a step.
//! Here the gradient is made once, in the backward pass, and goes straight into the layer's products. And
//! since the op sees the targets, it computes the logits of the rows that count only: rows whose target is
//! the ignored id (padding past a sentence's end, a third of a translation batch's rows) add nothing to the
//! loss and get a zero gradient, so they skip the three (rows × in) × (in × vocab) products altogether.

use std::sync::Mutex;

use candle_core::{
    bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor,
};

use super::linear::{backward_rows, forward_rows};
use super::loss::CrossEntropy;

/// Mean cross-entropy of the logits `xs·Wᵀ + b` against `targets`, skipping rows whose target is `ignore`:
/// `cross_entropy(&linear(xs, w, Some(b))?.reshape((n, vocab))?, targets, ignore)` in one op.
///
/// `xs` is (…, in) with n rows in all, `w` (vocab, in), `b` (vocab,), `targets` (n,) u32. The fused op runs on
/// f32 CPU tensors when a gradient is wanted; otherwise (evaluation, other devices) the two ops run as usual.
pub fn linear_cross_entropy(
    xs: &Tensor,
    w: &Tensor,
    b: &Tensor,
    targets: &Tensor,
    ignore: Option<u32>,
) -> Result<Tensor> {
    let (vocab, in_dim) = w.dims2()?;
    if xs.dims().last() != Some(&in_dim) {
        bail!(
            "linear_cross_entropy: expected an input of shape (…, {in_dim}), got {:?}",
            xs.dims()
        );
    }
    let x2 = xs.reshape(((), in_dim))?;
    let n = x2.dim(0)?;
    if targets.dims() != [n] || targets.dtype() != DType::U32 {
        bail!(
            "linear_cross_entropy: expected u32 targets of shape [{n}], got {:?} {:?}",
            targets.dtype(),
            targets.dims()
        );
    }
    let fused = x2.device().is_cpu()
        && [&x2, w, b].iter().all(|t| t.dtype() == DType::F32)
        && (x2.track_op() || w.track_op() || b.track_op());
    if !fused {
        let logits = crate::linear(&x2, w, Some(b))?;
        return crate::cross_entropy(&logits.reshape((n, vocab))?, targets, ignore);
    }
    let op = LinearCrossEntropy {
        targets: targets.to_vec1()?,
        ignore,
        logits: Mutex::new(None),
    };
    x2.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, op)
}

struct LinearCrossEntropy {
    targets: Vec<u32>,
    ignore: Option<u32>,
    /// The logits of the kept rows (kept × vocab), from the forward pass for the backward.
    logits: Mutex<Option<Vec<f32>>>,
}

impl LinearCrossEntropy {
    /// Indices of the rows whose target is not ignored: the only rows whose logits matter (an ignored row
    /// adds nothing to the loss and gets a zero gradient), so the only ones computed.
    fn kept(&self) -> Vec<usize> {
        (0..self.targets.len())
            .filter(|&i| Some(self.targets[i]) != self.ignore)
            .collect()
    }
}

/// The rows `rows` of the row-major (…, k) matrix `x`, packed.
fn gather(x: &[f32], k: usize, rows: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * k);
    for &r in rows {
        out.extend_from_slice(&x[r * k..(r + 1) * k]);
    }
    out
}

impl CustomOp3 for LinearCrossEntropy {
    fn name(&self) -> &'static str {
        "seqlab-linear-cross-entropy"
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
        let x = super::contiguous(s1, l1, "linear_cross_entropy input")?;
        let w = super::contiguous(s2, l2, "linear_cross_entropy weight")?;
        let b = super::contiguous(s3, l3, "linear_cross_entropy bias")?;
        let kept = self.kept();
        let gathered;
        let xk = if kept.len() == n {
            x
        } else {
            gathered = gather(x, k, &kept);
            &gathered
        };
        let rows = kept.len();
        let logits = forward_rows(xk, w, b, rows, k, m);
        let targets: Vec<u32> = kept.iter().map(|&i| self.targets[i]).collect();
        let logits = CpuStorage::F32(logits);
        let loss = CrossEntropy {
            ignore: self.ignore,
        }
        .cpu_fwd(
            &logits,
            &Layout::contiguous((rows, m)),
            &CpuStorage::U32(targets),
            &Layout::contiguous(rows),
        )?;
        let CpuStorage::F32(logits) = logits else {
            unreachable!("built as f32 above")
        };
        *self.logits.lock().map_err(|_| poisoned())? = Some(logits);
        Ok(loss)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, k) = x.dims2()?;
        let (m, _) = w.dims2()?;
        let g = grad.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        let kept = self.kept();
        let rows = kept.len();
        let targets: Vec<u32> = kept.iter().map(|&i| self.targets[i]).collect();
        // d(loss)/d(logits) of the kept rows, (rows × m).
        let d = {
            let logits = self.logits.lock().map_err(|_| poisoned())?;
            let Some(logits) = logits.as_ref() else {
                bail!("linear_cross_entropy: backward before forward");
            };
            CrossEntropy {
                ignore: self.ignore,
            }
            .gradient(logits, &targets, m, g)
        };
        let (x_s, x_l) = x.storage_and_layout();
        let (w_s, w_l) = w.storage_and_layout();
        let (Storage::Cpu(x_c), Storage::Cpu(w_c)) = (&*x_s, &*w_s) else {
            bail!("linear_cross_entropy: the fused backward runs on the CPU only");
        };
        let xv = super::contiguous(x_c, x_l, "linear_cross_entropy input")?;
        let wv = super::contiguous(w_c, w_l, "linear_cross_entropy weight")?;
        let gathered;
        let xk = if rows == n {
            xv
        } else {
            gathered = gather(xv, k, &kept);
            &gathered
        };
        let (dxk, dw, db) = backward_rows(&d, xk, wv, rows, k, m, x.track_op());
        // The ignored rows' input gradient is zero.
        let dx = dxk.map(|dxk| {
            if rows == n {
                return dxk;
            }
            let mut dx = vec![0.0f32; n * k];
            for (j, &r) in kept.iter().enumerate() {
                dx[r * k..(r + 1) * k].copy_from_slice(&dxk[j * k..(j + 1) * k]);
            }
            dx
        });
        drop((x_s, w_s));
        let dev = x.device();
        Ok((
            dx.map(|v| Tensor::from_vec(v, (n, k), dev)).transpose()?,
            Some(Tensor::from_vec(dw, (m, k), dev)?),
            Some(Tensor::from_vec(db, m, dev)?),
        ))
    }
}

fn poisoned() -> candle_core::Error {
    candle_core::Error::Msg("linear_cross_entropy: a thread panicked holding the logits".into())
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// The fused op against `linear` + `cross_entropy`: the loss and the gradients of the input, the weight
    /// and the bias, with some rows ignored, none, and all, and a loss gradient other than 1.
    #[test]
    fn matches_linear_then_cross_entropy() -> Result<()> {
        let dev = Device::Cpu;
        let (n, k, vocab) = (37, 19, 53);
        let values = |len: usize, seed: u32| -> Vec<f32> {
            (0..len as u32)
                .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
                .collect()
        };
        let spread: Vec<u32> = (0..n as u32).map(|i| (i * 7) % vocab as u32).collect();
        let cases = [
            (spread.clone(), Some(14)), // rows 2, 17 and 32 (targets 14) ignored
            (spread, None),
            (vec![5; n], Some(5)), // every row ignored: loss 0, zero gradients
        ];
        for (targets, ignore) in cases {
            let x = Var::from_vec(values(n * k, 1), (n, k), &dev)?;
            let w = Var::from_vec(values(vocab * k, 2), (vocab, k), &dev)?;
            let b = Var::from_vec(values(vocab, 3), vocab, &dev)?;
            let targets = Tensor::new(targets.as_slice(), &dev)?;
            let fused = (linear_cross_entropy(&x, &w, &b, &targets, ignore)? * 3.0)?;
            let logits = crate::linear(&x, &w, Some(&b))?;
            let plain = (crate::cross_entropy(&logits, &targets, ignore)? * 3.0)?;
            let (lf, lp) = (fused.to_scalar::<f32>()?, plain.to_scalar::<f32>()?);
            assert!((lf - lp).abs() < 1e-6, "{ignore:?}: loss {lf} vs {lp}");
            let (gf, gp) = (fused.backward()?, plain.backward()?);
            for (name, var) in [("x", &x), ("w", &w), ("b", &b)] {
                let a = gf.get(var).expect("fused gradient");
                let e = gp.get(var).expect("plain gradient");
                let worst = (a - e)?.abs()?.max_all()?.to_scalar::<f32>()?;
                let size = e.abs()?.max_all()?.to_scalar::<f32>()?;
                assert_eq!(
                    size > 1e-3,
                    lp > 0.0,
                    "{name}: the gradient is zero iff the loss is"
                );
                assert!(
                    worst < 1e-6,
                    "{ignore:?}, {name}: gradients differ by {worst}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn without_a_gradient_it_is_the_two_ops() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[[0.5f32, -1.0], [2.0, 0.25]]], &dev)?; // (1, 2, 2): leading dims flatten
        let w = Tensor::new(&[[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &dev)?;
        let b = Tensor::new(&[0.0f32, 0.1, -0.1], &dev)?;
        let t = Tensor::new(&[2u32, 0], &dev)?;
        let fused = linear_cross_entropy(&x, &w, &b, &t, None)?.to_scalar::<f32>()?;
        let logits = crate::linear(&x, &w, Some(&b))?.reshape((2, 3))?;
        let plain = crate::cross_entropy(&logits, &t, None)?.to_scalar::<f32>()?;
        assert!((fused - plain).abs() < 1e-7);
        let wrong = Tensor::new(&[2u32], &dev)?;
        let err = linear_cross_entropy(&x, &w, &b, &wrong, None).unwrap_err();
        assert!(err.to_string().contains("targets of shape [2]"), "{err}");
        Ok(())
    }
}
