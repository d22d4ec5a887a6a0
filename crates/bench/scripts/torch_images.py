#!/usr/bin/env python3
"""PyTorch twin of seqlab's sequential-image classifier, for a side-by-side quality/speed comparison on the same CPU.

An H×W uint8 image (MNIST-format IDX files) is scaled to [0,1] (x/255, float32) and read as a sequence:

    --order rows                 H steps of W features (row i is step i)
    --order pixels               H·W steps of 1 feature, row-major
    --order permuted --perm-seed N   H·W steps of 1 feature in the fixed permutation
                                 np.random.default_rng(N).permutation(H*W) (not seqlab's permutation, just fixed)

then nn.LSTM / nn.GRU (--cell, --hidden, --layers, batch_first) → pooling over time (--pool last|mean|max;
last = final hidden state of the last layer) → nn.Linear(hidden, 10), cross-entropy.

Recipe: AdamW(lr=--lr, weight_decay=0.01), clip_grad_norm_ 5, linear warm-up from 0 over the first --warmup (50)
steps (lr·s/50 at 1-based step s), then cosine from the peak down to 0.1·peak at the last step. Batches of --batch
drawn by reshuffling the training part every epoch (last incomplete batch dropped), --steps optimizer steps in all.
The first 60000-`--valid` (55000) training images train, the last --valid (5000, in file order) validate; validation
runs every --eval-every steps (default once per epoch) and at the end, the best-validation-loss weights are kept and
scored on the t10k test set. With --time-budget SECONDS, the first 20 (real, warm-up) steps are timed and the total
step count becomes budget / step_time, so the cosine schedule ends at the budget.

Progress goes to stderr; stdout gets one JSON line: cell, order, hidden, steps, seconds_train (wall time of the
optimizer steps only, evaluations excluded), examples_per_s, best_valid_loss, valid_accuracy, test_accuracy,
test_loss (plus a few settings).

    /work/venvs/torch/bin/python torch_images.py --data /usr/share/datasets/fashion-mnist \\
        --cell lstm --order rows --hidden 128 --steps 4000
    THREADS=2 .../python torch_images.py --data DIR --order pixels --time-budget 600

The data directory holds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
t10k-labels-idx1-ubyte, each gzipped (.gz) or plain. --eval-limit N caps the validation and test sets at their
first N images (for quick smoke runs only; the default scores them whole).
"""
import argparse
import copy
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def read_idx(data_dir, name, want_magic):
    path = os.path.join(data_dir, name)
    if os.path.exists(path + ".gz"):
        with gzip.open(path + ".gz", "rb") as f:
            raw = f.read()
    else:
        with open(path, "rb") as f:
            raw = f.read()
    magic = int(np.frombuffer(raw, dtype=">u4", count=1, offset=0)[0])
    if magic != want_magic:
        raise SystemExit(f"{path}: magic {magic}, expected {want_magic}")
    if magic == 2051:
        n, rows, cols = (int(v) for v in np.frombuffer(raw, dtype=">u4", count=3, offset=4))
        arr = np.frombuffer(raw, dtype=np.uint8, count=n * rows * cols, offset=16).reshape(n, rows, cols)
    else:
        n = int(np.frombuffer(raw, dtype=">u4", count=1, offset=4)[0])
        arr = np.frombuffer(raw, dtype=np.uint8, count=n, offset=8)
    return arr.copy()


class Net(nn.Module):
    def __init__(self, cell, in_features, hidden, layers, pool, classes=10):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.cell, self.pool = cell, pool
        self.rnn = rnn(in_features, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        y, h = self.rnn(x)
        if self.pool == "last":
            h_n = h[0] if self.cell == "lstm" else h
            z = h_n[-1]
        elif self.pool == "mean":
            z = y.mean(dim=1)
        else:
            z = y.amax(dim=1)
        return self.head(z)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    p.add_argument("--order", choices=["rows", "pixels", "permuted"], default="rows")
    p.add_argument("--perm-seed", type=int, default=0)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--pool", choices=["last", "mean", "max"], default="last")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--time-budget", type=float, default=None, help="seconds of training; overrides --steps")
    p.add_argument("--valid", type=int, default=5000)
    p.add_argument("--eval-every", type=int, default=None, help="steps between validations (default: one epoch)")
    p.add_argument("--eval-batch", type=int, default=1000)
    p.add_argument("--eval-limit", type=int, default=None, help="smoke runs only: score the first N valid/test images")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    threads = int(os.environ.get("THREADS", 2))
    torch.set_num_threads(threads)
    torch.manual_seed(a.seed)

    tr_x = read_idx(a.data, "train-images-idx3-ubyte", 2051)
    tr_y = read_idx(a.data, "train-labels-idx1-ubyte", 2049)
    te_x = read_idx(a.data, "t10k-images-idx3-ubyte", 2051)
    te_y = read_idx(a.data, "t10k-labels-idx1-ubyte", 2049)
    n_all, H, W = tr_x.shape
    n_train = n_all - a.valid
    va_x, va_y = tr_x[n_train:], tr_y[n_train:]
    tr_x, tr_y = tr_x[:n_train], tr_y[:n_train]
    if a.eval_limit is not None:
        va_x, va_y, te_x, te_y = va_x[: a.eval_limit], va_y[: a.eval_limit], te_x[: a.eval_limit], te_y[: a.eval_limit]

    perm = None
    if a.order == "permuted":
        perm = torch.from_numpy(np.random.default_rng(a.perm_seed).permutation(H * W))
    in_features = W if a.order == "rows" else 1

    def to_seq(u8):  # uint8 [n, H, W] tensor -> float32 [n, T, F]
        x = u8.to(torch.float32).div_(255.0)
        if a.order == "rows":
            return x
        x = x.reshape(x.shape[0], H * W)
        if perm is not None:
            x = x[:, perm]
        return x.unsqueeze(-1)

    tr_x, tr_y = torch.from_numpy(tr_x), torch.from_numpy(tr_y).long()
    va_x, va_y = torch.from_numpy(va_x), torch.from_numpy(va_y).long()
    te_x, te_y = torch.from_numpy(te_x), torch.from_numpy(te_y).long()

    model = Net(a.cell, in_features, a.hidden, a.layers, a.pool)
    n_params = sum(q.numel() for q in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    per_epoch = n_train // a.batch
    eval_every = a.eval_every or per_epoch
    log(f"data {a.data}: train {n_train}, valid {len(va_y)}, test {len(te_y)}, {H}x{W}; "
        f"{a.cell} {a.order} hidden {a.hidden} layers {a.layers} pool {a.pool}, {n_params} params, "
        f"{threads} threads, {per_epoch} steps/epoch, eval every {eval_every}")

    total = a.steps

    def lr_at(s):  # 1-based step
        peak, low = a.lr, 0.1 * a.lr
        if s <= a.warmup:
            return peak * s / a.warmup
        progress = (s - a.warmup) / max(1, total - a.warmup)
        return low + (peak - low) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    @torch.no_grad()
    def evaluate(xs, ys):
        model.eval()
        loss_sum, correct = 0.0, 0
        for i in range(0, len(ys), a.eval_batch):
            logits = model(to_seq(xs[i:i + a.eval_batch]))
            y = ys[i:i + a.eval_batch]
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
        model.train()
        return loss_sum / len(ys), correct / len(ys)

    gen = torch.Generator().manual_seed(a.seed)
    order, pos = torch.randperm(n_train, generator=gen), 0

    def next_batch():
        nonlocal order, pos
        if pos + a.batch > n_train:
            order, pos = torch.randperm(n_train, generator=gen), 0
        idx = order[pos:pos + a.batch]
        pos += a.batch
        return to_seq(tr_x[idx]), tr_y[idx]

    best = {"loss": float("inf"), "acc": None, "step": 0, "state": None}
    seconds_train, run_loss, run_n = 0.0, 0.0, 0

    def validate(step):
        vl, vacc = evaluate(va_x, va_y)
        tag = ""
        if vl < best["loss"]:
            best.update(loss=vl, acc=vacc, step=step, state=copy.deepcopy(model.state_dict()))
            tag = " *"
        log(f"step {step}/{total}  valid loss {vl:.4f} acc {vacc:.4f}  train {seconds_train:.1f}s{tag}")

    def train_step(s):
        nonlocal seconds_train, run_loss, run_n
        t0 = time.perf_counter()
        x, y = next_batch()
        for g in opt.param_groups:
            g["lr"] = lr_at(s)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        lv = loss.item()
        seconds_train += time.perf_counter() - t0
        run_loss, run_n = run_loss + lv, run_n + 1
        if s % a.log_every == 0:
            log(f"step {s}/{total}  loss {run_loss / run_n:.4f}  lr {lr_at(s):.2e}  "
                f"{seconds_train:.1f}s  {s * a.batch / seconds_train:.0f} ex/s")
            run_loss, run_n = 0.0, 0
        if s % eval_every == 0 and s != total:
            validate(s)

    model.train()
    s = 0
    if a.time_budget is not None:
        probe = 20
        if a.warmup < probe:
            log(f"note: warm-up {a.warmup} < {probe} probe steps; the probe steps past it run at the peak rate")
        total = 10 ** 9  # the probe steps lie in the warm-up, which does not depend on total
        for s in range(1, probe + 1):
            train_step(s)
        step_time = seconds_train / probe
        total = max(probe, int(a.time_budget / step_time))
        log(f"time budget {a.time_budget:.0f}s: {step_time * 1000:.1f} ms/step over {probe} steps -> {total} steps")
    for s in range(s + 1, total + 1):
        train_step(s)
    validate(total)

    model.load_state_dict(best["state"])
    test_loss, test_acc = evaluate(te_x, te_y)
    log(f"best valid loss {best['loss']:.4f} (step {best['step']}), test loss {test_loss:.4f} acc {test_acc:.4f}")
    out = {
        "cell": a.cell, "order": a.order, "hidden": a.hidden, "steps": total,
        "seconds_train": round(seconds_train, 3), "examples_per_s": round(total * a.batch / seconds_train, 1),
        "best_valid_loss": round(best["loss"], 5), "valid_accuracy": round(best["acc"], 5),
        "test_accuracy": round(test_acc, 5), "test_loss": round(test_loss, 5),
        "layers": a.layers, "pool": a.pool, "batch": a.batch, "lr": a.lr, "best_step": best["step"],
        "threads": threads, "time_budget": a.time_budget, "eval_limit": a.eval_limit,
    }
    if a.order == "permuted":
        out["perm_seed"] = a.perm_seed
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
