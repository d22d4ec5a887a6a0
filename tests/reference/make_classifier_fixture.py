#!/usr/bin/env python3
"""Golden fixtures for seqlab's Classifier: the same module in PyTorch, its logits on padded rows.

The PyTorch module has seqlab's documented attribute names (`embedding`, `rnn`, `head`), reads a padded batch
through `pack_padded_sequence` (so each row stops at its length, the backward direction starting at each row's
last valid step), pools over valid steps only and applies the head:

- last: the last layer's `h_n` rows, forward then backward: `torch.cat([h_n[-2], h_n[-1]], 1)` when
  bidirectional, `h_n[-1]` otherwise;
- mean: the padded outputs (zeros past each length) summed over time, divided by the lengths;
- max: the padded outputs with -inf past each length, maximum over time.

Each case is one safetensors file holding the module's state_dict as it is, plus `ids` (batch, seq) i64,
`lengths` (batch,) i64 and the `logits` (batch, classes) PyTorch computes in eval mode, then the
cross-entropy `loss` on `labels` and its gradient for every parameter (`grad.<name>`). The Rust test
crates/models/tests/classifier_golden.rs builds seqlab's Classifier from the same file, unchanged, and must
find the logits to 1e-5 and the loss and gradients to 1e-5. Weights are drawn from a fixed seed; the files are < 10 KB each.

Regenerate (from the repository root, with a Python that has torch and safetensors):
    /work/venvs/torch/bin/python tests/reference/make_classifier_fixture.py
"""
import pathlib

import torch
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "models" / "tests" / "fixtures"

VOCAB, CLASSES = 13, 3
# name, cell, embed, hidden, layers, bidirectional, pool
CASES = [
    ("lstm_bi_2layers_last", "lstm", 5, 4, 2, True, "last"),
    ("gru_bi_mean", "gru", 6, 5, 1, True, "mean"),
    ("lstm_uni_max", "lstm", 5, 4, 1, False, "max"),
    ("rnn_bi_max", "rnn", 4, 6, 1, True, "max"),
    ("gru_uni_last", "gru", 5, 4, 1, False, "last"),
    ("lstm_bi_2layers_mean_onehot", "lstm", 0, 3, 2, True, "mean"),
]
# Mixed lengths: full, short, a single step, and the padding ids of the short rows set to real tokens, so a
# model that read past a row's length would give other logits.
IDS = [
    [4, 5, 6, 7, 8, 9, 10],
    [11, 4, 12, 7, 5, 6, 9],
    [12, 10, 11, 4, 5, 6, 7],
    [9, 8, 7, 6, 5, 4, 12],
    [6, 6, 4, 10, 11, 12, 5],
]
LENGTHS = [7, 3, 1, 5, 2]
LABELS = [0, 2, 1, 1, 0]


class Classifier(torch.nn.Module):
    def __init__(self, cell, embed, hidden, layers, bidirectional, pool):
        super().__init__()
        self.embed = embed
        if embed > 0:
            self.embedding = torch.nn.Embedding(VOCAB, embed)
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.rnn = rnn(embed or VOCAB, hidden, layers, batch_first=True, bidirectional=bidirectional)
        self.head = torch.nn.Linear(hidden * (2 if bidirectional else 1), CLASSES)
        self.bidirectional = bidirectional
        self.pool = pool

    def forward(self, ids, lengths):
        if self.embed > 0:
            xs = self.embedding(ids)
        else:
            xs = torch.nn.functional.one_hot(ids, VOCAB).float()
        packed = torch.nn.utils.rnn.pack_padded_sequence(xs, lengths, batch_first=True, enforce_sorted=False)
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
        return self.head(pooled)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor(IDS)
    lengths = torch.tensor(LENGTHS)
    for i, (name, cell, embed, hidden, layers, bidirectional, pool) in enumerate(CASES):
        torch.manual_seed(100 + i)
        model = Classifier(cell, embed, hidden, layers, bidirectional, pool).eval()
        with torch.no_grad():
            logits = model(ids, lengths)
        tensors = {k: v.float().contiguous() for k, v in model.state_dict().items()}
        tensors["ids"] = ids
        tensors["lengths"] = lengths
        tensors["logits"] = logits.contiguous()
        # The training loss on fixed labels and the gradient of every parameter (no dropout in the twin).
        labels = torch.tensor(LABELS)
        loss = torch.nn.functional.cross_entropy(model(ids, lengths), labels)
        loss.backward()
        tensors["labels"] = labels
        tensors["loss"] = loss.detach().reshape(1)
        for key, param in model.named_parameters():
            tensors[f"grad.{key}"] = param.grad.contiguous()
        path = OUT / f"classifier_{name}.safetensors"
        save_file(tensors, str(path))
        print(f"{path.name}: logits[0] = {[round(v, 4) for v in logits[0].tolist()]}")


if __name__ == "__main__":
    main()
