#!/usr/bin/env python3
"""Golden fixture for `seqlab_train::bleu` and `seqlab bleu`: corpus BLEU as the `sacrebleu` package computes it.

Every case is a small corpus (hypotheses + reference streams, `None` where a sentence lacks that reference) scored
with `sacrebleu.metrics.BLEU(**options).corpus_score(hyps, refs)`; options are sacreBLEU's defaults unless the
case names others (max_ngram_order, lowercase, tokenize='none', smooth_method='none'). The fixture also records
the `13a` tokenisation of a list of awkward lines, so the tokenizer is pinned on its own.

The Rust test (crates/train/tests/bleu_sacrebleu.rs) must find every score, bp, precision, sys_len, ref_len, count
and total (to 0.01 for the floats, exactly for the integers).

Writes crates/train/tests/fixtures/bleu_sacrebleu.json (< 30 KB).

Set up once (any Python 3.9+):  python3 -m venv .venv && .venv/bin/pip install sacrebleu==2.6.0
Regenerate, from the repository root:
    /work/venvs/torch/bin/python tests/reference/make_bleu_fixture.py
"""
import json
import pathlib

import sacrebleu
from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates" / "train" / "tests" / "fixtures" / "bleu_sacrebleu.json"

# (name, hypotheses, reference streams, options)
CASES = [
    ("identical", ["The cat sat on the mat."], [["The cat sat on the mat."]], {}),
    (
        "classic_two_refs",
        ["It is a guide to action which ensures that the military always obeys the commands of the party.",
         "he read the book because he was interested in world history"],
        [["It is a guide to action that ensures that the military will forever heed Party commands.",
          "he was interested in world history because he read the book"],
         ["It is the guiding principle which guarantees the military forces always being under the command of the Party.",
          "he read the book since he was keen on world history"]],
        {},
    ),
    ("no_match", ["xyz uvw"], [["the cat sat"]], {}),
    ("empty_hypothesis", ["", "the cat sat on the mat"], [["a dog barked", "the cat sat on a mat"]], {}),
    ("all_empty_hypotheses", ["", ""], [["one two", "three"]], {}),
    ("short_hypothesis_bp", ["the cat"], [["the cat sat on the mat today"]], {}),
    ("longer_than_ref", ["the cat sat on the mat on the mat on the mat"], [["the cat sat on the mat"]], {}),
    ("one_word_exp_smoothing", ["hello"], [["hello world"]], {}),
    ("exp_smoothing_two_orders", ["the dog ran home", "a b"], [["the dog sat home", "a c"]], {}),
    (
        "numbers_commas_periods",
        ["The price rose 1,000.50 dollars, i.e. 3.5% in 2019.", "It costs $5,000, not 5.000."],
        [["The price rose by 1,000.50 dollars, i.e. 3.5 % in 2019.", "It costs $5,000 , not 5.000 ."]],
        {},
    ),
    (
        "dashes",
        ["The 1999-2000 season was well-known -- truly.", "pages 10-20 - see above"],
        [["The 1999 - 2000 season was well known - truly.", "pages 10-20 -- see above"]],
        {},
    ),
    (
        "quotes_and_apostrophes",
        ['He said "no" and she didn\'t agree.', "\u201cSmart quotes\u201d are \u2018different\u2019."],
        [['He said, "No," and she did not agree.', "\u201cSmart quotes\u201d are \u2018different\u2019 ."]],
        {},
    ),
    (
        "html_entities",
        ["Fish &amp; chips &lt;3 &quot;yum&quot; &gt; all", "a &amp;lt; b"],
        [["Fish & chips <3 \"yum\" > all", "a < b"]],
        {},
    ),
    (
        "unicode_accents",
        ["¿Dónde está la biblioteca? Está allí, señor.", "Él comió pan y bebió café."],
        [["¿Dónde está la biblioteca? Está allá, señor.", "Él comió pan y tomó café."]],
        {},
    ),
    (
        "unicode_cjk_and_emoji",
        ["我 爱 你 🙂 ok", "Привет, мир!"],
        [["我 爱 他 🙂 ok", "Привет, мир !"]],
        {},
    ),
    (
        "unicode_whitespace",
        ["a\u00a0b c\u3000d\u2009e f\u001fg  ", "tab\tseparated\twords\u2028x"],
        [["a b c d e f g", "tab separated words x"]],
        {},
    ),
    (
        "punctuation_heavy",
        ["Wait... what?! (Really) [yes] {no} <tag> a/b a:b a;b @home #1 ^_^ ~x~ `q` |p| \\s",
         "e-mail: someone@example.com; url: http://x.org/a?b=c&d=e"],
        [["Wait ... what ?! ( Really ) [ yes ] { no } < tag > a / b a : b a ; b @ home # 1 ^ _ ^ ~ x ~ ` q ` | p | \\ s",
          "e-mail : someone @ example.com ; url : http : / / x.org / a ? b = c & d = e"]],
        {},
    ),
    ("skipped_and_newlines", ["foo <skipped> bar-\nbaz qux\nquux"], [["foo bar baz qux quux"]], {}),
    (
        "three_refs_closest_length_tie",
        ["a b c d e"],
        [["a b c"], ["a b c d e f g"], ["a b c d x y"]],
        {},
    ),
    ("tie_prefers_shorter", ["one two three four"], [["one two three four five"], ["one two three"]], {}),
    (
        "variable_number_of_refs",
        ["the quick brown fox", "jumps over the dog", "lazy dog sleeps"],
        [["the fast brown fox", "jumped over the dog", "the lazy dog sleeps"],
         ["a quick brown fox", None, "lazy dogs sleep"],
         [None, None, "a lazy dog is sleeping"]],
        {},
    ),
    (
        "clipping_repeated_words",
        ["the the the the the the the"],
        [["the cat is on the mat"], ["there is a cat on the mat"]],
        {},
    ),
    (
        "trailing_whitespace_and_case",
        ["The Cat   sat on THE mat .   ", "  leading spaces here"],
        [["the cat sat on the mat.", "leading spaces here  "]],
        {},
    ),
    (
        "lowercase_option",
        ["The Cat sat on THE mat.", "ÉCOLE Straße"],
        [["the cat sat on the mat.", "école straße"]],
        {"lowercase": True},
    ),
    (
        "bleu1_order",
        ["the cat sat on a mat", "dogs run"],
        [["the cat sat on the mat", "the dogs are running"]],
        {"max_ngram_order": 1},
    ),
    (
        "bleu2_order",
        ["the cat sat on a mat", "dogs run"],
        [["the cat sat on the mat", "the dogs are running"]],
        {"max_ngram_order": 2},
    ),
    (
        "bleu3_order",
        ["the cat sat on a mat", "dogs run"],
        [["the cat sat on the mat", "the dogs are running"]],
        {"max_ngram_order": 3},
    ),
    (
        "pretokenized_none",
        ["the cat , sat .", "hello world !"],
        [["the cat , sat .", "hello , world!"]],
        {"tokenize": "none"},
    ),
    (
        "no_smoothing",
        ["the dog ran home", "a b"],
        [["the dog sat home", "a c"]],
        {"smooth_method": "none"},
    ),
    (
        "hypotheses_shorter_than_four",
        ["a b", "c d e"],
        [["a b", "c d e"]],
        {},
    ),
    (
        "many_sentences",
        [f"sentence number {i} says {'yes' if i % 3 else 'no'} , ok" for i in range(40)],
        [[f"sentence number {i} says yes, ok" for i in range(40)],
         [f"the sentence {i} says {'no' if i % 2 else 'yes'}, ok" for i in range(40)]],
        {},
    ),
]

TOKENIZER_LINES = [
    "Hello, world! 1,000.5 &amp; more",
    "a..b",
    "1999-2000 well-known",
    "It's (really) $5.00!",
    "x.,y ,.z 3.,4 5,.6 .7 8.",
    "e.g. U.S.A. 10.5% -3 -- a-b 4-5-6",
    "&amp;quot; &lt;b&gt; & ;",
    "¿Qué? ¡Sí! «guillemets» — em dash",
    "tab\there\u00a0nbsp\u3000ideo",
    "end with period.",
    "",
    "   ",
]


def score(hyps, refs, options):
    result = BLEU(**options).corpus_score(hyps, refs)
    return {
        "score": result.score,
        "bp": result.bp,
        "precisions": list(result.precisions),
        "sys_len": result.sys_len,
        "ref_len": result.ref_len,
        "counts": list(result.counts),
        "totals": list(result.totals),
    }


def main():
    cases = []
    for name, hyps, refs, options in CASES:
        assert all(len(stream) == len(hyps) for stream in refs), name
        cases.append({
            "name": name,
            "hypotheses": hyps,
            "references": refs,
            "options": options,
            "expected": score(hyps, refs, options),
        })
    tok = Tokenizer13a()
    fixture = {
        "sacrebleu_version": sacrebleu.__version__,
        "cases": cases,
        "tokenize_13a": [{"line": line, "tokens": tok(line)} for line in TOKENIZER_LINES],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(cases)} cases)")
    for case in cases:
        e = case["expected"]
        print(f"  {case['name']:32s} BLEU {e['score']:7.3f} bp {e['bp']:.3f} {e['sys_len']}/{e['ref_len']}")


if __name__ == "__main__":
    main()
