//! xLSTM (Beck et al., "xLSTM: Extended Long Short-Term Memory", NeurIPS 2024, arXiv 2405.04517): the
//! sLSTM and mLSTM blocks, as the authors' package `xlstm` (PyPI, NX-AI) builds them, the oracle of the
//! golden tests.
//!
//! Each layer of a seqlab stack of these kinds is one of the package's pre-norm residual blocks
//! (`xLSTMBlock`), so a stack is its `xLSTMBlockStack` without the final norm:
//!
//! ```text
//! sLSTM block:  x = x + slstm_layer(layer_norm(x));  x = x + gated_ffn(layer_norm(x))
//! mLSTM block:  x = x + mlstm_layer(layer_norm(x))
//! ```
//!
//! - [`slstm`]: the sLSTM layer (causal convolution, block-diagonal gate projections, the sLSTM cell with its
//!   exponential input gate, stabiliser and normaliser, a per-head norm) and its block; the cell's
//!   recurrence has a fused CPU kernel with a hand-written backward.
//! - [`mlstm`]: the mLSTM layer (up-projection, causal convolution, q/k/v, the matrix memory, a per-head
//!   norm, learnable skip, SiLU output gate, down-projection) and its block; the whole sequence runs in the
//!   parallel form, one step at a time in the recurrent form, equal to each other.
//!
//! Parameter names are the package's, under `{layer}` instead of its `blocks.{i}`: a package stack's
//! weights load with that prefix renamed. The options are the package's defaults (4 heads, convolution
//! kernel 4, mLSTM up-projection 2, feed-forward 1.3, both rounded up to a multiple of 64, the
//! initialisations of its `reset_parameters`); `--heads` sets the heads.
//!
//! A stack of blocks of different kinds (`--cell xlstm --pattern m,s`) must give every layer the same state
//! slots: each block declares the slots of every kind in the stack and keeps the other kinds' at zero.

use std::sync::Arc;

use candle_core::{bail, DType, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use crate::cell::{Cell, CellSpec, CellState, MemorySlot};

pub(crate) mod mlstm;
mod mlstm_op;
mod ops;
pub(crate) mod slstm;

/// The causal convolutions' kernel size (the package's `conv1d_kernel_size` default).
pub(crate) const KERNEL: usize = 4;

/// The package's LayerNorm epsilon.
const EPS: f64 = 1e-5;

/// The kind of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// An sLSTM block (`s`).
    S,
    /// An mLSTM block (`m`).
    M,
}

/// Parses a block pattern such as `m,m,s,m` (or `mmsm`).
pub fn parse_pattern(pattern: &str) -> std::result::Result<Vec<BlockKind>, String> {
    let kinds = pattern
        .chars()
        .filter(|c| !matches!(c, ',' | ' '))
        .map(|c| match c.to_ascii_lowercase() {
            's' => Ok(BlockKind::S),
            'm' => Ok(BlockKind::M),
            other => Err(format!(
                "the block pattern '{pattern}' has '{other}': expected m (mLSTM) and s (sLSTM) blocks, as in m,m,s,m"
            )),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if kinds.is_empty() {
        return Err(format!(
            "the block pattern '{pattern}' names no block: expected m and s, as in m,m,s,m"
        ));
    }
    Ok(kinds)
}

/// The default pattern of `--cell xlstm`: mLSTM and sLSTM blocks alternating.
pub(crate) const DEFAULT_PATTERN: &str = "m,s";

/// Which kinds a stack holds: the state slots every block of it declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parts {
    s: bool,
    m: bool,
}

/// How a block of either kind is built: the stack's kinds, this block's, its place.
pub(crate) struct Plan {
    kind: BlockKind,
    parts: Parts,
    /// The layer and the stack's layers (the forget-gate bias and `wang_init` depend on them).
    index: usize,
    blocks: usize,
    heads: usize,
}

impl Plan {
    fn of(spec: &CellSpec, pattern: &[BlockKind]) -> Plan {
        let stack: Vec<BlockKind> = (0..spec.layers.max(1))
            .map(|l| pattern[l % pattern.len()])
            .collect();
        Plan {
            kind: pattern[spec.layer % pattern.len()],
            parts: Parts {
                s: stack.contains(&BlockKind::S),
                m: stack.contains(&BlockKind::M),
            },
            index: spec.layer,
            blocks: spec.layers.max(1),
            heads: spec.options.heads,
        }
    }
}

/// Builds the block of layer `spec.layer` of a stack whose blocks follow `pattern` (cycled over the
/// layers).
pub(crate) fn build(
    spec: &CellSpec,
    vb: &VarBuilder,
    pattern: &[BlockKind],
) -> Result<Arc<dyn Cell>> {
    let plan = Plan::of(spec, pattern);
    let vb = vb.pp(format!("{}{}", spec.layer, spec.suffix()));
    let width = spec.hidden_size;
    let in_proj = (spec.input_size != width)
        .then(|| {
            vb.pp("in_proj").get_with_hints(
                (width, spec.input_size),
                "weight",
                small_init(spec.input_size),
            )
        })
        .transpose()?;
    let core: Arc<dyn Core> = match plan.kind {
        BlockKind::S => Arc::new(slstm::SlstmBlock::new(width, &plan, &vb)?),
        BlockKind::M => Arc::new(mlstm::MlstmBlock::new(width, &plan, &vb)?),
    };
    Ok(Arc::new(XlstmBlock {
        in_proj,
        core,
        parts: plan.parts,
        input: spec.input_size,
        width,
        heads: plan.heads,
    }))
}

/// A cell for `--cell slstm`: every block an sLSTM block.
pub(crate) fn build_slstm(spec: &CellSpec, vb: &VarBuilder) -> Result<Arc<dyn Cell>> {
    build(spec, vb, &[BlockKind::S])
}

/// A cell for `--cell mlstm`: every block an mLSTM block.
pub(crate) fn build_mlstm(spec: &CellSpec, vb: &VarBuilder) -> Result<Arc<dyn Cell>> {
    build(spec, vb, &[BlockKind::M])
}

/// A cell for `--cell xlstm`: the blocks of `--pattern` (default `m,s`).
pub(crate) fn build_xlstm(spec: &CellSpec, vb: &VarBuilder) -> Result<Arc<dyn Cell>> {
    let pattern = spec.options.pattern.as_deref().unwrap_or(DEFAULT_PATTERN);
    match parse_pattern(pattern) {
        Ok(kinds) => build(spec, vb, &kinds),
        Err(e) => bail!("{e}"),
    }
}

/// One block's arithmetic on its own state (its slots, in the order of [`Core::slots`]).
pub(crate) trait Core: std::fmt::Debug + Send + Sync {
    /// The block's kind.
    fn kind(&self) -> BlockKind;
    /// This block's state slots (the block's `h` aside).
    fn slots(&self) -> Vec<MemorySlot>;
    /// The whole sequence `xs` (batch, seq, width) from `state`, forwards: the outputs and the new state.
    /// `fused`: on the fused kernels where they apply.
    fn sequence(&self, xs: &Tensor, state: &[Tensor], fused: bool)
        -> Result<(Tensor, Vec<Tensor>)>;
    /// One step `x` (batch, width): the output and the new state.
    fn step(&self, x: &Tensor, state: &[Tensor]) -> Result<(Tensor, Vec<Tensor>)>;
}

/// The slots of a block of `kind` in a stack of `width` and `heads`.
fn slots_of(kind: BlockKind, width: usize, heads: usize) -> Vec<MemorySlot> {
    match kind {
        BlockKind::S => slstm::slots(width),
        BlockKind::M => mlstm::slots(width, heads),
    }
}

/// A block of either kind as a [`Cell`]: its input projection, its core, and the state slots of the stack.
#[derive(Debug, Clone)]
pub(crate) struct XlstmBlock {
    in_proj: Option<Tensor>,
    core: Arc<dyn Core>,
    parts: Parts,
    input: usize,
    width: usize,
    heads: usize,
}

impl XlstmBlock {
    /// Where this block's slots start among the stack's, and how many there are.
    fn own(&self) -> (usize, usize) {
        let own = self.core.slots().len();
        match self.core.kind() {
            BlockKind::M if self.parts.s => {
                (slots_of(BlockKind::S, self.width, self.heads).len(), own)
            }
            _ => (0, own),
        }
    }

    fn widen(&self, xs: &Tensor) -> Result<Tensor> {
        match &self.in_proj {
            Some(w) => crate::linear(xs, w, None),
            None => Ok(xs.clone()),
        }
    }

    /// The state after this block: its own slots replaced, the others kept.
    fn with_own(&self, init: &CellState, h: Tensor, own: Vec<Tensor>) -> CellState {
        let (start, len) = self.own();
        let mut memory = init.memory.clone();
        memory.splice(start..start + len, own);
        CellState { h, memory }
    }

    fn own_state(&self, state: &CellState) -> Result<Vec<Tensor>> {
        let (start, len) = self.own();
        match state.memory.get(start..start + len) {
            Some(own) => Ok(own.to_vec()),
            None => bail!(
                "an xLSTM block's state needs {} memory tensors, got {}",
                start + len,
                state.memory.len()
            ),
        }
    }

    /// The whole sequence without masks, forwards or (flipped in time) backwards.
    fn run(
        &self,
        xs: &Tensor,
        init: &CellState,
        reverse: bool,
        fused: bool,
    ) -> Result<(Tensor, CellState)> {
        let xs = if reverse { flip_time(xs)? } else { xs.clone() };
        let x0 = self.widen(&xs)?;
        let (out, own) = self.core.sequence(&x0, &self.own_state(init)?, fused)?;
        let seq = out.dim(1)?;
        let h = out.narrow(1, seq - 1, 1)?.squeeze(1)?;
        let out = if reverse { flip_time(&out)? } else { out };
        Ok((out, self.with_own(init, h, own)))
    }
}

/// `xs` (batch, seq, ·) in reverse time order.
fn flip_time(xs: &Tensor) -> Result<Tensor> {
    let seq = xs.dim(1)?;
    let index = Tensor::from_vec((0..seq as u32).rev().collect::<Vec<_>>(), seq, xs.device())?;
    xs.contiguous()?.index_select(&index, 1)
}

impl Cell for XlstmBlock {
    fn input_size(&self) -> usize {
        self.input
    }

    fn hidden_size(&self) -> usize {
        self.width
    }

    fn memory(&self) -> Vec<MemorySlot> {
        let mut slots = Vec::new();
        if self.parts.s {
            slots.extend(slots_of(BlockKind::S, self.width, self.heads));
        }
        if self.parts.m {
            slots.extend(slots_of(BlockKind::M, self.width, self.heads));
        }
        slots
    }

    fn step(&self, x: &Tensor, state: &CellState) -> Result<CellState> {
        let x0 = self.widen(x)?;
        let (h, own) = self.core.step(&x0, &self.own_state(state)?)?;
        Ok(self.with_own(state, h, own))
    }

    fn forward_composite(
        &self,
        xs: &Tensor,
        masks: Option<&[Tensor]>,
        init: &CellState,
        reverse: bool,
    ) -> Result<(Tensor, CellState)> {
        match masks {
            // Rows of different lengths: one step at a time, each row stopping at its length.
            Some(_) => crate::cell::step_loop(self, xs, masks, init, reverse),
            None => self.run(xs, init, reverse, false),
        }
    }

    fn forward_fused(
        &self,
        input: &crate::LayerInput<'_>,
        lengths: Option<&Arc<[usize]>>,
        init: &CellState,
        reverse: bool,
    ) -> Option<Result<(Tensor, CellState)>> {
        if lengths.is_some() || init.h.dtype() != DType::F32 || !init.h.device().is_cpu() {
            return None;
        }
        Some(
            input
                .dense(self.input)
                .and_then(|xs| self.run(&xs, init, reverse, true)),
        )
    }
}

/// log σ(x) as candle ops, stable for large |x|.
pub(crate) fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let soft = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    x.minimum(0.0)? - soft
}

/// `small_init_init_`: N(0, √(2 / (5·dim))).
pub(crate) fn small_init(dim: usize) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: (2.0 / (5.0 * dim as f64)).sqrt(),
    }
}

/// `wang_init_`: N(0, 2 / blocks / √dim).
pub(crate) fn wang_init(dim: usize, blocks: usize) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: 2.0 / blocks as f64 / (dim as f64).sqrt(),
    }
}

/// The package's `LayerNorm` (no bias, weight stored as the offset from 1) over the last dimension.
fn layer_norm(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred
        .broadcast_div(&(var + EPS)?.sqrt()?)?
        .broadcast_mul(&(weight + 1.0)?)
}

/// The package's `MultiHeadLayerNorm`: a layer norm over each head's `width / heads` features of `x`
/// (…, width), then the per-feature scale `1 + weight`.
fn head_norm(x: &Tensor, weight: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let width = *dims.last().unwrap_or(&0);
    let mut split = dims[..dims.len() - 1].to_vec();
    split.extend([heads, width / heads]);
    let xh = x.reshape(split)?;
    let mean = xh.mean_keepdim(D::Minus1)?;
    let centred = xh.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred
        .broadcast_div(&(var + EPS)?.sqrt()?)?
        .reshape(dims)?
        .broadcast_mul(&(weight + 1.0)?)
}

/// Whether the fused ops apply to `x`: asked for, f32 on the CPU.
pub(crate) fn on_cpu(x: &Tensor, fused: bool) -> bool {
    fused && x.device().is_cpu() && x.dtype() == DType::F32
}

/// `x` (…, width) as (rows, width), contiguous, for a fused op; and the shape to restore.
fn as_rows(x: &Tensor) -> Result<(Tensor, Vec<usize>)> {
    let dims = x.dims().to_vec();
    let width = *dims.last().unwrap_or(&1);
    Ok((
        x.contiguous()?
            .reshape(((x.elem_count() / width.max(1)), width))?,
        dims,
    ))
}

/// The package's norms: `LayerNorm` (`heads` 1) or `MultiHeadLayerNorm`, on the fused op when `fused`
/// applies, else as candle ops.
pub(crate) fn norm(x: &Tensor, weight: &Tensor, heads: usize, fused: bool) -> Result<Tensor> {
    if on_cpu(x, fused) {
        let (rows, dims) = as_rows(x)?;
        return rows
            .apply_op2_arc(
                &weight.contiguous()?,
                Arc::new(Box::new(ops::NormOp { heads })),
            )?
            .reshape(dims);
    }
    if heads == 1 {
        layer_norm(x, weight)
    } else {
        head_norm(x, weight, heads)
    }
}

/// The package's `LinearHeadwiseExpand` without bias (weight (heads, out, in)), on the fused op when
/// `fused` applies, else as candle ops.
pub(crate) fn headwise(x: &Tensor, weight: &Tensor, fused: bool) -> Result<Tensor> {
    if on_cpu(x, fused) {
        let (rows, mut dims) = as_rows(x)?;
        let (heads, out, _) = weight.dims3()?;
        if let Some(last) = dims.last_mut() {
            *last = heads * out;
        }
        return rows
            .apply_op2_arc(&weight.contiguous()?, Arc::new(Box::new(ops::HeadwiseOp)))?
            .reshape(dims);
    }
    headwise_graph(x, weight)
}

/// A residual-weight norm parameter `name.weight` (width,), zero (a scale of 1) as the package initialises
/// it.
pub(crate) fn norm_weight(vb: &VarBuilder, name: &str, width: usize) -> Result<Tensor> {
    vb.pp(name)
        .get_with_hints(width, "weight", Init::Const(0.0))
}

/// The package's `LinearHeadwiseExpand` without bias: weight (heads, out, in) applied to each head's slice
/// of `x` (…, heads·in) → (…, heads·out).
fn headwise_graph(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let (heads, out, inp) = weight.dims3()?;
    let dims = x.dims().to_vec();
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let y = x
        .reshape((rows, heads, inp))?
        .transpose(0, 1)?
        .contiguous()?
        .matmul(&weight.transpose(1, 2)?)?; // (heads, rows, out)
    let mut shape = dims[..dims.len() - 1].to_vec();
    shape.push(heads * out);
    y.transpose(0, 1)?.contiguous()?.reshape(shape)
}

/// The package's depthwise `CausalConv1d` (kernel [`KERNEL`], with bias), followed by SiLU as both layers
/// use it.
pub(crate) struct CausalConv {
    /// (width, 1, KERNEL).
    weight: Tensor,
    bias: Tensor,
}

impl CausalConv {
    /// `conv1d.conv.weight` and `.bias` under `vb`, `nn.Conv1d`'s initialisation (fan-in KERNEL).
    pub(crate) fn new(vb: &VarBuilder, width: usize) -> Result<Self> {
        let k = 1.0 / (KERNEL as f64).sqrt();
        let init = Init::Uniform { lo: -k, up: k };
        let vb = vb.pp("conv1d").pp("conv");
        Ok(Self {
            weight: vb.get_with_hints((width, 1, KERNEL), "weight", init)?,
            bias: vb.get_with_hints(width, "bias", init)?,
        })
    }

    /// SiLU(conv(xs)) over `xs` (batch, seq, width) after `window` (batch, (KERNEL − 1)·width), the inputs
    /// before it, oldest first; and the window after `xs`.
    pub(crate) fn forward(
        &self,
        xs: &Tensor,
        window: &Tensor,
        fused: bool,
    ) -> Result<(Tensor, Tensor)> {
        let (batch, seq, width) = xs.dims3()?;
        if on_cpu(xs, fused) {
            let wb = Tensor::cat(&[self.weight.squeeze(1)?.t()?, self.bias.unsqueeze(0)?], 0)?;
            let out = xs.contiguous()?.apply_op3_arc(
                &window.contiguous()?,
                &wb,
                Arc::new(Box::new(ConvOp)),
            )?;
            let next = out
                .narrow(1, seq, KERNEL - 1)?
                .reshape((batch, (KERNEL - 1) * width))?;
            // Contiguous once: several projections read it.
            return Ok((out.narrow(1, 0, seq)?.contiguous()?, next));
        }
        let past = window.reshape((batch, KERNEL - 1, width))?;
        let all = Tensor::cat(&[&past, xs], 1)?; // (batch, seq + K − 1, width)
        let w = self.weight.squeeze(1)?.t()?; // (KERNEL, width)
        let mut y = self
            .bias
            .reshape((1, 1, width))?
            .broadcast_as((batch, seq, width))?;
        for k in 0..KERNEL {
            let wk = w.narrow(0, k, 1)?.reshape((1, 1, width))?;
            y = y.broadcast_add(&all.narrow(1, k, seq)?.broadcast_mul(&wk)?)?;
        }
        let next = all
            .narrow(1, seq, KERNEL - 1)?
            .reshape((batch, (KERNEL - 1) * width))?;
        Ok((candle_nn::ops::silu(&y)?, next))
    }
}

impl std::fmt::Debug for CausalConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CausalConv").finish_non_exhaustive()
    }
}

/// `ceil(factor · width / 64) · 64`: the package's up-projection width.
pub(crate) fn up_width(factor: f64, width: usize) -> usize {
    ((factor * width as f64) / 64.0).ceil() as usize * 64
}

/// A state slot that starts at zero.
pub(crate) fn slot(name: &'static str, what: &'static str, width: usize) -> MemorySlot {
    MemorySlot {
        name,
        what,
        width,
        learned_init: false,
    }
}

/// The parameter `name` (a vector of `values.len()`) under `vb`, set to `values` when it is fresh (the
/// `VarMap` did not hold it), as the package's `reset_parameters` sets biases to fixed profiles; a loaded
/// one is kept.
pub(crate) fn set_fresh(vb: &VarBuilder, name: &str, values: Vec<f32>) -> Result<Tensor> {
    let fresh = !vb.contains_tensor(name);
    let len = values.len();
    let t = vb.get_with_hints(len, name, Init::Const(0.0))?;
    if !fresh {
        return Ok(t);
    }
    let v = Tensor::from_vec(values, len, t.device())?.to_dtype(t.dtype())?;
    if t.is_variable() {
        candle_core::Var::from_tensor(&t)?.set(&v)?;
        Ok(t)
    } else {
        Ok(v)
    }
}

/// The causal convolution and its SiLU as one fused CPU op: (xs (batch, seq, F), window (batch, (K−1)·F),
/// [weightᵀ; bias] (K + 1, F)) → (batch, seq + K − 1, F): SiLU(conv) of every step, then the new window.
/// Threads split the batch rows; every loop runs along F. The backward recomputes the pre-activations.
struct ConvOp;

/// Row `r` of batch row `b` of the window followed by `xs` (F values).
#[inline(always)]
fn joined<'a>(
    xs: &'a [f32],
    window: &'a [f32],
    seq: usize,
    f: usize,
    b: usize,
    r: usize,
) -> &'a [f32] {
    if r < KERNEL - 1 {
        &window[(b * (KERNEL - 1) + r) * f..(b * (KERNEL - 1) + r + 1) * f]
    } else {
        let t = b * seq + r - (KERNEL - 1);
        &xs[t * f..(t + 1) * f]
    }
}

/// The pre-activations of step `t` of row `b` into `acc` (F).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn conv_row(
    xs: &[f32],
    window: &[f32],
    wb: &[f32],
    seq: usize,
    f: usize,
    b: usize,
    t: usize,
    acc: &mut [f32],
) {
    acc.copy_from_slice(&wb[KERNEL * f..(KERNEL + 1) * f]);
    for k in 0..KERNEL {
        let (w, x) = (
            &wb[k * f..(k + 1) * f],
            joined(xs, window, seq, f, b, t + k),
        );
        for ((a, w), x) in acc.iter_mut().zip(w).zip(x) {
            *a += w * x;
        }
    }
}

impl candle_core::CustomOp3 for ConvOp {
    fn name(&self) -> &'static str {
        "seqlab-causal-conv"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
        s3: &candle_core::CpuStorage,
        l3: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (batch, seq, f) = l1.shape().dims3()?;
        if l2.shape().dims() != [batch, (KERNEL - 1) * f] || l3.shape().dims() != [KERNEL + 1, f] {
            bail!(
                "fused convolution: input {:?}, window {:?}, weights {:?}",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let xs: &[f32] = crate::fused::contiguous(s1, l1, "convolution input")?;
        let window: &[f32] = crate::fused::contiguous(s2, l2, "convolution window")?;
        let wb: &[f32] = crate::fused::contiguous(s3, l3, "convolution weights")?;
        let rows = seq + KERNEL - 1;
        let mut out = vec![0.0f32; batch * rows * f];
        let per = crate::fused::block_rows(batch);
        std::thread::scope(|scope| {
            for (i, block) in out.chunks_mut(per * rows * f).enumerate() {
                scope.spawn(move || {
                    for (local, out) in block.chunks_mut(rows * f).enumerate() {
                        let b = i * per + local;
                        for t in 0..seq {
                            let y = &mut out[t * f..(t + 1) * f];
                            conv_row(xs, window, wb, seq, f, b, t, y);
                            for v in y.iter_mut() {
                                *v *= crate::fused::math::sigmoid(*v);
                            }
                        }
                        for r in 0..KERNEL - 1 {
                            out[(seq + r) * f..(seq + r + 1) * f].copy_from_slice(joined(
                                xs,
                                window,
                                seq,
                                f,
                                b,
                                seq + r,
                            ));
                        }
                    }
                });
            }
        });
        Ok((
            candle_core::CpuStorage::F32(out),
            candle_core::Shape::from((batch, rows, f)),
        ))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        window: &Tensor,
        wb: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (batch, seq, f) = xs.dims3()?;
        let rows = seq + KERNEL - 1;
        let owned = [
            xs.contiguous()?,
            window.contiguous()?,
            wb.contiguous()?,
            grad.contiguous()?,
        ];
        let guards: Vec<_> = owned.iter().map(|t| t.storage_and_layout()).collect();
        let (xv, wv, wbv, g) = (
            crate::fused::guarded(&guards[0], "convolution input")?,
            crate::fused::guarded(&guards[1], "convolution window")?,
            crate::fused::guarded(&guards[2], "convolution weights")?,
            crate::fused::guarded(&guards[3], "convolution gradient")?,
        );
        // Gradients of the joined rows (window then xs) per batch row, and per thread of the weights.
        let mut dj = vec![0.0f32; batch * rows * f];
        let per = crate::fused::block_rows(batch);
        let dwbs: Vec<Vec<f32>> = std::thread::scope(|scope| {
            let handles: Vec<_> = dj
                .chunks_mut(per * rows * f)
                .enumerate()
                .map(|(i, block)| {
                    scope.spawn(move || {
                        let mut dwb = vec![0.0f32; (KERNEL + 1) * f];
                        let mut d = vec![0.0f32; f];
                        for (local, dj) in block.chunks_mut(rows * f).enumerate() {
                            let b = i * per + local;
                            for t in 0..seq {
                                conv_row(xv, wv, wbv, seq, f, b, t, &mut d);
                                let gt = &g[(b * rows + t) * f..(b * rows + t + 1) * f];
                                for (a, gv) in d.iter_mut().zip(gt) {
                                    let s = crate::fused::math::sigmoid(*a);
                                    *a = gv * s * (1.0 + *a * (1.0 - s));
                                }
                                for (x, dv) in dwb[KERNEL * f..].iter_mut().zip(&d) {
                                    *x += dv;
                                }
                                for k in 0..KERNEL {
                                    let x = joined(xv, wv, seq, f, b, t + k);
                                    for ((acc, dv), xv) in
                                        dwb[k * f..(k + 1) * f].iter_mut().zip(&d).zip(x)
                                    {
                                        *acc += dv * xv;
                                    }
                                    let w = &wbv[k * f..(k + 1) * f];
                                    for ((acc, dv), wv) in
                                        dj[(t + k) * f..(t + k + 1) * f].iter_mut().zip(&d).zip(w)
                                    {
                                        *acc += dv * wv;
                                    }
                                }
                            }
                            // The new window is rows seq .. seq + K − 1 of the joined input.
                            for r in seq..rows {
                                for (acc, gv) in dj[r * f..(r + 1) * f]
                                    .iter_mut()
                                    .zip(&g[(b * rows + r) * f..(b * rows + r + 1) * f])
                                {
                                    *acc += gv;
                                }
                            }
                        }
                        dwb
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let dwb = crate::fused::summed(&dwbs, (KERNEL + 1) * f);
        let dj = Tensor::from_vec(dj, (batch, rows, f), xs.device())?;
        let dwindow = dj
            .narrow(1, 0, KERNEL - 1)?
            .reshape((batch, (KERNEL - 1) * f))?;
        let dxs = dj.narrow(1, KERNEL - 1, seq)?;
        Ok((
            Some(dxs),
            Some(dwindow),
            Some(Tensor::from_vec(dwb, (KERNEL + 1, f), xs.device())?),
        ))
    }
}
