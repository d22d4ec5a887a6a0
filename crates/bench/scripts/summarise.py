#!/usr/bin/env python3
"""Medians of a benchmark CSV (the reference's header), per (cell, H, L, seq, mode) and implementation, with the
seqlab/torch ratio:  python3 summarise.py cells.csv"""
import csv
import statistics
import sys
from collections import defaultdict

rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["impl"] != "impl"]
by = defaultdict(list)
for r in rows:
    by[(r["cell"], int(r["H"]), int(r["L"]), int(r["seq"]), r["mode"], r["impl"])].append(float(r["tok_per_s"]))
keys = sorted({k[:5] for k in by}, key=lambda k: (k[4], k[1], k[2], k[3], k[0]))
print("| cell | H | L | seq | mode | seqlab tok/s | torch tok/s | seqlab/torch |")
print("|---|---|---|---|---|---|---|---|")
for k in keys:
    s = by.get(k + ("seqlab",))
    t = by.get(k + ("torch",))
    sm = statistics.median(s) if s else None
    tm = statistics.median(t) if t else None
    ratio = f"{sm / tm:.2f}" if sm and tm else ""
    fmt = lambda v: f"{v:,.0f}" if v else ""
    print(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {k[4]} | {fmt(sm)} | {fmt(tm)} | {ratio} |")
