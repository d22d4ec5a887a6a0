//! seqlab's models, each a struct with a serde `Config` and `new(&Config, VarBuilder)`, built on the shared
//! recurrent cells: the [`LanguageModel`] (many-to-many), the [`Classifier`] (many-to-one), [`Seq2Seq`]
//! (encoder-decoder with attention), the [`Captioner`] (a CNN encoder and a recurrent decoder) and the
//! [`ImageClassifier`] (an image read as a sequence).
//!
//! The main design decision: names inside the `VarBuilder` mirror a PyTorch module tree (`embedding.weight`,
//! `rnn.weight_ih_l0`, `head.weight`, ...), so a PyTorch `state_dict` saved with safetensors loads unchanged,
//! and PyTorch is the oracle of the golden tests. The decoders implement the decoding crate's
//! [`seqlab_decode::StepModel`], so every pipeline decodes the same way.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use seqlab_models::{LanguageModel, LanguageModelConfig, Mode};
//!
//! # fn main() -> candle_core::Result<()> {
//! let config = LanguageModelConfig { vocab_size: 40, embed: 16, hidden: 32, ..Default::default() };
//! let varmap = VarMap::new();
//! let model = LanguageModel::new(&config, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
//! let ids = Tensor::new(&[[2u32, 7, 9], [2, 4, 4]], &Device::Cpu)?; // (batch, seq)
//! let (logits, state) = model.forward(&ids, None, Mode::Eval)?;
//! assert_eq!(logits.dims(), &[2, 3, 40]); // (batch, seq, vocab)
//! assert_eq!(state.h.dims(), &[1, 2, 32]); // (layers, batch, hidden)
//! // The names a PyTorch state_dict of the same module tree has:
//! let mut names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
//! names.sort();
//! assert_eq!(names[..3], ["embedding.weight", "head.bias", "head.weight"]);
//! assert_eq!(names[3], "rnn.bias_hh_l0");
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod attention;
mod captioner;
mod classifier;
mod cnn;
mod decoder;
mod images;
mod lm;
mod mode;
mod pool;
mod seq2seq;

pub use attention::{Attention, AttentionKind, Memory};
pub use captioner::{Captioner, CaptionerConfig, Inject};
pub use classifier::{Classifier, ClassifierConfig, Pooling};
pub use cnn::{conv3x3, CnnConfig, CnnEncoder};
pub use decoder::{Decoder, DecoderState, Seq2SeqOutput, TeacherForcing};
pub use images::{ImageClassifier, ImageClassifierConfig, PixelOrder};
pub use lm::{LanguageModel, LanguageModelConfig};
pub use mode::Mode;
pub use pool::max_pool2x2;
pub use seq2seq::{Seq2Seq, Seq2SeqConfig};
