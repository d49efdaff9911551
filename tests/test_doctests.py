"""Docstring examples in the library run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "text_gym.env",
    "text_gym.tokenizers",
    "text_gym.tasks.scan",
    "text_gym.rewards.text_metrics",
    "text_gym.rewards.rouge",
    "text_gym.tasks.summarization",
    "text_gym.tasks.dialogue",
    "text_gym.tasks.code",
    "text_gym.rewards.sandbox",
    "text_gym.rollout.collector",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0
