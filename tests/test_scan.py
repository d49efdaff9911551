"""Tests for the grammar-generated SCAN dataset (text_gym.tasks.scan)."""

from __future__ import annotations

import doctest
import re

import pytest

from text_gym.tasks import scan
from text_gym.tasks.scan import SCAN_SPLITS, interpret, scan_pairs, scan_split

SIZES = {
    "simple": (16_728, 4_182),
    "length": (16_990, 3_920),
    "addprim_jump": (14_670, 7_706),
    "addprim_turn_left": (21_890, 1_208),
}


def n_actions(actions: str) -> int:
    return len(actions.split())


def test_all_pairs_unique() -> None:
    pairs = scan_pairs()
    assert len(pairs) == 20_910
    assert len(set(pairs)) == 20_910
    assert len({command for command, _ in pairs}) == 20_910
    assert list(pairs) == sorted(pairs)
    assert all(interpret(command) == actions for command, actions in pairs)


@pytest.mark.parametrize(
    ("command", "actions"),
    [
        ("jump", "I_JUMP"),
        ("turn left", "I_TURN_LEFT"),
        ("walk left", "I_TURN_LEFT I_WALK"),
        ("turn opposite right", "I_TURN_RIGHT I_TURN_RIGHT"),
        ("jump around right", " ".join(["I_TURN_RIGHT I_JUMP"] * 4)),
        ("walk opposite left thrice", " ".join(["I_TURN_LEFT I_TURN_LEFT I_WALK"] * 3)),
        ("run twice after jump left", "I_TURN_LEFT I_JUMP I_RUN I_RUN"),
        ("look and run right twice", "I_LOOK I_TURN_RIGHT I_RUN I_TURN_RIGHT I_RUN"),
        ("turn around left twice and look", " ".join(["I_TURN_LEFT"] * 8 + ["I_LOOK"])),
    ],
)
def test_interpret_known_examples(command: str, actions: str) -> None:
    assert interpret(command) == actions
    assert (command, actions) in scan_pairs()


@pytest.mark.parametrize(
    ("command", "culprit"),
    [
        ("walk sideways", "sideways"),
        ("left walk", "left walk"),
        ("walk and run and look", "and"),
        ("turn", "turn"),
    ],
)
def test_interpret_rejects_bad_commands(command: str, culprit: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(culprit))):
        interpret(command)


@pytest.mark.parametrize("name", SCAN_SPLITS)
def test_split_sizes_and_disjointness(name: str) -> None:
    train, test = scan_split(name, "train"), scan_split(name, "test")
    assert (len(train), len(test)) == SIZES[name]
    assert not {c for c, _ in train} & {c for c, _ in test}
    all_pairs = set(scan_pairs())
    assert set(train) | set(test) == all_pairs
    assert scan_split(name, "train") == train  # deterministic order


def test_length_split_boundary() -> None:
    train_lengths = [n_actions(a) for _, a in scan_split("length", "train")]
    test_lengths = [n_actions(a) for _, a in scan_split("length", "test")]
    assert max(train_lengths) == 22
    assert (min(test_lengths), max(test_lengths)) == (24, 48)


@pytest.mark.parametrize(
    ("name", "primitive", "actions", "copies"),
    [
        ("addprim_jump", "jump", "I_JUMP", 1_467),
        ("addprim_turn_left", "turn left", "I_TURN_LEFT", 2_189),
    ],
)
def test_addprim_splits(name: str, primitive: str, actions: str, copies: int) -> None:
    train, test = scan_split(name, "train"), scan_split(name, "test")

    def has(command: str) -> bool:
        return f" {primitive} " in f" {command} "

    assert train.count((primitive, actions)) == copies
    assert copies * 10 == len(train)
    assert all(not has(c) for c, _ in train if c != primitive)
    assert all(has(c) and c != primitive for c, _ in test)


def test_addprim_jump_word_level() -> None:
    train, test = scan_split("addprim_jump", "train"), scan_split("addprim_jump", "test")
    assert all("jump" not in c.split() for c, _ in train if c != "jump")
    assert all("jump" in c.split() for c, _ in test)


def test_simple_split_seeded() -> None:
    first = scan_split("simple", "test", seed=0)
    assert scan_split("simple", "test", 0) == first
    assert scan_split("simple", "test", seed=1) != first
    assert len(scan_split("simple", "test", seed=1)) == 4_182
    assert scan_split.__wrapped__("simple", "test", 0) == first  # not just the cache


@pytest.mark.parametrize(
    ("args", "bad", "choices"),
    [
        (("bogus", "train"), "bogus", SCAN_SPLITS),
        (("simple", "dev"), "dev", ("train", "test")),
    ],
)
def test_split_errors(args: tuple[str, str], bad: str, choices: tuple[str, ...]) -> None:
    with pytest.raises(ValueError) as excinfo:
        scan_split(*args)
    message = str(excinfo.value)
    assert repr(bad) in message
    assert all(choice in message for choice in choices)


def test_doctests() -> None:
    results = doctest.testmod(scan, optionflags=doctest.ELLIPSIS)
    assert results.failed == 0
    assert results.attempted >= 8
