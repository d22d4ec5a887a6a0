//! What a run shows on stderr: a progress bar with the loss and throughput, and a line per evaluation.

use indicatif::{ProgressBar, ProgressStyle};

use crate::checkpoint::TrainerState;

/// The progress bar of a run, hidden when the run shows no progress: over its steps, or over its time
/// budget when the budget alone decides its length.
#[derive(Debug)]
pub(super) struct Progress {
    bar: ProgressBar,
    shown: bool,
    by_time: bool,
}

impl Progress {
    /// A bar of `total` steps (or, when `total` is `usize::MAX`, of the budget's `budget_s` seconds) at
    /// where `state` stands, or a hidden one.
    pub(super) fn new(
        shown: bool,
        total: usize,
        budget_s: Option<f64>,
        state: &TrainerState,
    ) -> Progress {
        let by_time = total == usize::MAX && budget_s.is_some();
        if !shown {
            return Progress {
                bar: ProgressBar::hidden(),
                shown,
                by_time,
            };
        }
        let (len, template) = if by_time {
            (
                budget_s.unwrap_or(0.0).ceil() as u64,
                "{bar:30} {msg}  [{elapsed_precise} < {eta_precise}]",
            )
        } else {
            (
                total as u64,
                "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
            )
        };
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let progress = Progress {
            bar,
            shown,
            by_time,
        };
        progress.set_position(state.step, state.elapsed_s);
        progress
    }

    fn set_position(&self, step: usize, elapsed_s: f64) {
        self.bar.set_position(if self.by_time {
            elapsed_s as u64
        } else {
            step as u64
        });
    }

    /// A line above the bar.
    pub(super) fn say(&self, line: String) {
        if self.shown {
            self.bar.suspend(|| eprintln!("{line}"));
        }
    }

    /// The bar at `step` (`elapsed_s` into the run), with the step's loss and the throughput.
    pub(super) fn at(&self, step: usize, elapsed_s: f64, loss: f64, tokens_per_s: f64) {
        self.set_position(step, elapsed_s);
        let message = format!("loss {loss:.4}  {tokens_per_s:.0} tok/s");
        self.bar.set_message(if self.by_time {
            format!("step {step}  {message}")
        } else {
            message
        });
    }

    /// Removes the bar.
    pub(super) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
