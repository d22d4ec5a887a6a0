//! One run of the loop, cut along its seams: starting or resuming, a step, an evaluation that keeps the best
//! weights, a checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Tensor, Var};
use candle_nn::VarMap;

use super::progress::Progress;
use super::{
    step_seed, LoopConfig, NonFinite, RunOptions, Stopped, Task, Throughput, TrainSummary,
};
use crate::checkpoint::{load_checkpoint, save_checkpoint, save_tensors, Checkpoint, TrainerState};
use crate::error::{Error, Result};
use crate::init::named_vars;
use crate::metrics::{loss_svg, read_metrics, write_metrics, MetricsRow};
use crate::optim::{clip_factor, AdamW, AdamWConfig};
use crate::schedule::decay_progress;

/// A run in progress: where it stands, what it has measured, and the optimizer.
pub(super) struct Run<'a> {
    pub(super) state: TrainerState,
    pub(super) total: usize,
    batches_per_epoch: usize,
    config: &'a LoopConfig,
    dir: &'a Path,
    vars: HashMap<String, Var>,
    opt: AdamW,
    rows: Vec<MetricsRow>,
    metrics_path: PathBuf,
    progress: Progress,
    /// Training time of earlier invocations, in seconds.
    elapsed_before: f64,
    /// The step of the checkpoint on disk, for the message of a non-finite stop.
    last_checkpoint: Option<usize>,
    /// Throughput of this invocation, and since the last evaluation.
    this_run: Throughput,
    window: Throughput,
    /// The last step's learning rate and throughput, for the metrics rows.
    lr: f64,
    tokens_per_s: f64,
}

impl<'a> Run<'a> {
    /// A fresh run, or the run of the checkpoint in `dir` with `options.resume` (a directory without a
    /// checkpoint yet starts over: everything depends on the seed alone, so that is the same run).
    pub(super) fn start<T: Task>(
        task: &mut T,
        varmap: &VarMap,
        config: &'a LoopConfig,
        dir: &'a Path,
        fingerprint: &str,
        options: &RunOptions<'_>,
    ) -> Result<Run<'a>> {
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
        let (state, rows) = match checkpoint {
            Some(checkpoint) => {
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
            }
            None => {
                task.start_epoch(0)?;
                (fresh_state(config.seed, fingerprint), Vec::new())
            }
        };
        Ok(Run {
            progress: Progress::new(options.progress, total, config.budget_s(), &state),
            elapsed_before: state.elapsed_s,
            last_checkpoint: (state.step > 0).then_some(state.step),
            state,
            total,
            batches_per_epoch,
            config,
            dir,
            vars,
            opt,
            rows,
            metrics_path,
            this_run: Throughput::default(),
            window: Throughput::default(),
            lr: 0.0,
            tokens_per_s: 0.0,
        })
    }

    /// One optimizer step on the next batch, with the non-finite policy: a NaN or infinite loss or
    /// gradient norm stops the run with an error naming the step, or skips the batch. Returns the step.
    pub(super) fn step<T: Task>(&mut self, task: &mut T, started: Instant) -> Result<usize> {
        let config = self.config;
        let state = &mut self.state;
        let step = state.step + 1;
        let elapsed_s = self.elapsed_before + started.elapsed().as_secs_f64();
        let progress = decay_progress(
            step,
            self.total,
            config.warmup,
            config.budget_s().map(|budget| (elapsed_s, budget)),
        );
        let lr = config.schedule.lr(step, config.warmup, config.lr, progress);
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
            Some(grads) => self.opt.grad_norm(grads)?,
            None => f64::NAN,
        };
        let mut skipped_now = false;
        match grads {
            Some(grads) if norm.is_finite() => {
                self.opt.step(&grads, lr, clip_factor(norm, config.clip))?;
            }
            _ => {
                let what = if loss_value.is_finite() {
                    format!("the gradient norm became {norm}")
                } else {
                    format!("the training loss became {loss_value}")
                };
                match config.on_nonfinite {
                    NonFinite::Stop => {
                        self.progress.finish();
                        return Err(Error::NonFinite {
                            step,
                            what,
                            kept: kept_note(self.last_checkpoint, state.best_step),
                        });
                    }
                    NonFinite::Skip => {
                        task.discard_batch()?;
                        state.skipped += 1;
                        skipped_now = true;
                        self.progress.say(format!(
                            "step {step}: {what}; batch skipped (--skip-nonfinite)"
                        ));
                    }
                }
            }
        }
        let dt = t0.elapsed();
        self.this_run.add(dt, tokens);
        self.window.add(dt, tokens);

        state.step = step;
        state.tokens += tokens as u64;
        if !skipped_now {
            state.train_loss_sum += loss_value * tokens as f64;
            state.train_loss_tokens += tokens as u64;
        }
        state.batch_in_epoch += 1;
        if state.batch_in_epoch == self.batches_per_epoch {
            state.epoch += 1;
            state.batch_in_epoch = 0;
            if step < self.total {
                task.start_epoch(state.epoch)?;
            }
        }
        state.elapsed_s = self.elapsed_before + started.elapsed().as_secs_f64();
        self.lr = lr;
        self.tokens_per_s = self.window.per_second();
        self.progress
            .at(step, state.elapsed_s, loss_value, self.tokens_per_s);
        Ok(step)
    }

    /// Evaluates after `step`: a `train` row (the mean training loss since the last evaluation) and, with
    /// validation data, a `valid` row; saves the weights as `model.safetensors` when the validation loss is
    /// the best so far (always without validation data); writes `metrics.csv` and `loss.svg`. Returns
    /// whether the patience has run out.
    pub(super) fn evaluate<T: Task>(&mut self, task: &mut T, step: usize) -> Result<bool> {
        let state = &mut self.state;
        let train_loss = state.train_loss_sum / state.train_loss_tokens.max(1) as f64;
        let (lr, tokens_per_s) = (self.lr, self.tokens_per_s);
        let row = |split: &str, loss: f64| MetricsRow {
            step,
            epoch: state.epoch,
            split: split.to_string(),
            loss,
            lr,
            tokens_per_s,
            elapsed_s: state.elapsed_s,
        };
        self.rows.push(row("train", train_loss));
        let valid = task.validate()?;
        let mut line = format!(
            "step {step} (epoch {}): train loss {train_loss:.4}",
            state.epoch
        );
        match valid {
            Some(valid) => {
                self.rows.push(row("valid", valid));
                line.push_str(&format!(
                    ", valid loss {valid:.4} (perplexity {:.2})",
                    valid.exp()
                ));
                if state.best_valid_loss.is_none_or(|best| valid < best) {
                    state.best_valid_loss = Some(valid);
                    state.best_step = Some(step);
                    state.evals_since_best = 0;
                    save_weights(self.dir, &self.vars, step)?;
                    line.push_str(", best so far: saved");
                } else {
                    state.evals_since_best += 1;
                }
            }
            None => save_weights(self.dir, &self.vars, step)?,
        }
        self.progress
            .say(format!("{line}, {tokens_per_s:.0} tok/s"));
        state.train_loss_sum = 0.0;
        state.train_loss_tokens = 0;
        self.window = Throughput::default();
        write_metrics(&self.metrics_path, &self.rows)?;
        let svg = loss_svg(&self.rows, "loss");
        let svg_path = self.dir.join("loss.svg");
        crate::atomic::write_bytes_atomically(&svg_path, svg.as_bytes())
            .map_err(Error::write(&svg_path))?;
        Ok(self
            .config
            .patience
            .is_some_and(|p| self.state.evals_since_best >= p))
    }

    /// Writes the resumable checkpoint of `step`: the weights, AdamW's moments, the task's carry and where
    /// the run stands.
    pub(super) fn checkpoint<T: Task>(
        &mut self,
        task: &T,
        step: usize,
        started: Instant,
    ) -> Result<()> {
        self.state.elapsed_s = self.elapsed_before + started.elapsed().as_secs_f64();
        let weights = tensors_of(&self.vars);
        ensure_finite(&weights, step)?;
        save_checkpoint(
            self.dir,
            &Checkpoint {
                state: self.state.clone(),
                weights,
                optimizer: self.opt.state_tensors()?,
                carry: task.carry()?,
            },
        )?;
        self.last_checkpoint = Some(step);
        Ok(())
    }

    /// The summary of the run, which stopped as `stopped`.
    pub(super) fn finish(self, started: Instant, stopped: Stopped) -> TrainSummary {
        self.progress.finish();
        TrainSummary {
            steps: self.state.step,
            total_steps: (self.total != usize::MAX).then_some(self.total),
            best_valid: self.state.best_valid_loss.zip(self.state.best_step),
            last_train_loss: self
                .rows
                .iter()
                .rev()
                .find(|r| r.split == "train")
                .map(|r| r.loss),
            elapsed_s: self.elapsed_before + started.elapsed().as_secs_f64(),
            tokens_per_s: self.this_run.per_second(),
            stopped,
        }
    }
}

/// Where a new run stands before its first step.
fn fresh_state(seed: u64, fingerprint: &str) -> TrainerState {
    TrainerState {
        step: 0,
        epoch: 0,
        batch_in_epoch: 0,
        seed,
        best_valid_loss: None,
        best_step: None,
        evals_since_best: 0,
        elapsed_s: 0.0,
        tokens: 0,
        train_loss_sum: 0.0,
        train_loss_tokens: 0,
        data_fingerprint: fingerprint.to_string(),
        skipped: 0,
    }
}

/// The current values of the parameters, by name.
fn tensors_of(vars: &HashMap<String, Var>) -> HashMap<String, Tensor> {
    vars.iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
        .collect()
}

/// Saves the parameters as `dir/model.safetensors`, after checking that every one is finite.
fn save_weights(dir: &Path, vars: &HashMap<String, Var>, step: usize) -> Result<()> {
    let tensors = tensors_of(vars);
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
