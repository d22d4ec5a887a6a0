#!/usr/bin/env python3
"""Golden fixtures for seqlab's minGRU, minLSTM and IndRNN cells and their residual blocks.

Oracles:
- minGRU and minLSTM: the PyPI package `mingru-pytorch` (lucidrains' minGRU-pytorch, 0.2.1), its own modules
  and forward passes. A seqlab cell of input I and width H is `minGRU(dim=I, expansion_factor=H/I,
  proj_out=False)`; a stack of seqlab residual blocks is the layers of its `minLM` (without conv), read
  before minLM's final norm.
- IndRNN: the paper's cell (Li et al. 2018), h_t = relu(W x_t + b + u * h_{t-1}), written here in PyTorch
  (no package on PyPI implements it as a module of its own), with an optional clamp of u.

Writes crates/cells/tests/fixtures/min/<case>.safetensors: the parameters under seqlab's names, the input,
the optional initial state, the outputs, the final state, the weights of a scalar loss
(sum(output * r_output) + sum(h_n * r_h)) and the gradients of that loss ("grad.<name>") with respect to
the input, the initial state and every parameter. Computed in float64, stored as float32.

minLSTM with an initial state runs step by step (the package's one-step path): its parallel path reads a
given state through g (`log_g(prev_hidden)`), unlike its own step path and the paper; seqlab follows the
step path, and its whole-sequence path equals it.

Set up once (Python 3.9+):
    python3 -m venv /work/venvs/torch
    /work/venvs/torch/bin/pip install torch safetensors numpy mingru-pytorch==0.2.1
Regenerate, from the repository root:
    /work/venvs/torch/bin/python tests/reference/make_min_fixtures.py
"""
import pathlib

import torch
from minGRU_pytorch.minGRU import minGRU
from minGRU_pytorch.minLM import minLM
from minGRU_pytorch.minLSTM import minLSTM
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "cells" / "tests" / "fixtures" / "min"


def save(name, tensors):
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    save_file(tensors, str(OUT / f"{name}.safetensors"))


def finish(name, x, out, h_n, params, h0=None):
    """The loss, its gradients, and the fixture."""
    r_output = torch.randn_like(out)
    r_h = torch.randn_like(h_n)
    loss = (out * r_output).sum() + (h_n * r_h).sum()
    loss.backward()
    tensors = {"input": x, "output": out, "h_n": h_n, "r_output": r_output, "r_h": r_h, "grad.input": x.grad}
    if h0 is not None:
        tensors["h0"] = h0
        tensors["grad.h0"] = h0.grad
    for pname, p in params.items():
        tensors[pname] = p
        tensors["grad." + pname] = p.grad
    save(name, tensors)


def min_cell(name, kind, batch, seq, input_size, hidden, with_init, seed):
    torch.manual_seed(seed)
    module = {"mingru": minGRU, "minlstm": minLSTM}[kind](
        input_size, expansion_factor=hidden / input_size, proj_out=False
    ).double()
    x = torch.randn(batch, seq, input_size, dtype=torch.float64, requires_grad=True)
    h0 = None
    if with_init:
        # States of these cells are positive (g > 0): a state they could have reached.
        h0 = (0.2 + torch.rand(batch, hidden, dtype=torch.float64)).requires_grad_()
    if with_init and kind == "minlstm":
        h, outs = h0.unsqueeze(1), []
        for t in range(seq):
            o, h = module(x[:, t : t + 1], prev_hidden=h, return_next_prev_hidden=True)
            outs.append(o)
        out = torch.cat(outs, dim=1)
    else:
        prev = h0.unsqueeze(1) if h0 is not None else None
        out = module(x, prev_hidden=prev)
    h_n = out[:, -1]
    weight = next(iter(module.state_dict().keys()))  # to_hidden_and_gate / to_hidden_and_f_i_gate
    params = {"0." + weight: dict(module.named_parameters())[weight]}
    finish(name, x, out, h_n, params, h0)


def indrnn(name, batch, seq, input_size, hidden, with_init, bound, seed):
    torch.manual_seed(seed)
    k = hidden ** -0.5
    w = ((torch.rand(hidden, input_size, dtype=torch.float64) * 2 - 1) * k).requires_grad_()
    b = ((torch.rand(hidden, dtype=torch.float64) * 2 - 1) * k).requires_grad_()
    u = (torch.rand(hidden, dtype=torch.float64) * 1.4 - 0.2).requires_grad_()  # some past a bound of 1
    x = torch.randn(batch, seq, input_size, dtype=torch.float64, requires_grad=True)
    h0 = (0.5 * torch.randn(batch, hidden, dtype=torch.float64)).relu().requires_grad_() if with_init else None
    h = h0 if h0 is not None else torch.zeros(batch, hidden, dtype=torch.float64)
    uu = u.clamp(-bound, bound) if bound is not None else u
    outs = []
    for t in range(seq):
        h = torch.relu(x[:, t] @ w.T + b + uu * h)
        outs.append(h)
    out = torch.stack(outs, dim=1)
    finish(name, x, out, h, {"weight_ih_l0": w, "bias_ih_l0": b, "weight_hh_l0": u}, h0)


def minlm_stack(name, use_lstm, batch, seq, dim, depth, seed):
    """The layers of minLM (no conv): x -> [x + cell(norm(x)); x + ff(norm(x))] per layer."""
    torch.manual_seed(seed)
    lm = minLM(num_tokens=7, dim=dim, depth=depth, ff_mult=4, expansion=1.5, use_lstm=use_lstm).double()
    x = torch.randn(batch, seq, dim, dtype=torch.float64, requires_grad=True)
    h = x
    for conv, norm, rnn, ff_norm, ff, dropout in lm.layers:
        assert conv is None and dropout is None
        out, _ = rnn(norm(h), None, return_next_prev_hidden=True)
        h = out + h
        h = ff(ff_norm(h)) + h
    out = h
    h_n = out[:, -1]
    params = {
        n[len("layers."):]: p for n, p in lm.named_parameters() if n.startswith("layers.")
    }
    finish(name, x, out, h_n, params)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    min_cell("mingru", "mingru", 3, 6, 4, 5, False, 1)
    min_cell("mingru_init", "mingru", 3, 6, 4, 5, True, 2)
    min_cell("minlstm", "minlstm", 3, 6, 4, 5, False, 3)
    min_cell("minlstm_init", "minlstm", 3, 6, 4, 5, True, 4)
    indrnn("indrnn", 3, 6, 4, 5, False, None, 5)
    indrnn("indrnn_init_bound", 3, 6, 4, 5, True, 1.0, 6)
    minlm_stack("minlm_mingru", False, 2, 5, 6, 2, 7)
    minlm_stack("minlm_minlstm", True, 2, 5, 6, 2, 8)
    print(f"wrote 8 fixtures to {OUT}")


if __name__ == "__main__":
    main()
