//! One run per model directory, between processes: a second `train` into a directory a run is writing is
//! refused at once, naming the directory and the process; a run killed with SIGKILL leaves no stale lock.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn text(dir: &Path) -> String {
    let path = dir.join("text.txt");
    std::fs::write(
        &path,
        "The cat sat on the mat, and the dog sat on the log.\n".repeat(60),
    )
    .unwrap();
    path.display().to_string()
}

fn train(data: &str, out: &Path, steps: &str, resume: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_seqlab"));
    command
        .args(["lm", "train", "--data", data, "--out"])
        .arg(out)
        .args([
            "--hidden",
            "16",
            "--embed",
            "8",
            "--batch",
            "4",
            "--seq-len",
            "12",
            "--steps",
            steps,
            "--eval-every",
            "50",
            "--checkpoint-every",
            "10",
            "--threads",
            "1",
        ])
        .env("RUST_BACKTRACE", "1");
    if resume {
        command.arg("--resume");
    }
    command
}

#[test]
fn a_second_writer_is_refused_and_a_killed_run_leaves_no_stale_lock() {
    let dir = tempfile::tempdir().unwrap();
    let data = text(dir.path());
    let out = dir.path().join("lm");
    // A long run: it writes for minutes unless stopped.
    let mut first = train(&data, &out, "1000000", false)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !out.join("trainer/state.json").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint"
        );
        assert!(first.try_wait().unwrap().is_none(), "the first run ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    for resume in [false, true] {
        let output = train(&data, &out, "20", resume).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr:?}");
        assert!(
            lines[0].contains("in use by another seqlab run")
                && lines[0].contains(&out.display().to_string())
                && lines[0].contains(&format!("process {}", first.id())),
            "{stderr}"
        );
    }
    // A reader is never refused.
    let eval = Command::new(env!("CARGO_BIN_EXE_seqlab"))
        .args(["lm", "eval", "--model"])
        .arg(&out)
        .args(["--data", &data, "--json"])
        .output()
        .unwrap();
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    // SIGKILL: the system releases the lock with the process; the directory resumes at once.
    first.kill().unwrap();
    first.wait().unwrap();
    let output = train(&data, &out, "20", true).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
