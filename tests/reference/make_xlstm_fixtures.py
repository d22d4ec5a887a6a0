#!/usr/bin/env python3
"""Golden fixtures for seqlab's xLSTM blocks (sLSTM, mLSTM, and a mixed stack).

Oracle: the PyPI package `xlstm` (NX-AI, the paper's authors; 2.0.6), its own modules and forward passes,
on the CPU: `sLSTMBlock` with the vanilla (pure PyTorch) sLSTM backend (its default CUDA backend cannot run
on a CPU), `mLSTMBlock` (its parallel_stabilized_simple backend), and an `xLSTMBlockStack` of blocks
[m, s, m] without its final norm (seqlab's stack ends at its last block; the model's head follows).

Every parameter is drawn at random (scale 0.3 around the package's initial values) so that no zero
initialisation (the sLSTM's recurrent kernel, the norms' offsets, the mLSTM gate weights) hides a term.
Everything runs in float64 and is stored in float64: the input, the outputs, the weights of a scalar loss
sum(output * r_output), its gradients ("grad.<name>") with respect to the input and every parameter, the
parameters under seqlab's names (the package's, with `blocks.{i}.` written `{i}.`, or `0.` for a lone block).

Set up once (Python 3.9+):
    python3 -m venv /work/venvs/torch
    /work/venvs/torch/bin/pip install torch safetensors numpy xlstm==2.0.6
Regenerate, from the repository root:
    /work/venvs/torch/bin/python tests/reference/make_xlstm_fixtures.py
"""
import pathlib

import torch
from safetensors.torch import save_file
from xlstm import (
    FeedForwardConfig,
    mLSTMBlockConfig,
    mLSTMLayerConfig,
    sLSTMBlockConfig,
    sLSTMLayerConfig,
    xLSTMBlockStack,
    xLSTMBlockStackConfig,
)
from xlstm.blocks.mlstm.block import mLSTMBlock
from xlstm.blocks.slstm.block import sLSTMBlock

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "cells" / "tests" / "fixtures" / "xlstm"
E, HEADS, BATCH, SEQ = 16, 4, 2, 7


def slstm_config(blocks=1, index=0):
    cfg = sLSTMBlockConfig(
        slstm=sLSTMLayerConfig(backend="vanilla", num_heads=HEADS, embedding_dim=E),
        feedforward=FeedForwardConfig(embedding_dim=E),
    )
    cfg._num_blocks, cfg._block_idx = blocks, index
    cfg.__post_init__()
    return cfg


def mlstm_config():
    cfg = mLSTMBlockConfig(mlstm=mLSTMLayerConfig(num_heads=HEADS, embedding_dim=E, context_length=SEQ))
    cfg._num_blocks, cfg._block_idx = 1, 0
    cfg.__post_init__()
    return cfg


def perturb(module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))


def finish(name, module, rename):
    x = torch.randn(BATCH, SEQ, E, dtype=torch.float64, requires_grad=True)
    out = module(x)
    r_output = torch.randn_like(out)
    (out * r_output).sum().backward()
    tensors = {"input": x, "output": out, "r_output": r_output, "grad.input": x.grad}
    for pname, p in module.named_parameters():
        tensors[rename(pname)] = p
        tensors["grad." + rename(pname)] = p.grad
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    save_file(tensors, str(OUT / f"{name}.safetensors"))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(11)
    block = sLSTMBlock(slstm_config()).double()
    perturb(block)
    finish("slstm_block", block, lambda n: "0." + n)

    torch.manual_seed(12)
    block = mLSTMBlock(mlstm_config()).double()
    perturb(block)
    finish("mlstm_block", block, lambda n: "0." + n)

    torch.manual_seed(13)
    stack = xLSTMBlockStack(
        xLSTMBlockStackConfig(
            mlstm_block=mlstm_config(),
            slstm_block=slstm_config(),
            context_length=SEQ,
            num_blocks=3,
            embedding_dim=E,
            add_post_blocks_norm=False,
            slstm_at=[1],
        )
    ).double()
    perturb(stack)
    finish("stack_msm", stack, lambda n: n[len("blocks."):])
    print(f"wrote 3 fixtures to {OUT}")


if __name__ == "__main__":
    main()
