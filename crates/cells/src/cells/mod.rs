//! The built-in cells and their registry, [`CellKind`]: the names `config.json` and `--cell` use.
//!
//! Adding a cell: write it in a file of this folder (a type implementing [`crate::Cell`] and a `build`
//! function), declare the file below and add one line to [`registry!`]'s list; its tests go in
//! `crates/cells/tests/`. Nothing else names a cell: the stack, the models and the command line read every
//! size and state slot from the cell itself, and `--cell` lists the registry's names.

use std::sync::Arc;

use candle_core::Result;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::cell::{Cell, CellSpec};
use crate::Block;

mod classic;
mod gru;
mod indrnn;
mod lstm;
mod min;
mod residual;
mod rnn;
mod xlstm;

pub use xlstm::{parse_pattern, BlockKind};

pub use classic::DirectionWeights;
pub(crate) use classic::Gates;

use classic::Classic;

/// How a registered cell is built: from its spec and the stack's `VarBuilder`.
type Build = fn(&CellSpec, &VarBuilder) -> Result<Arc<dyn Cell>>;

/// Declares [`CellKind`] from one line per cell: its variant (with its documentation), its name in
/// `config.json` and on the command line (and any older alias), and how it is built.
macro_rules! registry {
    ($($(#[$attr:meta])* $variant:ident = $name:literal $(| $alias:literal)* => $build:expr,)*) => {
        /// Which recurrent cell a [`crate::Recurrent`] stacks: the registry of built-in cells, saved by name
        /// in `config.json` (`"cell": "lstm"`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
        pub enum CellKind {
            $($(#[$attr])* #[serde(rename = $name)] $variant,)*
        }

        impl CellKind {
            /// Every registered cell, in the order `--help` lists them.
            pub const ALL: &'static [CellKind] = &[$(CellKind::$variant),*];

            /// The name used on the command line and in `config.json`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(CellKind::$variant => $name,)*
                }
            }

            /// Older names that also parse to this cell.
            pub fn aliases(self) -> &'static [&'static str] {
                match self {
                    $(CellKind::$variant => &[$($alias),*],)*
                }
            }

            fn builder(self) -> Build {
                match self {
                    $(CellKind::$variant => $build,)*
                }
            }

            fn from_name(name: &str) -> Option<CellKind> {
                match name {
                    $($name $(| $alias)* => Some(CellKind::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

registry! {
    /// Elman RNN with tanh: `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)` (`nn.RNN`, `nonlinearity='tanh'`).
    Rnn = "rnn" | "rnn_tanh" => Classic::<rnn::RnnTanh>::build,
    /// Elman RNN with relu: `h' = relu(W_ih x + b_ih + W_hh h + b_hh)` (`nn.RNN`, `nonlinearity='relu'`).
    RnnRelu = "rnn_relu" => Classic::<rnn::RnnRelu>::build,
    /// LSTM with gate order i, f, g, o: `c' = f*c + i*g`, `h' = o*tanh(c')` (`nn.LSTM`, no projection).
    #[default]
    Lstm = "lstm" => Classic::<lstm::Lstm>::build,
    /// GRU with gate order r, z, n and the reset gate applied *after* the hidden product, as PyTorch and
    /// cuDNN do (not the original paper's variant): `n = tanh(W_in x + b_in + r*(W_hn h + b_hn))`,
    /// `h' = (1-z)*n + z*h`.
    Gru = "gru" => Classic::<gru::Gru>::build,
    /// minGRU ("Were RNNs All We Needed?"): `h' = (1 − z)·h + z·g(W_h x)`, `z = σ(W_z x)`; gates from the
    /// input only, so training is one product for all steps and an element-wise scan (mingru-pytorch's
    /// names and log-space candidate g).
    MinGru = "mingru" => min::MinCell::<min::MinGru>::build,
    /// minLSTM: `h' = f'·h + i'·g(W_h x)` with `f' = f/(f+i)`, `i' = i/(f+i)` of σ(W_f x), σ(W_i x).
    MinLstm = "minlstm" => min::MinCell::<min::MinLstm>::build,
    /// IndRNN: `h' = relu(W x + b + u ⊙ h)`, each unit recurring on itself (`--bound` clamps |u|).
    IndRnn = "indrnn" => indrnn::IndRnn::build,
    /// xLSTM's sLSTM blocks (the `xlstm` package's `sLSTMBlock`): exponential input gate, stabiliser and
    /// normaliser, block-diagonal recurrence over `--heads`, causal convolution, gated feed-forward.
    Slstm = "slstm" => xlstm::build_slstm,
    /// xLSTM's mLSTM blocks (`mLSTMBlock`): a matrix memory per head with a covariance update, trained in
    /// the parallel form, stepped in the recurrent one.
    Mlstm = "mlstm" => xlstm::build_mlstm,
    /// xLSTM blocks of both kinds in the order of `--pattern` (such as `m,m,s,m`, cycled over the layers;
    /// default `m,s`).
    Xlstm = "xlstm" => xlstm::build_xlstm,
}

impl CellKind {
    /// Builds the layer of `spec`, its parameters in `vb`: the cell, or the block of
    /// `spec.options.block` around it.
    pub fn build(self, spec: &CellSpec, vb: &VarBuilder) -> Result<Arc<dyn Cell>> {
        match spec.options.block {
            Block::Plain => self.build_cell(spec, vb),
            Block::Residual if self.is_block() => {
                candle_core::bail!(
                    "{self} layers are residual blocks already: leave out --block residual"
                )
            }
            Block::Residual => residual::Residual::build(self, spec, vb),
        }
    }

    /// Whether each layer of this kind is a whole residual block of its own (the xLSTM kinds).
    pub fn is_block(self) -> bool {
        matches!(self, CellKind::Slstm | CellKind::Mlstm | CellKind::Xlstm)
    }

    /// Builds the cell of `spec` itself, without a block.
    pub fn build_cell(self, spec: &CellSpec, vb: &VarBuilder) -> Result<Arc<dyn Cell>> {
        (self.builder())(spec, vb)
    }

    /// The registered names, comma-separated: for messages and help.
    pub fn names() -> String {
        Self::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for CellKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CellKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        CellKind::from_name(s)
            .ok_or_else(|| format!("unknown cell '{s}': expected one of {}", CellKind::names()))
    }
}
