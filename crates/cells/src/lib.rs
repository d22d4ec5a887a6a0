//! Recurrent cells for seqlab: RNN, LSTM and GRU, stacked, bidirectional, with dropout and per-row lengths,
//! numerically identical to PyTorch's `nn.RNN`, `nn.LSTM` and `nn.GRU` (`batch_first=True`).
//!
//! The main design decision: PyTorch's semantics and parameter names, exactly. A [`Recurrent`] built from a
//! `VarBuilder` over a PyTorch `state_dict` (saved with safetensors) loads it unchanged, and PyTorch is the
//! oracle of the golden tests. Variable lengths are PyTorch's packed sequences without the packing: each row
//! stops at its length, the backward direction starts at each row's last valid step.
//!
//! The whole-sequence path ([`Recurrent::forward`]) is the hot path of training. The composite path
//! ([`Recurrent::forward_composite`]) is a plain graph of candle ops per step: the reference, and the fallback
//! on devices without fused kernels.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use seqlab_cells::{CellKind, Recurrent, RecurrentConfig};
//!
//! # fn main() -> candle_core::Result<()> {
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
//! let config = RecurrentConfig { num_layers: 2, bidirectional: true, ..RecurrentConfig::new(CellKind::Gru, 8, 16) };
//! let rnn = Recurrent::new(&config, vb)?;
//! let xs = Tensor::zeros((3, 5, 8), DType::F32, &Device::Cpu)?; // (batch, seq, input)
//! let (outputs, state) = rnn.forward(&xs, Some(&[5, 2, 4]), None, false)?;
//! assert_eq!(outputs.dims(), &[3, 5, 32]); // (batch, seq, directions * hidden)
//! assert_eq!(state.h.dims(), &[4, 3, 16]); // (layers * directions, batch, hidden)
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod cell;
mod cells;
mod config;
mod dropout;
mod fused;
mod recurrent;
pub mod runtime;
mod state;

pub use cell::{Cell, CellSpec, CellState, LayerInput, MemorySlot};
pub use cells::{parse_pattern, BlockKind, CellKind, DirectionWeights};
pub use config::{Block, CellOptions, RecurrentConfig};
pub use dropout::{dropout, LayerDropout};
pub use fused::{cross_entropy, linear, linear_cross_entropy};
pub use recurrent::Recurrent;
pub use state::State;
