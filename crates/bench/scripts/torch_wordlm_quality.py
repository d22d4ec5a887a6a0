#!/usr/bin/env python3
"""Word-level twin of ../shared/bench/torch_charlm_quality.py: a PyTorch LSTM language model over the tokens of
a seqlab tokenizer.json, trained for a wall-clock budget on the same split seqlab uses (the last 10% of the
text, cut at the start of a line; CRLF as \\n), printing validation loss and perplexity every 30 s and FINAL.

Same model and recipe as the char reference: embedding 64 → LSTM(HIDDEN, LAYERS) → dropout 0.2 → linear,
batch 64 × 100 contiguous stateful rows, Adam 2e-3, clip 5. The tokenizer comes from a seqlab run
(`seqlab lm train --tokenizer word --min-freq 2 ... --out DIR` writes DIR/tokenizer.json), so both sides see the
same vocabulary and the same <unk>s.

    python3 -m venv .venv && .venv/bin/pip install torch tokenizers
    .venv/bin/python torch_wordlm_quality.py FILE TOKENIZER_JSON SECONDS HIDDEN LAYERS
"""
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from tokenizers import Tokenizer

torch.set_num_threads(2)
torch.manual_seed(0)
path, tok_path, budget, H, L = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
raw = open(path, encoding="utf-8-sig").read().replace("\r\n", "\n").encode("utf-8")
cut = int(len(raw) * 0.9)
nl = raw.find(b"\n", cut)
cut = nl + 1 if nl >= 0 else cut
train_text, valid_text = raw[:cut].decode("utf-8"), raw[cut:].decode("utf-8")
tok = Tokenizer.from_file(tok_path)
V = tok.get_vocab_size()
tr = torch.tensor(tok.encode(train_text, add_special_tokens=False).ids)
va = torch.tensor(tok.encode(valid_text, add_special_tokens=False).ids)
B, T, E = 64, 100, 64


class M(nn.Module):
    def __init__(s):
        super().__init__()
        s.emb = nn.Embedding(V, E)
        s.rnn = nn.LSTM(E, H, L, batch_first=True, dropout=0.2 if L > 1 else 0)
        s.drop = nn.Dropout(0.2)
        s.head = nn.Linear(H, V)

    def forward(s, x, st=None):
        y, st = s.rnn(s.emb(x), st)
        return s.head(s.drop(y)), st


m = M()
opt = torch.optim.Adam(m.parameters(), 2e-3)
nb = (len(tr) - 1) // B
X = tr[: nb * B].view(B, nb)
Y = tr[1: nb * B + 1].view(B, nb)


def evaluate():
    m.eval()
    tot, cnt, st = 0.0, 0, None
    with torch.no_grad():
        x, y = va[:-1].view(1, -1), va[1:].view(1, -1)
        for i in range(0, x.shape[1], 1000):
            out, st = m(x[:, i:i + 1000], st)
            tot += F.cross_entropy(out.reshape(-1, V), y[:, i:i + 1000].reshape(-1), reduction="sum").item()
            cnt += y[:, i:i + 1000].numel()
    m.train()
    return tot / cnt


t0 = time.time()
st, step, pos, last, best = None, 0, 0, t0, 99.0
while time.time() - t0 < budget:
    if pos + T > nb:
        pos, st = 0, None
    x, y = X[:, pos:pos + T], Y[:, pos:pos + T]
    pos += T
    if st is not None:
        st = tuple(s.detach() for s in st)
    out, st = m(x, st)
    loss = F.cross_entropy(out.reshape(-1, V), y.reshape(-1))
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(m.parameters(), 5.0)
    opt.step()
    step += 1
    if time.time() - last > 30:
        v = evaluate()
        best = min(best, v)
        last = time.time()
        print(f"t={time.time() - t0:.0f}s step={step} train={loss.item():.3f} val={v:.3f} ppl={math.exp(v):.1f}", flush=True)
v = evaluate()
best = min(best, v)
print(f"FINAL H={H} L={L} steps={step} val={v:.3f} best={best:.3f} nats ppl={math.exp(best):.1f} V={V}", flush=True)
