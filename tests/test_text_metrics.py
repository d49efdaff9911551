"""Tests for text_gym.rewards.text_metrics: exact match and chrF(++) vs sacrebleu."""

from __future__ import annotations

import doctest
import random

import numpy as np
import pytest
from sacrebleu.metrics import CHRF

import text_gym.rewards.text_metrics as tm
from text_gym.rewards.text_metrics import chrf, exact_match, normalize_text

VOCAB = [
    "I_WALK",
    "I_JUMP",
    "I_TURN_LEFT",
    "the",
    "cat",
    "sat.",
    "(hi)",
    "'quote",
    "end,",
    "a",
    "aa",
    "aaa",
    "abab",
    "naïve",
    "Über",
    "日本語",
    "—",
    "!",
    "...",
    "é",
]
ALPHABET = "abaaxyz.,;!?()'\"-_  \t\n\u00a0\u3000éü日本語🙂"


def _text(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.5:  # words from a small vocabulary, punctuation attached
        return " ".join(rng.choice(VOCAB) for _ in range(rng.randint(0, 12)))
    if kind < 0.9:  # unicode soup with odd whitespace and self-overlapping runs
        return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40)))
    return "".join(rng.choice(ALPHABET[:8]) for _ in range(rng.randint(100, 400)))


def _pairs(seed: int, n: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    pairs = [
        ("", [""]),
        ("", ["a b"]),
        ("a b", [""]),
        ("  ", ["  "]),
        ("x", ["x"]),
        ("aaaa", ["aaa"]),
        ("abababab", ["ababa", "ab"]),
        ("a  b\tc", ["a b c"]),
        ("(hi) there.", ["(hi) there .", "hi there"]),
        ("a", ["", "a b"]),
    ]
    for _ in range(n):
        refs = [_text(rng) for _ in range(rng.choice([1, 1, 1, 2, 3, 4]))]
        r = rng.random()
        if r < 0.05:
            hyp = ""
        elif r < 0.15:
            hyp = rng.choice(refs)
        elif r < 0.35:  # a reordered reference: many partial matches
            words = rng.choice(refs).split()
            rng.shuffle(words)
            hyp = " ".join(words)
        else:
            hyp = _text(rng)
        pairs.append((hyp, refs))
    return pairs


def test_normalize_text():
    assert normalize_text("  a \t b\n\nc  ") == "a b c"
    assert normalize_text(" \n ") == ""


def test_exact_match():
    completions = ["I_WALK I_JUMP", "  I_WALK\tI_JUMP \n", "I_WALK", "", "  ", "a", "b"]
    references = [["I_WALK I_JUMP"], ["I_WALK  I_JUMP"], ["I_JUMP", "I_WALK"], [""], [""], ["", "b"], ["a", "c"]]
    out = exact_match(completions, references)
    assert out.dtype == np.float64 and out.shape == (7,)
    assert out.tolist() == [1, 1, 1, 1, 1, 0, 0]
    assert exact_match((), ()).shape == (0,)


def test_exact_match_equals_its_definition():
    """The first-word pretest never changes a score: random texts, their whitespace
    variants (unicode spaces included), and near misses that share the first word."""
    rng = random.Random(7)
    completions, references = [], []
    for _ in range(3000):
        ref = _text(rng)
        words = ref.split()
        pick = rng.random()
        if pick < 0.3:  # the same words, other whitespace
            gaps = [rng.choice([" ", "  ", "\t", "\n", "\u00a0", "\u3000"]) for _ in range(len(words) + 1)]
            completion = gaps[0] + "".join(w + g for w, g in zip(words, gaps[1:]))
        elif pick < 0.5 and words:  # a near miss: first word kept, or extended
            completion = " ".join([words[0] + rng.choice(["", "x"]), *words[1:-1]])
        else:
            completion = _text(rng)
        completions.append(completion)
        references.append([ref, _text(rng)] if rng.random() < 0.3 else [ref])
    expected = [
        float(normalize_text(c) in {normalize_text(r) for r in refs}) for c, refs in zip(completions, references)
    ]
    got = exact_match(completions, references)
    assert got.tolist() == expected
    assert 300 < sum(expected) < 2700  # both outcomes are exercised


@pytest.mark.parametrize("char_order, word_order, beta", [(6, 0, 2), (6, 2, 2), (3, 0, 2), (3, 2, 2), (6, 2, 1)])
def test_chrf_equals_sacrebleu(char_order, word_order, beta):
    pairs = _pairs(seed=char_order * 10 + word_order + beta, n=250)
    metric = CHRF(char_order=char_order, word_order=word_order, beta=beta)
    expected = np.array([metric.sentence_score(h, refs).score for h, refs in pairs])
    got = chrf(
        [h for h, _ in pairs], [refs for _, refs in pairs], char_order=char_order, word_order=word_order, beta=beta
    )
    assert got.dtype == np.float64 and got.shape == (len(pairs),)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert 0 < np.mean(got == 100) < 0.5 and 0 < np.mean(got == 0) < 0.5  # not degenerate


def test_chrf_both_counting_strategies(monkeypatch):
    """Long hypotheses and many references switch to counting the hypothesis n-grams."""
    rng = random.Random(7)
    hyps = ["".join(rng.choice("abcdef ") for _ in range(rng.choice([30, 600]))) for _ in range(40)]
    refs = [
        ["".join(rng.choice("abcdefg ") for _ in range(rng.choice([30, 600]))) for _ in range(rng.randint(1, 4))]
        for _ in range(40)
    ]
    calls, original = [], tm._char_grams
    monkeypatch.setattr(tm, "_char_grams", lambda s, n: calls.append(s) or original(s, n))
    tm._ref_grams.cache_clear()
    got = chrf(hyps, refs, word_order=2)
    metric = CHRF(word_order=2)
    expected = [metric.sentence_score(h, r).score for h, r in zip(hyps, refs)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    hyp_chars = {"".join(h.split()) for h in hyps}
    counted = sum(c in hyp_chars for c in calls)
    assert 0 < counted < len(hyps)  # some hypotheses were searched, some counted


def test_chrf_edge_cases():
    assert chrf(["I_WALK I_JUMP"], [["I_WALK I_JUMP"]])[0] == 100.0
    assert chrf(["a  b"], [["x", "a b"]])[0] == 100.0  # whitespace is ignored
    assert chrf(["", " \n"], [["a"], ["a"]]).tolist() == [0.0, 0.0]
    assert chrf([""], [[""]])[0] == 0.0  # as sacrebleu: nothing to match
    assert chrf(["abc"], [["xyz"]])[0] == 0.0
    assert chrf([], []).shape == (0,)
    # Repeated completions in a batch score like single ones.
    batch = chrf(["the cat", "a cat", "the cat"], [["the cat sat"], ["the cat"], ["the cat sat"]])
    assert batch[0] == batch[2] == chrf(["the cat"], [["the cat sat"]])[0]


@pytest.mark.parametrize("fn", [exact_match, chrf])
def test_input_validation(fn):
    with pytest.raises(ValueError, match="2 completions but 1 reference"):
        fn(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match=r"references\[1\] is empty"):
        fn(["a", "b"], [["a"], []])
    with pytest.raises(TypeError, match=r"references\[0\]"):
        fn(["a"], ["a"])


def test_chrf_rejects_bad_orders():
    with pytest.raises(ValueError, match="char_order"):
        chrf(["a"], [["a"]], char_order=0)
    with pytest.raises(ValueError, match="word_order"):
        chrf(["a"], [["a"]], word_order=-1)


def test_doctests():
    result = doctest.testmod(tm)
    assert result.attempted > 0 and result.failed == 0
