#!/usr/bin/env python3
"""Golden fixtures for seqlab-cells: PyTorch's nn.RNN / nn.LSTM / nn.GRU as the oracle.

Writes crates/cells/tests/fixtures/<case>.safetensors and cases.json. Each case holds the module's weights under
PyTorch's own names, the input, optional lengths and initial state, the outputs and final state, the weights of a
scalar loss (loss = sum(output*r_output) + sum(h_n*r_h) + sum(c_n*r_c)) and the gradients of that loss with
respect to the input, the initial state and every weight ("grad.<name>").

Values are computed in float64 and stored as float32, so the fixtures carry PyTorch's exact result and the Rust
tests measure only seqlab's own f32 rounding.

Set up once (any Python 3.9+), from the repository root:
    python3 -m venv tests/reference/.venv
    tests/reference/.venv/bin/pip install torch safetensors numpy
Regenerate:
    tests/reference/.venv/bin/python tests/reference/make_cells_fixtures.py
"""
import json
import pathlib

import torch
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "cells" / "tests" / "fixtures"

MODULES = {
    "rnn": lambda **kw: torch.nn.RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: torch.nn.RNN(nonlinearity="relu", **kw),
    "lstm": lambda **kw: torch.nn.LSTM(**kw),
    "gru": lambda **kw: torch.nn.GRU(**kw),
}


def make_case(name, cell, layers, bidirectional, lengths, with_init, batch, seq, input_size, hidden, bias, seed):
    torch.manual_seed(seed)
    module = MODULES[cell](
        input_size=input_size,
        hidden_size=hidden,
        num_layers=layers,
        bidirectional=bidirectional,
        bias=bias,
        batch_first=True,
    ).double()
    dirs = 2 if bidirectional else 1
    x = torch.randn(batch, seq, input_size, dtype=torch.float64, requires_grad=True)
    init = None
    h0 = c0 = None
    if with_init:
        h0 = (0.5 * torch.randn(layers * dirs, batch, hidden, dtype=torch.float64)).requires_grad_()
        if cell == "lstm":
            c0 = (0.5 * torch.randn(layers * dirs, batch, hidden, dtype=torch.float64)).requires_grad_()
            init = (h0, c0)
        else:
            init = h0

    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.tensor(lengths), batch_first=True, enforce_sorted=False
        )
        out, state = module(packed, init)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=seq)
    else:
        out, state = module(x, init)
    h_n, c_n = (state if cell == "lstm" else (state, None))

    r_output = torch.randn_like(out)
    r_h = torch.randn_like(h_n)
    loss = (out * r_output).sum() + (h_n * r_h).sum()
    tensors = {"r_output": r_output, "r_h": r_h}
    if c_n is not None:
        r_c = torch.randn_like(c_n)
        loss = loss + (c_n * r_c).sum()
        tensors["r_c"] = r_c
    loss.backward()

    tensors.update({"input": x, "output": out, "h_n": h_n})
    if c_n is not None:
        tensors["c_n"] = c_n
    tensors["grad.input"] = x.grad
    if h0 is not None:
        tensors["h0"] = h0
        tensors["grad.h0"] = h0.grad
    if c0 is not None:
        tensors["c0"] = c0
        tensors["grad.c0"] = c0.grad
    for pname, p in module.named_parameters():
        tensors[pname] = p
        tensors["grad." + pname] = p.grad
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    if lengths is not None:
        tensors["lengths"] = torch.tensor(lengths, dtype=torch.int64)
    save_file(tensors, str(OUT / f"{name}.safetensors"))
    return {
        "name": name,
        "cell": cell,
        "num_layers": layers,
        "bidirectional": bidirectional,
        "input_size": input_size,
        "hidden_size": hidden,
        "bias": bias,
        "lengths": lengths,
        "init": with_init,
    }


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    cases = []
    seed = 0
    mixed = [5, 2, 4]  # batch 3, seq 5: one full row, two shorter ones, unsorted
    for cell in MODULES:
        for layers in (1, 2):
            for bidirectional in (False, True):
                for lengths in (None, mixed):
                    seed += 1
                    name = f"{cell}_l{layers}_{'bi' if bidirectional else 'uni'}_{'len' if lengths else 'full'}"
                    cases.append(make_case(name, cell, layers, bidirectional, lengths, False, 3, 5, 4, 6, True, seed))
    # A given initial state, with and without lengths, and a stack without biases.
    for cell in MODULES:
        seed += 1
        cases.append(make_case(f"{cell}_l2_bi_len_init", cell, 2, True, [3, 6, 1, 4], True, 4, 6, 3, 5, True, seed))
        seed += 1
        cases.append(make_case(f"{cell}_l1_uni_full_init", cell, 1, False, None, True, 3, 5, 4, 6, True, seed))
        seed += 1
        cases.append(make_case(f"{cell}_l2_uni_full_nobias", cell, 2, False, None, False, 3, 5, 4, 6, False, seed))
    (OUT / "cases.json").write_text(json.dumps({"torch": torch.__version__, "cases": cases}, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
