"""Batched text reward functions (TRL style).

Every reward is a plain function of text, ``fn(completions, references)``,
returning a float64 array of shape ``(len(completions),)``; ``references[i]``
is a non-empty sequence of acceptable reference strings for ``completions[i]``.

>>> exact_match(["I_WALK  I_JUMP"], [["I_JUMP", "I_WALK I_JUMP"]])
array([1.])
>>> chrf(["I_WALK I_JUMP", ""], [["I_WALK I_JUMP"], ["I_WALK"]])
array([100.,   0.])
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache, partial
from itertools import chain, repeat
from operator import add

import numpy as np

__all__ = ["normalize_text", "exact_match", "chrf"]

# Punctuation split off word edges for chrF++ word n-grams (as sacrebleu does).
_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _check(completions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    """Validate batch shapes (see the public functions' ``Raises``)."""
    if len(completions) != len(references):
        raise ValueError(f"got {len(completions)} completions but {len(references)} reference lists")
    for i, refs in enumerate(references):
        if isinstance(refs, str):
            raise TypeError(f"references[{i}] must be a sequence of strings, not a str")
        if not refs:
            raise ValueError(f"references[{i}] is empty; need at least one reference")


def normalize_text(s: str) -> str:
    """Strip ``s`` and collapse every run of whitespace to a single space.

    >>> normalize_text("  I_WALK \\t\\n I_JUMP ")
    'I_WALK I_JUMP'
    """
    return " ".join(s.split())


def exact_match(completions: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
    """Score 1.0 where the normalized completion equals any normalized reference.

    Args:
        completions: Model outputs, one per episode.
        references: For each completion, a non-empty sequence of references.

    Returns:
        Float64 array of 0.0/1.0, shape ``(len(completions),)``.

    Raises:
        ValueError: On mismatched lengths or an empty reference list.
        TypeError: If a reference list is a bare string.

    >>> exact_match([" a  b", "a", ""], [["a b"], ["b", "c"], [" "]])
    array([1., 0., 1.])
    """
    if len(completions) != len(references):
        _check(completions, references)
    scores = np.zeros(len(completions), dtype=np.float64)
    for i, (completion, refs) in enumerate(zip(completions, references)):
        if isinstance(refs, str) or not refs:
            _check(completions, references)  # raises, naming the first bad entry
        forms, first_words = _reference_forms(tuple(refs))
        # A match starts with some reference's first word: a cheap test that turns away
        # most wrong answers before the full normalisation of a long string.
        if completion.lstrip().startswith(first_words):
            scores[i] = normalize_text(completion) in forms
    return scores


@lru_cache(maxsize=1 << 16)
def _reference_forms(refs: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """The normalised references, and the first word of each ("" for an empty one)."""
    forms = frozenset(map(normalize_text, refs))
    return forms, tuple({form.partition(" ")[0] for form in forms})


def _words(text: str) -> list[str]:
    """Split on whitespace, separating one leading or trailing punctuation mark."""
    out = []
    for w in text.split():
        if len(w) > 1 and w[-1] in _PUNCT:
            out += (w[:-1], w[-1])
        elif len(w) > 1 and w[0] in _PUNCT:
            out += (w[0], w[1:])
        else:
            out.append(w)
    return out


def _char_grams(chars: str, order: int) -> Counter:
    """Counts of all character 1..order-grams (each order built from the last)."""
    grams, prev = Counter(chars), chars
    for n in range(1, order):
        prev = list(map(add, prev, chars[n:]))
        grams.update(prev)
    return grams


def _word_grams(words: list[str], order: int) -> Counter:
    """Counts of all word 1..order-grams, as tuples of words."""
    return Counter(chain.from_iterable(zip(*[words[i:] for i in range(n)]) for n in range(1, order + 1)))


def _totals(chars: str, words: list[str], char_order: int, word_order: int) -> tuple[int, ...]:
    """Number of n-grams of each order (may be <= 0)."""
    return (*(len(chars) - n for n in range(char_order)), *(len(words) - n for n in range(word_order)))


def _self_overlapping(g: str) -> bool:
    """Whether two occurrences of ``g`` can overlap, i.e. it has a border ('aba')."""
    return g[0] in g[1:] and any(g[:k] == g[-k:] for k in range(1, len(g) // 2 + 1))


def _occurrences(text: str, sub: str) -> int:
    """Count occurrences of ``sub`` in ``text``, overlapping ones included."""
    count, i = 0, text.find(sub)
    while i >= 0:
        count, i = count + 1, text.find(sub, i + 1)
    return count


@lru_cache(maxsize=2048)  # ~16 kB per 80-char reference
def _ref_grams(ref: str, char_order: int, word_order: int) -> tuple:
    """Reference n-grams grouped by how to count them in a hypothesis string.

    Char n-grams seen once (a substring test suffices), repeated ones that
    cannot overlap themselves (``str.count`` is exact), the rest (like 'aa'),
    word n-grams; then the counts and 0-based orders of all of these, in that
    sequence, and the number of n-grams per order.
    """
    chars, words = "".join(ref.split()), _words(ref) if word_order else []
    cgrams, wgrams = _char_grams(chars, char_order), _word_grams(words, word_order)
    ones = [g for g, c in cgrams.items() if c == 1]
    tricky = [g for g, c in cgrams.items() if c > 1 and _self_overlapping(g)]
    skip = set(tricky)
    multi = [g for g, c in cgrams.items() if c > 1 and g not in skip]
    keys, n = ones + multi + tricky, len(cgrams) + len(wgrams)
    counts = np.fromiter(chain(map(cgrams.get, keys), wgrams.values()), np.int64, n)
    orders = np.fromiter(chain(map(len, keys), (char_order + len(g) for g in wgrams)), np.intp, n)
    # Tuples of strings, not lists: the garbage collector stops tracking them.
    return (
        tuple(ones),
        tuple(multi),
        tuple(tricky),
        tuple(wgrams),
        counts,
        orders - 1,
        _totals(chars, words, char_order, word_order),
    )


def _fscores(n_hyp: np.ndarray, n_ref: np.ndarray, matches: np.ndarray, factor: float):
    """Row-wise chrF: precision/recall averaged over orders present on both sides."""
    valid = (n_hyp > 0) & (n_ref > 0)
    prec, rec, orders = np.zeros(len(valid)), np.zeros(len(valid)), valid.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        for j in range(valid.shape[1]):  # sum orders one by one, as sacrebleu does
            prec += np.where(valid[:, j], matches[:, j] / n_hyp[:, j], 0.0)
            rec += np.where(valid[:, j], matches[:, j] / n_ref[:, j], 0.0)
        prec, rec = prec / orders, rec / orders
        score = 100 * ((1 + factor) * prec * rec / (factor * prec + rec))
    return np.where((orders > 0) & (prec + rec > 0), score, 0.0)


def chrf(
    completions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    char_order: int = 6,
    word_order: int = 0,
    beta: float = 2,
) -> np.ndarray:
    """Sentence-level chrF (chrF++ when ``word_order=2``), in [0, 100].

    Equals ``sacrebleu.metrics.CHRF(char_order=..., word_order=..., beta=...)
    .sentence_score(completion, refs).score`` for each pair (best reference
    wins). Reference n-grams are LRU-cached by string, and each hypothesis is
    searched for the reference n-grams rather than fully decomposed.

    Args:
        completions: Model outputs, one per episode.
        references: For each completion, a non-empty sequence of references.
        char_order: Maximum character n-gram order (>= 1).
        word_order: Maximum word n-gram order (>= 0).
        beta: Recall is weighted ``beta`` times as much as precision.

    Returns:
        Float64 array of scores, shape ``(len(completions),)``.

    Raises:
        ValueError: On mismatched lengths, an empty reference list or bad orders.
        TypeError: If a reference list is a bare string.

    >>> chrf(["the cat sat", "the cat"], [["a dog", "the cat sat"], ["the cat sat"]]).round(2)
    array([100.  ,  55.77])
    """
    _check(completions, references)
    if char_order < 1 or word_order < 0:
        raise ValueError(f"need char_order >= 1 and word_order >= 0, got {char_order} and {word_order}")
    order = char_order + word_order
    rows: dict[tuple[str, ...], int] = {}  # completions often repeat in a batch
    index = [rows.setdefault((c, *r), len(rows)) for c, r in zip(completions, references)]
    scores = np.zeros(len(rows))
    # Per (completion, reference) pair; flat machine-int arrays keep the GC idle.
    owner, hits, counts, orders, totals = [], array("q"), [], [], array("d")
    for row, (hyp, *refs) in enumerate(rows):
        chars = "".join(hyp.split())
        if not chars or hyp in refs:  # no n-grams at all: 0; identical: 100
            scores[row] = 100.0 if chars else 0.0
            continue
        words = _words(hyp) if word_order else []
        wgrams = _word_grams(words, word_order) if words else {}
        hyp_totals = _totals(chars, words, char_order, word_order)
        grams = [_ref_grams(ref, char_order, word_order) for ref in refs]
        # Cost model: search the hypothesis for each reference n-gram (~40ns +
        # ~0.8ns per hypothesis char) or count its own n-grams once (~95ns each).
        search = sum(len(g[4]) for g in grams) * (len(chars) + 18) < 120 * char_order * len(chars)
        cgrams = None if search else _char_grams(chars, char_order)
        for ones, multi, tricky, wkeys, rcounts, rorders, rtotals in grams:
            if search:
                found = chain(
                    map(chars.__contains__, ones), map(chars.count, multi), map(partial(_occurrences, chars), tricky)
                )
            else:
                found = map(cgrams.get, chain(ones, multi, tricky), repeat(0))
            hits.extend(chain(found, map(wgrams.get, wkeys, repeat(0))))
            counts.append(rcounts)
            orders.append(rorders + order * len(owner))
            totals.extend(hyp_totals + rtotals)
            owner.append(row)
    if owner:  # min(hyp, ref) count per n-gram, summed per (pair, order)
        clipped = np.minimum(np.frombuffer(hits, np.int64), np.concatenate(counts))
        matches = np.bincount(np.concatenate(orders), clipped, order * len(owner))
        n_hyp, n_ref = np.frombuffer(totals).reshape(-1, 2, order).transpose(1, 0, 2)
        np.maximum.at(scores, owner, _fscores(n_hyp, n_ref, matches.reshape(-1, order), beta**2))
    return scores[index]
