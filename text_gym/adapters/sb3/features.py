"""TokenEmbedding: a features extractor that reads a text_gym observation as tokens.

SB3's default ``MultiInputPolicy`` flattens every Box into floats, so an MLP sees token
ids as magnitudes (id 1,000 "close to" id 1,001) and learns nothing of the text.
:class:`TokenEmbedding` looks the ids up in an embedding table instead, and pools the
window into a fixed-size vector; SB3's own policy heads (MLPs for the actor and the
critic) then act on it. It is the cheap baseline without a language model: no attention
over the text, no pretrained weights.

Example:
    >>> from stable_baselines3 import PPO
    >>> from text_gym.adapters.sb3 import TokenEmbedding, to_vec_env
    >>> venv = to_vec_env("TextTranslate-v0", num_envs=2, tokenizer="byte", max_new_tokens=4)
    >>> model = PPO("MultiInputPolicy", venv, n_steps=8, batch_size=16, device="cpu",
    ...             policy_kwargs={"features_extractor_class": TokenEmbedding})
    >>> model.policy.features_extractor.features_dim  # 3 pools of 32 + how far the window is filled
    97
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import nn

from text_gym.adapters.sb3.lm_window import EXACT_FLOAT_IDS  # SB3 casts Box observations to float32

try:
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError("text_gym.adapters.sb3 needs Stable-Baselines3: pip install 'text_gym[sb3]'") from error


class TokenEmbedding(BaseFeaturesExtractor):
    """Embed a text_gym observation's token ids and pool them into one vector per slot.

    The features are four parts, concatenated (``3 * embed_dim + 1`` values):

    * the embedding of the last real token (column ``new_span[1] - 1``: the agent's last
      action, or the end of the prompt), which says where the response stands;
    * the mean embedding of the context (``attention_mask`` 1, ``agent_mask`` 0: the prompt,
      and a simulated user's replies);
    * the mean embedding of the agent's own tokens (``agent_mask`` 1), zero before the first;
    * how far the window is filled (``new_span[1] / L``): the prompt region is the same
      width in every episode, so this is the response length, shifted and scaled.

    Padding never enters a mean. SB3's preprocessing hands the ids over as float32; they
    are cast back to int64, exact for vocabularies under 2**24 tokens.

    Args:
        observation_space: a text_gym env's observation ``Dict`` (``input_ids``,
            ``attention_mask``, ``agent_mask``, ``new_span``).
        embed_dim: width of the embedding table.

    Raises:
        ValueError: the space lacks a text_gym key, or its vocabulary has 2**24 ids or more.
    """

    def __init__(self, observation_space: gym.spaces.Dict, embed_dim: int = 32) -> None:
        keys = ("input_ids", "attention_mask", "agent_mask", "new_span")
        if not isinstance(observation_space, gym.spaces.Dict) or not set(keys) <= set(observation_space.spaces):
            raise ValueError(f"TokenEmbedding reads a text_gym observation with keys {keys}; got {observation_space}")
        vocab = int(observation_space["input_ids"].high.max()) + 1
        if vocab > EXACT_FLOAT_IDS:
            raise ValueError(
                f"a vocabulary of {vocab} ids does not survive SB3's float32 observations "
                f"(exact below {EXACT_FLOAT_IDS}); use a smaller tokenizer"
            )
        if embed_dim < 1:
            raise ValueError(f"embed_dim={embed_dim!r} must be a positive int")
        super().__init__(observation_space, features_dim=3 * embed_dim + 1)
        self.embedding = nn.Embedding(vocab, embed_dim)
        self.window = observation_space["input_ids"].shape[0]

    def forward(self, observations: dict[str, Any]) -> torch.Tensor:
        ids = observations["input_ids"].long()  # (N, L): float32 from SB3, exact below 2**24
        attn = observations["attention_mask"] > 0.5  # (N, L)
        agent = observations["agent_mask"] > 0.5
        end = observations["new_span"][:, 1].long()  # (N,): where the next token goes
        embedded = self.embedding(ids)  # (N, L, d)
        last = embedded.gather(1, (end - 1).clamp(min=0)[:, None, None].expand(-1, 1, embedded.shape[-1]))[:, 0]
        context = _masked_mean(embedded, attn & ~agent)
        response = _masked_mean(embedded, agent)
        filled = (end.float() / self.window)[:, None]  # (N, 1)
        return torch.cat((last, context, response, filled), 1)  # (N, 3d + 1)


def _masked_mean(embedded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``embedded`` (N, L, d) over the columns where ``mask`` (N, L) holds; 0 where none."""
    weights = mask.to(embedded.dtype)[:, :, None]  # (N, L, 1)
    return (embedded * weights).sum(1) / weights.sum(1).clamp(min=1)
