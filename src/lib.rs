//! seqlab: recurrent sequence models on candle.
//!
//! This facade re-exports the workspace's crates under short names, so a researcher depends on one package:
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`cells`] | `seqlab-cells` | RNN, LSTM, GRU and the `Recurrent` stack, identical to PyTorch's |
//! | [`tokenize`] | `seqlab-tokenize` | char and word tokenizers saved as `tokenizer.json` |
//! | [`decode`] | `seqlab-decode` | greedy, sampling and beam search over any `StepModel` |
//! | [`data`] | `seqlab-data` | corpora, readers and batching |
//! | [`models`] | `seqlab-models` | the four pipelines' models |
//! | [`train`] | `seqlab-train` | the shared training loop |
//!
//! The dependencies point one way: train → models → {cells, decode}; train → data → tokenize.
//!
//! ```
//! use seqlab::cells::{CellKind, RecurrentConfig};
//! assert_eq!(RecurrentConfig::new(CellKind::Lstm, 8, 16).output_size(), 16);
//! ```

pub use candle_core;
pub use candle_nn;
pub use seqlab_cells as cells;
pub use seqlab_data as data;
pub use seqlab_decode as decode;
pub use seqlab_models as models;
pub use seqlab_tokenize as tokenize;
pub use seqlab_train as train;
