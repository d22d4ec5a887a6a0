//! The training loop shared by every task.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{load_checkpoint, save_checkpoint, save_tensors, Checkpoint, TrainerState};
use crate::error::{Error, Result};
use crate::init::named_vars;
use crate::metrics::{loss_svg, read_metrics, write_metrics, MetricsRow};
use crate::optim::{clip_factor, AdamW, AdamWConfig};
use crate::schedule::Schedule;

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

    /// What the task carries from one batch to the next (tensors by name), for a checkpoint.
    fn carry(&self) -> Result<HashMap<String, Tensor>>;

    /// Restores a carry saved by [`Task::carry`], after [`Task::start_epoch`] of the checkpoint's epoch.
    fn restore_carry(&mut self, carry: &HashMap<String, Tensor>) -> Result<()>;

    /// Forgets what the last [`Task::train_batch`] left behind, when the loop skips that batch because its
    /// loss or gradient was not finite ([`NonFinite::Skip`]). A task that carries state from batch to batch
    /// resets it here (a non-finite loss may have left a non-finite state). The default does nothing.
    fn discard_batch(&mut self) -> Result<()> {
        Ok(())
    }
}

/// What the loop does when a batch's loss or gradient norm is NaN or infinite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NonFinite {
    /// Stop at once with an error naming the step; the last checkpoint and the best model stay as they were
    /// (no update with the bad gradient is ever applied or saved).
    #[default]
    Stop,
    /// Skip the batch (no update; the step still counts, so the data order and the schedule are unchanged)
    /// and go on; the count of skipped batches is kept in the checkpoint.
    Skip,
}

/// The loop's settings: plain data, saved in `config.json` under `"train"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoopConfig {
    /// Peak learning rate of AdamW. 2e-3: what small recurrent language models train well with under Adam.
    pub lr: f64,
    /// AdamW's decoupled weight decay. 0.01: PyTorch's default.
    pub weight_decay: f64,
    /// Largest global gradient norm; larger gradients are scaled down to it. 5: recurrent nets have rare
    /// exploding gradients, which this cuts without touching ordinary steps. 0 disables clipping.
    pub clip: f64,
    /// How the learning rate moves after the warm-up. Default: cosine down to 10% of the peak.
    pub schedule: Schedule,
    /// Steps of linear warm-up from 0 to the peak. 50: enough for Adam's second moments to settle.
    pub warmup: usize,
    /// Passes over the training data (used when `steps` is not set). 20 when neither is set.
    pub epochs: Option<usize>,
    /// Optimizer steps; overrides `epochs`.
    pub steps: Option<usize>,
    /// Evaluate (and keep the best model) every this many steps, and at the end.
    pub eval_every: usize,
    /// Write the resumable checkpoint `trainer/` every this many steps, and at the end.
    pub checkpoint_every: usize,
    /// Stop after this many evaluations without a better validation loss; `None` never stops early.
    pub patience: Option<usize>,
    /// Seed of the initial weights, the dropout masks and the data order.
    pub seed: u64,
    /// What a NaN or infinite loss or gradient does: stop (the default) or skip the batch.
    pub on_nonfinite: NonFinite,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            lr: 2e-3,
            weight_decay: 0.01,
            clip: 5.0,
            schedule: Schedule::default(),
            warmup: 50,
            epochs: None,
            steps: None,
            eval_every: 100,
            checkpoint_every: 500,
            patience: None,
            seed: 0,
            on_nonfinite: NonFinite::Stop,
        }
    }
}

impl LoopConfig {
    /// The number of optimizer steps of the run: `steps`, else `epochs` (default 20) passes.
    pub fn total_steps(&self, batches_per_epoch: usize) -> usize {
        self.steps
            .unwrap_or_else(|| self.epochs.unwrap_or(20) * batches_per_epoch)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidSetting(what));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!(
                "the learning rate must be a positive number, got {}",
                self.lr
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "the weight decay must be >= 0, got {}",
                self.weight_decay
            ));
        }
        if !(self.clip.is_finite() && self.clip >= 0.0) {
            return bad(format!(
                "the clipping norm must be >= 0 (0 disables it), got {}",
                self.clip
            ));
        }
        if self.eval_every == 0 || self.checkpoint_every == 0 {
            return bad("--eval-every and --checkpoint-every must be at least 1".to_string());
        }
        if self.steps == Some(0) || self.epochs == Some(0) {
            return bad("--steps and --epochs must be at least 1".to_string());
        }
        Ok(())
    }
}

/// How one invocation of the loop runs, beside the saved settings.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Continue from the checkpoint in the model directory.
    pub resume: bool,
    /// Stop cleanly (evaluate, save) once this much time has passed in this invocation.
    pub max_time: Option<Duration>,
    /// Show a progress bar and a line per evaluation on stderr.
    pub progress: bool,
    /// Called after every step with the step number; `Break` stops the run cleanly, as `max_time` does
    /// (tests use it to interrupt a run).
    pub on_step: Option<&'a mut dyn FnMut(usize) -> ControlFlow<()>>,
}

impl std::fmt::Debug for RunOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("resume", &self.resume)
            .field("max_time", &self.max_time)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It took all its steps.
    Finished,
    /// `--max-time` ran out.
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
    /// Steps the run was planned for.
    pub total_steps: usize,
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

/// The seed of step `step`'s dropout masks.
fn step_seed(seed: u64, step: usize) -> u64 {
    let mut z = (seed ^ 0xA076_1D64_78BD_642F)
        .wrapping_add((step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
    let batches_per_epoch = task.batches_per_epoch();
    let total = config.total_steps(batches_per_epoch);
    let vars = named_vars(varmap);
    let mut opt = AdamW::new(
        vars.clone(),
        AdamWConfig {
            lr: config.lr,
            weight_decay: config.weight_decay,
            ..AdamWConfig::default()
        },
    )?;
    let metrics_path = dir.join("metrics.csv");
    crate::atomic::remove_stale_temporaries(dir);
    // A run killed before its first checkpoint has nothing to continue from: it starts over, which gives the
    // same run (everything depends on the seed alone).
    let checkpoint = if options.resume {
        match load_checkpoint(dir, &candle_core::Device::Cpu) {
            Ok(checkpoint) => Some(checkpoint),
            Err(Error::NoCheckpoint { .. }) => {
                if options.progress {
                    eprintln!(
                        "note: {} holds no checkpoint yet; starting the run from step 0",
                        dir.display()
                    );
                }
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let (mut state, mut rows) = if let Some(checkpoint) = checkpoint {
        let state = checkpoint.state;
        if state.data_fingerprint != fingerprint {
            return Err(Error::ResumeMismatch(format!(
                "the training data differs from the data of the run in {} (pass the same --data, --valid and settings)",
                dir.display()
            )));
        }
        for (name, var) in &vars {
            let saved = checkpoint.weights.get(name).ok_or_else(|| {
                Error::ResumeMismatch(format!("the checkpoint has no tensor {name}"))
            })?;
            var.set(saved)?;
        }
        opt.load_state(
            &checkpoint.optimizer,
            state.step.saturating_sub(state.skipped) as u64,
        )?;
        task.start_epoch(state.epoch)?;
        if state.batch_in_epoch > 0 {
            task.restore_carry(&checkpoint.carry)?;
        }
        let rows = if metrics_path.is_file() {
            read_metrics(&metrics_path)?
                .into_iter()
                .filter(|row| row.step <= state.step)
                .collect()
        } else {
            Vec::new()
        };
        (state, rows)
    } else {
        task.start_epoch(0)?;
        let state = TrainerState {
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            seed: config.seed,
            best_valid_loss: None,
            best_step: None,
            evals_since_best: 0,
            elapsed_s: 0.0,
            tokens: 0,
            train_loss_sum: 0.0,
            train_loss_tokens: 0,
            data_fingerprint: fingerprint.to_string(),
            skipped: 0,
        };
        (state, Vec::new())
    };

    let bar = if options.progress {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(state.step as u64);
        bar
    } else {
        ProgressBar::hidden()
    };
    let say = |line: String| {
        if options.progress {
            bar.suspend(|| eprintln!("{line}"));
        }
    };

    let started = Instant::now();
    let elapsed_before = state.elapsed_s;
    // The step of the checkpoint on disk, for the message of a non-finite stop.
    let mut last_checkpoint = (state.step > 0).then_some(state.step);
    let mut run_train_time = Duration::ZERO;
    let mut run_tokens = 0u64;
    let mut window_time = Duration::ZERO; // since the last evaluation
    let mut window_tokens = 0u64;
    let mut stopped = Stopped::Finished;

    while state.step < total {
        let step = state.step + 1;
        let lr = config.schedule.lr(step, total, config.warmup, config.lr);
        let t0 = Instant::now();
        let (loss, tokens) =
            task.train_batch(state.batch_in_epoch, step_seed(config.seed, step))?;
        let loss_value = loss.to_scalar::<f32>()? as f64;
        let grads = if loss_value.is_finite() {
            Some(loss.backward()?)
        } else {
            None
        };
        let norm = match &grads {
            Some(grads) => opt.grad_norm(grads)?,
            None => f64::NAN,
        };
        let mut skipped_now = false;
        match grads {
            Some(grads) if norm.is_finite() => {
                opt.step(&grads, lr, clip_factor(norm, config.clip))?;
            }
            _ => {
                let what = if loss_value.is_finite() {
                    format!("the gradient norm became {norm}")
                } else {
                    format!("the training loss became {loss_value}")
                };
                match config.on_nonfinite {
                    NonFinite::Stop => {
                        bar.finish_and_clear();
                        return Err(Error::NonFinite {
                            step,
                            what,
                            kept: kept_note(last_checkpoint, state.best_step),
                        });
                    }
                    NonFinite::Skip => {
                        task.discard_batch()?;
                        state.skipped += 1;
                        skipped_now = true;
                        say(format!(
                            "step {step}: {what}; batch skipped (--skip-nonfinite)"
                        ));
                    }
                }
            }
        }
        let dt = t0.elapsed();
        run_train_time += dt;
        window_time += dt;
        run_tokens += tokens as u64;
        window_tokens += tokens as u64;

        state.step = step;
        state.tokens += tokens as u64;
        if !skipped_now {
            state.train_loss_sum += loss_value * tokens as f64;
            state.train_loss_tokens += tokens as u64;
        }
        state.batch_in_epoch += 1;
        if state.batch_in_epoch == batches_per_epoch {
            state.epoch += 1;
            state.batch_in_epoch = 0;
            if step < total {
                task.start_epoch(state.epoch)?;
            }
        }
        state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
        let tokens_per_s = window_tokens as f64 / window_time.as_secs_f64().max(1e-9);
        bar.set_position(step as u64);
        bar.set_message(format!("loss {loss_value:.4}  {:.0} tok/s", tokens_per_s));

        if let Some(on_step) = options.on_step.as_mut() {
            if on_step(step).is_break() {
                stopped = Stopped::Interrupted;
            }
        }
        if options.max_time.is_some_and(|max| started.elapsed() >= max) {
            stopped = Stopped::TimeBudget;
        }
        let stopping = stopped != Stopped::Finished;
        if step % config.eval_every == 0 || step == total || stopping {
            let train_loss = state.train_loss_sum / state.train_loss_tokens.max(1) as f64;
            let row = |split: &str, loss: f64| MetricsRow {
                step,
                epoch: state.epoch,
                split: split.to_string(),
                loss,
                lr,
                tokens_per_s,
                elapsed_s: state.elapsed_s,
            };
            rows.push(row("train", train_loss));
            let valid = task.validate()?;
            let mut line = format!(
                "step {step} (epoch {}): train loss {train_loss:.4}",
                state.epoch
            );
            match valid {
                Some(valid) => {
                    rows.push(row("valid", valid));
                    line.push_str(&format!(
                        ", valid loss {valid:.4} (perplexity {:.2})",
                        valid.exp()
                    ));
                    if state.best_valid_loss.is_none_or(|best| valid < best) {
                        state.best_valid_loss = Some(valid);
                        state.best_step = Some(step);
                        state.evals_since_best = 0;
                        save_weights(dir, &vars, step)?;
                        line.push_str(", best so far: saved");
                    } else {
                        state.evals_since_best += 1;
                    }
                }
                None => save_weights(dir, &vars, step)?,
            }
            say(format!("{line}, {tokens_per_s:.0} tok/s"));
            state.train_loss_sum = 0.0;
            state.train_loss_tokens = 0;
            window_time = Duration::ZERO;
            window_tokens = 0;
            write_metrics(&metrics_path, &rows)?;
            let svg = loss_svg(&rows, "loss");
            let svg_path = dir.join("loss.svg");
            crate::atomic::write_bytes_atomically(&svg_path, svg.as_bytes())
                .map_err(Error::write(&svg_path))?;
            if config.patience.is_some_and(|p| state.evals_since_best >= p) && !stopping {
                stopped = Stopped::EarlyStopping;
            }
        }
        let stopping = stopped != Stopped::Finished;
        if step % config.checkpoint_every == 0 || step == total || stopping {
            state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
            let weights = vars
                .iter()
                .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
                .collect();
            ensure_finite(&weights, step)?;
            save_checkpoint(
                dir,
                &Checkpoint {
                    state: state.clone(),
                    weights,
                    optimizer: opt.state_tensors()?,
                    carry: task.carry()?,
                },
            )?;
            last_checkpoint = Some(step);
        }
        if stopping {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(TrainSummary {
        steps: state.step,
        total_steps: total,
        best_valid: state.best_valid_loss.zip(state.best_step),
        last_train_loss: rows
            .iter()
            .rev()
            .find(|r| r.split == "train")
            .map(|r| r.loss),
        elapsed_s: elapsed_before + started.elapsed().as_secs_f64(),
        tokens_per_s: run_tokens as f64 / run_train_time.as_secs_f64().max(1e-9),
        stopped,
    })
}

/// Saves the parameters as `dir/model.safetensors`, after checking that every one is finite.
fn save_weights(dir: &Path, vars: &HashMap<String, candle_core::Var>, step: usize) -> Result<()> {
    let tensors = vars
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
        .collect();
    ensure_finite(&tensors, step)?;
    save_tensors(&dir.join("model.safetensors"), &tensors)
}

/// Refuses to save weights holding a NaN or an infinity: they would replace a good model with a useless one.
fn ensure_finite(tensors: &HashMap<String, Tensor>, step: usize) -> Result<()> {
    for (name, tensor) in tensors {
        let values = tensor.flatten_all()?.to_dtype(candle_core::DType::F32)?;
        if values.to_vec1::<f32>()?.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                step,
                what: format!("the parameter {name} holds a NaN or an infinity"),
                kept: "nothing was saved".to_string(),
            });
        }
    }
    Ok(())
}

/// What a stop on a non-finite value leaves on disk, for its message.
fn kept_note(checkpoint: Option<usize>, best: Option<usize>) -> String {
    let checkpoint = match checkpoint {
        Some(step) => format!("the checkpoint of step {step}"),
        None => "no checkpoint had been written yet".to_string(),
    };
    match best {
        Some(step) => format!("{checkpoint} and the best model (step {step}) are kept"),
        None => format!("{checkpoint}; kept as it was"),
    }
}
