//! Fused CPU ops for the xLSTM layers' element-wise parts: the per-head norm and the block-diagonal
//! projections, each one pass forward and one back (candle's graph makes a handful of passes over the
//! (batch · seq, width) tensors for each, and as many for their gradients). The graphs of candle ops in
//! [`super`] are their reference.

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use crate::fused::gemm::{matmul, MatRef};
use crate::fused::{f32_slice, guarded};

/// The package's norm epsilon.
const EPS: f32 = 1e-5;

/// The package's `MultiHeadLayerNorm` (its `LayerNorm` with one head): `x` (rows, width) normalised over
/// each head's `width / heads` features, times `1 + weight`.
pub(crate) struct NormOp {
    pub(crate) heads: usize,
}

/// x̂ of one head's features and 1/σ.
#[inline(always)]
fn normalise(x: &[f32], out: &mut [f32]) -> f32 {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + EPS).sqrt();
    for (o, v) in out.iter_mut().zip(x) {
        *o = (v - mean) * inv;
    }
    inv
}

impl CustomOp2 for NormOp {
    fn name(&self) -> &'static str {
        "seqlab-head-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (rows, width) = l1.shape().dims2()?;
        if l2.shape().dims() != [width] || !width.is_multiple_of(self.heads) {
            bail!(
                "fused norm: input {:?}, weight {:?}, {} heads",
                l1.shape(),
                l2.shape(),
                self.heads
            );
        }
        let x = f32_slice(s1, l1, "norm input")?;
        let w = f32_slice(s2, l2, "norm weight")?;
        let dh = width / self.heads;
        let mut out = vec![0.0f32; rows * width];
        let per = crate::fused::block_rows(rows);
        std::thread::scope(|scope| {
            for (i, block) in out.chunks_mut(per * width).enumerate() {
                scope.spawn(move || {
                    for (local, y) in block.chunks_mut(width).enumerate() {
                        let r = i * per + local;
                        for (xh, yh) in x[r * width..(r + 1) * width]
                            .chunks(dh)
                            .zip(y.chunks_mut(dh))
                        {
                            normalise(xh, yh);
                        }
                        for (v, wv) in y.iter_mut().zip(w) {
                            *v *= 1.0 + wv;
                        }
                    }
                });
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((rows, width))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (rows, width) = x.dims2()?;
        let dh = width / self.heads;
        let (x, w, grad) = (x.contiguous()?, w.contiguous()?, grad.contiguous()?);
        let (xg, wg, gg) = (
            x.storage_and_layout(),
            w.storage_and_layout(),
            grad.storage_and_layout(),
        );
        let (xv, wv, gv) = (
            guarded(&xg, "norm input")?,
            guarded(&wg, "norm weight")?,
            guarded(&gg, "norm gradient")?,
        );
        let mut dx = vec![0.0f32; rows * width];
        let per = crate::fused::block_rows(rows);
        let partial: Vec<Vec<f32>> = std::thread::scope(|scope| {
            let handles: Vec<_> = dx
                .chunks_mut(per * width)
                .enumerate()
                .map(|(i, block)| {
                    let (xv, wv, gv) = (&xv, &wv, &gv);
                    scope.spawn(move || {
                        let mut dw = vec![0.0f32; width];
                        let mut xhat = vec![0.0f32; dh];
                        let mut g = vec![0.0f32; dh];
                        for (local, dxr) in block.chunks_mut(width).enumerate() {
                            let r = i * per + local;
                            for h in 0..self.heads {
                                let span = r * width + h * dh..r * width + (h + 1) * dh;
                                let inv = normalise(&xv[span.clone()], &mut xhat);
                                let dy = &gv[span];
                                for j in 0..dh {
                                    g[j] = dy[j] * (1.0 + wv[h * dh + j]);
                                    dw[h * dh + j] += dy[j] * xhat[j];
                                }
                                let n = dh as f32;
                                let mean_g = g.iter().sum::<f32>() / n;
                                let mean_gx =
                                    g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f32>() / n;
                                for j in 0..dh {
                                    dxr[h * dh + j] = inv * (g[j] - mean_g - xhat[j] * mean_gx);
                                }
                            }
                        }
                        dw
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let dw = crate::fused::summed(&partial, width);
        Ok((
            Some(Tensor::from_vec(dx, (rows, width), x.device())?),
            Some(Tensor::from_vec(dw, width, x.device())?),
        ))
    }
}

/// Blocks up to this width run as plain loops, wider ones through gemm.
const SMALL: usize = 8;

/// The package's `LinearHeadwiseExpand` without bias: `x` (rows, heads·in) and weight (heads, out, in) →
/// (rows, heads·out): one gemm per head, or plain loops for small blocks (the mLSTM's 4 × 4).
pub(crate) struct HeadwiseOp;

impl CustomOp2 for HeadwiseOp {
    fn name(&self) -> &'static str {
        "seqlab-headwise"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (rows, width) = l1.shape().dims2()?;
        let (heads, out, inp) = l2.shape().dims3()?;
        if width != heads * inp {
            bail!(
                "fused headwise projection: input {:?}, weight {:?}",
                l1.shape(),
                l2.shape()
            );
        }
        let x = f32_slice(s1, l1, "projection input")?;
        let w = f32_slice(s2, l2, "projection weight")?;
        let mut y = vec![0.0f32; rows * heads * out];
        if inp <= SMALL {
            // Blocks too small for gemm: per row, per head, the dot products (threads over the rows).
            let per = crate::fused::block_rows(rows);
            std::thread::scope(|scope| {
                for (i, block) in y.chunks_mut(per * heads * out).enumerate() {
                    scope.spawn(move || {
                        for (local, yr) in block.chunks_mut(heads * out).enumerate() {
                            let xr = &x[(i * per + local) * width..(i * per + local + 1) * width];
                            for h in 0..heads {
                                let xh = &xr[h * inp..(h + 1) * inp];
                                for o in 0..out {
                                    let wr = &w[(h * out + o) * inp..(h * out + o + 1) * inp];
                                    yr[h * out + o] = wr.iter().zip(xh).map(|(a, b)| a * b).sum();
                                }
                            }
                        }
                    });
                }
            });
            return Ok((CpuStorage::F32(y), Shape::from((rows, heads * out))));
        }
        let threads = candle_core::utils::get_num_threads();
        for h in 0..heads {
            matmul(
                &mut y[h * out..],
                heads * out,
                MatRef::rows(&x[h * inp..], rows, inp, width),
                MatRef::rows(&w[h * out * inp..(h + 1) * out * inp], out, inp, inp).t(),
                false,
                threads,
            );
        }
        Ok((CpuStorage::F32(y), Shape::from((rows, heads * out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (rows, width) = x.dims2()?;
        let (heads, out, inp) = w.dims3()?;
        let (x, w, grad) = (x.contiguous()?, w.contiguous()?, grad.contiguous()?);
        let (xg, wg, gg) = (
            x.storage_and_layout(),
            w.storage_and_layout(),
            grad.storage_and_layout(),
        );
        let (xv, wv, gv) = (
            guarded(&xg, "projection input")?,
            guarded(&wg, "projection weight")?,
            guarded(&gg, "projection gradient")?,
        );
        let mut dx = vec![0.0f32; rows * width];
        let mut dw = vec![0.0f32; heads * out * inp];
        if inp <= SMALL {
            let per = crate::fused::block_rows(rows);
            let partial: Vec<Vec<f32>> = std::thread::scope(|scope| {
                let handles: Vec<_> = dx
                    .chunks_mut(per * width)
                    .enumerate()
                    .map(|(i, block)| {
                        let (xv, wv, gv) = (&xv, &wv, &gv);
                        scope.spawn(move || {
                            let mut dw = vec![0.0f32; heads * out * inp];
                            for (local, dxr) in block.chunks_mut(width).enumerate() {
                                let r = i * per + local;
                                let xr = &xv[r * width..(r + 1) * width];
                                let gr = &gv[r * heads * out..(r + 1) * heads * out];
                                for h in 0..heads {
                                    for o in 0..out {
                                        let g = gr[h * out + o];
                                        let at = (h * out + o) * inp;
                                        for d in 0..inp {
                                            dxr[h * inp + d] += g * wv[at + d];
                                            dw[at + d] += g * xr[h * inp + d];
                                        }
                                    }
                                }
                            }
                            dw
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            dw = crate::fused::summed(&partial, heads * out * inp);
        } else {
            let threads = candle_core::utils::get_num_threads();
            for h in 0..heads {
                // dx_h = dy_h · W_h; dW_h = dy_hᵀ · x_h.
                matmul(
                    &mut dx[h * inp..],
                    width,
                    MatRef::rows(&gv[h * out..], rows, out, heads * out),
                    MatRef::rows(&wv[h * out * inp..(h + 1) * out * inp], out, inp, inp),
                    false,
                    threads,
                );
                matmul(
                    &mut dw[h * out * inp..(h + 1) * out * inp],
                    inp,
                    MatRef::rows(&gv[h * out..], rows, out, heads * out).t(),
                    MatRef::rows(&xv[h * inp..], rows, inp, width),
                    false,
                    threads,
                );
            }
        }
        Ok((
            Some(Tensor::from_vec(dx, (rows, width), x.device())?),
            Some(Tensor::from_vec(dw, (heads, out, inp), x.device())?),
        ))
    }
}
