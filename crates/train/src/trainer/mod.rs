//! The training loop shared by every pipeline: [`train`], over a [`Task`], with the settings of
//! [`LoopConfig`].
//!
//! The loop is cut along its seams: starting or resuming a run ([`run::Run::start`]), one optimizer step with
//! the non-finite policy ([`run::Run::step`]), evaluating and keeping the best weights
//! ([`run::Run::evaluate`]), writing the checkpoint ([`run::Run::checkpoint`]), and the progress shown on
//! stderr ([`progress::Progress`]).

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use candle_nn::VarMap;

use crate::error::Result;

mod progress;
mod run;
mod settings;

pub(crate) use settings::has_loop;
pub use settings::{HasLoop, LoopConfig, NonFinite};

/// What the loop asks of a task (a language model on a corpus, a classifier on labelled text, ...).
pub trait Task {
    /// Batches in one epoch; the same for every epoch.
    fn batches_per_epoch(&self) -> usize;

    /// Prepares epoch `epoch` (0-based): its data order, and a fresh carry. Must depend only on the epoch and
    /// the task's seed, so that a resumed run sees the same batches.
    fn start_epoch(&mut self, epoch: usize) -> Result<()>;

    /// The mean loss of batch `index` of the current epoch (attached to the autograd graph of the
    /// parameters) and the number of tokens it averages over. `seed` seeds the batch's dropout masks.
    fn train_batch(&mut self, index: usize, seed: u64) -> Result<(Tensor, usize)>;

    /// The mean validation loss per token; `None` when the task has no validation data.
    fn validate(&mut self) -> Result<Option<f64>>;

    /// What the task carries from one batch to the next (tensors by name), for a checkpoint. The default
    /// carries nothing: every batch starts afresh.
    fn carry(&self) -> Result<HashMap<String, Tensor>> {
        Ok(HashMap::new())
    }

    /// Restores a carry saved by [`Task::carry`], after [`Task::start_epoch`] of the checkpoint's epoch.
    /// The default has nothing to restore.
    fn restore_carry(&mut self, carry: &HashMap<String, Tensor>) -> Result<()> {
        let _ = carry;
        Ok(())
    }

    /// Forgets what the last [`Task::train_batch`] left behind, when the loop skips that batch because its
    /// loss or gradient was not finite ([`NonFinite::Skip`]). A task that carries state from batch to batch
    /// resets it here (a non-finite loss may have left a non-finite state). The default does nothing.
    fn discard_batch(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Batch `index` of an epoch's `batches`, or an error naming the index when a caller asks past the end (a
/// [`Task::train_batch`] is only ever asked for `0..batches_per_epoch()`).
pub(crate) fn epoch_batch<T>(batches: &[T], index: usize) -> Result<&T> {
    batches.get(index).ok_or_else(|| {
        crate::error::Error::InvalidSetting(format!(
            "batch {index} is beyond the epoch's {} batches",
            batches.len()
        ))
    })
}

/// How one invocation of the loop runs, beside the saved settings.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Continue from the checkpoint in the model directory.
    pub resume: bool,
    /// Show a progress bar and a line per evaluation on stderr.
    pub progress: bool,
    /// Called after every step with the step number; `Break` stops the run cleanly, as a spent time budget
    /// ([`LoopConfig::max_time`]) does
    /// (tests use it to interrupt a run).
    pub on_step: Option<&'a mut dyn FnMut(usize) -> ControlFlow<()>>,
}

impl std::fmt::Debug for RunOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("resume", &self.resume)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It took all its steps.
    Finished,
    /// The time budget (`--max-time`) ran out.
    TimeBudget,
    /// The validation loss stopped improving (`patience`).
    EarlyStopping,
    /// The `on_step` callback asked to stop.
    Interrupted,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    /// Optimizer steps taken, earlier runs included.
    pub steps: usize,
    /// Steps the run was planned for; `None` when its time budget alone decides its length.
    pub total_steps: Option<usize>,
    /// Best validation loss and its step.
    pub best_valid: Option<(f64, usize)>,
    /// The last `train` row's loss.
    pub last_train_loss: Option<f64>,
    /// Training time, earlier runs included, in seconds.
    pub elapsed_s: f64,
    /// Mean training throughput of this invocation, tokens per second.
    pub tokens_per_s: f64,
    /// Why it stopped.
    pub stopped: Stopped,
}

impl std::fmt::Display for Stopped {
    /// How a run ended, as the summary line says it ("finished", "stopped at --max-time", ...).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stopped::Finished => "finished",
            Stopped::TimeBudget => "stopped at --max-time",
            Stopped::EarlyStopping => "stopped early (no better validation loss)",
            Stopped::Interrupted => "interrupted",
        })
    }
}

/// Trains the parameters of `varmap` on `task`, writing into the model directory `dir`: `model.safetensors`
/// (the weights of the best validation loss, or the latest without validation data), `metrics.csv`,
/// `loss.svg` and the checkpoint `trainer/` (see [`crate::checkpoint`]).
///
/// `fingerprint` identifies the training data; a resumed run must bring the same. With the same settings,
/// data and seed, a run interrupted at any step and resumed ends with the same weights as an uninterrupted one.
pub fn train<T: Task>(
    task: &mut T,
    varmap: &VarMap,
    config: &LoopConfig,
    dir: &Path,
    fingerprint: &str,
    mut options: RunOptions<'_>,
) -> Result<TrainSummary> {
    config.validate()?;
    let config = &config.resolved(task.batches_per_epoch());
    let mut run = run::Run::start(task, varmap, config, dir, fingerprint, &options)?;
    let started = Instant::now();
    let budget_spent = |elapsed_s: f64| config.budget_s().is_some_and(|budget| elapsed_s >= budget);
    let mut stopped = Stopped::Finished;
    if run.state.step < run.total && budget_spent(run.state.elapsed_s) {
        // A resumed run whose budget was spent: nothing to do (a larger --max-time extends it).
        stopped = Stopped::TimeBudget;
    }
    while run.state.step < run.total && stopped == Stopped::Finished {
        let step = run.step(task, started)?;
        if let Some(on_step) = options.on_step.as_mut() {
            if on_step(step).is_break() {
                stopped = Stopped::Interrupted;
            }
        }
        if budget_spent(run.state.elapsed_s) {
            stopped = Stopped::TimeBudget;
        }
        let stopping = stopped != Stopped::Finished;
        if step % config.eval_every == 0 || step == run.total || stopping {
            let patience_ran_out = run.evaluate(task, step)?;
            if patience_ran_out && !stopping {
                stopped = Stopped::EarlyStopping;
            }
        }
        let stopping = stopped != Stopped::Finished;
        if step % config.checkpoint_every == 0 || step == run.total || stopping {
            run.checkpoint(task, step, started)?;
        }
        if stopping {
            break;
        }
    }
    Ok(run.finish(started, stopped))
}

/// The seed of step `step`'s dropout masks.
fn step_seed(seed: u64, step: usize) -> u64 {
    seqlab_base::SplitMix64::at(seed ^ 0xA076_1D64_78BD_642F, step as u64)
}

/// Throughput since some point: training time and tokens.
#[derive(Debug, Clone, Copy, Default)]
struct Throughput {
    time: Duration,
    tokens: u64,
}

impl Throughput {
    fn add(&mut self, time: Duration, tokens: usize) {
        self.time += time;
        self.tokens += tokens as u64;
    }

    fn per_second(&self) -> f64 {
        self.tokens as f64 / self.time.as_secs_f64().max(1e-9)
    }
}
