//! Decoding for seqlab: turning a model's next-token logits into text, the same way for every task.
//!
//! Text generation, translation and captioning all decode through this crate, and it knows none of them.
//! A model implements [`StepModel`] (one batched step from tokens and a state to logits and the next state,
//! plus [`StepModel::select`] to reorder the rows of a state); decoding is a loop around it:
//!
//! - [`generate()`] chooses token after token by a [`Sampling`] rule and streams each to a callback, for a
//!   batch of rows that stop independently at a length, an end token or a stop sequence.
//! - [`beam_search`] keeps the `width` most probable hypotheses as the rows of one batched state and returns
//!   the n best, ranked by length-normalised log-probability.
//!
//! The main design decision: sampling is data. [`Sampling`] is a plain enum (greedy, or temperature with
//! optional top-k and top-p) that a command line or a config file fills in, validated once, and applied on
//! the CPU in plain Rust to the logits row the model returns. That makes decoding reproducible: the random
//! numbers come from a seeded ChaCha8 stream per batch row, the exponentials are computed with `+` and `*`
//! only, and probabilities are summed as integers, so the same seed gives the same tokens on every run and
//! platform. The cost is one copy of the logits to the CPU per step, small beside the model's own step.
//!
//! Why sampling at all: always taking the most likely token makes text loop; sampling with a temperature
//! fixes that, and too high a temperature makes noise. A model that loops under greedy decoding:
//!
//! ```
//! use std::ops::ControlFlow;
//!
//! use candle_core::{Device, Tensor};
//! use seqlab_decode::{beam_search, generate, BeamConfig, GenerateConfig, Sampling, StepModel, StopReason};
//!
//! /// A bigram model: the next token's logits depend only on the current token.
//! struct Bigram {
//!     logits: Tensor, // (vocab, vocab): row t holds the logits after token t
//! }
//!
//! impl StepModel for Bigram {
//!     type State = ();
//!     fn step(&self, tokens: &Tensor, _state: &()) -> candle_core::Result<(Tensor, ())> {
//!         Ok((self.logits.index_select(tokens, 0)?, ()))
//!     }
//!     fn select(&self, _state: &(), _indices: &Tensor) -> candle_core::Result<()> {
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Tokens: 0 <bos>, 1 <eos>, 2 "a", 3 "b". Probabilities of the next token after each one:
//! let probs: [[f32; 4]; 4] = [
//!     [0.0, 0.0, 0.7, 0.3], // after <bos>
//!     [0.0, 1.0, 0.0, 0.0], // after <eos> (never fed)
//!     [0.0, 0.1, 0.3, 0.6], // after "a"
//!     [0.0, 0.3, 0.6, 0.1], // after "b"
//! ];
//! let logits = Tensor::new(&probs, &Device::Cpu)?.log()?;
//! let model = Bigram { logits };
//! let bos = Tensor::new(&[0u32], &Device::Cpu)?;
//!
//! // Greedy decoding loops "a b a b ..." until the length runs out.
//! let greedy = GenerateConfig {
//!     sampling: Sampling::Greedy,
//!     max_len: 6,
//!     eos: vec![1],    // <eos> ends a row
//!     banned: vec![0], // <bos> is never produced
//!     ..Default::default()
//! };
//! let out = generate(&model, &bos, (), &greedy, |_, _| ControlFlow::Continue(()))?;
//! assert_eq!(out[0].tokens, [2, 3, 2, 3, 2, 3]);
//! assert_eq!(out[0].stop, StopReason::Length);
//!
//! // Sampling at temperature 0.8, streamed as it goes, reaches <eos>; the seed fixes the text.
//! let sampled = GenerateConfig { sampling: Sampling::temperature(0.8), seed: 42, max_len: 100, ..greedy };
//! let mut streamed = Vec::new();
//! let out = generate(&model, &bos, (), &sampled, |_row, token| {
//!     streamed.push(token); // a command line would print the token here
//!     ControlFlow::Continue(())
//! })?;
//! assert_eq!(out[0].stop, StopReason::EndToken(1));
//! assert_eq!(out[0].tokens, streamed);
//!
//! // Beam search finds the most probable whole sequence, "a b <eos>" (0.7 * 0.6 * 0.3 = 0.126).
//! let beam = BeamConfig { width: 3, alpha: 0.0, eos: vec![1], banned: vec![0], ..Default::default() };
//! let best = beam_search(&model, &bos, (), &beam)?;
//! assert_eq!(best[0].tokens, [2, 3]);
//! assert!((best[0].log_prob - 0.126f64.ln()).abs() < 1e-6);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod beam;
mod decoding;
mod error;
mod generate;
mod model;
mod pick;
mod sampling;

pub use beam::{beam_search, length_penalty, BeamConfig, Hypothesis};
pub use decoding::Decoding;
pub use error::{Error, Result};
pub use generate::{generate, GenerateConfig, Generation, StopReason};
pub use model::StepModel;
pub use sampling::{Sampler, Sampling};
