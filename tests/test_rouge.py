"""text_gym.rewards.rouge: batched ROUGE equals rouge-score's own scorer."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from rouge_score import rouge_scorer

from text_gym.rewards import rouge as rouge_module
from text_gym.rewards.rouge import ROUGE_TYPES, rouge, scorable

PAIRS = [
    ("The cats are sitting on the mat.", "the cat sat on the mat"),
    ("Existing systems do not manage terms.", "They propose simple methods to improve analogy solvers."),
    ("first sentence.\nsecond one here", "second one here\nfirst sentence."),
    ("", "a reference"),
    ("running runners ran quickly", "runner running quick"),
    ("Ça coûte 20 € — 3.5% de plus!", "It costs 20 euros, 3.5 percent more."),
    ("a a a b", "a b a b a"),
]


def test_equals_rouge_score_single_reference():
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True, split_summaries=False)
    got = rouge([h for h, _ in PAIRS], [[r] for _, r in PAIRS], components=True)
    for i, (hyp, ref) in enumerate(PAIRS):
        want = scorer.score(ref, hyp)
        for t in ROUGE_TYPES:
            assert got[t][i] == want[t].fmeasure
            assert got[f"{t}_precision"][i] == want[t].precision
            assert got[f"{t}_recall"][i] == want[t].recall


def test_equals_rouge_score_multi_reference():
    scorer = rouge_scorer.RougeScorer(["rouge2", "rougeL"], use_stemmer=True, split_summaries=False)
    refs = [r for _, r in PAIRS]
    got = rouge([h for h, _ in PAIRS], [refs] * len(PAIRS), ["rouge2", "rougeL"])
    for i, (hyp, _) in enumerate(PAIRS):
        want = scorer.score_multi(refs, hyp)
        assert got["rouge2"][i] == want["rouge2"].fmeasure and got["rougeL"][i] == want["rougeL"].fmeasure


def test_perfect_empty_and_batch_invariance():
    ref = "Return the number of items in the queue."
    out = rouge([ref, " " + ref + " ", "", "   "], [[ref]] * 4)
    for t in ROUGE_TYPES:
        assert out[t].tolist() == [1.0, 1.0, 0.0, 0.0]
    hyps, refs = [h for h, _ in PAIRS] * 3, [[r] for _, r in PAIRS] * 3
    batched = rouge(hyps, refs)
    one_by_one = [rouge([h], [r]) for h, r in zip(hyps, refs)]
    for t in ROUGE_TYPES:
        assert batched[t].dtype == np.float64 and batched[t].shape == (len(hyps),)
        np.testing.assert_array_equal(batched[t], [o[t][0] for o in one_by_one])


def test_bad_arguments():
    with pytest.raises(ValueError, match="2 completions but 1 reference"):
        rouge(["a", "b"], [["a"]])
    with pytest.raises(TypeError, match=r"references\[0\] must be a sequence"):
        rouge(["a"], ["a"])
    with pytest.raises(ValueError, match=r"references\[0\] is empty"):
        rouge(["a"], [[]])
    with pytest.raises(ValueError, match="choose from"):
        rouge(["a"], [["a"]], ["bleu"])


def test_scorable_matches_the_tokenizer():
    for text in ["日本語", "!!! ...", "", "x", "Ça", "ＡＢＣ", "K"]:
        assert scorable(text) == bool(rouge_module._scorer(("rouge1",))._tokenizer.tokenize(text))


def test_doctests():
    result = doctest.testmod(rouge_module)
    assert result.failed == 0 and result.attempted > 0
