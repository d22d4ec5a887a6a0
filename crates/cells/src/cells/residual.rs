//! The pre-norm residual block around any cell ([`crate::Block::Residual`]), as `mingru-pytorch`'s `minLM`
//! stacks its cells and the xLSTM paper its blocks:
//!
//! ```text
//! x0 = in_proj(x)                      (only when the input is not as wide as the block)
//! a  = x0 + out(cell(norm1(x0)))       (out: only when the cell is wider than the block, by `expansion`)
//! y  = a + mlp(norm2(a))               (mlp: Linear(H, 4H) → GELU → Linear(4H, H), with biases)
//! ```
//!
//! The norms are RMS norms with a weight (`torch.nn.RMSNorm`). Parameter names follow `minLM`'s layer (an
//! `nn.ModuleList` of [conv, norm, cell, norm, mlp]) so its weights load with only the stack's prefix
//! renamed: `{layer}.1.weight`, `{layer}.2.*` (the cell; minGRU's `to_out` is `{layer}.2.to_out.weight`),
//! `{layer}.3.weight`, `{layer}.4.0.*`, `{layer}.4.2.*`; `{layer}.in_proj.weight` is seqlab's own.
//!
//! The block's output is not its recurrent state: `h` is the block's output at the last step, and the cell's
//! own state rides in the memory (`h_cell`, then the cell's memory), so decoding, checkpoints and bridges
//! carry it like any memory.

use std::sync::Arc;

use candle_core::{Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use crate::cell::{Cell, CellSpec, CellState, LayerInput, MemorySlot};
use crate::CellKind;

/// A residual block (see the module doc).
#[derive(Debug, Clone)]
pub(crate) struct Residual {
    in_proj: Option<Tensor>,
    norm1: Tensor,
    cell: Arc<dyn Cell>,
    out: Option<Tensor>,
    norm2: Tensor,
    mlp_in: (Tensor, Tensor),
    mlp_out: (Tensor, Tensor),
    input: usize,
    width: usize,
}

/// `torch.nn.RMSNorm`'s default epsilon for f32.
const EPS: f64 = f32::EPSILON as f64;

/// x / √(mean(x²) + ε) · weight, over the last dimension.
fn rms_norm(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let scale = (x.sqr()?.mean_keepdim(D::Minus1)? + EPS)?.sqrt()?;
    x.broadcast_div(&scale)?.broadcast_mul(weight)
}

/// `nn.Linear(input, output)` parameters named `name.weight` and `name.bias` (without a bias when
/// `bias` is false), PyTorch's initialisation.
fn linear_params(
    vb: &VarBuilder,
    name: &str,
    output: usize,
    input: usize,
) -> Result<(Tensor, Tensor)> {
    let k = 1.0 / (input as f64).sqrt();
    let init = Init::Uniform { lo: -k, up: k };
    let vb = vb.pp(name);
    Ok((
        vb.get_with_hints((output, input), "weight", init)?,
        vb.get_with_hints(output, "bias", init)?,
    ))
}

impl Residual {
    /// A block of width `spec.hidden_size` around a cell of `kind`, its parameters under `{layer}{suffix}`.
    pub(crate) fn build(kind: CellKind, spec: &CellSpec, vb: &VarBuilder) -> Result<Arc<dyn Cell>> {
        let vb = vb.pp(format!("{}{}", spec.layer, spec.suffix()));
        let (input, width) = (spec.input_size, spec.hidden_size);
        let inner_width = ((width as f32 * spec.options.expansion) as usize).max(1);
        let k = |fan_in: usize| {
            let k = 1.0 / (fan_in as f64).sqrt();
            Init::Uniform { lo: -k, up: k }
        };
        let in_proj = (input != width)
            .then(|| {
                vb.pp("in_proj")
                    .get_with_hints((width, input), "weight", k(input))
            })
            .transpose()?;
        let norm = |name: &str| {
            vb.pp(name)
                .get_with_hints(width, "weight", Init::Const(1.0))
        };
        let inner = CellSpec {
            input_size: width,
            hidden_size: inner_width,
            bias: spec.bias,
            layer: 0,
            layers: 1,
            reverse: false,
            options: crate::CellOptions::default(),
            nested: true,
        };
        let cell_vb = vb.pp("2");
        let cell = kind.build_cell(&inner, &cell_vb)?;
        let out = (inner_width != width)
            .then(|| {
                cell_vb
                    .pp("to_out")
                    .get_with_hints((width, inner_width), "weight", k(inner_width))
            })
            .transpose()?;
        let mlp = vb.pp("4");
        Ok(Arc::new(Residual {
            in_proj,
            norm1: norm("1")?,
            cell,
            out,
            norm2: norm("3")?,
            mlp_in: linear_params(&mlp, "0", 4 * width, width)?,
            mlp_out: linear_params(&mlp, "2", width, 4 * width)?,
            input,
            width,
        }))
    }

    /// The block's input in its width: `in_proj(x)` or `x`.
    fn widen(&self, x: &Tensor) -> Result<Tensor> {
        match &self.in_proj {
            Some(w) => crate::linear(x, w, None),
            None => Ok(x.clone()),
        }
    }

    /// From the cell's outputs `hs` and the block's input `x0` to the block's outputs.
    fn finish(&self, x0: &Tensor, hs: &Tensor) -> Result<Tensor> {
        let y = match &self.out {
            Some(w) => crate::linear(hs, w, None)?,
            None => hs.clone(),
        };
        let a = (x0 + y)?;
        let m = crate::linear(
            &rms_norm(&a, &self.norm2)?,
            &self.mlp_in.0,
            Some(&self.mlp_in.1),
        )?
        .gelu_erf()?;
        a + crate::linear(&m, &self.mlp_out.0, Some(&self.mlp_out.1))?
    }

    /// The cell's state within the block's.
    fn inner_state(state: &CellState) -> Result<CellState> {
        match state.memory.split_first() {
            Some((h, memory)) => Ok(CellState {
                h: h.clone(),
                memory: memory.to_vec(),
            }),
            None => candle_core::bail!("a residual block's state needs its cell's h"),
        }
    }

    /// The block's state from its last output `h` and its cell's state.
    fn outer_state(h: Tensor, inner: CellState) -> CellState {
        let mut memory = vec![inner.h];
        memory.extend(inner.memory);
        CellState { h, memory }
    }

    /// The whole sequence: `run_cell` runs the cell over the normalised input (`None`: it cannot, and the
    /// block cannot either). Outputs past each row's length are zero; the final `h` is each row's output
    /// at its last valid step.
    fn run(
        &self,
        xs: &Tensor,
        lengths: Option<&[usize]>,
        init: &CellState,
        reverse: bool,
        run_cell: impl FnOnce(&Tensor, &CellState) -> Option<Result<(Tensor, CellState)>>,
    ) -> Option<Result<(Tensor, CellState)>> {
        let x0 = match self.widen(xs) {
            Ok(x0) => x0,
            Err(e) => return Some(Err(e)),
        };
        let normalised = match rms_norm(&x0, &self.norm1) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        let inner = match Self::inner_state(init) {
            Ok(inner) => inner,
            Err(e) => return Some(Err(e)),
        };
        let (hs, inner) = match run_cell(&normalised, &inner)? {
            Ok(done) => done,
            Err(e) => return Some(Err(e)),
        };
        Some((|| {
            let (batch, seq, _) = xs.dims3()?;
            let mut out = self.finish(&x0, &hs)?;
            if let Some(lengths) = lengths {
                let mask: Vec<f32> = lengths
                    .iter()
                    .flat_map(|&l| (0..seq).map(move |t| if t < l { 1.0 } else { 0.0 }))
                    .collect();
                let mask =
                    Tensor::from_vec(mask, (batch, seq, 1), xs.device())?.to_dtype(out.dtype())?;
                out = out.broadcast_mul(&mask)?;
            }
            let last: Vec<u32> = (0..batch)
                .map(|b| {
                    let len = lengths.map_or(seq, |l| l[b]);
                    if reverse {
                        0
                    } else {
                        len as u32 - 1
                    }
                })
                .collect();
            let index = Tensor::from_vec(last, (batch, 1, 1), xs.device())?
                .broadcast_as((batch, 1, self.width))?
                .contiguous()?;
            let h = out.contiguous()?.gather(&index, 1)?.squeeze(1)?;
            Ok((out, Self::outer_state(h, inner)))
        })())
    }
}

/// Row lengths from per-step validity masks (`masks[t]` (batch, 1), 1 where step t is valid).
fn lengths_of(masks: &[Tensor]) -> Result<Vec<usize>> {
    let stacked = Tensor::cat(masks, 1)?.to_dtype(candle_core::DType::F32)?;
    Ok(stacked
        .sum(1)?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|l| l.round() as usize)
        .collect())
}

impl Cell for Residual {
    fn input_size(&self) -> usize {
        self.input
    }

    fn hidden_size(&self) -> usize {
        self.width
    }

    fn memory(&self) -> Vec<MemorySlot> {
        let mut slots = vec![MemorySlot {
            name: "h_cell",
            what: "cell state",
            width: self.cell.hidden_size(),
            learned_init: true,
        }];
        slots.extend(self.cell.memory());
        slots
    }

    fn step(&self, x: &Tensor, state: &CellState) -> Result<CellState> {
        let x0 = self.widen(x)?;
        let next = self
            .cell
            .step(&rms_norm(&x0, &self.norm1)?, &Self::inner_state(state)?)?;
        let h = self.finish(&x0, &next.h)?;
        Ok(Self::outer_state(h, next))
    }

    fn forward_composite(
        &self,
        xs: &Tensor,
        masks: Option<&[Tensor]>,
        init: &CellState,
        reverse: bool,
    ) -> Result<(Tensor, CellState)> {
        let lengths = masks.map(lengths_of).transpose()?;
        let done = self.run(xs, lengths.as_deref(), init, reverse, |n, inner| {
            Some(self.cell.forward_composite(n, masks, inner, reverse))
        });
        match done {
            Some(done) => done,
            None => candle_core::bail!("the residual block's cell did not run"),
        }
    }

    fn forward_fused(
        &self,
        input: &LayerInput<'_>,
        lengths: Option<&Arc<[usize]>>,
        init: &CellState,
        reverse: bool,
    ) -> Option<Result<(Tensor, CellState)>> {
        let xs = match input.dense(self.input) {
            Ok(xs) => xs,
            Err(e) => return Some(Err(e)),
        };
        self.run(&xs, lengths.map(|l| &l[..]), init, reverse, |n, inner| {
            self.cell
                .forward_fused(&LayerInput::Dense(n), lengths, inner, reverse)
        })
    }

    fn step_fused(&self, x: &Tensor, state: &CellState) -> Option<Result<CellState>> {
        // The cell's fused step, the block's arithmetic as graph ops (cheap beside it).
        let inner = match Self::inner_state(state) {
            Ok(inner) => inner,
            Err(e) => return Some(Err(e)),
        };
        let x0 = match self.widen(x) {
            Ok(x0) => x0,
            Err(e) => return Some(Err(e)),
        };
        let normalised = match rms_norm(&x0, &self.norm1) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        let next = match self.cell.step_fused(&normalised, &inner)? {
            Ok(next) => next,
            Err(e) => return Some(Err(e)),
        };
        Some(
            self.finish(&x0, &next.h)
                .map(|h| Self::outer_state(h, next)),
        )
    }

    fn map_recurrent_weights(
        &self,
        f: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<Option<Arc<dyn Cell>>> {
        Ok(self.cell.map_recurrent_weights(f)?.map(|cell| {
            Arc::new(Residual {
                cell,
                ..self.clone()
            }) as Arc<dyn Cell>
        }))
    }
}
