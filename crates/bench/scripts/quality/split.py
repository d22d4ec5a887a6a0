"""Writes BOOK.txt (as the PyTorch references read it: UTF-8 without BOM, LF line ends), BOOK.train.txt (its
first 90%) and BOOK.valid.txt (its last 10%, the references' held-out part) for each book of ../shared/data/text
into OUT. Usage: python3 split.py DATA_TEXT_DIR OUT"""
import pathlib, sys

src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
for path in sorted(src.glob("*.txt")):
    text = path.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    n = int(len(text) * 0.9)  # the references' split: data[:n] trains, data[n:] is held out
    for suffix, part in (("", text), (".train", text[:n]), (".valid", text[n:])):
        (out / f"{path.stem}{suffix}.txt").write_text(part, encoding="utf-8")
    print(path.stem, len(text), "characters,", len(text) - n, "held out")
