//! What every `seqlab ... train` command does with the common training flags of DESIGN.md (`--threads`,
//! `--device`, `--schedule`, `--skip-nonfinite`, `--max-time`, `--resume`): one place, four commands.

use std::time::Duration;

use anyhow::bail;
use seqlab_train::{NonFinite, RunOptions, Schedule};

/// Applies `--threads` (before any worker thread starts) and checks `--device`.
pub fn start(threads: Option<usize>, device: &str) -> anyhow::Result<()> {
    if let Some(threads) = threads {
        if threads == 0 {
            bail!("--threads must be at least 1");
        }
        // Read by candle and rayon when they first start their threads, which has not happened yet.
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    match device {
        "cpu" => Ok(()),
        "cuda" => bail!("this seqlab was built without CUDA support; use --device cpu"),
        other => bail!("unknown --device {other:?}: expected cpu or cuda"),
    }
}

/// `--schedule cosine|constant`.
pub fn schedule(name: &str) -> anyhow::Result<Schedule> {
    match name {
        "cosine" => Ok(Schedule::default()),
        "constant" => Ok(Schedule::Constant),
        other => bail!("unknown --schedule {other:?}: expected cosine or constant"),
    }
}

/// `--skip-nonfinite`: skip a batch with a NaN or infinite loss or gradient instead of stopping.
pub fn on_nonfinite(skip: bool) -> NonFinite {
    if skip {
        NonFinite::Skip
    } else {
        NonFinite::Stop
    }
}

/// `--resume` and `--max-time MINUTES` as the loop's run options, with a progress bar.
pub fn run_options(resume: bool, max_time: Option<f64>) -> anyhow::Result<RunOptions<'static>> {
    let max_time = match max_time {
        Some(minutes) if !(minutes.is_finite() && minutes > 0.0) => {
            bail!("--max-time must be a positive number of minutes, got {minutes}")
        }
        Some(minutes) => Some(Duration::from_secs_f64(minutes * 60.0)),
        None => None,
    };
    Ok(RunOptions {
        resume,
        max_time,
        progress: true,
        on_step: None,
    })
}
