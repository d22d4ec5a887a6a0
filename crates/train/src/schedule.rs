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
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Cosine { min_ratio: 0.1 }
    }
}

impl Schedule {
    /// The learning rate of step `step` (1-based) of `total`, with `warmup` warm-up steps and peak `peak`.
    pub fn lr(&self, step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
        if warmup > 0 && step <= warmup {
            return peak * step as f64 / warmup as f64;
        }
        match *self {
            Schedule::Constant => peak,
            Schedule::Cosine { min_ratio } => {
                let span = total.saturating_sub(warmup).max(1) as f64;
                let progress = ((step - warmup) as f64 / span).clamp(0.0, 1.0);
                let min = peak * min_ratio;
                min + (peak - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_down_to_the_floor() {
        let s = Schedule::Cosine { min_ratio: 0.1 };
        assert!((s.lr(1, 110, 10, 1.0) - 0.1).abs() < 1e-12);
        assert!((s.lr(10, 110, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!((s.lr(60, 110, 10, 1.0) - 0.55).abs() < 1e-12);
        assert!((s.lr(110, 110, 10, 1.0) - 0.1).abs() < 1e-12);
        assert!((s.lr(500, 110, 10, 1.0) - 0.1).abs() < 1e-12);
        assert_eq!(Schedule::Constant.lr(50, 100, 0, 0.3), 0.3);
    }
}
