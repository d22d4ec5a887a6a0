//! Configuration of a recurrent stack: plain data, serialisable, with PyTorch's defaults.

use serde::{Deserialize, Serialize};

use crate::CellKind;

/// A stack of recurrent layers, as `nn.RNN`/`nn.LSTM`/`nn.GRU(batch_first=True)` configure it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecurrentConfig {
    /// The cell of every layer.
    pub cell: CellKind,
    /// Features of each input step (the width of the embedding, or the vocabulary for one-hot input).
    pub input_size: usize,
    /// Units of each direction of each layer.
    pub hidden_size: usize,
    /// Stacked layers; layer k > 0 reads the outputs of layer k-1 (both directions concatenated).
    pub num_layers: usize,
    /// Run a second direction from the end of each row backwards and concatenate the outputs.
    pub bidirectional: bool,
    /// Dropout probability on the outputs of every layer but the last, applied in training only (PyTorch's
    /// meaning). 0 disables it.
    pub dropout: f32,
    /// Whether the layers have `bias_ih`/`bias_hh` (PyTorch's `bias=True` default).
    pub bias: bool,
    /// How each layer is arranged around its cell, and the options of some cells.
    pub options: CellOptions,
}

/// How each layer of a stack is arranged around its cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Block {
    /// The cell alone (PyTorch's `nn.LSTM` stacking): each layer's outputs are its cell's.
    #[default]
    Plain,
    /// A pre-norm residual block, as the minGRU/minLSTM and xLSTM papers and packages stack their cells:
    /// `a = x + out(cell(norm(x)))`, `y = a + mlp(norm(a))` with RMS norms, a GELU MLP of 4× the width, the
    /// cell `expansion` times wider than the block with `out` projecting back (mingru-pytorch's `minLM`
    /// layer). A layer whose input is not as wide as the block projects it first (`in_proj`).
    Residual,
}

/// Options of the stack's layers beyond PyTorch's: the block arrangement and cell-specific settings. All
/// default to "off", and a `config.json` without them reads as before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CellOptions {
    /// How each layer is arranged around its cell.
    pub block: Block,
    /// In a residual block, the cell's width as a multiple of the block's (mingru-pytorch's
    /// `expansion`, 1.5 in its `minLM`); ignored by plain stacks.
    pub expansion: f32,
    /// IndRNN: the bound on |u|, each recurrent weight clamped to [-bound, bound] in every pass (the
    /// paper's constraint, which keeps a relu recurrence from exploding over long sequences); `None`: no
    /// bound.
    pub bound: Option<f32>,
    /// xLSTM blocks: the heads of each block's cell (the package's `num_heads`, 4).
    pub heads: usize,
    /// `--cell xlstm`: the kinds of the blocks, such as `m,m,s,m` (m: mLSTM, s: sLSTM), cycled over the
    /// layers; `None`: `m,s`.
    pub pattern: Option<String>,
}

impl Default for CellOptions {
    fn default() -> Self {
        Self {
            block: Block::Plain,
            expansion: 1.5,
            bound: None,
            heads: 4,
            pattern: None,
        }
    }
}

impl CellOptions {
    /// Whether these are the defaults (then `config.json` leaves them out).
    pub fn is_default(&self) -> bool {
        *self == CellOptions::default()
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.expansion.is_finite() && self.expansion > 0.0) {
            return Err(format!(
                "the expansion must be a positive number, got {}",
                self.expansion
            ));
        }
        if let Some(bound) = self.bound {
            if !(bound.is_finite() && bound > 0.0) {
                return Err(format!("the bound must be a positive number, got {bound}"));
            }
        }
        if self.heads == 0 {
            return Err("the heads must be at least 1".into());
        }
        if let Some(pattern) = &self.pattern {
            crate::parse_pattern(pattern)?;
        }
        Ok(())
    }
}

impl Default for RecurrentConfig {
    /// One LSTM layer of 128 units reading 64 features: a small character model's size.
    fn default() -> Self {
        Self {
            cell: CellKind::Lstm,
            input_size: 64,
            hidden_size: 128,
            num_layers: 1,
            bidirectional: false,
            dropout: 0.0,
            bias: true,
            options: CellOptions::default(),
        }
    }
}

impl RecurrentConfig {
    /// A one-layer, one-directional stack of `cell` with PyTorch's other defaults.
    pub fn new(cell: CellKind, input_size: usize, hidden_size: usize) -> Self {
        Self {
            cell,
            input_size,
            hidden_size,
            ..Self::default()
        }
    }

    /// 2 when bidirectional, else 1.
    pub fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// Width of the stack's outputs: `directions * hidden_size`.
    pub fn output_size(&self) -> usize {
        self.directions() * self.hidden_size
    }

    /// Width of the input of layer `layer`.
    pub fn layer_input_size(&self, layer: usize) -> usize {
        if layer == 0 {
            self.input_size
        } else {
            self.output_size()
        }
    }

    /// Rows of the state tensors: `num_layers * directions`.
    pub fn state_rows(&self) -> usize {
        self.num_layers * self.directions()
    }
}
