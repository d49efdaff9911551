"""Shared fixtures: env ids from the registry, short-episode env factories."""

from __future__ import annotations

import os
import sys
import types

import gymnasium as gym
import numpy as np
import pytest
import torch

import text_gym

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n N` runs N worker processes: one torch thread each, or their thread pools
    # oversubscribe the cores (the rollout tests ran ~3x slower on 2 cores)
    torch.set_num_threads(1)

# Stable-Baselines3's logger imports tensorboard, which imports TensorFlow whenever it is
# installed (the tensorflow extra), seconds per test process; no test here needs it from
# tensorboard: its own no-TensorFlow switch (as agents/common.py sets it) selects the stub.
sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))

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


@pytest.fixture(scope="session")
def sentencepiece_hf():
    """A small Hugging Face tokenizer built like Llama 2's and Mistral v0.1's: a normalizer
    that prepends "\u2581" and a decoder that strips one leading space."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rust = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    rust.pre_tokenizer = pre_tokenizers.Split("\n", "isolated")  # no merges across lines
    rust.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    rust.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    corpus = ["def f(n):\n    return n + 5\n", "a b c", "Question: add two numbers. Answer: 12"] * 5  # "a b" merges
    rust.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=200,
            special_tokens=["<unk>", "<s>", "</s>"],
            initial_alphabet=[chr(c) for c in range(32, 127)] + ["\u2581"],
        ),
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=rust, unk_token="<unk>", eos_token="</s>", clean_up_tokenization_spaces=False
    )
