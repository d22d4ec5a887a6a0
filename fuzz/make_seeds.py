"""Writes the seed inputs of the fuzz targets into fuzz/seeds/<target>/: small valid files of our own, one or
two per reader, that libFuzzer mutates from. Run once after changing a reader's format:

    /path/to/venv/bin/python fuzz/make_seeds.py      (needs numpy, safetensors and pyarrow)
"""
import io, json, os, struct, zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import save as save_safetensors

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def put(target, name, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))


def png(width, height, rgba):
    """An RGBA PNG, written by hand (zlib + CRCs)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + bytes(rgba[y * width * 4:(y + 1) * width * 4]) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


put("text_corpus", "bom_crlf.txt", "\ufeffThe cat sat.\r\nThe dog, \"too\", sat.\r\n\r\nEnd.\n")
put("text_corpus", "unicode.txt", "caf\u00e9 na\u00efve \u00fcber \u4e2d\u6587 \U0001f600\n\tline\n")

chars = sorted(set("the cat sat on the mat."))
vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", "<bos>", "<eos>"] + chars)}
tokenizer = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True} for t, i in list(vocab.items())[:4]],
    "normalizer": None,
    "pre_tokenizer": {"type": "Split", "pattern": {"String": ""}, "behavior": "Isolated", "invert": False},
    "post_processor": None, "decoder": {"type": "Fuse"},
    "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
}
put("tokenizer_json", "char.json", json.dumps(tokenizer))

config = {"format": "seqlab/1", "task": "lm",
          "model": {"vocab_size": 7, "embed": 4, "cell": "lstm", "hidden": 3, "layers": 1, "dropout": 0.0},
          "train": {"data": ["/tmp/x.txt"], "batch": 2, "seq_len": 4, "tokenizer": "char"}}
put("config_json", "lm.json", json.dumps(config))

# The safetensors target's model: vocab 7 (4 specials + "abc"), embed 4, LSTM hidden 3.
rng = np.random.default_rng(0)
def rand(*shape):
    return rng.uniform(-0.5, 0.5, size=shape).astype(np.float32)
weights = {"embedding.weight": rand(7, 4), "rnn.weight_ih_l0": rand(12, 4), "rnn.weight_hh_l0": rand(12, 3),
           "rnn.bias_ih_l0": rand(12), "rnn.bias_hh_l0": rand(12), "head.weight": rand(7, 3), "head.bias": rand(7)}
put("safetensors", "lm.safetensors", save_safetensors(weights))

put("labelled_csv", "agnews.csv", '"class","title","description"\n"1","Title one","A ""quoted"" text, with a comma"\n'
    '"2","Two","multi\nline"\n3,plain,unquoted\n')
put("labelled_tsv", "labels.tsv", "sport\tA great game.\nworld\tNews of the day\n\tno label\nbusiness\t\n")
put("parallel_tsv", "pairs.tsv", "Hello.\t\u00a1Hola!\tid1\nGood bye, friend.\tAdi\u00f3s, amigo.\nno tab here\n\tempty source\n")
put("captions_csv", "captions.txt", 'image,caption\na.png,a red circle above a blue square\na.png,"a circle, red"\nb.png,\n')

pixels = []
for y in range(4):
    for x in range(4):
        pixels += [255 * (x % 2), 128, 255 * (y % 2), 255 if x else 0]
put("image", "rgba4x4.png", png(4, 4, pixels))

for name, table in {
    "text_label.parquet": pa.table({"text": ["a day at sea", "the match"], "label": [0, 1]}),
    "strings.parquet": pa.table({"text": ["one", None], "label": ["world", "sport"],
                                 "translation": [{"en": "hi", "es": "hola"}, {"en": "bye", "es": "adi\u00f3s"}]}),
}.items():
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy")
    put("parquet", name, buffer.getvalue())
print("seeds written under", ROOT)
