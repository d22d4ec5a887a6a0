//! A training run killed (SIGKILL) at random moments, again and again: after every kill the model directory
//! is readable, and `--resume` from it ends with exactly the weights of a run that was never interrupted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::Device;

const STEPS: &str = "40";

fn text(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for i in 0..40 {
        text.push_str(
            [
                "The cat sat on the mat, and the dog sat on the log.\n",
                "\"Where is the bird?\" asked the cat. The bird sang in the tree.\n",
            ][i % 2],
        );
    }
    let path = dir.join("text.txt");
    std::fs::write(&path, text).unwrap();
    path
}

/// `seqlab lm train` of a tiny model, checkpointing at every step, resuming when `out` holds a model.
fn train_command(data: &Path, out: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_seqlab"));
    command
        .args(["lm", "train", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args([
            "--hidden",
            "16",
            "--embed",
            "8",
            "--dropout",
            "0.2",
            "--steps",
            STEPS,
            "--batch",
            "4",
            "--seq-len",
            "12",
            "--eval-every",
            "4",
            "--checkpoint-every",
            "1",
            "--lr",
            "0.01",
            "--seed",
            "5",
            "--threads",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("RUST_BACKTRACE");
    if out.join("config.json").exists() {
        command.arg("--resume");
    }
    command
}

fn run_to_end(data: &Path, out: &Path) {
    let output = train_command(data, out).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "training failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn tensors(path: &Path) -> HashMap<String, Vec<f32>> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()))
        .into_iter()
        .map(|(name, t)| (name, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

/// The final weights of a finished run: the latest (`trainer/`) and the best (`model.safetensors`).
fn final_weights(out: &Path) -> [HashMap<String, Vec<f32>>; 2] {
    [
        tensors(&out.join("trainer/model.safetensors")),
        tensors(&out.join("model.safetensors")),
    ]
}

/// What must hold after any kill: every file there is whole.
fn check_readable(out: &Path) {
    if out.join("config.json").exists() {
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .expect("config.json is whole");
        assert_eq!(config["task"], "lm");
        assert!(
            out.join("tokenizer.json").is_file(),
            "config.json without tokenizer.json"
        );
    }
    if out.join("model.safetensors").exists() {
        tensors(&out.join("model.safetensors"));
    }
    let checkpoint = ["trainer", "trainer.old"]
        .iter()
        .map(|name| out.join(name))
        .find(|folder| folder.join("state.json").is_file());
    if let Some(folder) = checkpoint {
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(folder.join("state.json")).unwrap())
                .expect("state.json is whole");
        assert!(state["step"].as_u64().is_some());
        for file in ["model", "optimizer", "carry"] {
            tensors(&folder.join(format!("{file}.safetensors")));
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_run_killed_at_random_moments_resumes_to_the_weights_of_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = text(dir.path());
    let reference = dir.path().join("reference");
    let started = Instant::now();
    run_to_end(&data, &reference);
    let full_run = started.elapsed();
    let expected = final_weights(&reference);

    // Kill moments spread over a whole run (start-up, steps, checkpoint swaps), from a fixed seed.
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next_delay = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // One kill in three within the first tenth of a run: start-up, before the first checkpoint.
        let span = if seed.is_multiple_of(3) { 0.1 } else { 1.0 };
        full_run.mul_f64(span * ((seed >> 8) % 1000) as f64 / 1000.0)
    };
    // Rounds of kill-and-resume, each in a fresh directory, until enough kills have landed; a round ends
    // when a resumed process finishes before its kill.
    let budget = Instant::now();
    let mut kills = 0;
    let mut resumed_copies = 0;
    let mut round = 0;
    let mut stages = Vec::new();
    while kills < 10 && budget.elapsed() < Duration::from_secs(40) {
        round += 1;
        let out = dir.path().join(format!("killed{round}"));
        loop {
            if budget.elapsed() > Duration::from_secs(50) {
                // A slow machine: finish this round without more kills.
                run_to_end(&data, &out);
                assert_eq!(final_weights(&out), expected, "round {round}");
                break;
            }
            let mut child = train_command(&data, &out).spawn().unwrap();
            std::thread::sleep(next_delay());
            let finished = child.try_wait().unwrap().is_some();
            if !finished {
                child.kill().unwrap();
                kills += 1;
            }
            let status = child.wait().unwrap();
            check_readable(&out);
            if !finished {
                stages.push(stage(&out));
            }
            if finished {
                assert!(status.success(), "a resumed run failed in round {round}");
                assert_eq!(final_weights(&out), expected, "round {round}");
                break;
            }
            if !out.exists() {
                continue; // killed before the directory was made: nothing to resume
            }
            // From this very state, a resumed run reaches the uninterrupted run's weights.
            let copy = dir.path().join(format!("copy{kills}"));
            copy_dir(&out, &copy);
            run_to_end(&data, &copy);
            assert_eq!(final_weights(&copy), expected, "after kill {kills}");
            resumed_copies += 1;
            std::fs::remove_dir_all(&copy).unwrap();
        }
    }
    assert!(
        kills >= 4,
        "only {kills} kills landed (a run takes {full_run:?})"
    );
    assert!(
        resumed_copies + 3 >= kills,
        "{resumed_copies} checked of {kills} kills"
    );
    eprintln!(
        "{kills} kills in {round} rounds ({resumed_copies} resumed from copies), the directory after each: {stages:?}"
    );
}

/// How far a killed run had come, for the test's log.
fn stage(out: &Path) -> String {
    if !out.join("config.json").exists() {
        return "no model yet".to_string();
    }
    let state = ["trainer", "trainer.old"]
        .iter()
        .map(|name| out.join(name).join("state.json"))
        .find(|path| path.is_file());
    match state {
        None => "no checkpoint yet".to_string(),
        Some(path) => {
            let state: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            format!("step {}", state["step"])
        }
    }
}
