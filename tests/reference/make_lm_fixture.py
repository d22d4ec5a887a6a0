#!/usr/bin/env python3
"""Golden fixtures for the language-model pipeline: a model trained in PyTorch, evaluated by PyTorch.

Trains two tiny language models in PyTorch whose attributes carry seqlab's documented names (`embedding`,
`rnn`, `head`), saves each as a seqlab model directory (config.json, tokenizer.json, model.safetensors written
from the PyTorch state_dict as it is) and records the loss PyTorch measures on an evaluation text, computed the
way `seqlab lm eval` defines it (docs/language-model.md):

- the text is encoded without special tokens and laid out as `batch` rows of L = len // batch tokens;
- row i predicts each of its L tokens once; its inputs are the row shifted right by one, beginning with <bos>;
- batch k holds columns [k*seq_len, (k+1)*seq_len); the state is carried from batch to batch, starting at 0;
- the loss is the mean cross-entropy over all batch * L predicted tokens.

The Rust test (crates/train/tests/torch_fixture.rs, and the CLI test `lm eval --json`) loads each directory
and must find the same loss to 1e-4. The loss is computed in float64 from the float32 weights that are saved.

Writes crates/train/tests/fixtures/lm_<case>/ and crates/train/tests/fixtures/lm_eval.txt (< 30 KB in all).

Set up once (any Python 3.9+), from the repository root:
    python3 -m venv tests/reference/.venv
    tests/reference/.venv/bin/pip install torch safetensors numpy tokenizers
Regenerate:
    tests/reference/.venv/bin/python tests/reference/make_lm_fixture.py
"""
import json
import math
import pathlib
import unicodedata
from collections import Counter

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "train" / "tests" / "fixtures"

# Written for this fixture (no third-party text).
TRAIN_TEXT = """The lighthouse keeper wrote in her log every evening. The wind came from the west,
the sea was grey, and the lamp turned without rest. Boats passed late; one of them signalled twice.
She answered with the lamp, as her mother had taught her, and the boat turned toward the harbour.
In the morning the gulls were loud and the keeper walked down to the rocks to count the crabs.
"Seven," she said to the dog, "and one with a broken claw." The dog did not care for crabs.
""" * 4

EVAL_TEXT = """The keeper counted the boats in the harbour and wrote the number in her log.
"Twelve," she told the dog. The wind turned, the lamp turned, and the sea was calm at last.
"""

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]

CASES = [
    # name, cell, embed, hidden, layers, seed
    ("lstm_embed_2layers", "lstm", 8, 16, 2, 1),
    ("gru_onehot", "gru", 0, 12, 1, 2),
]
BATCH, SEQ_LEN = 4, 16


def char_tokenizer(text):
    """seqlab's char tokenizer: NFC, one token per character, specials 0-3, then by frequency."""
    text = unicodedata.normalize("NFC", text)
    counts = Counter(text)
    chars = sorted(counts, key=lambda c: (-counts[c], ord(c)))
    vocab = {token: i for i, token in enumerate(SPECIALS + chars)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated", invert=False)
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(SPECIALS)
    return tokenizer


class LanguageModel(torch.nn.Module):
    """embedding (or one-hot) -> rnn -> head, with seqlab's attribute names."""

    def __init__(self, vocab, cell, embed, hidden, layers):
        super().__init__()
        self.vocab = vocab
        if embed > 0:
            self.embedding = torch.nn.Embedding(vocab, embed)
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.rnn = rnn(embed if embed > 0 else vocab, hidden, layers, batch_first=True)
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, ids, state=None):
        if hasattr(self, "embedding"):
            xs = self.embedding(ids)
        else:
            xs = F.one_hot(ids, self.vocab).to(self.head.weight.dtype)
        out, state = self.rnn(xs, state)
        return self.head(out), state


def layout(ids, start, batch, seq_len):
    """seqlab's evaluation layout: (inputs, targets) per batch, each (batch, columns)."""
    row_len = len(ids) // batch
    rows = torch.tensor(ids[: batch * row_len]).reshape(batch, row_len)
    inputs = torch.cat([torch.full((batch, 1), start), rows[:, :-1]], dim=1)
    return [
        (inputs[:, k : k + seq_len], rows[:, k : k + seq_len]) for k in range(0, row_len, seq_len)
    ], batch * row_len


def detach(state):
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def train(model, ids, start, steps=150):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batches, _ = layout(ids, start, 8, 24)
    state = None
    for step in range(steps):
        x, y = batches[step % len(batches)]
        if step % len(batches) == 0:
            state = None
        logits, state = model(x, state)
        state = detach(state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()


@torch.no_grad()
def evaluate(model, ids, start):
    batches, tokens = layout(ids, start, BATCH, SEQ_LEN)
    state, total = None, 0.0
    for x, y in batches:
        logits, state = model(x, state)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
    return total / tokens, tokens


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "lm_eval.txt").write_text(EVAL_TEXT)
    tokenizer = char_tokenizer(TRAIN_TEXT)
    vocab = tokenizer.get_vocab_size()
    bos = tokenizer.token_to_id("<bos>")
    train_ids = tokenizer.encode(TRAIN_TEXT, add_special_tokens=False).ids
    eval_ids = tokenizer.encode(EVAL_TEXT, add_special_tokens=False).ids
    for name, cell, embed, hidden, layers, seed in CASES:
        torch.manual_seed(seed)
        model = LanguageModel(vocab, cell, embed, hidden, layers)
        train(model, train_ids, bos)
        state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
        oracle = model.double()
        oracle.load_state_dict({k: v.double() for k, v in state.items()})
        loss, tokens = evaluate(oracle, eval_ids, bos)
        folder = OUT / f"lm_{name}"
        folder.mkdir(exist_ok=True)
        save_file(state, str(folder / "model.safetensors"))
        tokenizer.save(str(folder / "tokenizer.json"))
        config = {
            "format": "seqlab/1",
            "task": "lm",
            "model": {"vocab_size": vocab, "embed": embed, "cell": cell, "hidden": hidden, "layers": layers,
                      "dropout": 0.0},
            "train": {"tokenizer": "char", "batch": BATCH, "seq_len": SEQ_LEN},
        }
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        expected = {"loss": loss, "perplexity": math.exp(loss), "bits_per_token": loss / math.log(2),
                    "tokens": tokens, "batch": BATCH, "seq_len": SEQ_LEN}
        (folder / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
        print(f"{name}: loss {loss:.6f} over {tokens} tokens, names {sorted(state)}")


if __name__ == "__main__":
    main()
