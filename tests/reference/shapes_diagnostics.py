#!/usr/bin/env python3
"""Diagnostics of the shapes captioning target (docs/captioning.md, "Why, found later").

Reads a `seqlab data shapes` set (default /tmp/cap2/train: `seqlab data shapes --out /tmp/cap2/train --count
3000 --seed 1`) and runs one of:

- `probe`: the captioner's CNN encoder (blocks 16,32,32 with batch norm, 32 pixels) trained in PyTorch to
  classify the shape named first in each image's first caption; prints held-out accuracy;
- `twin`: the PyTorch twin of seqlab's captioner (tests/reference/make_captioner_fixture.py's module, inject
  init, LSTM 128, embedding 32) trained on the captions; prints the validation loss (nats/word);
- `twin-attention`: the same with Luong attention (seqlab's `general` Attention, from make_seq2seq_fixture.py)
  from the decoder's outputs over the 4x4 map of the last block.

    /work/venvs/torch/bin/python tests/reference/shapes_diagnostics.py twin --steps 2000
"""
import argparse
import csv
import random
import struct
import sys
import zlib
import pathlib

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import make_captioner_fixture as F  # noqa: E402
import make_seq2seq_fixture as S2  # noqa: E402

def read_png(path):
    data = open(path, 'rb').read(); pos = 8; chunks = []; w = h = 0
    while pos < len(data):
        n, = struct.unpack('>I', data[pos:pos+4]); t = data[pos+4:pos+8]; body = data[pos+8:pos+8+n]; pos += 12 + n
        if t == b'IHDR': w, h = struct.unpack('>II', body[:8])
        if t == b'IDAT': chunks.append(body)
    raw = zlib.decompress(b''.join(chunks)); stride = w * 3; out = np.zeros((h, stride), np.uint8); prev = np.zeros(stride, np.int32)
    for y in range(h):
        f = raw[y*(stride+1)]; line = np.frombuffer(raw[y*(stride+1)+1:(y+1)*(stride+1)], np.uint8).astype(np.int32)
        cur = np.zeros(stride, np.int32)
        for x in range(stride):
            a = cur[x-3] if x >= 3 else 0; b = prev[x]; c = prev[x-3] if x >= 3 else 0
            if f == 0: v = line[x]
            elif f == 1: v = line[x] + a
            elif f == 2: v = line[x] + b
            elif f == 3: v = line[x] + (a + b) // 2
            else:
                p = a + b - c; pa, pb, pc = abs(p-a), abs(p-b), abs(p-c)
                v = line[x] + (a if pa <= pb and pa <= pc else (b if pb <= pc else c))
            cur[x] = v & 255
        out[y] = cur; prev = cur
    return out.reshape(h, w, 3)


def load(path, size):
    img = torch.tensor(read_png(path)).permute(2, 0, 1).float() / 255
    img = torch.nn.functional.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True)[0]
    return (img - 0.5) / 0.5


def probe(data, size, steps):
    rows = list(csv.DictReader(open(data / "captions.txt")))
    first = {}
    for r in rows:
        first.setdefault(r["image"], r["caption"])
    names = sorted(first)[:2000]
    X = torch.stack([load(data / "images" / n, size) for n in names])
    Y = torch.tensor([["circle", "square", "triangle"].index(first[n].split()[2]) for n in names])

    def block(i, o):
        return torch.nn.Sequential(torch.nn.Conv2d(i, o, 3, padding=1, bias=False), torch.nn.BatchNorm2d(o),
                                   torch.nn.ReLU(), torch.nn.MaxPool2d(2))
    net = torch.nn.Sequential(block(3, 16), block(16, 32), block(32, 32), torch.nn.Flatten(),
                              torch.nn.Linear(32 * (size // 8) ** 2, 3))
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    g = torch.Generator().manual_seed(0)
    for step in range(1, steps + 1):
        idx = torch.randint(0, 1700, (32,), generator=g)
        loss = torch.nn.functional.cross_entropy(net(X[idx]), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0:
            net.eval()
            with torch.no_grad():
                acc = (net(X[1700:]).argmax(1) == Y[1700:]).float().mean().item()
            net.train()
            print(f"step {step} loss {loss.item():.3f} held-out shape accuracy {acc:.3f}", flush=True)


class AttCaptioner(F.Captioner):
    def __init__(self):
        super().__init__("init", "lstm", [16, 32, 32], 32, 128, 1)
        self.attention = S2.Attention("general", 128, 32)

    def forward(self, images, ids, lengths):
        fmap = images
        for block in self.encoder.blocks:
            fmap = block(fmap)
        batch = images.shape[0]
        values = fmap.flatten(2).transpose(1, 2)
        h0 = self.project(fmap.flatten(1)).reshape(batch, 1, 128).transpose(0, 1).contiguous()
        packed = torch.nn.utils.rnn.pack_padded_sequence(self.decoder.embedding(ids), lengths, batch_first=True,
                                                         enforce_sorted=False)
        out, _ = self.decoder.rnn(packed, (h0, torch.zeros_like(h0)))
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        out, _ = self.attention(out, values, self.attention.keys(values), torch.zeros(batch, 1, values.shape[1]))
        return self.decoder.head(out)


def twin(data, size, steps, attention):
    torch.manual_seed(0)
    random.seed(0)
    F.SIZE = size
    rows = list(csv.DictReader(open(data / "captions.txt")))
    images = sorted({r["image"] for r in rows})
    random.shuffle(images)
    valid_images = set(images[:300])
    words = sorted({w for r in rows for w in r["caption"].lower().split()})
    vocab = ["<pad>", "<unk>", "<bos>", "<eos>"] + words
    F.VOCAB = len(vocab)
    idx = {w: i for i, w in enumerate(vocab)}
    pix = {n: load(data / "images" / n, size) for n in images}

    def enc(c):
        return [idx[w] for w in c.lower().split()]
    train = [(r["image"], enc(r["caption"])) for r in rows if r["image"] not in valid_images]
    valid = [(r["image"], enc(r["caption"])) for r in rows if r["image"] in valid_images]

    def batch(items):
        T = 1 + max(len(c) for _, c in items)
        ids = torch.zeros(len(items), T, dtype=torch.long)
        out = torch.zeros(len(items), T, dtype=torch.long)
        for b, (_, c) in enumerate(items):
            ids[b, :len(c) + 1] = torch.tensor([2] + c)
            out[b, :len(c) + 1] = torch.tensor(c + [3])
        lengths = torch.tensor([len(c) + 1 for _, c in items])
        return torch.stack([pix[n] for n, _ in items]), ids, lengths, out
    model = AttCaptioner() if attention else F.Captioner("init", "lstm", [16, 32, 32], 32, 128, 1)
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=0.01)
    for step in range(1, steps + 1):
        x, ids, lengths, out = batch(random.sample(train, 32))
        model.train()
        logits = model(x, ids, lengths)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, F.VOCAB), out.reshape(-1), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if step % 250 == 0:
            model.eval()
            total = count = 0
            with torch.no_grad():
                for k in range(0, len(valid), 64):
                    x, ids, lengths, out = batch(valid[k:k + 64])
                    lo = model(x, ids, lengths)
                    m = int((out != 0).sum())
                    total += float(torch.nn.functional.cross_entropy(lo.reshape(-1, F.VOCAB), out.reshape(-1),
                                                                     ignore_index=0)) * m
                    count += m
            print(f"step {step} train {loss.item():.3f} valid {total / count:.4f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["probe", "twin", "twin-attention"])
    parser.add_argument("--data", default="/tmp/cap2/train", type=pathlib.Path)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.mode == "probe":
        probe(args.data, args.size, args.steps)
    else:
        twin(args.data, args.size, args.steps, args.mode == "twin-attention")


if __name__ == "__main__":
    main()
