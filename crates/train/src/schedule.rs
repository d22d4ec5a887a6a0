//! The learning-rate schedule.

use serde::{Deserialize, Serialize};

/// How the learning rate moves over training: a linear warm-up from 0, then constant or a cosine decay.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// The peak learning rate after the warm-up.
    Constant,
    /// Half a cosine from the peak down to `min_ratio` × peak at the last step: fast progress early, a
    /// careful descent at the end.
    Cosine {
        /// The final learning rate as a fraction of the peak.
        min_ratio: f64,
    },
    /// Warm-up, stable, decay: the peak until the last `decay` fraction of the run, then half a cosine down
    /// to `min_ratio` × peak at its end — the peak's fast progress for most of a short budget, and the
    /// anneal at the end.
    WarmupStableDecay {
        /// The fraction of the run (after the warm-up) that the decay takes, in (0, 1].
        decay: f64,
        /// The final learning rate as a fraction of the peak.
        min_ratio: f64,
    },
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Cosine { min_ratio: 0.1 }
    }
}

impl Schedule {
    /// The learning rate of step `step` (1-based) with `warmup` warm-up steps and peak `peak`, when the run
    /// is `progress` (in [0, 1], [`decay_progress`]) of the way from the end of its warm-up to its end.
    pub fn lr(&self, step: usize, warmup: usize, peak: f64, progress: f64) -> f64 {
        if warmup > 0 && step <= warmup {
            return peak * step as f64 / warmup as f64;
        }
        match *self {
            Schedule::Constant => peak,
            Schedule::Cosine { min_ratio } => {
                let min = peak * min_ratio;
                min + (peak - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            Schedule::WarmupStableDecay { decay, min_ratio } => {
                let into_decay = (progress - (1.0 - decay)) / decay;
                if into_decay <= 0.0 {
                    return peak;
                }
                let min = peak * min_ratio;
                let q = into_decay.min(1.0);
                min + (peak - min) * 0.5 * (1.0 + (std::f64::consts::PI * q).cos())
            }
        }
    }
}

/// How far a run is through the decay of its learning rate at step `step` (1-based), in [0, 1]: the larger
/// of its step fraction (after `warmup` steps, of `total`) and, for a run with a time budget, its time
/// fraction `elapsed_s / budget_s` (its training time so far, earlier invocations included). So the
/// learning rate reaches its floor exactly when the first of the two budgets runs out: a run of 2 minutes
/// anneals over 2 minutes, however many steps they hold.
pub fn decay_progress(step: usize, total: usize, warmup: usize, time: Option<(f64, f64)>) -> f64 {
    let span = total.saturating_sub(warmup).max(1) as f64;
    let by_steps = (step.saturating_sub(warmup) as f64 / span).clamp(0.0, 1.0);
    match time {
        Some((elapsed_s, budget_s)) => by_steps.max((elapsed_s / budget_s).clamp(0.0, 1.0)),
        None => by_steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_down_to_the_floor() {
        let s = Schedule::Cosine { min_ratio: 0.1 };
        let at = |step| s.lr(step, 10, 1.0, decay_progress(step, 110, 10, None));
        assert!((at(1) - 0.1).abs() < 1e-12);
        assert!((at(10) - 1.0).abs() < 1e-12);
        assert!((at(60) - 0.55).abs() < 1e-12);
        assert!((at(110) - 0.1).abs() < 1e-12);
        assert!((at(500) - 0.1).abs() < 1e-12);
        assert_eq!(Schedule::Constant.lr(50, 0, 0.3, 0.5), 0.3);
    }

    #[test]
    fn a_time_budget_decays_by_the_larger_fraction() {
        // Half the time, a tenth of the steps: halfway down.
        assert_eq!(decay_progress(20, 110, 10, Some((30.0, 60.0))), 0.5);
        // Half the steps, a tenth of the time: the steps lead.
        assert_eq!(decay_progress(60, 110, 10, Some((6.0, 60.0))), 0.5);
        // No step limit (a run the budget alone ends): the time fraction, and the floor when it is spent.
        assert_eq!(
            decay_progress(1000, usize::MAX, 10, Some((15.0, 60.0))),
            0.25
        );
        assert_eq!(
            decay_progress(1000, usize::MAX, 10, Some((75.0, 60.0))),
            1.0
        );
        let s = Schedule::Cosine { min_ratio: 0.1 };
        assert!((s.lr(1000, 10, 1.0, 1.0) - 0.1).abs() < 1e-12);
        let w = Schedule::WarmupStableDecay {
            decay: 0.25,
            min_ratio: 0.1,
        };
        assert_eq!(w.lr(20, 10, 1.0, 0.5), 1.0);
        assert_eq!(w.lr(20, 10, 1.0, 0.75), 1.0);
        assert!((w.lr(20, 10, 1.0, 0.875) - 0.55).abs() < 1e-12);
        assert!((w.lr(20, 10, 1.0, 1.0) - 0.1).abs() < 1e-12);
        // During the warm-up the budget does not matter.
        assert_eq!(s.lr(5, 10, 1.0, 0.9), 0.5);
    }
}
