//! The one training loop of every seqlab pipeline: AdamW, gradient-norm clipping, a learning-rate schedule,
//! evaluation and checkpoints every N steps, `--resume`, metrics and a loss-curve plot.
//!
//! Design: a model directory is written file by file to temporary names and renamed, so a crash never leaves
//! a half-written model, and the trainer's own state (optimizer moments, step, RNG) is saved beside it so that
//! a resumed run continues exactly.
//!
//! This crate is still a skeleton: the loop lands with the language-model pipeline.
//!
//! ```
//! // Nothing to run yet; the crate compiles into every seqlab build.
//! ```
#![warn(missing_docs)]
