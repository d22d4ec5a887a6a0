//! minGRU and minLSTM (Feng, Tung, Ahmed, Bengio, Hajimirsadeghi, "Were RNNs All We Needed?", arXiv
//! 2410.01201): gates that read the input only, so that every step's projection is one product over the
//! whole sequence and the recurrence is element-wise.
//!
//! As `mingru-pytorch` (lucidrains' package, the reference of the golden tests) has them, in the log-space
//! form of the paper's appendix B.3.1: the candidate goes through g(x) = x + 0.5 for x ≥ 0, σ(x) otherwise,
//! which keeps every state positive; no biases; parameter names `to_hidden_and_gate.weight` (minGRU: the
//! candidate's rows, then the gate's) and `to_hidden_and_f_i_gate.weight` (minLSTM: candidate, forget gate,
//! input gate), under `{layer}` (and `{layer}_reverse`) as an `nn.ModuleList` of them names them.
//!
//! - minGRU: z = σ(W_z x), h̃ = g(W_h x), h_t = (1 − z) ⊙ h_{t−1} + z ⊙ h̃.
//! - minLSTM: f = σ(W_f x), i = σ(W_i x), f' = f / (f + i), i' = i / (f + i), h_t = f' ⊙ h_{t−1} + i' ⊙ g(W_h x).
//!
//! A cell of input I and width H is the package's `minGRU(dim=I, expansion_factor=H/I, proj_out=False)`:
//! its output is its state (the package's `to_out` lives in the residual block, [`super::residual`]).

use std::sync::Arc;

use candle_core::{DType, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use crate::cell::{Cell, CellSpec, CellState, LayerInput};
use crate::fused::lanes::{chunks, load, store, W};
use crate::fused::math::sigmoid;
use crate::fused::scan::{scan, Scan};

/// g(x) = x + 0.5 for x ≥ 0, σ(x) below: continuous, positive, linear growth (graph of candle ops).
pub(crate) fn g(x: &Tensor) -> Result<Tensor> {
    let positive = x.ge(0.0)?;
    positive.where_cond(&(x + 0.5)?, &candle_nn::ops::sigmoid(x)?)
}

/// g on one value.
#[inline(always)]
fn g_value(x: f32) -> f32 {
    if x >= 0.0 {
        x + 0.5
    } else {
        sigmoid(x)
    }
}

/// g'(x): 1 for x ≥ 0, σ(x)(1 − σ(x)) below.
#[inline(always)]
fn g_slope(x: f32) -> f32 {
    if x >= 0.0 {
        1.0
    } else {
        let s = sigmoid(x);
        s * (1.0 - s)
    }
}

/// A cell of the family: its weight and sizes; `S` its scan (the element-wise math), `BLOCKS` its
/// projection's blocks.
#[derive(Debug, Clone)]
pub(crate) struct MinCell<S: Scan> {
    /// (BLOCKS · H, I).
    weight: Tensor,
    hidden: usize,
    scan: std::marker::PhantomData<S>,
}

impl<S: Scan + MinStep> MinCell<S> {
    /// The cell of `spec`, its weight named `{layer}{suffix}.NAME.weight` in `vb` (`NAME.weight` when
    /// nested in a block).
    pub(crate) fn build(spec: &CellSpec, vb: &VarBuilder) -> Result<Arc<dyn Cell>> {
        let vb = if spec.nested {
            vb.clone()
        } else {
            vb.pp(format!("{}{}", spec.layer, spec.suffix()))
        };
        Ok(Arc::new(Self::new(spec.input_size, spec.hidden_size, &vb)?))
    }

    /// A cell reading `input` features into `hidden` units, its weight `S::WEIGHT.weight` in `vb`
    /// (PyTorch's `nn.Linear` initialisation, U(±1/√input)).
    pub(crate) fn new(input: usize, hidden: usize, vb: &VarBuilder) -> Result<Self> {
        let k = 1.0 / (input as f64).sqrt();
        let weight = vb.pp(S::WEIGHT).get_with_hints(
            (S::BLOCKS * hidden, input),
            "weight",
            Init::Uniform { lo: -k, up: k },
        )?;
        Ok(Self {
            weight,
            hidden,
            scan: std::marker::PhantomData,
        })
    }

    /// The scan over `input`: dense steps projected inside the op, or token ids read from a table of every
    /// token's projection (W's columns for one-hot input, `embedding·Wᵀ` for embedded ids).
    fn run(
        &self,
        input: &LayerInput<'_>,
        lengths: Option<&Arc<[usize]>>,
        h0: &Tensor,
        reverse: bool,
    ) -> Result<(Tensor, Tensor)> {
        let w = &self.weight;
        let lengths = lengths.cloned();
        match *input {
            LayerInput::Dense(xs) => scan::<S>(xs, w, None, None, None, h0, lengths, reverse),
            LayerInput::OneHot(ids) => {
                scan::<S>(ids, w, None, None, Some(&w.t()?), h0, lengths, reverse)
            }
            LayerInput::Embedded { ids, table } => {
                let projected = crate::linear(table, w, None)?;
                scan::<S>(ids, w, None, None, Some(&projected), h0, lengths, reverse)
            }
        }
    }
}

/// The composite step of a cell of the family, from its projection.
pub(crate) trait MinStep {
    /// The weight's module name.
    const WEIGHT: &'static str;
    /// `h_{t-1}` (batch, H) and the step's projection (batch, BLOCKS · H) → `h_t`, as candle ops.
    fn step(h: &Tensor, p: &Tensor) -> Result<Tensor>;
}

impl<S: Scan + MinStep> Cell for MinCell<S> {
    fn input_size(&self) -> usize {
        self.weight.dims().get(1).copied().unwrap_or(0)
    }

    fn hidden_size(&self) -> usize {
        self.hidden
    }

    fn step(&self, x: &Tensor, state: &CellState) -> Result<CellState> {
        let p = x.matmul(&self.weight.t()?)?;
        Ok(CellState {
            h: S::step(&state.h, &p)?,
            memory: Vec::new(),
        })
    }

    fn forward_fused(
        &self,
        input: &LayerInput<'_>,
        lengths: Option<&Arc<[usize]>>,
        init: &CellState,
        reverse: bool,
    ) -> Option<Result<(Tensor, CellState)>> {
        let w = &self.weight;
        if !(w.device().is_cpu() && w.dtype() == DType::F32 && init.h.dtype() == DType::F32) {
            return None;
        }
        Some((|| {
            let (outputs, h) = self.run(input, lengths, &init.h, reverse)?;
            Ok((
                outputs,
                CellState {
                    h,
                    memory: Vec::new(),
                },
            ))
        })())
    }

    fn step_fused(&self, x: &Tensor, state: &CellState) -> Option<Result<CellState>> {
        if self.weight.track_op() {
            return None;
        }
        let xs = match x.unsqueeze(1) {
            Ok(xs) => xs,
            Err(e) => return Some(Err(e)),
        };
        self.forward_fused(&LayerInput::Dense(&xs), None, state, false)
            .map(|r| r.map(|(_, state)| state))
    }
}

/// minGRU's math (see the module doc): the projection's blocks are [candidate, gate].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MinGru;

impl MinStep for MinGru {
    const WEIGHT: &'static str = "to_hidden_and_gate";

    fn step(h: &Tensor, p: &Tensor) -> Result<Tensor> {
        let parts = p.chunk(2, D::Minus1)?;
        let candidate = g(&parts[0])?;
        let z = candle_nn::ops::sigmoid(&parts[1])?;
        // torch.lerp(h, candidate, z) = h + z * (candidate - h)
        h + (z * (candidate - h)?)?
    }
}

impl Scan for MinGru {
    const BLOCKS: usize = 2;
    const NAME: &'static str = "seqlab-mingru-scan";

    #[inline(always)]
    fn forward_row(p: &[f32], _u: &[f32], h: &mut [f32]) {
        let n = h.len();
        chunks!(n, |j, w| {
            let (hid, gate, hp) = (load(p, j, w), load(p, n + j, w), load(h, j, w));
            let mut out = [0.0; W];
            for k in 0..W {
                let z = sigmoid(gate[k]);
                out[k] = hp[k] + z * (g_value(hid[k]) - hp[k]);
            }
            store(h, j, w, &out);
        })
    }

    #[inline(always)]
    fn backward_row(
        p: &[f32],
        _u: &[f32],
        h_prev: &[f32],
        _h_new: &[f32],
        dh: &mut [f32],
        dp: &mut [f32],
        _du: &mut [f32],
    ) {
        let n = dh.len();
        chunks!(n, |j, w| {
            let (hid, gate) = (load(p, j, w), load(p, n + j, w));
            let (hp, d) = (load(h_prev, j, w), load(dh, j, w));
            let (mut dhid, mut dgate, mut dprev) = ([0.0; W], [0.0; W], [0.0; W]);
            for k in 0..W {
                let z = sigmoid(gate[k]);
                let candidate = g_value(hid[k]);
                dgate[k] = d[k] * (candidate - hp[k]) * z * (1.0 - z);
                dhid[k] = d[k] * z * g_slope(hid[k]);
                dprev[k] = d[k] * (1.0 - z);
            }
            store(dp, j, w, &dhid);
            store(dp, n + j, w, &dgate);
            store(dh, j, w, &dprev);
        })
    }
}

/// minLSTM's math (see the module doc): the projection's blocks are [candidate, forget, input].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MinLstm;

impl MinStep for MinLstm {
    const WEIGHT: &'static str = "to_hidden_and_f_i_gate";

    fn step(h: &Tensor, p: &Tensor) -> Result<Tensor> {
        let parts = p.chunk(3, D::Minus1)?;
        let candidate = g(&parts[0])?;
        let f = candle_nn::ops::sigmoid(&parts[1])?;
        let i = candle_nn::ops::sigmoid(&parts[2])?;
        let total = (&f + &i)?;
        let f = (f / &total)?;
        let i = (i / total)?;
        (h * f)? + (candidate * i)?
    }
}

impl Scan for MinLstm {
    const BLOCKS: usize = 3;
    const NAME: &'static str = "seqlab-minlstm-scan";

    #[inline(always)]
    fn forward_row(p: &[f32], _u: &[f32], h: &mut [f32]) {
        let n = h.len();
        chunks!(n, |j, w| {
            let (hid, fg, ig) = (load(p, j, w), load(p, n + j, w), load(p, 2 * n + j, w));
            let hp = load(h, j, w);
            let mut out = [0.0; W];
            for k in 0..W {
                let (f, i) = (sigmoid(fg[k]), sigmoid(ig[k]));
                let total = f + i;
                out[k] = hp[k] * (f / total) + g_value(hid[k]) * (i / total);
            }
            store(h, j, w, &out);
        })
    }

    #[inline(always)]
    fn backward_row(
        p: &[f32],
        _u: &[f32],
        h_prev: &[f32],
        _h_new: &[f32],
        dh: &mut [f32],
        dp: &mut [f32],
        _du: &mut [f32],
    ) {
        let n = dh.len();
        chunks!(n, |j, w| {
            let (hid, fg, ig) = (load(p, j, w), load(p, n + j, w), load(p, 2 * n + j, w));
            let (hp, d) = (load(h_prev, j, w), load(dh, j, w));
            let (mut dhid, mut dfg, mut dig, mut dprev) = ([0.0; W], [0.0; W], [0.0; W], [0.0; W]);
            for k in 0..W {
                let (f, i) = (sigmoid(fg[k]), sigmoid(ig[k]));
                let total = f + i;
                let (fp, ip) = (f / total, i / total);
                let candidate = g_value(hid[k]);
                let (dfp, dip) = (d[k] * hp[k], d[k] * candidate);
                let square = total * total;
                let df = (dfp - dip) * i / square;
                let di = (dip - dfp) * f / square;
                dfg[k] = df * f * (1.0 - f);
                dig[k] = di * i * (1.0 - i);
                dhid[k] = d[k] * ip * g_slope(hid[k]);
                dprev[k] = d[k] * fp;
            }
            store(dp, j, w, &dhid);
            store(dp, n + j, w, &dfg);
            store(dp, 2 * n + j, w, &dig);
            store(dh, j, w, &dprev);
        })
    }
}
