//! The one training loop of every seqlab pipeline — AdamW, gradient-norm clipping, a learning-rate schedule,
//! evaluation and checkpoints every N steps, exact `--resume`, a progress bar, `metrics.csv` and a loss plot —
//! and the language-model pipeline on top of it ([`train_lm`], [`load_lm`], [`evaluate`]).
//!
//! The main design decision: a run is a pure function of its settings, its data and its seed, and everything
//! that function depends on is saved. The initial weights are drawn from the seed and each parameter's name
//! ([`seeded_var_builder`]; candle's CPU generator cannot be seeded), each step's dropout masks from the seed
//! and the step, each epoch's data order from the seed and the epoch; the checkpoint (`trainer/`) holds the
//! weights, AdamW's moments (kept as plain vectors by [`AdamW`], updated in one loop per parameter), the
//! recurrent state carried between batches and the position in the data. So a run interrupted at any step
//! and resumed ends with the very weights of an uninterrupted one. Every file is written to a temporary name
//! and renamed ([`write_atomically`]); the checkpoint is swapped in whole.
//!
//! ```
//! use seqlab_models::LanguageModelConfig;
//! use seqlab_train::{load_lm, train_lm, LmTrainConfig, LoopConfig, RunOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let text = dir.path().join("text.txt");
//! std::fs::write(&text, "the cat sat on the mat. the dog sat on the log. ".repeat(40))?;
//! let model = LanguageModelConfig { embed: 8, hidden: 16, dropout: 0.0, ..Default::default() };
//! let config = LmTrainConfig {
//!     data: vec![text.display().to_string()],
//!     batch: 4,
//!     seq_len: 16,
//!     optim: LoopConfig { steps: Some(30), eval_every: 10, lr: 1e-2, ..Default::default() },
//!     ..Default::default()
//! };
//! let out = dir.path().join("model");
//! let report = train_lm(&model, &config, &out, RunOptions::default())?;
//! assert_eq!(report.summary.steps, 30);
//! let lm = load_lm(&out, &candle_core::Device::Cpu)?; // the best checkpoint
//! let eval = lm.evaluate_text("the cat sat on the log. ", None, None)?;
//! assert!(eval.loss < (lm.tokenizer.vocab_size() as f64).ln()); // better than a uniform guess
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod atomic;
pub mod bleu;
pub mod caption;
pub mod checkpoint;
pub mod classify;
mod error;
#[cfg(feature = "images")]
pub mod images;
mod init;
mod lm;
pub mod lock;
pub mod metrics;
pub mod model_dir;
mod optim;
pub mod pipeline;
mod schedule;
mod trainer;
pub mod translate;

pub use atomic::{write_atomically, write_bytes_atomically};
pub use caption::{
    load_captioner, train_captioner, CaptionPipeline, CaptionTrainConfig, LoadedCaptioner,
};
pub use classify::{
    load_classifier, train_classifier, ClassificationMetrics, ClassifyPipeline,
    ClassifyTrainConfig, LoadedClassifier,
};
pub use error::{Error, Result};
#[cfg(feature = "images")]
pub use images::{load_images_model, ImagesPipeline, ImagesTrainConfig, LoadedImages};
pub use init::seeded_var_builder;
pub use lm::{
    cross_entropy, eval_rows, evaluate, load_lm, read_config, train_lm, unigram_loss, Decoding,
    Evaluation, Generated, LmDirConfig, LmPipeline, LmTrainConfig, LmTrainReport, LoadedLm,
    TextStream, EVAL_ROW_TOKENS, TASK,
};
pub use model_dir::{ModelDir, FORMAT};
pub use optim::{clip_factor, AdamW, AdamWConfig};
pub use pipeline::{Loaded, Pipeline};
pub use schedule::{decay_progress, Schedule};
pub use trainer::{train, HasLoop, LoopConfig, NonFinite, RunOptions, Stopped, Task, TrainSummary};
pub use translate::{
    load_translator, train_translator, LoadedTranslator, TranslatePipeline, TranslateTrainConfig,
};
