//! Cross-entropy over logits as one custom op: a log-sum-exp pass forward, (softmax − one-hot)/n backward.
//!
//! candle-nn's `cross_entropy` is `log_softmax` + `nll`, about ten element-wise ops whose backward passes and
//! gradient accumulations showed at 15–20% of a small character model's training step.

use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Storage, Tensor, D};

use super::math::exp;

/// Mean cross-entropy of `logits` (n, vocab) against `targets` (n,) u32, skipping rows whose target is
/// `ignore` (padding). The fused op on f32 CPU tensors, candle's composite ops elsewhere. Returns a scalar;
/// 0 when every row is ignored.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor, ignore: Option<u32>) -> Result<Tensor> {
    let (n, _) = logits.dims2()?;
    if targets.dims() != [n] || targets.dtype() != DType::U32 {
        bail!(
            "cross_entropy: expected u32 targets of shape [{n}], got {:?} {:?}",
            targets.dtype(),
            targets.dims()
        );
    }
    if logits.device().is_cpu() && logits.dtype() == DType::F32 {
        return logits
            .contiguous()?
            .apply_op2(&targets.contiguous()?, CrossEntropy { ignore });
    }
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = log_probs.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    let keep = match ignore {
        Some(i) => targets.ne(i)?.to_dtype(logits.dtype())?,
        None => Tensor::ones(n, logits.dtype(), logits.device())?,
    };
    let count = keep
        .sum_all()?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()?
        .max(1.0);
    ((picked * keep)?.sum_all()? / -(count as f64))?.to_dtype(logits.dtype())
}

pub(super) struct CrossEntropy {
    pub(super) ignore: Option<u32>,
}

fn slices<'a>(
    s1: &'a CpuStorage,
    l1: &Layout,
    s2: &'a CpuStorage,
    l2: &Layout,
) -> Result<(&'a [f32], &'a [u32])> {
    Ok((
        super::contiguous(s1, l1, "cross-entropy logits")?,
        super::contiguous(s2, l2, "cross-entropy targets")?,
    ))
}

/// log Σ exp(row) computed stably.
#[inline(always)]
fn log_sum_exp(row: &[f32]) -> f32 {
    // 16 partial maxima and sums, so that the loops vectorise.
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for k in 0..16 {
            lanes[k] = if c[k] > lanes[k] { c[k] } else { lanes[k] };
        }
    }
    let mut m = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for l in lanes {
        m = m.max(l);
    }
    let mut acc = [0.0f32; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for k in 0..16 {
            acc[k] += exp(c[k] - m);
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|&x| exp(x - m)).sum();
    m + (acc.iter().sum::<f32>() + tail).ln()
}

multiversion! {
    /// Σ over kept rows of (log Σ exp(row) − row[target]); errors on a target outside the vocabulary.
    fn loss_sum => loss_sum_impl(logits: &[f32], targets: &[u32], vocab: usize, ignore: Option<u32>, out: &mut Result<f64>)
}

#[inline(always)]
fn loss_sum_impl(
    logits: &[f32],
    targets: &[u32],
    vocab: usize,
    ignore: Option<u32>,
    out: &mut Result<f64>,
) {
    let mut total = 0f64;
    for (row, &t) in logits.chunks_exact(vocab).zip(targets) {
        if Some(t) == ignore {
            continue;
        }
        if t as usize >= vocab {
            *out = Err(candle_core::Error::Msg(format!(
                "cross_entropy: target {t} is outside the vocabulary of {vocab}"
            )));
            return;
        }
        total += (log_sum_exp(row) - row[t as usize]) as f64;
    }
    *out = Ok(total);
}

multiversion! {
    /// d = scale·(softmax(row) − one-hot(target)) for kept rows; ignored rows are left as they are (zero).
    fn loss_grad => loss_grad_impl(logits: &[f32], targets: &[u32], vocab: usize, ignore: Option<u32>, scale: f32, d: &mut [f32])
}

#[inline(always)]
fn loss_grad_impl(
    logits: &[f32],
    targets: &[u32],
    vocab: usize,
    ignore: Option<u32>,
    scale: f32,
    d: &mut [f32],
) {
    for ((drow, row), &t) in d
        .chunks_exact_mut(vocab)
        .zip(logits.chunks_exact(vocab))
        .zip(targets)
    {
        if Some(t) == ignore {
            continue;
        }
        let lse = log_sum_exp(row);
        for (o, &x) in drow.iter_mut().zip(row) {
            *o = scale * exp(x - lse);
        }
        drow[t as usize] -= scale;
    }
}

/// Rows per thread: all of them below 64K logits (a thread costs more than it saves), else an even split
/// over candle's thread count.
fn block_rows(n: usize, vocab: usize) -> usize {
    let threads = if n * vocab < 1 << 16 {
        1
    } else {
        candle_core::utils::get_num_threads().max(1)
    };
    n.div_ceil(threads).max(1)
}

impl CrossEntropy {
    fn counted(&self, targets: &[u32]) -> usize {
        targets.iter().filter(|&&t| Some(t) != self.ignore).count()
    }

    /// d(loss)/d(logits) times `g` (the loss's own gradient): (softmax − one-hot) · g / kept rows, zero on
    /// ignored rows; the rows split over the threads.
    pub(super) fn gradient(
        &self,
        logits: &[f32],
        targets: &[u32],
        vocab: usize,
        g: f32,
    ) -> Vec<f32> {
        let scale = g / self.counted(targets).max(1) as f32;
        let mut d = vec![0.0f32; logits.len()];
        let rows = block_rows(targets.len(), vocab);
        std::thread::scope(|scope| {
            for ((d, l), t) in d
                .chunks_mut(rows * vocab)
                .zip(logits.chunks(rows * vocab))
                .zip(targets.chunks(rows))
            {
                scope.spawn(move || loss_grad(l, t, vocab, self.ignore, scale, d));
            }
        });
        d
    }
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "seqlab-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, vocab) = l1.shape().dims2()?;
        let (logits, targets) = slices(s1, l1, s2, l2)?;
        let rows = block_rows(targets.len(), vocab);
        let mut totals: Vec<Result<f64>> = Vec::new();
        std::thread::scope(|scope| {
            let handles: Vec<_> = logits
                .chunks(rows * vocab)
                .zip(targets.chunks(rows))
                .map(|(l, t)| {
                    scope.spawn(move || {
                        let mut total = Ok(0.0);
                        loss_sum(l, t, vocab, self.ignore, &mut total);
                        total
                    })
                })
                .collect();
            totals = handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(candle_core::Error::Msg(
                            "cross_entropy: a worker panicked".into(),
                        ))
                    })
                })
                .collect();
        });
        let mut total = 0.0;
        for t in totals {
            total += t?;
        }
        let count = self.counted(targets).max(1);
        Ok((
            CpuStorage::F32(vec![(total / count as f64) as f32]),
            Shape::from(()),
        ))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, vocab) = logits.dims2()?;
        let g = grad.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        let (ls, ll) = logits.storage_and_layout();
        let (ts, tl) = targets.storage_and_layout();
        let (Storage::Cpu(lc), Storage::Cpu(tc)) = (&*ls, &*ts) else {
            bail!("cross_entropy: the fused backward runs on the CPU only");
        };
        let (lv, tv) = slices(lc, ll, tc, tl)?;
        let d = self.gradient(lv, tv, vocab, g);
        drop((ls, ts));
        Ok((
            Some(Tensor::from_vec(d, (n, vocab), logits.device())?),
            None,
        ))
    }
}
