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
