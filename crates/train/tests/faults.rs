//! Numerical faults in the shared loop: a NaN or infinite loss or gradient stops the run at once with a
//! message naming the step, and nothing non-finite is ever saved; with `NonFinite::Skip` the batch is skipped
//! and an interrupted, resumed run still ends with the weights of an uninterrupted one.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarMap};
use seqlab_train::checkpoint::{load_checkpoint, load_tensors};
use seqlab_train::{train, Error, LoopConfig, NonFinite, RunOptions, Task};

/// Which batch goes wrong, and how.
#[derive(Clone, Copy)]
enum Poison {
    /// The loss itself is NaN.
    Loss,
    /// The loss is finite (0) but its gradient is infinite: d√x/dx at x = 0.
    Gradient,
}

/// A least-squares task over a 3×2 weight: batch `index` of every epoch pulls the weight towards its own
/// target; the batch `(epoch, index)` of `poison` goes wrong.
struct Toy {
    w: Tensor,
    epoch: usize,
    evals: usize,
    poison: Option<((usize, usize), Poison)>,
}

const BATCHES: usize = 4;

impl Task for Toy {
    fn batches_per_epoch(&self) -> usize {
        BATCHES
    }

    fn start_epoch(&mut self, epoch: usize) -> seqlab_train::Result<()> {
        self.epoch = epoch;
        Ok(())
    }

    fn train_batch(&mut self, index: usize, _seed: u64) -> seqlab_train::Result<(Tensor, usize)> {
        let target = Tensor::full(index as f32 - 1.5, (3, 2), &Device::Cpu)?;
        let loss = self.w.sub(&target)?.sqr()?.mean_all()?;
        let loss = match self.poison {
            Some((at, Poison::Loss)) if at == (self.epoch, index) => loss.affine(f64::NAN, 0.0)?,
            Some((at, Poison::Gradient)) if at == (self.epoch, index) => {
                self.w.sub(&self.w.detach())?.sum_all()?.sqrt()?
            }
            _ => loss,
        };
        Ok((loss, 6))
    }

    fn validate(&mut self) -> seqlab_train::Result<Option<f64>> {
        // Better at every evaluation, so that every evaluation saves the best model.
        self.evals += 1;
        Ok(Some(1.0 / self.evals as f64))
    }

    fn carry(&self) -> seqlab_train::Result<HashMap<String, Tensor>> {
        Ok(HashMap::new())
    }

    fn restore_carry(&mut self, _carry: &HashMap<String, Tensor>) -> seqlab_train::Result<()> {
        Ok(())
    }
}

fn toy(poison: Option<((usize, usize), Poison)>) -> (Toy, VarMap) {
    let varmap = VarMap::new();
    let w = varmap
        .get((3, 2), "w", Init::Const(0.25), DType::F32, &Device::Cpu)
        .unwrap();
    (
        Toy {
            w,
            epoch: 0,
            evals: 0,
            poison,
        },
        varmap,
    )
}

fn settings(on_nonfinite: NonFinite) -> LoopConfig {
    LoopConfig {
        steps: Some(12),
        eval_every: 2,
        checkpoint_every: 5,
        lr: 0.05,
        warmup: 0,
        on_nonfinite,
        ..Default::default()
    }
}

fn all_finite(path: &Path) -> bool {
    load_tensors(path, &Device::Cpu).unwrap().values().all(|t| {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .all(|v| v.is_finite())
    })
}

fn w_of(path: &Path) -> Vec<f32> {
    load_tensors(path, &Device::Cpu).unwrap()["w"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn stops_at_step_7(poison: Poison, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    // Step 7 is batch 2 of epoch 1 (4 batches per epoch).
    let (mut task, varmap) = toy(Some(((1, 2), poison)));
    let error = train(
        &mut task,
        &varmap,
        &settings(NonFinite::Stop),
        dir.path(),
        "toy",
        RunOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(error, Error::NonFinite { step: 7, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    for expected in [
        "step 7",
        needle,
        "checkpoint of step 5",
        "best model (step 6)",
        "--skip-nonfinite",
    ] {
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
    assert!(!message.contains('\n'));
    // The checkpoint is the one of step 5, the best model the one of step 6; both finite.
    let checkpoint = load_checkpoint(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(checkpoint.state.step, 5);
    assert!(all_finite(&dir.path().join("trainer/model.safetensors")));
    assert!(all_finite(&dir.path().join("model.safetensors")));
}

#[test]
fn a_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_files() {
    stops_at_step_7(Poison::Loss, "the training loss became NaN");
}

#[test]
fn an_infinite_gradient_stops_the_run_naming_the_step_and_keeps_the_last_good_files() {
    stops_at_step_7(Poison::Gradient, "the gradient norm became inf");
}

#[test]
fn skipping_a_nan_batch_goes_on_and_resumes_exactly() {
    for poison in [Poison::Loss, Poison::Gradient] {
        let whole = tempfile::tempdir().unwrap();
        let (mut task, varmap) = toy(Some(((1, 2), poison)));
        let summary = train(
            &mut task,
            &varmap,
            &settings(NonFinite::Skip),
            whole.path(),
            "toy",
            RunOptions::default(),
        )
        .unwrap();
        assert_eq!(summary.steps, 12);
        let state = load_checkpoint(whole.path(), &Device::Cpu).unwrap().state;
        assert_eq!(state.skipped, 1);
        assert!(all_finite(&whole.path().join("trainer/model.safetensors")));

        // Without the poisoned batch, the weights differ: the skip really skipped an update.
        let clean = tempfile::tempdir().unwrap();
        let (mut task, varmap) = toy(None);
        train(
            &mut task,
            &varmap,
            &settings(NonFinite::Skip),
            clean.path(),
            "toy",
            RunOptions::default(),
        )
        .unwrap();
        let final_w = w_of(&whole.path().join("trainer/model.safetensors"));
        assert_ne!(
            final_w,
            w_of(&clean.path().join("trainer/model.safetensors"))
        );

        // Interrupted at step 9 (after the skip, before the next checkpoint), then resumed.
        let split = tempfile::tempdir().unwrap();
        let (mut task, varmap) = toy(Some(((1, 2), poison)));
        let mut stop_at_9 = |step: usize| {
            if step == 9 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        train(
            &mut task,
            &varmap,
            &settings(NonFinite::Skip),
            split.path(),
            "toy",
            RunOptions {
                on_step: Some(&mut stop_at_9),
                ..Default::default()
            },
        )
        .unwrap();
        let (mut task, varmap) = toy(Some(((1, 2), poison)));
        train(
            &mut task,
            &varmap,
            &settings(NonFinite::Skip),
            split.path(),
            "toy",
            RunOptions {
                resume: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            w_of(&split.path().join("trainer/model.safetensors")),
            final_w
        );
    }
}

#[test]
fn resume_before_the_first_checkpoint_starts_over_and_a_killed_swap_falls_back() {
    let whole = tempfile::tempdir().unwrap();
    let (mut task, varmap) = toy(None);
    train(
        &mut task,
        &varmap,
        &settings(NonFinite::Stop),
        whole.path(),
        "toy",
        RunOptions::default(),
    )
    .unwrap();
    let expected = w_of(&whole.path().join("trainer/model.safetensors"));

    // A directory with no checkpoint yet, holding the leftovers of a killed writer.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".model.safetensors.999.tmp"), b"half").unwrap();
    std::fs::create_dir(dir.path().join("trainer.new")).unwrap();
    let (mut task, varmap) = toy(None);
    train(
        &mut task,
        &varmap,
        &settings(NonFinite::Stop),
        dir.path(),
        "toy",
        RunOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        w_of(&dir.path().join("trainer/model.safetensors")),
        expected
    );
    assert!(!dir.path().join(".model.safetensors.999.tmp").exists());
    assert!(!dir.path().join("trainer.new").exists());

    // A crash between the two renames of a checkpoint swap leaves only trainer.old/: resuming uses it,
    // and the next checkpoint does not delete it before the new one is in place.
    let dir = tempfile::tempdir().unwrap();
    let (mut task, varmap) = toy(None);
    let mut stop_at_5 = |step: usize| {
        if step == 5 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    train(
        &mut task,
        &varmap,
        &settings(NonFinite::Stop),
        dir.path(),
        "toy",
        RunOptions {
            on_step: Some(&mut stop_at_5),
            ..Default::default()
        },
    )
    .unwrap();
    std::fs::rename(dir.path().join("trainer"), dir.path().join("trainer.old")).unwrap();
    let (mut task, varmap) = toy(None);
    train(
        &mut task,
        &varmap,
        &settings(NonFinite::Stop),
        dir.path(),
        "toy",
        RunOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        w_of(&dir.path().join("trainer/model.safetensors")),
        expected
    );
    assert!(!dir.path().join("trainer.old").exists());
}
