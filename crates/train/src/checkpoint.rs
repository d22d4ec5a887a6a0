//! The trainer's checkpoint (`trainer/`): what `--resume` needs to continue exactly.
//!
//! ```text
//! trainer/model.safetensors      the latest weights
//! trainer/optimizer.safetensors  AdamW's moments, m.<parameter> and v.<parameter>
//! trainer/carry.safetensors      what the task carries from batch to batch (a language model's state)
//! trainer/state.json             step, epoch, position in the data, seed, best validation loss, time, ...
//! ```
//!
//! A new checkpoint is written whole into `trainer.new/`, then swapped in by two renames
//! (`trainer/` → `trainer.old/`, `trainer.new/` → `trainer/`); the latest checkpoint is replaced only once the
//! new one is complete. A crash between the renames leaves `trainer.old/`, which loading falls back to.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::atomic::{sync_dir, write_atomically, write_bytes_atomically};
use crate::error::{one_line, Error, Result};

/// Where a training run stands: `trainer/state.json`.
///
/// There is no random-generator state to save: every random draw of training (dropout masks, each epoch's
/// offset into the data) is a pure function of `seed` and the step or epoch, so `seed` is the whole RNG state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps taken (also AdamW's bias-correction step).
    pub step: usize,
    /// The epoch the next step belongs to (0-based).
    pub epoch: usize,
    /// Index of the next batch within that epoch.
    pub batch_in_epoch: usize,
    /// The seed of every random draw of the run.
    pub seed: u64,
    /// Best validation loss so far and its step (the weights of `model.safetensors`).
    pub best_valid_loss: Option<f64>,
    /// Step of the best validation loss.
    pub best_step: Option<usize>,
    /// Evaluations since the best one (early stopping).
    pub evals_since_best: usize,
    /// Training time so far, all runs together, in seconds.
    pub elapsed_s: f64,
    /// Training tokens seen so far.
    pub tokens: u64,
    /// Sum of training losses (per token, times tokens) since the last evaluation, for its `train` row.
    pub train_loss_sum: f64,
    /// Tokens behind `train_loss_sum`.
    pub train_loss_tokens: u64,
    /// A fingerprint of the training data, checked on resume.
    pub data_fingerprint: String,
    /// Batches skipped for a non-finite loss or gradient (`--skip-nonfinite`): steps without an update, so
    /// AdamW's own step count is `step - skipped`.
    #[serde(default)]
    pub skipped: usize,
}

/// A checkpoint read back: the state, the weights, the optimizer's moments and the task's carry.
#[derive(Debug)]
pub struct Checkpoint {
    /// `state.json`.
    pub state: TrainerState,
    /// `model.safetensors`.
    pub weights: HashMap<String, Tensor>,
    /// `optimizer.safetensors`.
    pub optimizer: HashMap<String, Tensor>,
    /// `carry.safetensors`.
    pub carry: HashMap<String, Tensor>,
}

/// The checkpoint folder of a model directory.
pub fn trainer_dir(dir: &Path) -> PathBuf {
    dir.join("trainer")
}

/// Saves `tensors` as a safetensors file, atomically.
pub fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    write_atomically(path, |temporary| {
        candle_core::safetensors::save(tensors, temporary).map_err(std::io::Error::other)
    })
    .map_err(Error::write(path))
}

/// Loads a safetensors file onto `device`.
pub fn load_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(Error::Read {
            path: path.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    candle_core::safetensors::load(path, device).map_err(|e| Error::Weights {
        path: path.to_path_buf(),
        reason: one_line(e),
    })
}

/// Writes a checkpoint into `dir/trainer/`, replacing the previous one only once the new one is complete.
pub fn save_checkpoint(dir: &Path, checkpoint: &Checkpoint) -> Result<()> {
    let target = trainer_dir(dir);
    let new = dir.join("trainer.new");
    let old = dir.join("trainer.old");
    if new.exists() {
        std::fs::remove_dir_all(&new).map_err(Error::write(&new))?;
    }
    std::fs::create_dir_all(&new).map_err(Error::write(&new))?;
    save_tensors(&new.join("model.safetensors"), &checkpoint.weights)?;
    save_tensors(&new.join("optimizer.safetensors"), &checkpoint.optimizer)?;
    save_tensors(&new.join("carry.safetensors"), &checkpoint.carry)?;
    let json = serde_json::to_string_pretty(&checkpoint.state)
        .map_err(|e| Error::InvalidSetting(e.to_string()))?;
    let state_path = new.join("state.json");
    write_bytes_atomically(&state_path, json.as_bytes()).map_err(Error::write(&state_path))?;
    sync_dir(&new);
    // `trainer.old/` is the only good checkpoint while `trainer/` is missing (a crash between the renames):
    // it is removed only when `trainer/` is there to take its place.
    if target.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(Error::write(&old))?;
        }
        std::fs::rename(&target, &old).map_err(Error::write(&target))?;
    }
    std::fs::rename(&new, &target).map_err(Error::write(&target))?;
    sync_dir(dir);
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(Error::write(&old))?;
    }
    Ok(())
}

/// Reads the latest checkpoint of `dir` (or the previous one, when a crash interrupted the swap).
pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<Checkpoint> {
    let folder = [trainer_dir(dir), dir.join("trainer.old")]
        .into_iter()
        .find(|folder| folder.join("state.json").is_file())
        .ok_or_else(|| Error::NoCheckpoint {
            dir: dir.to_path_buf(),
        })?;
    let state_path = folder.join("state.json");
    let json = std::fs::read_to_string(&state_path).map_err(Error::read(&state_path))?;
    let state = serde_json::from_str(&json).map_err(|e| Error::BadJson {
        path: state_path.clone(),
        what: "trainer state",
        reason: one_line(e),
    })?;
    Ok(Checkpoint {
        state,
        weights: load_tensors(&folder.join("model.safetensors"), device)?,
        optimizer: load_tensors(&folder.join("optimizer.safetensors"), device)?,
        carry: load_tensors(&folder.join("carry.safetensors"), device)?,
    })
}
