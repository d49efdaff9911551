"""Shared fixtures: env ids from the registry, short-episode env factories."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
import torch

import text_gym

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n N` runs N worker processes: one torch thread each, or their thread pools
    # oversubscribe the cores (the rollout tests ran ~3x slower on 2 cores)
    torch.set_num_threads(1)

ENV_IDS = text_gym.env_ids()
ALL_IDS = ENV_IDS + [f"text_gym/{i}" for i in ENV_IDS]


def eos_of(env) -> int:
    return env.unwrapped.tokenizer.eos_token_id


def mixed_actions(rng: np.random.Generator, n: int, vocab: int, eos: int, p_eos: float = 0.15):
    """Random token ids with EOS mixed in, so episodes end both ways."""
    actions = rng.integers(0, vocab, size=n)
    actions[rng.random(n) < p_eos] = eos
    return actions


@pytest.fixture(params=ENV_IDS)
def env_id(request) -> str:
    return request.param


@pytest.fixture
def byte_env():
    """A fast single env on the byte tokenizer with short episodes."""
    env = gym.make("TextTranslate-v0", tokenizer="byte", max_new_tokens=8)
    yield env
    env.close()
