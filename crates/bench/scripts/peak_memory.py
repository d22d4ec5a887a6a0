#!/usr/bin/env python3
"""Peak resident memory of one training measurement, seqlab beside PyTorch, per configuration.

Each configuration runs as its own process under /usr/bin/time (GNU time, "%M" = peak RSS in KiB): the
PyTorch reference `torch_rnn_bench.py --only CFG --no-gen` and `seqlab-bench --only CFG --no-gen`. The idle
line is the same program doing no work (PyTorch: importing torch; seqlab: `--help`), so the difference is
what the training step itself holds. Standard library only.

    TORCH_PY=/path/to/venv/bin/python python3 crates/bench/scripts/peak_memory.py \
        --torch-bench ../shared/bench/torch_rnn_bench.py --seqlab target/release/seqlab-bench
"""
import argparse
import os
import subprocess

CONFIGS = ["lstm-64-1", "lstm-256-1", "lstm-512-2", "gru-64-1", "gru-256-1", "gru-512-2"]


def peak_mib(cmd, env):
    out = subprocess.run(["/usr/bin/time", "-f", "PEAK %M"] + cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out.stderr}")
    line = [l for l in out.stderr.splitlines() if l.startswith("PEAK ")][-1]
    return int(line.split()[1]) / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--torch-bench", required=True)
    ap.add_argument("--seqlab", required=True)
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    torch_py = os.environ.get("TORCH_PY", "python3")
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    idle_t = peak_mib([torch_py, "-c", "import torch; torch.set_num_threads(2)"], env)
    idle_s = peak_mib([args.seqlab, "--help"], env)
    print("| config | torch peak MiB | seqlab peak MiB | torch − idle | seqlab − idle | seqlab/torch (step) |")
    print("|---|---|---|---|---|---|")
    print(f"| idle | {idle_t:.0f} | {idle_s:.0f} | | | |")
    for cfg in [args.only] if args.only else CONFIGS:
        t = peak_mib([torch_py, args.torch_bench, "--only", cfg, "--no-gen", "--max-seconds", "3"], env)
        s = peak_mib([args.seqlab, "--only", cfg, "--no-gen", "--max-seconds", "3"], env)
        print(f"| {cfg} | {t:.0f} | {s:.0f} | {t - idle_t:.0f} | {s - idle_s:.0f} | "
              f"{(s - idle_s) / max(t - idle_t, 1e-9):.2f} |", flush=True)


if __name__ == "__main__":
    main()
