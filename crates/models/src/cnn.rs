//! A small convolutional image encoder trained from scratch: blocks of 3×3 convolution → batch norm → relu
//! → 2×2 max-pool, then the last feature map flattened (flattening keeps *where* things are, which global
//! pooling would lose: the synthetic shapes set is all about position).

use candle_core::{bail, CpuStorage, InplaceOp2, Layout, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::pool::max_pool2x2;
use crate::Mode;

/// The shape of a [`CnnEncoder`]: plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CnnConfig {
    /// Side of the square input images, in pixels.
    pub image_size: usize,
    /// Output channels of each block; every block halves the side. The default, 16-32-32-64 on 64-pixel
    /// images, ends in a 4×4×64 map (1,024 features) after about 8 M multiply-adds per image: a batch of 32
    /// trains in well under a second on two cores.
    pub channels: Vec<usize>,
    /// Batch norm's momentum for its running statistics (PyTorch's `momentum`, default 0.1).
    pub momentum: f64,
    /// Batch norm's epsilon (PyTorch's default 1e-5).
    pub eps: f64,
}

impl Default for CnnConfig {
    fn default() -> Self {
        Self {
            image_size: 64,
            channels: vec![16, 32, 32, 64],
            momentum: 0.1,
            eps: 1e-5,
        }
    }
}

impl CnnConfig {
    /// Side of the last feature map: the image side halved (rounding down) once per block.
    pub fn output_side(&self) -> usize {
        self.channels
            .iter()
            .fold(self.image_size, |side, _| side / 2)
    }

    /// Features of the flattened output: last channels × side².
    pub fn feature_size(&self) -> usize {
        self.channels.last().copied().unwrap_or(3) * self.output_side() * self.output_side()
    }
}

/// Batch normalisation over (batch, height, width) per channel, as `nn.BatchNorm2d`.
#[derive(Debug, Clone)]
struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    momentum: f64,
    eps: f64,
}

impl BatchNorm2d {
    fn new(channels: usize, momentum: f64, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(channels, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
            running_mean: vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?,
            running_var: vb.get_with_hints(channels, "running_var", Init::Const(1.0))?,
            momentum,
            eps,
        })
    }

    /// `xs` (batch, channels, height, width). In training, normalises with the batch's statistics (biased
    /// variance) and moves the running statistics toward them (unbiased variance), in place, as PyTorch
    /// does; in evaluation, normalises with the running statistics.
    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let (batch, channels, height, width) = xs.dims4()?;
        // Channel-major (channels, batch·h·w): the statistics and their gradients are then sums along the
        // last dimension, which candle does far faster than sums over dimensions 0, 2 and 3.
        let flat = xs
            .transpose(0, 1)?
            .contiguous()?
            .reshape((channels, batch * height * width))?;
        let column = |t: &Tensor| t.reshape((channels, 1));
        let (centered, var) = if train {
            let n = (batch * height * width) as f64;
            let mean = flat.mean_keepdim(1)?;
            let centered = flat.broadcast_sub(&mean)?;
            let var = centered.sqr()?.mean_keepdim(1)?;
            if n > 1.0 {
                let m = self.momentum;
                let mean = mean.detach().flatten_all()?;
                let unbiased = (var.detach().flatten_all()? * (n / (n - 1.0)))?;
                let new_mean = ((&self.running_mean * (1.0 - m))? + (mean * m)?)?;
                let new_var = ((&self.running_var * (1.0 - m))? + (unbiased * m)?)?;
                assign(&self.running_mean, &new_mean)?;
                assign(&self.running_var, &new_var)?;
            }
            (centered, var)
        } else {
            let centered = flat.broadcast_sub(&column(&self.running_mean.detach())?)?;
            (centered, column(&self.running_var.detach())?)
        };
        let scale = column(&self.weight)?.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        centered
            .broadcast_mul(&scale)?
            .broadcast_add(&column(&self.bias)?)?
            .reshape((channels, batch, height, width))?
            .transpose(0, 1)
    }
}

/// Overwrites the values of `dst` with those of `src` (same shape, f32, CPU), in place: how the running
/// statistics, parameters of the var map without gradients, move during training.
fn assign(dst: &Tensor, src: &Tensor) -> Result<()> {
    if dst.shape() != src.shape() {
        bail!(
            "cannot assign a tensor of shape {:?} to one of {:?}",
            src.dims(),
            dst.dims()
        );
    }
    dst.inplace_op2(&src.contiguous()?, &Assign)
}

struct Assign;

impl InplaceOp2 for Assign {
    fn name(&self) -> &'static str {
        "seqlab-assign"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (CpuStorage::F32(dst), CpuStorage::F32(src)) = (s1, s2) else {
            bail!("batch norm's running statistics are f32");
        };
        let (Some((d0, d1)), Some((s0, s1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            bail!("batch norm's running statistics must be contiguous");
        };
        dst[d0..d1].copy_from_slice(&src[s0..s1]);
        Ok(())
    }
}

/// A 3×3 convolution with padding 1 and stride 1, as `Tensor::conv2d(kernel, 1, 1, 1, 1)` computes it, written
/// as im2col and one batched matrix product: `xs` (batch, in, h, w), `kernel` (out, in, 3, 3) →
/// (batch, out, h, w).
///
/// The backward pass of candle's own `conv2d` on the CPU is a direct transposed convolution, ten times
/// slower than its forward pass; here both passes are one matrix product plus a gather (im2col) or a
/// scatter-add (col2im) written as plain loops.
pub fn conv3x3(xs: &Tensor, kernel: &Tensor) -> Result<Tensor> {
    let (batch, channels, height, width) = xs.dims4()?;
    let (out, kernel_in, kh, kw) = kernel.dims4()?;
    if (kernel_in, kh, kw) != (channels, 3, 3) {
        bail!(
            "expected a kernel of shape (out, {channels}, 3, 3), got {:?}",
            kernel.dims()
        );
    }
    // (batch, in·9, h·w): row `c * 9 + dy * 3 + dx`, the order of the kernel's (in, 3, 3) values.
    let columns = xs.contiguous()?.apply_op1(Im2Col)?;
    kernel
        .reshape((out, channels * 9))?
        .broadcast_matmul(&columns)?
        .reshape((batch, out, height, width))
}

/// im2col for a 3×3 window with padding 1: (batch, c, h, w) → (batch, c·9, h·w), with col2im (the
/// scatter-add of the gradient) as its backward pass.
struct Im2Col;

/// Runs `f(dst_index, src_index)` for every in-bounds (column value, pixel) pair of a 3×3 im2col.
fn for_each_window(channels: usize, height: usize, width: usize, mut f: impl FnMut(usize, usize)) {
    let plane = height * width;
    for c in 0..channels {
        for k in 0..9 {
            let (dy, dx) = (k / 3, k % 3);
            let row = (c * 9 + k) * plane;
            for y in 0..height {
                let sy = y + dy;
                if sy < 1 || sy > height {
                    continue;
                }
                let src_row = c * plane + (sy - 1) * width;
                for x in 0..width {
                    let sx = x + dx;
                    if sx < 1 || sx > width {
                        continue;
                    }
                    f(row + y * width + x, src_row + sx - 1);
                }
            }
        }
    }
}

impl candle_core::CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "seqlab-im2col3x3"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> Result<(CpuStorage, candle_core::Shape)> {
        let CpuStorage::F32(data) = storage else {
            bail!("im2col runs on f32 images");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("im2col needs a contiguous input");
        };
        let (batch, channels, height, width) = layout.shape().dims4()?;
        let data = &data[start..end];
        let (image, columns) = (channels * height * width, channels * 9 * height * width);
        let mut out = vec![0f32; batch * columns];
        for b in 0..batch {
            let (src, dst) = (&data[b * image..], &mut out[b * columns..(b + 1) * columns]);
            for_each_window(channels, height, width, |d, s| dst[d] = src[s]);
        }
        Ok((
            CpuStorage::F32(out),
            (batch, channels * 9, height * width).into(),
        ))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (batch, channels, height, width) = arg.dims4()?;
        let grad: Vec<f32> = grad_res.contiguous()?.flatten_all()?.to_vec1()?;
        let (image, columns) = (channels * height * width, channels * 9 * height * width);
        let mut out = vec![0f32; batch * image];
        for b in 0..batch {
            let (src, dst) = (&grad[b * columns..], &mut out[b * image..(b + 1) * image]);
            for_each_window(channels, height, width, |d, s| dst[s] += src[d]);
        }
        Ok(Some(Tensor::from_vec(out, arg.shape(), arg.device())?))
    }
}

/// One block: 3×3 convolution (padding 1, no bias: batch norm's own bias replaces it) → batch norm → relu
/// → 2×2 max-pool.
#[derive(Debug, Clone)]
struct Block {
    conv: Tensor,
    bn: BatchNorm2d,
}

/// The CNN encoder with PyTorch's names: `blocks.{i}.conv.weight` (out, in, 3, 3), `blocks.{i}.bn.weight`,
/// `.bias`, `.running_mean`, `.running_var`; a module holding `blocks = nn.ModuleList(...)` of modules with
/// `conv = nn.Conv2d(in, out, 3, padding=1, bias=False)` and `bn = nn.BatchNorm2d(out)` loads unchanged.
///
/// The running statistics are created in the `VarBuilder` like the weights, so a model trained through a
/// `VarMap` saves them with its weights (and a checkpoint restores them); the optimizer leaves them alone,
/// as they get no gradient.
#[derive(Debug, Clone)]
pub struct CnnEncoder {
    config: CnnConfig,
    blocks: Vec<Block>,
}

impl CnnEncoder {
    /// Creates or loads the encoder's parameters in `vb` (convolutions U(±1/√fan_in) as PyTorch's default,
    /// batch norm weight 1, bias 0, running mean 0 and variance 1).
    pub fn new(config: &CnnConfig, vb: VarBuilder) -> Result<Self> {
        if config.channels.is_empty() || config.channels.contains(&0) {
            bail!(
                "the CNN encoder needs at least one block and one channel per block, got channels {:?}",
                config.channels
            );
        }
        if config.output_side() == 0 {
            bail!(
                "{} blocks halve a {}-pixel image to nothing; use fewer blocks or larger images",
                config.channels.len(),
                config.image_size
            );
        }
        let mut blocks = Vec::with_capacity(config.channels.len());
        let mut input = 3;
        for (i, &out) in config.channels.iter().enumerate() {
            let vb = vb.pp("blocks").pp(i);
            let bound = 1.0 / ((input * 9) as f64).sqrt();
            let conv = vb.pp("conv").get_with_hints(
                (out, input, 3, 3),
                "weight",
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )?;
            let bn = BatchNorm2d::new(out, config.momentum, config.eps, vb.pp("bn"))?;
            blocks.push(Block { conv, bn });
            input = out;
        }
        Ok(Self {
            config: config.clone(),
            blocks,
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &CnnConfig {
        &self.config
    }

    /// `images` (batch, 3, image_size, image_size) → features (batch, feature_size): the last feature map
    /// flattened channel-major, as PyTorch's `flatten(1)`. In [`Mode::Train`], batch norm uses the batch's
    /// statistics and updates its running ones.
    pub fn forward(&self, images: &Tensor, mode: Mode) -> Result<Tensor> {
        let batch = images.dim(0)?;
        self.feature_map(images, mode)?
            .reshape((batch, self.config.feature_size()))
    }

    /// `images` (batch, 3, image_size, image_size) → the last block's map (batch, channels, side, side).
    pub fn feature_map(&self, images: &Tensor, mode: Mode) -> Result<Tensor> {
        let (_, channels, height, width) = images.dims4()?;
        let side = self.config.image_size;
        if channels != 3 || height != side || width != side {
            bail!(
                "expected images of shape (batch, 3, {side}, {side}), got {:?}",
                images.dims()
            );
        }
        let train = matches!(mode, Mode::Train { .. });
        let mut xs = images.clone();
        for block in &self.blocks {
            xs = conv3x3(&xs, &block.conv)?;
            xs = block.bn.forward(&xs, train)?.relu()?;
            xs = max_pool2x2(&xs)?;
        }
        Ok(xs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn training_moves_the_running_statistics_and_evaluation_uses_them() {
        let config = CnnConfig {
            image_size: 8,
            channels: vec![2],
            ..CnnConfig::default()
        };
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let cnn = CnnEncoder::new(&config, vb).unwrap();
        let images = (Tensor::arange(0f32, 2.0 * 3.0 * 64.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 3, 8, 8))
            .unwrap()
            / 100.0)
            .unwrap();
        let eval_before = cnn.forward(&images, Mode::Eval).unwrap();
        cnn.forward(&images, Mode::Train { seed: 0 }).unwrap();
        let running = varmap.data().lock().unwrap()["blocks.0.bn.running_mean"]
            .as_tensor()
            .to_vec1::<f32>()
            .unwrap();
        assert!(running.iter().all(|&v| v != 0.0), "{running:?}");
        let eval_after = cnn.forward(&images, Mode::Eval).unwrap();
        assert_eq!(eval_after.dims(), &[2, 2 * 4 * 4]);
        let diff = (eval_after - eval_before)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff > 1e-3, "{diff}");
    }
}

#[cfg(test)]
mod conv_tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn conv3x3_equals_candles_conv2d_values_and_gradients() {
        let dev = Device::Cpu;
        let xs = candle_core::Var::from_tensor(
            &Tensor::arange(0f32, 2.0 * 3.0 * 5.0 * 6.0, &dev)
                .unwrap()
                .reshape((2, 3, 5, 6))
                .unwrap()
                .sin()
                .unwrap(),
        )
        .unwrap();
        let kernel = candle_core::Var::from_tensor(
            &Tensor::arange(0f32, 4.0 * 27.0, &dev)
                .unwrap()
                .reshape((4, 3, 3, 3))
                .unwrap()
                .cos()
                .unwrap(),
        )
        .unwrap();
        let weights = Tensor::arange(0f32, 2.0 * 4.0 * 30.0, &dev)
            .unwrap()
            .reshape((2, 4, 5, 6))
            .unwrap()
            .sin()
            .unwrap();
        let run = |ours: bool| {
            let y = if ours {
                conv3x3(xs.as_tensor(), kernel.as_tensor()).unwrap()
            } else {
                xs.as_tensor()
                    .conv2d(kernel.as_tensor(), 1, 1, 1, 1)
                    .unwrap()
            };
            let grads = (&y * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (
                flat(&y),
                flat(grads.get(xs.as_tensor()).unwrap()),
                flat(grads.get(kernel.as_tensor()).unwrap()),
            )
        };
        let (a, b) = (run(true), run(false));
        for (x, y) in [(&a.0, &b.0), (&a.1, &b.1), (&a.2, &b.2)] {
            assert_eq!(x.len(), y.len());
            for (p, q) in x.iter().zip(y) {
                assert!((p - q).abs() < 1e-4 * (1.0 + q.abs()), "{p} vs {q}");
            }
        }
    }
}
