"""The one table of env ids. Adding a task touches its module and one row here.

Every id is registered twice, bare (``TextTranslate-v0``) and in the ``text_gym``
namespace (``text_gym/TextTranslate-v0``), with the single env as ``entry_point`` and
the native :class:`~text_gym.vector_env.TextVectorEnv` as ``vector_entry_point``, so
``gym.make_vec(id, num_envs=n)`` builds the batched env, not n copies.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

NAMESPACE = "text_gym"
ENTRY_POINT = "text_gym.env:TextEnv"
VECTOR_ENTRY_POINT = "text_gym.vector_env:TextVectorEnv"

# id -> default kwargs (the task and its defaults). Bump -vN when data, tokenizer or
# reward change.
ENV_TABLE: dict[str, dict[str, Any]] = {
    "TextTranslate-v0": {"task": "translation", "split": "train", "scan_split": "simple"},
    "TextSumm-v0": {"task": "summarization", "split": "train"},
    "TextDialog-v0": {
        "task": "dialogue",
        "split": "train",
        # chitchat has turns of up to ~35,000 characters: cap the window (left
        # truncation keeps the end of the history, next to the response).
        "max_prompt_tokens": 256,
        "max_new_tokens": 64,
    },
    "TextDialogGoal-v0": {"task": "goal_dialogue", "split": "train"},
    "TextCode-v0": {"task": "code", "dataset": "humaneval"},
}


def register_envs() -> None:
    """Register every id of ``ENV_TABLE`` (idempotent)."""
    for env_id, kwargs in ENV_TABLE.items():
        for full_id in (env_id, f"{NAMESPACE}/{env_id}"):
            if full_id in gym.registry:
                continue
            gym.register(
                id=full_id,
                entry_point=ENTRY_POINT,
                vector_entry_point=VECTOR_ENTRY_POINT,
                kwargs={**kwargs, "env_id": env_id},
            )


def env_ids() -> list[str]:
    """The bare ids of every registered env."""
    return list(ENV_TABLE)
