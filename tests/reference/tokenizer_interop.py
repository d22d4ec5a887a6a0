"""Python side of seqlab's tokenizer interop test (crates/tokenize/tests/interop.rs).

Loads the tokenizer.json files that seqlab wrote into crates/tokenize/tests/fixtures/ with Python's
`tokenizers`, trains two foreign tokenizers (BPE, WordPiece) on the same small corpus and saves them
there too, then writes, for every tokenizer and every sentence below, the ids that
`encode(sentence, add_special_tokens=False)` gives and what `decode(ids)` gives back, to
crates/tokenize/tests/fixtures/interop_ids.json. The Rust test checks that seqlab encodes every
sentence to the same ids, and decodes them to the same text where the two decoders agree by design.

Set up once, from the workspace root:

    python3 -m venv tests/reference/.venv && tests/reference/.venv/bin/pip install tokenizers

Regenerate the fixtures, from the workspace root (the first command rewrites seqlab's tokenizer.json
files, and is needed only when the char or word pipeline changed):

    SEQLAB_BLESS=1 cargo test -p seqlab-tokenize --test interop
    tests/reference/.venv/bin/python tests/reference/tokenizer_interop.py
"""

import json
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers, decoders

FIXTURES = Path(__file__).resolve().parents[2] / "crates" / "tokenize" / "tests" / "fixtures"
CORPUS = FIXTURES / "interop_corpus.txt"

# Written by seqlab (see the Rust test); loaded here as they are.
SEQLAB_FILES = ["char.tokenizer.json", "word.tokenizer.json", "word_lowercase_min2.tokenizer.json"]
# Made here, to check that seqlab loads tokenizers made elsewhere.
PYTHON_FILES = ["python_bpe.tokenizer.json", "python_wordpiece.tokenizer.json"]

SENTENCES = [
    "The keeper's dog slept.",
    '"Is the boat late?" asked Ines.\n\nShe didn\'t answer -- twelve gulls!',
    "Crème brûlée, naïve café.",
    # The same words with combining accents: NFC makes them the same tokens.
    "Cre\u0300me bru\u0302le\u0301e, nai\u0308ve cafe\u0301.",
    "Unknown words: zebra, xylophone, Quixotic!",
    "Emoji 🌊 and unseen 🚀 ✓ characters; a\ttab and a\r\nCRLF.",
    "well-made red-and-gold kites, don't you think? 'Storm warning.'",
    "Prices: $14, 12%, 2,000 and 7.45 at 6:30 — 4 p.m.",
    "“Dear diary” (crossed out)…",
    "Literal specials: <unk> <eos> <pad> are special tokens.",
    "   leading and trailing spaces   \n\n\n",
    "",
    "ΣΗΜΕΡΑ ΗΤΑΝ ΚΑΛΗ ΜΕΡΑ. Рыбаки 今日は晴れ。",
    "THE LIGHTHOUSE KEEPER'S LOG",
]


def train_foreign():
    """Two small tokenizers of kinds seqlab does not build, saved as fixtures."""
    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    bpe.decoder = decoders.BPEDecoder()
    bpe.train([str(CORPUS)], trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                                 special_tokens=["[UNK]", "[PAD]", "<s>", "</s>"]))
    bpe.save(str(FIXTURES / "python_bpe.tokenizer.json"))

    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.decoder = decoders.WordPiece()
    wordpiece.train([str(CORPUS)], trainers.WordPieceTrainer(
        vocab_size=300, show_progress=False, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    wordpiece.save(str(FIXTURES / "python_wordpiece.tokenizer.json"))


def main():
    train_foreign()
    results = {}
    for name in SEQLAB_FILES + PYTHON_FILES:
        tokenizer = Tokenizer.from_file(str(FIXTURES / name))
        rows = []
        for sentence in SENTENCES:
            ids = tokenizer.encode(sentence, add_special_tokens=False).ids
            rows.append({"ids": ids, "decoded": tokenizer.decode(ids)})
        results[name] = rows
    fixture = {
        "made_by": "tests/reference/tokenizer_interop.py",
        "tokenizers_version": tokenizers.__version__,
        "sentences": SENTENCES,
        "results": results,
    }
    out = FIXTURES / "interop_ids.json"
    out.write_text(dump(fixture), encoding="utf-8")
    print(f"wrote {out}")


def dump(fixture):
    """JSON with one line per sentence, so that the fixture stays small and diffs stay readable."""
    line = lambda value: json.dumps(value, ensure_ascii=False)
    parts = ["{"]
    for key in ["made_by", "tokenizers_version"]:
        parts.append(f" {line(key)}: {line(fixture[key])},")
    parts.append(' "sentences": [')
    parts.append(",\n".join(f"  {line(s)}" for s in fixture["sentences"]))
    parts.append(" ],")
    parts.append(' "results": {')
    blocks = []
    for name, rows in fixture["results"].items():
        body = ",\n".join(f"   {line(row)}" for row in rows)
        blocks.append(f"  {line(name)}: [\n{body}\n  ]")
    parts.append(",\n".join(blocks))
    parts.append(" }")
    parts.append("}")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    main()
