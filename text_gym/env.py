"""TextEnv: the single-episode Gymnasium env, a thin shell over a one-slot TextVectorEnv.

All logic lives in :class:`~text_gym.vector_env.TextVectorEnv`; this class only removes
the batch dimension, so the single and vector envs cannot disagree.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from text_gym.tasks import Task
from text_gym.tokenizers import Tokenizer
from text_gym.vector_env import TextVectorEnv


class TextEnv(gym.Env):
    """One token-level text-generation episode at a time.

    Spaces, rewards, episode end, seeding, infos and arguments are those of
    :class:`~text_gym.vector_env.TextVectorEnv` for a single slot; see its docstring.
    ``step`` after the episode ended raises ``RuntimeError``: call ``reset()``.

    Example:
        >>> import gymnasium as gym, text_gym
        >>> env = gym.make("TextTranslate-v0", tokenizer="byte")
        >>> obs, info = env.reset(seed=0)
        >>> sorted(obs)
        ['agent_mask', 'attention_mask', 'input_ids', 'new_span']
        >>> obs, reward, terminated, truncated, info = env.step(env.unwrapped.eos_token_id)
        >>> terminated, reward, info["response"]
        (True, 0.0, '')
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        if "num_envs" in kwargs or "autoreset_mode" in kwargs:
            raise ValueError(
                "TextEnv is one episode without autoreset, so it takes no num_envs or "
                "autoreset_mode: use gym.make_vec(id, num_envs=n, autoreset_mode=...) for the "
                "native vector env, or gym.make_vec(id, num_envs=n, vectorization_mode='sync', "
                "vector_kwargs={'autoreset_mode': ...}) for SyncVectorEnv"
            )
        self.vector = TextVectorEnv(1, autoreset_mode=AutoresetMode.DISABLED, render_mode=render_mode, **kwargs)
        self.render_mode = render_mode
        self.observation_space = self.vector.single_observation_space
        self.action_space = self.vector.single_action_space
        self.eos_token_id = self.vector.tokenizer.eos_token_id
        self._done = False

    @property
    def tokenizer(self) -> Tokenizer:
        """The env's tokenizer (that of its one-slot vector env)."""
        return self.vector.tokenizer

    @property
    def task(self) -> Task:
        """The env's task (that of its one-slot vector env)."""
        return self.vector.task

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        if options and "sample_index" in options:  # one slot: accept a plain int
            options = {**options, "sample_index": np.atleast_1d(options["sample_index"])}
        obs, infos = self.vector.reset(seed=seed, options=options)
        self._done = False
        return _unbatch(obs), _unbatch_info(infos)

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("the episode has ended: call reset() before step()")
        batch = action if isinstance(action, torch.Tensor) else np.asarray(action)
        if tuple(batch.shape) not in ((), (1,)):
            raise ValueError(f"a TextEnv action is one token id; got shape {tuple(batch.shape)} ({action!r:.80})")
        batch = batch.reshape(1)
        obs, rewards, terminated, truncated, infos = self.vector.step(batch)
        self._done = bool(terminated[0] or truncated[0])
        return (
            _unbatch(obs),
            float(rewards[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            _unbatch_info(infos),
        )

    def render(self) -> str | None:
        frames = self.vector.render()
        return None if frames is None else frames[0]


def _unbatch(obs: dict[str, Any]) -> dict[str, Any]:
    return {k: v[0] for k, v in obs.items()}


def _unbatch_info(infos: dict[str, Any]) -> dict[str, Any]:
    info = {}
    for key, value in infos.items():
        if key.startswith("_") or not infos[f"_{key}"][0]:
            continue
        value = _unbatch_info(value) if isinstance(value, dict) else value[0]
        info[key] = bool(value) if isinstance(value, np.bool_) else value
    return info
