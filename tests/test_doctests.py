"""Docstring examples in the library run and hold: every module of text_gym whose source
has a ``>>>`` example is collected, so a new module's examples are tested without a list
to keep up to date."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "text_gym"


def modules_with_examples() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>>" in path.read_text():
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_the_examples_are_found():
    found = modules_with_examples()
    expected = ["text_gym.env", "text_gym.prompt_table", "text_gym.sample_streams", "text_gym.vector_info"]
    expected += [
        "text_gym.rewards.sandbox",
        *(f"text_gym.rollout.{m}" for m in ("cache", "runner", "sampling", "collector")),
    ]
    for name in expected:
        assert name in found, (name, found)


@pytest.mark.parametrize("name", modules_with_examples())
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0, (name, result)
