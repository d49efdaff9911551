"""The generated easy code suite (``CodeTask(dataset="easy")``): small functions from templates.

Each template (:mod:`text_gym.tasks.code_easy_templates`) draws one problem from a seeded
``random.Random``: its name, parameters, return type, docstring sentence, reference body,
an oracle, the argument tuples to test, and the constants that shape what it computes
(``plus_7`` adds 7; ``factorial`` has none). The oracle computes the expected values here,
in Python; the tests check the reference body against them in the sandbox. A level's
templates share a few draws (a constant, parameter names), made first, then each template
draws in the order its level lists them, ``EASY_VARIANTS`` (24) times, so the suite is the
same on every machine: 932 problems, 4-7 asserts each, which check the result's exact type
too (``assert type(_r := f(2)) is int and _r == 4``).

Levels: 1, one-liners (14 templates); 2, a loop or a builtin (13); 3, short algorithms
(12). ``level`` takes one of them, a list of them, or None for all.

Split: by what a problem computes, not by how it reads. Its behaviour key
(:func:`behaviour_key`) is its types and its oracle's results on fixed probe inputs: two
problems with different keys compute different functions, and the rewordings of one
function (other names, wording, test inputs) share a key, and so a split, where they stay
(practice at reading). A key's sha256 puts it in one of 10 buckets: 2 are ``"test"``, 2
``"rl"``, 6 ``"sft"``; a function that a template without a drawn constant computes
(``factorial``) is always ``"sft"``. ``"train"`` is ``"sft"`` + ``"rl"``. So no test
problem computes the function of a train problem: the test split is 58 problems (36
functions), other constants of 15 templates that training shows (``add_13``, ``to_base_4``
while training has other constants of ``add_k`` and ``to_base_b``), and each template's
tests tell its constant from every other, so no training solution passes them. The RL part
(63 problems, 35 functions) is such functions too, held back from the supervised warm start
(``"sft"``, 811 problems) so that RL has reward left to earn.

Example:
    >>> first = easy_problems(level=1)[0]
    >>> first.source, first.references[0]
    ('plus_9', '    return n + 9\\n')
    >>> first.extra["tests"][0]
    'assert type(_r := plus_9(11)) is int and _r == 20'
    >>> len(easy_problems()), first.extra["split"], easy_split(first)
    (932, 'rl', 'train')
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
from collections.abc import Sequence
from typing import Any

from text_gym.tasks.base import Sample
from text_gym.tasks.code_easy_templates import TEMPLATES, Problem

EASY_VARIANTS = 24  # draws per template


def easy_problems(level: int | Sequence[int] | None = None) -> list[Sample]:
    """The generated suite, the same on every run.

    Args:
        level: 1, 2 or 3, a sequence of them, or None (default) for all three.

    Returns:
        The problems of those levels, level by level, each with ``extra["split"]``
        (``"sft"``, ``"rl"`` or ``"test"``, see :func:`easy_split`) and
        ``extra["behaviour"]`` (see :func:`behaviour_key`). The suite is built once per
        process and its samples are shared by every caller: read them, do not modify them.

    Raises:
        ValueError: ``level`` is not one of those.
    """
    levels = easy_levels(level)
    return [s for s in _suite() if s.extra["level"] in levels]


@functools.cache
def _suite() -> tuple[Sample, ...]:
    """Every level's problems, each with its split. The split is a function of the behaviour
    key alone, over the whole suite: a key that a constant-free template computes is always
    in "sft" (its rewordings are many), whichever template draws it."""
    problems, seen = [], set()
    for lv, (shared, templates) in TEMPLATES.items():
        for i in range(EASY_VARIANTS):
            rng = random.Random(f"easy:{lv}:{i}")
            drawn = shared(rng)
            for t, template in enumerate(templates):
                problem = template(rng, drawn)
                sample = _sample(problem, lv, t)
                if sample.prompt not in seen:
                    seen.add(sample.prompt)
                    problems.append((sample, problem.consts))
    fixed = {s.extra["behaviour"] for s, consts in problems if not consts}
    for s, _ in problems:
        s.extra["split"] = _split(s.extra["behaviour"], fixed)
    return tuple(s for s, _ in problems)


def easy_levels(level: Any) -> tuple[int, ...]:
    """The levels that ``level`` names.

    Args:
        level: 1, 2 or 3, a list or tuple of them, or None for all three.

    Returns:
        The levels as a tuple.

    Raises:
        ValueError: anything else, with the valid values.
    """
    levels = (1, 2, 3) if level is None else (level,) if isinstance(level, int) else level
    if not isinstance(levels, (list, tuple)) or not levels or not all(lv in tuple(TEMPLATES) for lv in levels):
        raise ValueError(f"level={level!r} is not valid; choose 1, 2 or 3, a list of them, or None for all three")
    return tuple(levels)


def easy_split(sample: Sample) -> str:
    """``"train"`` or ``"test"``: the split of a problem of :func:`easy_problems`.

    The test split is what the problem computes, not how it reads: a behaviour key
    (:func:`behaviour_key`) whose sha256 falls in 2 of 10 buckets is held out, with every
    problem that computes it, so no test problem computes the same function as a train
    problem (the test split holds the same templates with other constants). Templates
    without a drawn constant compute one function, always in training. The train split
    has two parts: ``"sft"`` (6 of 10 buckets, and the constant-free templates) for a
    supervised warm start, and ``"rl"`` (2 of 10 buckets), functions that the warm start
    has not seen, held back for reinforcement learning.
    """
    return "test" if sample.extra["split"] == "test" else "train"


def behaviour_key(problem: Problem) -> str:
    """What ``problem`` computes: its parameter and return types and its oracle's results
    (or the error raised) on fixed probe inputs of those types, as a string.

    Two problems with different keys compute different functions (a probe tells them
    apart); rewordings of one function (other names, docstring wording, test inputs)
    share a key.

    Example:
        >>> from text_gym.tasks.code_easy_templates import _add_k, _Level1
        >>> plus_7, add_7, add_8 = (
        ...     _add_k(random.Random(seed), _Level1(k, x, "s", "xs", "a", "b"))
        ...     for seed, k, x in ((0, 7, "x"), (2, 7, "n"), (2, 8, "n"))
        ... )
        >>> [(p.name, p.params) for p in (plus_7, add_7, add_8)]
        [('plus_7', 'x: int'), ('add_7', 'n: int'), ('add_8', 'n: int')]
        >>> behaviour_key(plus_7) == behaviour_key(add_7), behaviour_key(add_7) == behaviour_key(add_8)
        (True, False)
        >>> behaviour_key(plus_7)[:30]
        '(int) -> int: -5 -4 -3 -2 -1 0'
    """
    types = tuple(p.split(":")[1].strip() for p in problem.params.split(","))
    results = []
    for args in itertools.product(*(_PROBES[t] for t in types)) if len(types) == 1 else _PAIR_PROBES[types]:
        try:
            results.append(repr(problem.oracle(*args)))
        except Exception as error:  # outside the function's domain: the error is part of the key
            results.append(type(error).__name__)
    return f"({', '.join(types)}) -> {problem.returns}: {' '.join(results)}"


_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
# probe inputs per parameter type: enough that two drawn constants never look alike
_PROBES: dict[str, tuple] = {
    "int": (*range(-12, 26), 35, 64, 97, 100),
    "str": ("", "abc", "noon", "Level", "hello world", "".join(c * (i + 1) for i, c in enumerate(_ALPHABET))),
    "list": ([], [5], [0, 0, 7], [3, -1, 4, 1, -5, 9, 2, 6], [10, 3, 3, 10, 1], list(range(-10, 11))),
}
_PAIR_PROBES: dict[tuple, tuple] = {
    ("int", "int"): ((3, 4), (12, 18), (-5, 7), (0, 9), (100, 75), (7, 7)),
    ("str", "str"): (("listen", "silent"), ("abc", "abd"), ("aab", "aba"), ("", ""), ("ab", "abb")),
}


def _split(key: str, fixed: set[str]) -> str:
    """``"sft"``, ``"rl"`` or ``"test"`` by the sha256 of a behaviour key; ``"sft"`` for the
    ``fixed`` keys (see :func:`easy_split`)."""
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 10
    return "sft" if key in fixed or bucket >= 4 else "rl" if bucket >= 2 else "test"


def _sample(problem: Problem, level: int, template: int) -> Sample:
    """The episode of ``problem``: its prompt with two doctest examples, reference and tests."""
    name, params, ret, doc, body, oracle, inputs, _ = problem
    cases = {f"{name}({', '.join(map(repr, args))})": oracle(*args) for args in inputs}
    examples = "".join(f"    >>> {call}\n    {out!r}\n" for call, out in list(cases.items())[:2])
    prompt = f'def {name}({params}) -> {ret}:\n    """{doc}\n{examples}    """\n'
    # the exact type too: True must not pass for 1, nor 2.0 for 2
    tests = tuple(f"assert type(_r := {call}) is {type(out).__name__} and _r == {out!r}" for call, out in cases.items())
    reference = "".join(f"    {line}\n" for line in body.splitlines())
    extra = {"tests": tests, "setup": "", "level": level, "template": template, "behaviour": behaviour_key(problem)}
    return Sample(prompt, (reference,), source=name, extra=extra)
