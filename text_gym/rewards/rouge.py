"""Batched ROUGE (Lin, 2004) with Google's ``rouge-score`` package.

``rouge(completions, references)`` returns a dict of float64 arrays: each ROUGE type's
F-measure, in [0, 1], and with ``components=True`` its precision and recall. Every
value equals that of ``rouge_scorer.RougeScorer(types, use_stemmer=True,
split_summaries=False)``: ``score(ref, completion)`` for one reference,
``score_multi(refs, completion)`` (the best reference per type) for several. It is
cheaper than calling that scorer in a loop: one scorer per set of types for the whole
process, with its Porter stemmer memoised per word (stemming is ~60% of rouge-score's
time), and repeated ``(completion, references)`` rows scored once.

Text is lowercased and only ``[a-z0-9]`` words count (rouge-score's tokenizer), so a
text without such a word scores 0 against everything, itself included (see
:func:`scorable`).

>>> scores = rouge(["the cats sat", ""], [["The cat sat."], ["a dog"]])
>>> scores["rougeL"], scores["rouge2"]
(array([1., 0.]), array([1., 0.]))
>>> scorable("Ça va ?"), scorable("日本語")
(True, False)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache, lru_cache

import numpy as np
from nltk.stem import porter
from rouge_score import rouge_scorer, tokenize, tokenizers

__all__ = ["ROUGE_TYPES", "rouge", "scorable"]

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_WORD_CHAR = re.compile("[a-z0-9]")


class _MemoStemTokenizer(tokenizers.Tokenizer):
    """rouge-score's ``DefaultTokenizer(use_stemmer=True)``, with stems memoised."""

    def __init__(self) -> None:
        self.stem = lru_cache(maxsize=1 << 16)(porter.PorterStemmer().stem)

    def tokenize(self, text: str) -> list[str]:
        return tokenize.tokenize(text, self)  # calls self.stem(word) for words > 3 chars


@cache
def _scorer(types: tuple[str, ...]) -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(list(types), split_summaries=False, tokenizer=_MemoStemTokenizer())


def scorable(text: str) -> bool:
    """Whether ``text`` has a word ROUGE counts (an ``[a-z0-9]`` character, lowercased)."""
    return _WORD_CHAR.search(text.lower()) is not None


def rouge(
    completions: Sequence[str],
    references: Sequence[Sequence[str]],
    types: Sequence[str] = ROUGE_TYPES,
    *,
    components: bool = False,
) -> dict[str, np.ndarray]:
    """ROUGE F-measures of each completion against its references (the best one wins).

    Args:
        completions: Model outputs, one per episode.
        references: For each completion, a non-empty sequence of references.
        types: ROUGE types, among ``ROUGE_TYPES`` (``rougeLsum`` splits sentences at
            newlines only).
        components: Also return ``"<type>_precision"`` and ``"<type>_recall"``.

    Returns:
        ``{type: (n,) float64 array}`` of F-measures in [0, 1], plus the components.

    Raises:
        ValueError: On mismatched lengths, an empty reference list or an unknown type.
        TypeError: If a reference list is a bare string.

    >>> s = rouge(["the cat"], [["the cat sat"]], ["rouge1"], components=True)
    >>> s["rouge1_precision"], s["rouge1_recall"].round(3), s["rouge1"].round(3)
    (array([1.]), array([0.667]), array([0.8]))
    """
    if len(completions) != len(references):
        raise ValueError(f"got {len(completions)} completions but {len(references)} reference lists")
    for i, refs in enumerate(references):
        if isinstance(refs, str):
            raise TypeError(f"references[{i}] must be a sequence of strings, not a str")
        if not refs:
            raise ValueError(f"references[{i}] is empty; need at least one reference")
    if not types or any(t not in ROUGE_TYPES for t in types):
        raise ValueError(f"ROUGE types {list(types)} are not valid; choose from {list(ROUGE_TYPES)}")
    scorer = _scorer(tuple(types))
    rows: dict[tuple[str, ...], int] = {}  # completions often repeat in a batch
    index = [rows.setdefault((c, *r), len(rows)) for c, r in zip(completions, references)]
    parts = ("fmeasure", "precision", "recall") if components else ("fmeasure",)
    table = np.zeros((len(rows), len(types), len(parts)))  # (unique rows, types, parts)
    for row, (hyp, *refs) in enumerate(rows):
        result = scorer.score(refs[0], hyp) if len(refs) == 1 else scorer.score_multi(refs, hyp)
        table[row] = [[getattr(result[t], p) for p in parts] for t in types]
    table = table[index]
    out = {t: table[:, j, 0].copy() for j, t in enumerate(types)}
    if components:
        for j, t in enumerate(types):
            out[f"{t}_precision"], out[f"{t}_recall"] = table[:, j, 1].copy(), table[:, j, 2].copy()
    return out
