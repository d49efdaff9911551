"""The LM rollout backend: batched KV-cache rollouts through a TextVectorEnv, and models.

``runner`` runs a model over the env's observations with a window-shaped KV cache
(:class:`WindowRunner`), ``sampling`` holds the sampler and log-probability functions,
``collector`` the env loop (:class:`RolloutCollector`), ``models`` model loading.
See docs/rollout.md.
"""

from text_gym.rollout.cache import WindowCache
from text_gym.rollout.collector import Episodes, Rollout, RolloutCollector
from text_gym.rollout.models import cache_dir, load_default_model, tiny_model
from text_gym.rollout.runner import WindowRunner, merge_budget
from text_gym.rollout.sampling import sample_categorical, sequence_logprobs, token_logprobs, top_p_keep

__all__ = [
    "Episodes",
    "Rollout",
    "RolloutCollector",
    "WindowCache",
    "WindowRunner",
    "cache_dir",
    "load_default_model",
    "merge_budget",
    "sample_categorical",
    "sequence_logprobs",
    "tiny_model",
    "token_logprobs",
    "top_p_keep",
]
