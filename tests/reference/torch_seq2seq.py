#!/usr/bin/env python3
"""PyTorch reference for the translation targets: the same architecture, data, tokenizers and budget as a
`seqlab translate train` run, trained in PyTorch, saved as a seqlab model directory.

It reads a seqlab translator directory (--like DIR) for everything that defines the run: its config.json (model
shape and training settings: data file, --max-words, --valid-fraction, --reverse, token limits, batch, lr, weight
decay, clipping, warm-up + cosine schedule, dropout, steps) and its two tokenizer.json files (loaded with Python's
`tokenizers`, which encodes exactly as seqlab does). It trains the PyTorch twin of seqlab's Seq2Seq
(make_seq2seq_fixture.py: same module tree, same equations) with torch.optim.AdamW for the same number of steps
of the same batch size, bucketed by source length, and writes --out as a seqlab model directory: the twin's
state_dict saved with safetensors unchanged, the same tokenizers and config. So both models are measured by the
very same command, `seqlab translate eval --model DIR [--beam 5]`: same decoding, same BLEU.

Run (after the seqlab run whose settings it copies), from the repository root, with 2 threads as seqlab:
    /work/venvs/torch/bin/python tests/reference/torch_seq2seq.py --like /tmp/bible/seqlab-general \
        --out /tmp/bible/torch-general --threads 2
    target/release/seqlab translate eval --model /tmp/bible/torch-general --json
"""
import argparse
import json
import math
import pathlib
import random
import shutil
import sys
import time

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from make_seq2seq_fixture import Seq2Seq  # noqa: E402

PAD, BOS, EOS = 0, 2, 3


def read_pairs(train):
    """seqlab's reader: source<TAB>target[<TAB>...], trimmed; malformed lines skipped; word filter; tail split."""
    pairs = []
    for line in pathlib.Path(train["data"]).read_text(encoding="utf-8-sig").splitlines():
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            continue
        src, tgt = fields[0].strip(), fields[1].strip()
        if train.get("reverse"):
            src, tgt = tgt, src
        limit = train.get("max_words")
        if limit is not None and (len(src.split()) > limit or len(tgt.split()) > limit):
            continue
        pairs.append((src, tgt))
    n = len(pairs)
    tail = round(n * train["valid_fraction"])
    if train["valid_fraction"] > 0 and n >= 2:
        tail = min(max(tail, 1), n - 1)
    return pairs[: n - tail], pairs[n - tail:]


def encode(pairs, source, target, train):
    out = []
    for src, tgt in pairs:
        s = source.encode(src, add_special_tokens=False).ids
        t = target.encode(tgt, add_special_tokens=False).ids
        if s and t and len(s) <= train["max_source_tokens"] and len(t) <= train["max_target_tokens"]:
            out.append((s, t))
    return out


def batch_of(items):
    src_len = max(len(s) for s, _ in items)
    tgt_len = 1 + max(len(t) for _, t in items)
    src = torch.full((len(items), src_len), PAD)
    tgt_in = torch.full((len(items), tgt_len), PAD)
    tgt_out = torch.full((len(items), tgt_len), PAD)
    for i, (s, t) in enumerate(items):
        src[i, : len(s)] = torch.tensor(s)
        tgt_in[i, : len(t) + 1] = torch.tensor([BOS] + t)
        tgt_out[i, : len(t) + 1] = torch.tensor(t + [EOS])
    lengths = torch.tensor([len(s) for s, _ in items])
    return src, lengths, tgt_in, tgt_out


def epoch_batches(data, batch, rng, pool=50):
    order = list(range(len(data)))
    rng.shuffle(order)
    batches = []
    for k in range(0, len(order), batch * pool):
        chunk = sorted(order[k: k + batch * pool], key=lambda i: len(data[i][0]))
        batches += [chunk[j: j + batch] for j in range(0, len(chunk), batch)]
    rng.shuffle(batches)
    return batches


M64 = (1 << 64) - 1


class SplitMix64:
    """seqlab_data's generator (crates/data/src/padded.rs), bit for bit."""

    def __init__(self, seed, stream):
        self.state = (seed ^ (stream * 0xD1B54A32D192ED03)) & M64
        self.next()

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def shuffle(self, items):
        for i in range(len(items) - 1, 0, -1):
            j = ((self.next() >> 32) * (i + 1)) >> 32
            items[i], items[j] = items[j], items[i]


def seqlab_batches(data, batch, seed, epoch):
    """seqlab_data::bucket_batches: the very batches, in the very order, of a seqlab run with this seed."""
    return epoch_batches(data, batch, SplitMix64(seed ^ 0x6261746368657321, epoch))


def seqlab_mask(shape, p, seed, step):
    """seqlab's dropout mask of training step `step` (seqlab_train's step seed, seqlab_models' SplitMix64 draws:
    two 32-bit draws per 64-bit number, kept when >= p * 2^32, kept values scaled by 1 / (1 - p) in f32)."""
    import numpy as np
    G = np.uint64(0x9E3779B97F4A7C15)

    def mix(z):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))
    with np.errstate(over="ignore"):
        start = mix(np.uint64(seed ^ 0xA0761D6478BD642F) + np.uint64(step) * G)
        n = int(np.prod(shape))
        z = mix(start + np.arange(1, (n + 1) // 2 + 1, dtype=np.uint64) * G)
    draws = np.stack([z & np.uint64(0xFFFFFFFF), z >> np.uint64(32)], axis=1).reshape(-1)[:n]
    threshold = np.uint64(int(float(np.float32(p)) * 4294967296.0))
    scale = np.float32(1.0) / (np.float32(1.0) - np.float32(p))
    return torch.from_numpy(np.where(draws >= threshold, scale, np.float32(0.0)).astype(np.float32).reshape(shape))


class SeqlabDropout(torch.nn.Module):
    """Dropout with seqlab's masks: set `.step` before each training step."""

    def __init__(self, p, seed):
        super().__init__()
        self.p, self.seed, self.step = p, seed, 0

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        return x * seqlab_mask(tuple(x.shape), self.p, self.seed, self.step)


def lr_at(step, total, warmup, peak, min_ratio=0.1):
    if warmup > 0 and step <= warmup:
        return peak * step / warmup
    progress = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
    low = peak * min_ratio
    return low + (peak - low) * 0.5 * (1 + math.cos(math.pi * progress))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--like", required=True, help="a seqlab translator directory whose run to reproduce")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, help="default: the seqlab run's steps")
    parser.add_argument("--init", help="a model.safetensors to start from instead of PyTorch's initialisation "
                        "(e.g. a seqlab directory trained for one step: the same initial weights on both sides)")
    parser.add_argument("--seqlab-order", action="store_true",
                        help="take seqlab's batches in seqlab's order (its SplitMix64 bucketing) instead of Python's "
                        "random; with --init and dropout 0 both runs see exactly the same inputs")
    parser.add_argument("--seqlab-dropout", action="store_true",
                        help="dropout with seqlab's very masks (its seeded SplitMix64 draws) instead of PyTorch's")
    parser.add_argument("--resume", help="a seqlab translator directory whose checkpoint (trainer/: weights, AdamW "
                        "moments, step and place in the data) to continue from; needs --seqlab-order")
    parser.add_argument("--eval-every", type=int, help="default: the seqlab run's")
    args = parser.parse_args()
    if args.resume and not args.seqlab_order:
        parser.error("--resume continues seqlab's batch order: add --seqlab-order")
    torch.set_num_threads(args.threads)
    like = pathlib.Path(args.like)
    config = json.loads((like / "config.json").read_text())
    model_cfg, train = config["model"], config["train"]
    steps = args.steps or train["steps"]
    eval_every = args.eval_every or train["eval_every"]
    source = Tokenizer.from_file(str(like / "tokenizer.source.json"))
    target = Tokenizer.from_file(str(like / "tokenizer.target.json"))
    train_pairs, valid_pairs = read_pairs(train)
    data = encode(train_pairs, source, target, train)
    valid = encode(valid_pairs, source, target, train)
    print(f"{len(data)} training pairs, {len(valid)} validation pairs, {steps} steps of {train['batch']}")

    torch.manual_seed(train["seed"])
    model = Seq2Seq(model_cfg)
    if args.init:
        from safetensors.torch import load_file
        model.load_state_dict(load_file(args.init), strict=True)
    if args.seqlab_dropout:
        model.drop = SeqlabDropout(model_cfg["dropout"], train["seed"])
    opt = torch.optim.AdamW(model.parameters(), lr=train["lr"], weight_decay=train["weight_decay"],
                            betas=(0.9, 0.999), eps=1e-8)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=PAD)
    rng = random.Random(train["seed"])
    batches, epoch, step = [], 0, 0
    if args.resume:
        from safetensors.torch import load_file
        trainer = pathlib.Path(args.resume) / "trainer"
        state = json.loads((trainer / "state.json").read_text())
        model.load_state_dict(load_file(str(trainer / "model.safetensors")), strict=True)
        moments = load_file(str(trainer / "optimizer.safetensors"))
        for name, param in model.named_parameters():
            opt.state[param] = {"step": torch.tensor(float(state["step"] - state.get("skipped", 0))),
                                "exp_avg": moments[f"m.{name}"], "exp_avg_sq": moments[f"v.{name}"]}
        step, epoch = state["step"], state["epoch"] + 1
        batches = seqlab_batches(data, train["batch"], train["seed"], state["epoch"])[::-1]
        batches = batches[: len(batches) - state["batch_in_epoch"]]
        print(f"resumed at step {step} (epoch {state['epoch']}, batch {state['batch_in_epoch']})")
    window_loss, window_tokens = 0.0, 0  # the training loss since the last evaluation, per token (as seqlab's)
    started = time.time()
    while step < steps:
        if not batches:
            if args.seqlab_order:
                batches = seqlab_batches(data, train["batch"], train["seed"], epoch)[::-1]
            else:
                batches = epoch_batches(data, train["batch"], rng)
            epoch += 1
        src, lengths, tgt_in, tgt_out = batch_of([data[i] for i in batches.pop()])
        step += 1
        if args.seqlab_dropout:
            model.drop.step = step
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, train["warmup"], train["lr"])
        model.train()
        logits, _ = model(src, lengths, tgt_in)
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1))
        n_tokens = int((tgt_out != PAD).sum())
        window_loss += loss.item() * n_tokens
        window_tokens += n_tokens
        opt.zero_grad()
        loss.backward()
        if train["clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train["clip"])
        opt.step()
        if step % eval_every == 0 or step == steps:
            model.eval()
            total, count = 0.0, 0
            with torch.no_grad():
                for k in range(0, len(valid), train["batch"]):
                    src, lengths, tgt_in, tgt_out = batch_of(valid[k: k + train["batch"]])
                    logits, _ = model(src, lengths, tgt_in)
                    n = int((tgt_out != PAD).sum())
                    total += float(loss_fn(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1))) * n
                    count += n
            print(f"step {step} (epoch {epoch}): train loss {window_loss / window_tokens:.4f}, "
                  f"valid loss {total / count:.4f}, {time.time() - started:.0f} s", flush=True)
            window_loss, window_tokens = 0.0, 0
    print(f"trained {steps} steps in {time.time() - started:.1f} s")

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    for name in ("tokenizer.source.json", "tokenizer.target.json"):
        shutil.copy(like / name, out / name)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    print(f"wrote {out}: evaluate with  seqlab translate eval --model {out} [--beam 5]")


if __name__ == "__main__":
    main()
