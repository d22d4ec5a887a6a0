#!/usr/bin/env python3
"""Golden fixtures for seqlab's Captioner: the same module in PyTorch, its logits in eval mode.

The PyTorch module has seqlab's documented names: `encoder.blocks[i].conv` (nn.Conv2d 3x3, padding 1, no
bias) and `encoder.blocks[i].bn` (nn.BatchNorm2d), each block conv -> bn -> relu -> max_pool2d(2), the last
map flattened; `project` (nn.Linear); `decoder.embedding`, `decoder.rnn` (batch_first), `decoder.head`.

- inject "init": h0 = project(features) split into the decoder's layers (layer-major, as h_n), c0 = 0;
- inject "first": the decoder reads project(features) from the zero state, then <bos> and the caption;
- attention (make_seq2seq_fixture.py's Luong `Attention`, as `decoder.attention`): the decoder's outputs
  attend over the last map's cells (batch, side*side, channels), row-major, each with its (row, column)
  coordinates in [-1, 1] (`torch.linspace`) appended when `coords` is set; the head reads the attentional
  output.

The decoder reads a padded batch through pack_padded_sequence; positions past a row's length give the head's
bias (zero outputs). Batch-norm running statistics are set to non-trivial values and the module is in eval
mode, so they are what the fixture pins. Each case is one safetensors file: the module's state_dict (minus
`num_batches_tracked`, which seqlab does not keep), `images` (batch, 3, S, S), `ids` (batch, seq) i64,
`lengths` (batch,) i64 and the `logits` (batch, seq, vocab); then, in training mode (batch norm on the
batch's statistics), `train_logits` and `grad.<name>`, the gradient of sum(train_logits * probe) for every
parameter (`probe`: cos(0.61 k) over the logits' elements, saved too). crates/models/tests/captioner_golden.rs must find the
logits to 1e-4 and the gradients to 1e-4. Files are < 20 KB.

Regenerate (from the repository root):
    /work/venvs/torch/bin/python tests/reference/make_captioner_fixture.py
"""
import pathlib

import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from make_seq2seq_fixture import Attention  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "models" / "tests" / "fixtures"

SIZE, VOCAB = 8, 9
# name, inject, cell, channels, embed, hidden, layers, attention, coords
CASES = [
    ("captioner_init_lstm_2layers", "init", "lstm", [4, 6], 5, 6, 2, "none", False),
    ("captioner_first_gru", "first", "gru", [3, 5], 6, 5, 1, "none", False),
    ("captioner_init_lstm_general_coords", "init", "lstm", [4, 6], 5, 6, 1, "general", True),
    ("captioner_first_gru_additive", "first", "gru", [3, 5], 6, 5, 2, "additive", False),
]
IDS = [[2, 4, 5, 6, 7], [2, 8, 4, 5, 6]]
LENGTHS = [5, 3]


class Block(torch.nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(cout)

    def forward(self, x):
        return torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)


class Encoder(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        cins = [3] + channels[:-1]
        self.blocks = torch.nn.ModuleList([Block(a, b) for a, b in zip(cins, channels)])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


class Decoder(torch.nn.Module):
    def __init__(self, cell, embed, hidden, layers, attention, memory_width):
        super().__init__()
        self.embedding = torch.nn.Embedding(VOCAB, embed)
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.rnn = rnn(embed, hidden, layers, batch_first=True)
        if attention != "none":
            self.attention = Attention(attention, hidden, memory_width)
        self.head = torch.nn.Linear(hidden, VOCAB)


class Captioner(torch.nn.Module):
    def __init__(self, inject, cell, channels, embed, hidden, layers, attention="none", coords=False):
        super().__init__()
        self.inject, self.cell, self.hidden, self.layers = inject, cell, hidden, layers
        self.coords = coords
        self.encoder = Encoder(channels)
        side = SIZE // 2 ** len(channels)
        features = channels[-1] * side * side
        self.project = torch.nn.Linear(features, layers * hidden if inject == "init" else embed)
        self.decoder = Decoder(cell, embed, hidden, layers, attention, channels[-1] + (2 if coords else 0))

    def memory(self, fmap):
        batch, _, h, w = fmap.shape
        cells = fmap.flatten(2).transpose(1, 2)
        if self.coords:
            rows, cols = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
            grid = torch.stack([rows, cols], -1).reshape(1, h * w, 2).expand(batch, -1, -1)
            cells = torch.cat([cells, grid], -1)
        return cells

    def forward(self, images, ids, lengths):
        fmap = self.encoder(images)
        p = self.project(fmap.flatten(1))
        batch = images.shape[0]
        rnn = self.decoder.rnn
        if self.inject == "init":
            h0 = p.reshape(batch, self.layers, self.hidden).transpose(0, 1).contiguous()
            state = (h0, torch.zeros_like(h0)) if self.cell == "lstm" else h0
        else:
            _, state = rnn(p.unsqueeze(1))
        xs = self.decoder.embedding(ids)
        packed = torch.nn.utils.rnn.pack_padded_sequence(xs, lengths, batch_first=True, enforce_sorted=False)
        out, _ = rnn(packed, state)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        if hasattr(self.decoder, "attention"):
            values = self.memory(fmap)
            att = self.decoder.attention
            out, _ = att(out, values, att.keys(values), torch.zeros(batch, 1, values.shape[1]))
        return self.decoder.head(out)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for k, (name, inject, cell, channels, embed, hidden, layers, attention, coords) in enumerate(CASES):
        torch.manual_seed(100 + k)
        model = Captioner(inject, cell, channels, embed, hidden, layers, attention, coords)
        with torch.no_grad():
            for i, block in enumerate(model.encoder.blocks):
                n = block.bn.num_features
                block.bn.running_mean.copy_(torch.linspace(-0.3, 0.4, n) + 0.1 * i)
                block.bn.running_var.copy_(torch.linspace(0.5, 2.0, n))
                block.bn.weight.copy_(torch.linspace(0.8, 1.3, n))
                block.bn.bias.copy_(torch.linspace(-0.2, 0.2, n))
        model.eval()
        images = torch.sin(torch.arange(2 * 3 * SIZE * SIZE, dtype=torch.float32) * 0.37).reshape(2, 3, SIZE, SIZE)
        ids = torch.tensor(IDS, dtype=torch.int64)
        lengths = torch.tensor(LENGTHS, dtype=torch.int64)
        with torch.no_grad():
            logits = model(images, ids, lengths)
        tensors = {k: v.clone().contiguous() for k, v in model.state_dict().items()
                   if not k.endswith("num_batches_tracked")}
        tensors.update(images=images, ids=ids, lengths=lengths, logits=logits.contiguous())
        # Training mode (batch norm on the batch's statistics): the gradient of sum(logits * probe) for every
        # parameter, where probe is a fixed pattern of the logits' shape.
        model.train()
        logits = model(images, ids, lengths)
        probe = torch.cos(torch.arange(logits.numel(), dtype=torch.float32) * 0.61).reshape(logits.shape)
        (logits * probe).sum().backward()
        tensors["train_logits"] = logits.detach().contiguous()
        tensors["probe"] = probe
        for key, param in model.named_parameters():
            tensors[f"grad.{key}"] = param.grad.contiguous()
        path = OUT / f"{name}.safetensors"
        save_file(tensors, str(path))
        print(f"{path.name}: logits {tuple(logits.shape)}, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
