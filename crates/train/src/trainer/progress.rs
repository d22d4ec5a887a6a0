//! What a run shows on stderr: a progress bar with the loss and throughput, and a line per evaluation.

use indicatif::{ProgressBar, ProgressStyle};

/// The progress bar of a run, hidden when the run shows no progress.
#[derive(Debug)]
pub(super) struct Progress {
    bar: ProgressBar,
    shown: bool,
}

impl Progress {
    /// A bar of `total` steps at `step`, or a hidden one.
    pub(super) fn new(shown: bool, total: usize, step: usize) -> Progress {
        let bar = if shown {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_position(step as u64);
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress { bar, shown }
    }

    /// A line above the bar.
    pub(super) fn say(&self, line: String) {
        if self.shown {
            self.bar.suspend(|| eprintln!("{line}"));
        }
    }

    /// The bar at `step`, with the step's loss and the throughput.
    pub(super) fn at(&self, step: usize, loss: f64, tokens_per_s: f64) {
        self.bar.set_position(step as u64);
        self.bar
            .set_message(format!("loss {loss:.4}  {tokens_per_s:.0} tok/s"));
    }

    /// Removes the bar.
    pub(super) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
