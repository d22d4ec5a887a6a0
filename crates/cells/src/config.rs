//! Configuration of a recurrent stack: plain data, serialisable, with PyTorch's defaults.

use serde::{Deserialize, Serialize};

/// Which recurrent cell a [`crate::Recurrent`] stacks. The equations are PyTorch's, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CellKind {
    /// Elman RNN with tanh: `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)` (`nn.RNN`, `nonlinearity='tanh'`).
    Rnn,
    /// Elman RNN with relu: `h' = relu(W_ih x + b_ih + W_hh h + b_hh)` (`nn.RNN`, `nonlinearity='relu'`).
    RnnRelu,
    /// LSTM with gate order i, f, g, o: `c' = f*c + i*g`, `h' = o*tanh(c')` (`nn.LSTM`, no projection).
    #[default]
    Lstm,
    /// GRU with gate order r, z, n and the reset gate applied *after* the hidden product, as PyTorch and cuDNN
    /// do (not the original paper's variant): `n = tanh(W_in x + b_in + r*(W_hn h + b_hn))`,
    /// `h' = (1-z)*n + z*h`.
    Gru,
}

impl CellKind {
    /// Number of gate blocks stacked in `weight_ih`/`weight_hh`: 1 (RNN), 4 (LSTM), 3 (GRU).
    pub fn gates(self) -> usize {
        match self {
            CellKind::Rnn | CellKind::RnnRelu => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    /// Whether the state carries a cell tensor `c` beside `h` (LSTM only).
    pub fn has_cell_state(self) -> bool {
        matches!(self, CellKind::Lstm)
    }

    /// The name used on the command line and in `config.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            CellKind::Rnn => "rnn",
            CellKind::RnnRelu => "rnn_relu",
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
        }
    }
}

impl std::fmt::Display for CellKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CellKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rnn" | "rnn_tanh" => Ok(CellKind::Rnn),
            "rnn_relu" => Ok(CellKind::RnnRelu),
            "lstm" => Ok(CellKind::Lstm),
            "gru" => Ok(CellKind::Gru),
            other => Err(format!(
                "unknown cell '{other}': expected one of rnn, rnn_relu, lstm, gru"
            )),
        }
    }
}

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
