"""The LM rollout backend: models (this issue's first part); the batched KV-cache
collector comes next (see the open rollout issue)."""

from text_gym.rollout.models import cache_dir, load_default_model, tiny_model

__all__ = ["cache_dir", "load_default_model", "tiny_model"]
