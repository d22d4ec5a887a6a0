//! seqlab's models: `LanguageModel`, `Classifier`, `Seq2Seq` and `Captioner`, each a struct with a serde
//! `Config` and `new(&Config, VarBuilder)`, built on the shared recurrent cells.
//!
//! Design: names inside the `VarBuilder` mirror a PyTorch module tree (`embedding.weight`,
//! `rnn.weight_ih_l0`, `head.weight`, ...), so a PyTorch `state_dict` saved with safetensors loads unchanged;
//! the decoders implement the decoding crate's `StepModel`, so every pipeline decodes the same way.
//!
//! This crate is still a skeleton: the models land with their pipelines.
//!
//! ```
//! // Nothing to run yet; the crate compiles into every seqlab build.
//! ```
#![warn(missing_docs)]
