"""The LM rollout backend: batched KV-cache rollouts through a TextVectorEnv, and models."""

from text_gym.rollout.collector import (
    Episodes,
    Rollout,
    RolloutCollector,
    WindowCache,
    merge_budget,
    sample_categorical,
    sequence_logprobs,
    token_logprobs,
    top_p_keep,
)
from text_gym.rollout.models import cache_dir, load_default_model, tiny_model

__all__ = [
    "Episodes",
    "Rollout",
    "RolloutCollector",
    "WindowCache",
    "cache_dir",
    "load_default_model",
    "merge_budget",
    "sample_categorical",
    "sequence_logprobs",
    "tiny_model",
    "token_logprobs",
    "top_p_keep",
]
