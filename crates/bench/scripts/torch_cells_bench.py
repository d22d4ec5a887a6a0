#!/usr/bin/env python3
"""Training throughput of the new recurrent cells in PyTorch, beside seqlab-bench (same work, same CSV).

The work of ../../../../shared/bench/torch_rnn_bench.py (Embedding(96, H) -> recurrent stack -> Linear(H, 96)
-> cross-entropy -> Adam 1e-3, random tokens, batch 64 up to H=256 and 32 above, 100 steps of time), with
the cells as their reference packages implement them:

- mingru, minlstm: mingru-pytorch 0.2.1's minGRU / minLSTM (dim=H, expansion 1, so no to_out: seqlab's
  plain cell of the same width), stacked L times, each reading the previous one's outputs. The package runs
  its parallel log-space scan (Heinsen's) over the sequence: what its users get.
- indrnn: the paper's cell, h_t = relu(W x_t + b + u * h_{t-1}) (no package on PyPI has it as a module):
  the input projection of every step as one product, the element-wise recurrence as a Python loop over time
  (what a PyTorch user writes without a custom kernel).
- slstm, mlstm: the authors' package `xlstm` (2.0.6): an xLSTMBlockStack of L sLSTM blocks (the vanilla
  backend, the one that runs on a CPU: a Python loop over time) or L mLSTM blocks (its parallel form), width
  H, 4 heads, no final norm: seqlab's `--cell slstm` / `--cell mlstm` stacks of the same blocks.
- lstm, gru: nn.LSTM / nn.GRU, as the shared reference.

  python3 torch_cells_bench.py --cells mingru,minlstm,indrnn,lstm,gru --shapes 256-1,512-2 [--seq 100]
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from minGRU_pytorch.minGRU import minGRU
from minGRU_pytorch.minLSTM import minLSTM

VOCAB = 96
HEADER = "impl,rep,cell,H,L,batch,seq,input,mode,steps,tokens,seconds,tok_per_s,fwd_ms,bwd_ms,opt_ms"
WARMUP_STEPS = 2


class IndRNN(nn.Module):
    def __init__(self, input_size, hidden):
        super().__init__()
        k = hidden ** -0.5
        self.w = nn.Parameter(torch.empty(hidden, input_size).uniform_(-k, k))
        self.b = nn.Parameter(torch.empty(hidden).uniform_(-k, k))
        self.u = nn.Parameter(torch.empty(hidden).uniform_(0, 1))

    def forward(self, x):
        p = x @ self.w.T + self.b
        h = torch.zeros(x.shape[0], self.w.shape[0])
        outs = []
        for t in range(x.shape[1]):
            h = torch.relu(p[:, t] + self.u * h)
            outs.append(h)
        return torch.stack(outs, dim=1)


def xlstm_stack(cell, hidden, layers, seq):
    from xlstm import (FeedForwardConfig, mLSTMBlockConfig, mLSTMLayerConfig, sLSTMBlockConfig,
                       sLSTMLayerConfig, xLSTMBlockStack, xLSTMBlockStackConfig)
    mlstm = mLSTMBlockConfig(mlstm=mLSTMLayerConfig(num_heads=4, embedding_dim=hidden, context_length=seq))
    slstm = sLSTMBlockConfig(slstm=sLSTMLayerConfig(backend="vanilla", num_heads=4, embedding_dim=hidden),
                             feedforward=FeedForwardConfig(embedding_dim=hidden))
    return xLSTMBlockStack(xLSTMBlockStackConfig(
        mlstm_block=mlstm if cell == "mlstm" else None, slstm_block=slstm if cell == "slstm" else None,
        context_length=seq, num_blocks=layers, embedding_dim=hidden, add_post_blocks_norm=False,
        slstm_at="all" if cell == "slstm" else []))


class Stack(nn.Module):
    def __init__(self, cell, hidden, layers, seq):
        super().__init__()
        self.cell = cell
        if cell in ("slstm", "mlstm"):
            self.rnn = xlstm_stack(cell, hidden, layers, seq)
        elif cell in ("lstm", "gru"):
            cls = nn.LSTM if cell == "lstm" else nn.GRU
            self.rnn = cls(hidden, hidden, num_layers=layers, batch_first=True)
        else:
            make = {"mingru": lambda: minGRU(hidden), "minlstm": lambda: minLSTM(hidden),
                    "indrnn": lambda: IndRNN(hidden, hidden)}[cell]
            self.rnn = nn.ModuleList([make() for _ in range(layers)])

    def forward(self, x):
        if self.cell in ("lstm", "gru"):
            return self.rnn(x)[0]
        if self.cell in ("slstm", "mlstm"):
            return self.rnn(x)
        for layer in self.rnn:
            x = layer(x)
        return x


class CharModel(nn.Module):
    def __init__(self, cell, hidden, layers, seq):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, hidden)
        self.rnn = Stack(cell, hidden, layers, seq)
        self.fc = nn.Linear(hidden, VOCAB)

    def forward(self, x):
        return self.fc(self.rnn(self.emb(x)))


def train_bench(cell, H, L, B, T, rep, max_seconds):
    torch.manual_seed(1234)
    model = CharModel(cell, H, L, T)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    pool = [torch.randint(0, VOCAB, (B, T + 1)) for _ in range(4)]

    def one_step(i):
        data = pool[i % len(pool)]
        x, y = data[:, :-1], data[:, 1:]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = F.cross_entropy(out.reshape(-1, VOCAB), y.reshape(-1))
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        return (t1 - t0, t2 - t1, t3 - t2)

    for i in range(WARMUP_STEPS):
        one_step(i)
    fwd = bwd = optt = 0.0
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start <= max_seconds:
        a, b, c = one_step(n)
        fwd += a
        bwd += b
        optt += c
        n += 1
    elapsed = time.perf_counter() - start
    tokens = B * T * n
    print(f"torch,{rep},{cell},{H},{L},{B},{T},embed,train,{n},{tokens},{elapsed:.4f},{tokens / elapsed:.1f},"
          f"{1e3 * fwd / n:.3f},{1e3 * bwd / n:.3f},{1e3 * optt / n:.3f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rep", type=int, default=0)
    ap.add_argument("--cells", default="mingru,minlstm,indrnn,lstm,gru")
    ap.add_argument("--shapes", default="256-1,256-2,512-1,512-2")
    ap.add_argument("--seq", type=int, default=100)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--max-seconds", type=float, default=8.0)
    ap.add_argument("--header", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__} num_threads={torch.get_num_threads()}", flush=True)
    if args.header:
        print(HEADER, flush=True)
    for cell in args.cells.split(","):
        for shape in args.shapes.split(","):
            H, L = (int(v) for v in shape.split("-"))
            B = args.batch or (64 if H <= 256 else 32)
            train_bench(cell, H, L, B, args.seq, args.rep, args.max_seconds)


if __name__ == "__main__":
    main()
