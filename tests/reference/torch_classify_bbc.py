#!/usr/bin/env python3
"""The PyTorch twin of `seqlab classify train` for the side-by-side measurement of docs/classification.md.

Same data (an AG News-layout CSV, text = title + " " + description), the same tokenizer (the tokenizer.json
seqlab wrote, loaded with Hugging Face `tokenizers`), the same model (embedding -> bidirectional GRU/LSTM over
packed sequences -> max/mean/last pooling -> dropout -> linear head, PyTorch's default initialisation), the
same optimisation (AdamW lr 2e-3, weight decay 0.01, 50 warm-up steps then cosine to 10%, gradient clipping 5,
batch 32, length-bucketed shuffled batches), the same number of epochs, 2 threads. Prints the wall time and the
test accuracy and macro-F1 of the final weights.

    /work/venvs/torch/bin/python tests/reference/torch_classify_bbc.py \
        --train ../shared/data/classification/bbc-news-train.csv \
        --test ../shared/data/classification/bbc-news-test.csv --tokenizer runs/bbc/tokenizer.json --epochs 10
"""
import argparse
import csv
import math
import random
import time

import torch
from tokenizers import Tokenizer


def read(path):
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for record in csv.reader(f):
            if not record or not record[0].strip().isdigit():
                continue
            title, description = record[1].strip(), record[2].strip()
            text = f"{title} {description}" if title and description else title + description
            rows.append((int(record[0]) - 1, text))
    return rows


class Classifier(torch.nn.Module):
    def __init__(self, vocab, classes, embed, hidden, layers, cell, bidirectional, pool, dropout, embed_dropout=0.0):
        super().__init__()
        self.embed_dropout = torch.nn.Dropout(embed_dropout)
        self.embedding = torch.nn.Embedding(vocab, embed)
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.rnn = rnn(embed, hidden, layers, batch_first=True, bidirectional=bidirectional,
                       dropout=dropout if layers > 1 else 0.0)
        self.head = torch.nn.Linear(hidden * (2 if bidirectional else 1), classes)
        self.dropout = torch.nn.Dropout(dropout)
        self.bidirectional, self.pool = bidirectional, pool

    def forward(self, ids, lengths):
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            self.embed_dropout(self.embedding(ids)), lengths, batch_first=True, enforce_sorted=False)
        out, h_n = self.rnn(packed)
        if isinstance(h_n, tuple):
            h_n = h_n[0]
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        if self.pool == "last":
            pooled = torch.cat([h_n[-2], h_n[-1]], 1) if self.bidirectional else h_n[-1]
        elif self.pool == "mean":
            pooled = out.sum(1) / lengths.unsqueeze(1).float()
        else:
            valid = torch.arange(ids.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
            pooled = out.masked_fill(~valid.unsqueeze(2), float("-inf")).max(1).values
        return self.head(self.dropout(pooled))


def batches(lengths, batch, rng, pool=50):
    order = list(range(len(lengths)))
    rng.shuffle(order)
    out = []
    for start in range(0, len(order), batch * pool):
        chunk = sorted(order[start:start + batch * pool], key=lambda i: lengths[i])
        out.extend(chunk[i:i + batch] for i in range(0, len(chunk), batch))
    rng.shuffle(out)
    return out


def pad(seqs, labels, idx):
    lengths = torch.tensor([len(seqs[i]) for i in idx])
    ids = torch.zeros(len(idx), int(lengths.max()), dtype=torch.long)
    for r, i in enumerate(idx):
        ids[r, : len(seqs[i])] = torch.tensor(seqs[i])
    return ids, lengths, torch.tensor([labels[i] for i in idx])


def evaluate(model, seqs, labels, classes):
    model.eval()
    confusion = [[0] * classes for _ in range(classes)]
    with torch.no_grad():
        for start in range(0, len(seqs), 64):
            idx = list(range(start, min(start + 64, len(seqs))))
            ids, lengths, y = pad(seqs, labels, idx)
            for t, p in zip(y.tolist(), model(ids, lengths).argmax(1).tolist()):
                confusion[t][p] += 1
    model.train()
    correct = sum(confusion[c][c] for c in range(classes))
    f1s = []
    for c in range(classes):
        tp, pred, true = confusion[c][c], sum(r[c] for r in confusion), sum(confusion[c])
        p, r = (tp / pred if pred else 0.0), (tp / true if true else 0.0)
        f1s.append(2 * p * r / (p + r) if p + r else 0.0)
    return correct / len(seqs), sum(f1s) / classes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--embed", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--cell", default="gru")
    ap.add_argument("--pool", default="max")
    ap.add_argument("--unidirectional", action="store_true")
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--embed-dropout", type=float, default=0.0)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-minutes", type=float, default=None, help="stop after this much training time")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    tokenizer = Tokenizer.from_file(args.tokenizer)
    train, test = read(args.train), read(args.test)
    classes = max(label for label, _ in train) + 1
    encode = lambda rows: [tokenizer.encode(text, add_special_tokens=False).ids for _, text in rows]
    train_seqs, test_seqs = encode(train), encode(test)
    train_labels, test_labels = [l for l, _ in train], [l for l, _ in test]

    model = Classifier(tokenizer.get_vocab_size(), classes, args.embed, args.hidden, args.layers, args.cell,
                       not args.unidirectional, args.pool, args.dropout, args.embed_dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    per_epoch = math.ceil(len(train_seqs) / args.batch)
    total = per_epoch * args.epochs

    def lr_at(step):  # seqlab's schedule: linear warm-up, then cosine down to 10% at the last step
        if step <= args.warmup:
            return args.lr * step / max(args.warmup, 1)
        t = (step - args.warmup) / max(total - args.warmup, 1)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    lengths = [len(s) for s in train_seqs]
    step, started = 0, time.time()
    stop = False
    for epoch in range(args.epochs):
        if stop:
            break
        for idx in batches(lengths, args.batch, rng):
            if args.max_minutes is not None and time.time() - started > args.max_minutes * 60:
                print(f"stopped at --max-minutes {args.max_minutes} in epoch {epoch + 1}", flush=True)
                stop = True
                break
            step += 1
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            ids, lens, y = pad(train_seqs, train_labels, idx)
            loss = torch.nn.functional.cross_entropy(model(ids, lens), y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        if stop:
            break
        print(f"epoch {epoch + 1}: step {step}, last loss {loss.item():.4f}, {time.time() - started:.1f} s",
              flush=True)
    train_time = time.time() - started
    accuracy, macro_f1 = evaluate(model, test_seqs, test_labels, classes)
    print(f"PyTorch {torch.__version__}, {args.threads} threads: {step} steps ({step / per_epoch:.1f} epochs) "
          f"in {train_time:.1f} s; "
          f"test accuracy {accuracy:.4f}, macro-F1 {macro_f1:.4f} ({len(test_seqs)} examples)")


if __name__ == "__main__":
    main()
