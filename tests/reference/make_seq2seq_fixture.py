#!/usr/bin/env python3
"""Golden fixtures for `seqlab_models::Seq2Seq`: a PyTorch twin of the translator, its logits and attention.

The twin below has seqlab's documented module tree (docs/translation.md):

    encoder.embedding (nn.Embedding)  encoder.rnn (nn.LSTM/GRU/RNN, batch_first, packed by source length)
    bridge.h (nn.Linear, tanh)        bridge.c (nn.Linear, LSTM only)
    decoder.embedding  decoder.rnn  decoder.attention.{key, query, v, combine}  decoder.head

and Luong's global attention after the decoder's recurrent step: scores (dot, general, additive), a softmax over
the valid source positions (padding gets -1e9 added), the context, and h~ = tanh(combine([context; h])). With
input feeding, h~ of the previous step is concatenated to the embedding of the next input token.

For each case it draws weights from a seeded generator, runs a padded batch (source lengths differ), and saves
the state_dict (the names the Rust model must load unchanged), the inputs (`input.*`) and PyTorch's outputs
(`expected.logits` (batch, tgt_len, vocab), `expected.attention` (batch, tgt_len, src_len)), the training loss
on `input.tgt_out` (`expected.loss`) and its gradient for every parameter (`grad.<name>`) to
crates/models/tests/fixtures/seq2seq_<case>.safetensors, and the configurations to seq2seq_cases.json.
The Rust test (crates/models/tests/seq2seq_golden.rs) must match the logits and attention to 1e-5, both with the
whole-sequence forward pass and step by step through StepModel, and the loss and every gradient.

Regenerate, from the repository root (torch and safetensors installed):
    /work/venvs/torch/bin/python tests/reference/make_seq2seq_fixture.py
"""
import json
import pathlib

import torch
from torch import nn
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates" / "models" / "tests" / "fixtures"

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class Attention(nn.Module):
    def __init__(self, kind, hidden, enc):
        super().__init__()
        self.kind = kind
        if kind in ("general", "additive"):
            self.key = nn.Linear(enc, hidden, bias=kind == "additive")
        if kind == "additive":
            self.query = nn.Linear(hidden, hidden, bias=False)
            self.v = nn.Linear(hidden, 1, bias=False)
        self.combine = nn.Linear(enc + hidden, hidden, bias=False)

    def keys(self, values):
        return self.key(values) if hasattr(self, "key") else values

    def forward(self, query, values, keys, mask):
        if self.kind == "additive":
            energy = torch.tanh(self.query(query).unsqueeze(2) + keys.unsqueeze(1))
            scores = self.v(energy).squeeze(-1)
        else:
            scores = query @ keys.transpose(1, 2)
        weights = torch.softmax(scores + mask, dim=-1)
        context = weights @ values
        return torch.tanh(self.combine(torch.cat([context, query], dim=-1))), weights


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embedding = nn.Embedding(c["source_vocab"], c["embed"])
        self.rnn = CELLS[c["cell"]](c["embed"], c["hidden"], c["layers"], batch_first=True,
                                    bidirectional=c["bidirectional"])


class Bridge(nn.Module):
    def __init__(self, c, enc):
        super().__init__()
        self.h = nn.Linear(enc, c["hidden"])
        if c["cell"] == "lstm":
            self.c = nn.Linear(enc, c["hidden"])


class Decoder(nn.Module):
    def __init__(self, c, enc):
        super().__init__()
        self.embedding = nn.Embedding(c["target_vocab"], c["embed"])
        feed = c["hidden"] if c["input_feeding"] else 0
        self.rnn = CELLS[c["cell"]](c["embed"] + feed, c["hidden"], c["layers"], batch_first=True)
        if c["attention"] != "none":
            self.attention = Attention(c["attention"], c["hidden"], enc)
        self.head = nn.Linear(c["hidden"], c["target_vocab"])


class Seq2Seq(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        dirs = 2 if c["bidirectional"] else 1
        enc = dirs * c["hidden"]
        self.encoder = Encoder(c)
        self.bridge = Bridge(c, enc)
        self.decoder = Decoder(c, enc)
        # Before the head, in training only (no parameters: the state_dict is unchanged).
        self.drop = nn.Dropout(c.get("dropout", 0.0))

    def forward(self, src, lengths, tgt_in):
        c = self.c
        batch, src_len = src.shape
        dirs = 2 if c["bidirectional"] else 1
        packed = nn.utils.rnn.pack_padded_sequence(self.encoder.embedding(src), lengths, batch_first=True,
                                                   enforce_sorted=False)
        out, state = self.encoder.rnn(packed)
        values, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src_len)

        def join(t):
            return t.view(c["layers"], dirs, batch, c["hidden"]).permute(0, 2, 1, 3).reshape(
                c["layers"], batch, dirs * c["hidden"])

        if c["cell"] == "lstm":
            h, cc = state
            state = (torch.tanh(self.bridge.h(join(h))), self.bridge.c(join(cc)))
        else:
            state = torch.tanh(self.bridge.h(join(state)))
        mask = torch.zeros(batch, 1, src_len)
        for b, n in enumerate(lengths.tolist()):
            mask[b, 0, n:] = -1e9
        dec = self.decoder
        emb = dec.embedding(tgt_in)
        if c["attention"] == "none":
            outs, _ = dec.rnn(emb, state)
            return dec.head(self.drop(outs)), None
        keys = dec.attention.keys(values)
        if not c["input_feeding"]:
            outs, _ = dec.rnn(emb, state)
            out, weights = dec.attention(outs, values, keys, mask)
            return dec.head(self.drop(out)), weights
        feed = torch.zeros(batch, c["hidden"])
        logits, weights = [], []
        for t in range(tgt_in.shape[1]):
            x = torch.cat([emb[:, t], feed], dim=-1).unsqueeze(1)
            y, state = dec.rnn(x, state)
            out, w = dec.attention(y, values, keys, mask)
            feed = out.squeeze(1)
            logits.append(dec.head(self.drop(out)))
            weights.append(w)
        return torch.cat(logits, 1), torch.cat(weights, 1)


BASE = dict(source_vocab=11, target_vocab=13, embed=6, hidden=8, layers=1, cell="lstm", bidirectional=False,
            attention="none", input_feeding=False, dropout=0.0)

CASES = {
    "none_gru": dict(cell="gru"),
    "general_lstm_bidirectional": dict(attention="general", bidirectional=True),
    "additive_lstm_input_feeding_2_layers": dict(attention="additive", input_feeding=True, layers=2),
    "dot_gru": dict(attention="dot", cell="gru"),
}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    configs = {}
    for i, (name, overrides) in enumerate(CASES.items()):
        config = {**BASE, **overrides}
        torch.manual_seed(100 + i)
        model = Seq2Seq(config)
        # Embeddings N(0, 1) are large for a tiny model; smaller ones keep the softmax away from one-hot.
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.7)
        src = torch.tensor([[4, 5, 6, 7, 8], [9, 4, 10, 0, 0], [6, 6, 0, 0, 0]])
        lengths = torch.tensor([5, 3, 2])
        tgt_in = torch.tensor([[2, 4, 5, 6], [2, 7, 8, 0], [2, 12, 0, 0]])
        tgt_out = torch.tensor([[4, 5, 6, 3], [7, 8, 3, 0], [12, 3, 0, 0]])
        logits, attention = model(src, lengths, tgt_in)
        # The training loss (mean cross-entropy over the non-padding targets) and its gradients.
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1),
                                           ignore_index=0)
        loss.backward()
        logits, attention = logits.detach(), None if attention is None else attention.detach()
        tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
        for k, p in model.named_parameters():
            tensors[f"grad.{k}"] = p.grad.contiguous()
        tensors["input.tgt_out"] = tgt_out
        tensors["expected.loss"] = loss.detach().reshape(1)
        tensors["input.src"] = src
        tensors["input.lengths"] = lengths
        tensors["input.tgt_in"] = tgt_in
        tensors["expected.logits"] = logits.contiguous()
        if attention is not None:
            tensors["expected.attention"] = attention.contiguous()
        save_file(tensors, str(OUT / f"seq2seq_{name}.safetensors"))
        configs[name] = config
        print(name, tuple(logits.shape), sorted(k for k in tensors if not k.startswith(("input", "expected"))))
    (OUT / "seq2seq_cases.json").write_text(json.dumps(configs, indent=1) + "\n")


if __name__ == "__main__":
    main()
