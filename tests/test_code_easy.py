"""The generated easy code suite: behaviour keys, the split by what a problem computes, its
parts for a warm start and for RL, level lists, and the new templates in the sandbox."""

from __future__ import annotations

import ast
import random
import signal
from collections import Counter, defaultdict

import pytest

from text_gym.tasks.code import CodeTask
from text_gym.tasks.code_easy import behaviour_key, easy_levels, easy_problems, easy_split
from text_gym.tasks.code_easy_templates import TEMPLATES, _add_k, _level1, _level2, _reverse, _scale_all


def _signature(sample) -> tuple[str, str]:
    """``("n: int", "int")`` without the names: ``("int", "int")``."""
    fn = ast.parse(sample.prompt + sample.references[0]).body[0]
    return tuple(ast.unparse(a.annotation) for a in fn.args.args), ast.unparse(fn.returns)


def _shape(sample) -> tuple[tuple[str, str], str]:
    """The signature's types and the reference with its parameters renamed ``p0``, ``p1``:
    problems of one shape compute one function."""
    fn = ast.parse(sample.prompt + sample.references[0]).body[0]
    names = {a.arg: f"p{i}" for i, a in enumerate(fn.args.args)}
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and node.id in names:
            node.id = names[node.id]
    fn.body = fn.body[1:]  # less the docstring
    return _signature(sample), "\n".join(ast.unparse(n) for n in fn.body)


def _cases(sample) -> list[tuple[tuple, object]]:
    """The (arguments, expected result) pairs of a problem's asserts."""
    cases = []
    for test in sample.extra["tests"]:  # assert type(_r := f(*args)) is T and _r == out
        check = ast.parse(test).body[0].test
        call = check.values[0].left.args[0].value
        out = ast.literal_eval(check.values[1].comparators[0])
        cases.append((tuple(ast.literal_eval(a) for a in call.args), out))
    return cases


class _TimedOut(Exception):
    pass


def _function(sample):
    """The problem's reference solution as a Python function, run here (it is our own code)."""
    namespace = {}
    exec(sample.prompt + sample.references[0], namespace)
    return namespace[sample.source]


class _Timer:
    """After ``seconds`` of this process's CPU time (not wall time: the machine may be busy),
    SIGVTALRM raises ``_TimedOut``, but only while armed: a signal that Python handles just
    after the timer is stopped belongs to the call that ran over."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.armed = seconds, False

    def __enter__(self):
        self.previous = signal.signal(signal.SIGVTALRM, self._alarm)
        return self

    def __exit__(self, *_):
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, self.previous)

    def _alarm(self, *_):
        if self.armed:
            raise _TimedOut

    def passes(self, function, cases) -> bool:
        """Whether ``function`` returns each case's result (same type and value); one that
        raises, or runs over the time (a reference outside its domain can loop: collatz
        steps of -1), fails."""
        try:
            try:
                self.armed = True
                signal.setitimer(signal.ITIMER_VIRTUAL, self.seconds)
                return all(type(got := function(*args)) is type(out) and got == out for args, out in cases)
            finally:
                signal.setitimer(signal.ITIMER_VIRTUAL, 0)
                self.armed = False
        except Exception:  # any failure fails, as in the sandbox; _TimedOut too
            return False


def test_no_held_out_problem_is_solved_by_a_training_solution():
    """Every pair: no train problem's reference passes every assert of a test problem, and no
    warm-start (sft) problem's reference passes every assert of an rl problem, so the test
    split and the RL part are functions the warm start has not been shown."""
    by_shape = defaultdict(list)  # problems whose solutions are one function (up to parameter names)
    for s in easy_problems():
        by_shape[_shape(s)].append(s)
    leaks, pairs = [], 0
    with _Timer(0.01) as timer:
        for (types, _), held_group in by_shape.items():
            for held in held_group:
                split = held.extra["split"]
                seen = ("sft", "rl") if split == "test" else ("sft",) if split == "rl" else ()
                cases = _cases(held)
                assert timer.passes(_function(held), cases), held.source  # the cases are read right
                for (other_types, _), group in by_shape.items():
                    trained = [s for s in group if s.extra["split"] in seen]
                    if other_types != types or not trained:
                        continue
                    pairs += len(trained)
                    if timer.passes(_function(trained[0]), cases):
                        leaks += [(s.source, s.extra["split"], held.source, split) for s in trained]
    assert leaks == [] and pairs > 10_000, (leaks[:5], pairs)


def test_behaviour_keys_split_the_suite():
    problems = easy_problems()
    splits = Counter(s.extra["split"] for s in problems)
    assert splits == {"sft": 811, "rl": 63, "test": 58}
    keys = defaultdict(set)
    for s in problems:
        keys[s.extra["behaviour"]].add(s.extra["split"])
    assert all(len(parts) == 1 for parts in keys.values())  # one function, one part
    assert len(keys) == 206 and sum(len(v) for v in keys.values()) == 206
    # the held-out parts are other constants of templates that the warm start sees
    sft_templates = {(s.extra["level"], s.extra["template"]) for s in problems if s.extra["split"] == "sft"}
    held = {(s.extra["level"], s.extra["template"]) for s in problems if s.extra["split"] != "sft"}
    assert held <= sft_templates and len(held) == 15
    assert {s.extra["level"] for s in problems if s.extra["split"] == "test"} == {1, 2, 3}
    assert all(easy_split(s) == ("test" if s.extra["split"] == "test" else "train") for s in problems)


def test_behaviour_key_is_what_the_function_computes():
    """Rewordings (other names, wording, test inputs) share a key; another constant does not."""
    drawn = [_level1(random.Random(i)) for i in range(40)]
    same_k = [d for d in drawn if d.k == drawn[0].k]
    a, b = (_add_k(random.Random(i), d) for i, d in enumerate(same_k[:2]))
    assert len(same_k) >= 2 and (a.name, a.params, a.inputs) != (b.name, b.params, b.inputs)
    assert behaviour_key(a) == behaviour_key(b)
    other = next(d for d in drawn if d.k != drawn[0].k)
    assert behaviour_key(_add_k(random.Random(0), other)) != behaviour_key(a)
    reverse = _reverse(random.Random(0), drawn[0])
    assert behaviour_key(reverse).startswith("(str) -> str: '' 'cba' 'noon' 'leveL'")
    scale = _scale_all(random.Random(1), _level2(random.Random(1)))
    assert behaviour_key(scale).split(": ")[1].split(" ")[:2] == ["[]", f"[{5 * int(scale.name.split('_')[-1])}]"]


def test_parts_and_levels_in_the_task():
    train, test = CodeTask(dataset="easy"), CodeTask(dataset="easy", split="test")
    sft, rl = CodeTask(dataset="easy", split="sft"), CodeTask(dataset="easy", split="rl")
    assert (len(train), len(test), len(sft), len(rl)) == (874, 58, 811, 63)
    assert [s.prompt for s in train.samples] == sorted(
        [s.prompt for s in sft.samples + rl.samples], key=[s.prompt for s in train.samples].index
    )
    assert {s.extra["split"] for s in rl.samples} == {"rl"} and {s.extra["split"] for s in test.samples} == {"test"}
    hard = CodeTask(dataset="easy", split="rl", level=[2, 3])
    assert {s.extra["level"] for s in hard.samples} == {2, 3}
    assert [s.prompt for s in hard.samples] == [s.prompt for s in rl.samples if s.extra["level"] > 1]
    assert easy_levels(None) == (1, 2, 3) and easy_levels(2) == (2,) and easy_levels([3, 1]) == (3, 1)
    for bad in (0, [], [1, 4], "2", 1.5):
        with pytest.raises(ValueError, match=r"level=.* is not valid; choose 1, 2 or 3, a list of them"):
            CodeTask(dataset="easy", level=bad)
    with pytest.raises(ValueError, match="split='valid' is not valid; choose one of"):
        CodeTask(dataset="easy", split="valid")


def test_new_templates_pass_in_the_sandbox():
    """The templates with a drawn constant (the held-out material): each reference passes all
    its tests in the sandbox."""
    problems = [s for s in easy_problems() if s.extra["split"] == "rl"]
    task = CodeTask(dataset="easy", timeout=2.0)
    assert task.score([s.references[0] for s in problems], problems).rewards.tolist() == [1.0] * len(problems)
    assert len({(s.extra["level"], s.extra["template"]) for s in problems}) >= 12
    assert all(len(templates) >= 10 for _, templates in TEMPLATES.values())
