//! 2×2 max pooling with PyTorch's gradient.
//!
//! candle's `max_pool2d` backward pass multiplies the output gradient by the *fraction* of a window's elements
//! that equal its maximum (`grad · avg_pool(mask)`), where the derivative divides by nothing and goes to one
//! element: with a single maximum every gradient through the pool is a quarter of what it should be, and the
//! encoder's gradients shrink by 4 per block. This op routes each window's gradient, whole, to its first
//! maximum in row-major order, as PyTorch's CPU kernel does (`crates/models/tests/captioner_golden.rs` pins
//! the encoder's gradients to PyTorch's).

use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

/// Max pooling over non-overlapping 2×2 windows of `xs` (batch, channels, height, width): (batch, channels,
/// height / 2, width / 2), a last odd row or column dropped (PyTorch's `max_pool2d(x, 2)`).
pub fn max_pool2x2(xs: &Tensor) -> Result<Tensor> {
    if xs.device().is_cpu() && xs.dtype() == DType::F32 {
        xs.contiguous()?.apply_op1(MaxPool2x2)
    } else {
        xs.max_pool2d(2)
    }
}

struct MaxPool2x2;

/// The flat index, in the input, of the first maximum of output element (n·c, i, j).
fn argmax(x: &[f32], plane: usize, width: usize, i: usize, j: usize) -> usize {
    let top = plane + 2 * i * width + 2 * j;
    let mut best = top;
    for k in [top + 1, top + width, top + width + 1] {
        if x[k] > x[best] || x[k].is_nan() {
            best = k;
        }
    }
    best
}

impl CustomOp1 for MaxPool2x2 {
    fn name(&self) -> &'static str {
        "seqlab-max-pool-2x2"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (batch, channels, height, width) = layout.shape().dims4()?;
        let x = match (storage, layout.contiguous_offsets()) {
            (CpuStorage::F32(data), Some((start, end))) => &data[start..end],
            (CpuStorage::F32(_), None) => bail!("max_pool2x2: the input must be contiguous"),
            _ => bail!("max_pool2x2: expected f32"),
        };
        let (oh, ow) = (height / 2, width / 2);
        let mut out = Vec::with_capacity(batch * channels * oh * ow);
        for p in 0..batch * channels {
            let plane = p * height * width;
            for i in 0..oh {
                for j in 0..ow {
                    out.push(x[argmax(x, plane, width, i, j)]);
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((batch, channels, oh, ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (batch, channels, height, width) = arg.dims4()?;
        let x: Vec<f32> = arg.contiguous()?.flatten_all()?.to_vec1()?;
        let grad: Vec<f32> = grad_res.contiguous()?.flatten_all()?.to_vec1()?;
        let (oh, ow) = (height / 2, width / 2);
        let mut out = vec![0f32; x.len()];
        for p in 0..batch * channels {
            let plane = p * height * width;
            for i in 0..oh {
                for j in 0..ow {
                    out[argmax(&x, plane, width, i, j)] += grad[(p * oh + i) * ow + j];
                }
            }
        }
        Ok(Some(Tensor::from_vec(out, arg.shape(), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn forward_equals_candles_and_the_gradient_goes_whole_to_the_first_maximum() {
        // 1 × 1 × 4 × 5: windows with one maximum, a tie (the first wins) and an odd last column (dropped).
        let values = [
            1.0f32, 5.0, 2.0, 2.0, 9.0, //
            3.0, 0.0, 2.0, 1.0, 9.0, //
            -1.0, -4.0, 7.0, 7.0, 9.0, //
            -2.0, -3.0, 7.0, 6.0, 9.0,
        ];
        let xs = Var::from_vec(values.to_vec(), (1, 1, 4, 5), &Device::Cpu).unwrap();
        let ours = max_pool2x2(xs.as_tensor()).unwrap();
        let candles = xs.as_tensor().max_pool2d(2).unwrap();
        assert_eq!(
            ours.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            candles.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        let probe = Tensor::new(&[[[[10f32, 20.0], [30.0, 40.0]]]], &Device::Cpu).unwrap();
        let grads = (ours * probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let grad: Vec<f32> = grads
            .get(xs.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want = [
            0.0f32, 10.0, 20.0, 0.0, 0.0, //
            0.0, 0.0, 0.0, 0.0, 0.0, //
            30.0, 0.0, 40.0, 0.0, 0.0, //
            0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        assert_eq!(grad, want);
    }
}
