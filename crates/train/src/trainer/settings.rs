//! The loop's settings, [`LoopConfig`], and what a non-finite loss does, [`NonFinite`].

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schedule::Schedule;

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
    /// The run's time budget in minutes (`--max-time`): its training time, all invocations together
    /// (`--resume` continues the count), after which it stops cleanly; the schedule's decay follows the
    /// elapsed fraction of it ([`crate::schedule::decay_progress`]). With neither `steps` nor `epochs`,
    /// the budget alone decides the run's length.
    pub max_time: Option<f64>,
    /// Evaluate (and keep the best model) every this many steps, and at the end; 0: once per epoch.
    pub eval_every: usize,
    /// Write the resumable checkpoint `trainer/` every this many steps, and at the end; 0: once per epoch.
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
            max_time: None,
            eval_every: 100,
            checkpoint_every: 500,
            patience: None,
            seed: 0,
            on_nonfinite: NonFinite::Stop,
        }
    }
}

impl LoopConfig {
    /// The number of optimizer steps of the run: `steps`, else `epochs` passes, else, for a run with a time
    /// budget, no limit (`usize::MAX`: the budget ends it), else 20 passes.
    pub fn total_steps(&self, batches_per_epoch: usize) -> usize {
        match (self.steps, self.epochs, self.max_time) {
            (Some(steps), _, _) => steps,
            (None, Some(epochs), _) => epochs * batches_per_epoch,
            (None, None, Some(_)) => usize::MAX,
            (None, None, None) => 20 * batches_per_epoch,
        }
    }

    /// The time budget in seconds, if any.
    pub fn budget_s(&self) -> Option<f64> {
        self.max_time.map(|minutes| minutes * 60.0)
    }

    /// These settings with `eval_every` and `checkpoint_every` of 0 (once per epoch) resolved for epochs of
    /// `batches_per_epoch` batches.
    pub fn resolved(&self, batches_per_epoch: usize) -> LoopConfig {
        let per_epoch = batches_per_epoch.max(1);
        let or_epoch = |every: usize| if every == 0 { per_epoch } else { every };
        LoopConfig {
            eval_every: or_epoch(self.eval_every),
            checkpoint_every: or_epoch(self.checkpoint_every),
            ..self.clone()
        }
    }

    /// The settings of a resumed run: these (saved) settings, but for what `given` sets of the run's
    /// length and its policies, the one resume policy of every pipeline:
    ///
    /// - `steps` or `epochs`, when either is set, replace the saved pair (`epochs` unset keeps the saved
    ///   one): the run is extended or shortened;
    /// - `max_time`, when set: the run's new budget (its whole training time, earlier invocations included;
    ///   a larger one than saved stretches the schedule's decay over the new budget);
    /// - `patience`, when set;
    /// - [`NonFinite::Skip`], when given.
    ///
    /// Everything else (the data, the learning rate, the seed, ...) stays as saved: the run continues as it
    /// was planned.
    pub fn resume_with(&mut self, given: &LoopConfig) {
        if given.steps.is_some() || given.epochs.is_some() {
            self.steps = given.steps;
            self.epochs = given.epochs.or(self.epochs);
        }
        if given.max_time.is_some() {
            self.max_time = given.max_time;
        }
        if given.patience.is_some() {
            self.patience = given.patience;
        }
        if given.on_nonfinite == NonFinite::Skip {
            self.on_nonfinite = NonFinite::Skip;
        }
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
        if let Some(minutes) = self.max_time {
            if !(minutes.is_finite() && minutes > 0.0) {
                return bad(format!(
                    "--max-time must be a positive number of minutes, got {minutes}"
                ));
            }
        }
        if let Schedule::WarmupStableDecay { decay, .. } = self.schedule {
            if !(decay > 0.0 && decay <= 1.0) {
                return bad(format!(
                    "the schedule's decay fraction must be in (0, 1], got {decay}"
                ));
            }
        }
        if self.steps == Some(0) || self.epochs == Some(0) {
            return bad("--steps and --epochs must be at least 1".to_string());
        }
        Ok(())
    }
}

/// Training settings that hold the loop's: every pipeline's `TrainConfig` (see [`crate::Pipeline`]).
pub trait HasLoop {
    /// The loop's settings.
    fn loop_config(&self) -> &LoopConfig;
    /// The loop's settings, mutable.
    fn loop_config_mut(&mut self) -> &mut LoopConfig;
}

/// Implements [`HasLoop`] for a settings struct whose loop settings are its field `optim`.
macro_rules! has_loop {
    ($t:ty) => {
        impl $crate::trainer::HasLoop for $t {
            fn loop_config(&self) -> &$crate::trainer::LoopConfig {
                &self.optim
            }
            fn loop_config_mut(&mut self) -> &mut $crate::trainer::LoopConfig {
                &mut self.optim
            }
        }
    };
}

pub(crate) use has_loop;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wsd_decay_outside_its_range_and_a_bad_budget_are_refused() {
        let with = |schedule| LoopConfig {
            schedule,
            ..LoopConfig::default()
        };
        for decay in [0.0, -0.5, 1.5, f64::NAN] {
            let config = with(Schedule::WarmupStableDecay {
                decay,
                min_ratio: 0.1,
            });
            assert!(config.validate().is_err(), "decay {decay} was accepted");
        }
        let wsd = with(Schedule::WarmupStableDecay {
            decay: 0.3,
            min_ratio: 0.1,
        });
        assert!(wsd.validate().is_ok());
        for minutes in [0.0, -1.0, f64::INFINITY] {
            let config = LoopConfig {
                max_time: Some(minutes),
                ..LoopConfig::default()
            };
            assert!(
                config.validate().is_err(),
                "--max-time {minutes} was accepted"
            );
        }
    }
}
