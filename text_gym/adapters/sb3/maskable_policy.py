"""The language-model policy for sb3-contrib's ``MaskablePPO``: action masks on the LM's logits.

:class:`MaskableLMActorCriticPolicy` is :class:`~text_gym.adapters.sb3.policy.LMActorCriticPolicy`
(the same model arguments, caches and checks) on sb3-contrib's ``MaskableActorCriticPolicy``,
so that ``MaskablePPO`` takes it: each step's ``action_masks()`` (one boolean per token id,
e.g. a reference model's top-p set, NLPO's mask) set the logits of the tokens outside the
mask to a large negative value before sampling, and in training the log-probabilities and
entropies are those of the masked distribution.

    MaskablePPO(MaskableLMActorCriticPolicy, venv_with_action_masks, policy_kwargs={"model": "tiny"})
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from text_gym.adapters.sb3.policy import LMPolicyMixin

try:
    from sb3_contrib.common.maskable.distributions import MaskableDistribution
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
except ImportError as error:  # sb3-contrib comes with the sb3 extra
    raise ImportError("text_gym.adapters.sb3.maskable_policy needs sb3-contrib: pip install 'text_gym[sb3]'") from error


class MaskableLMActorCriticPolicy(LMPolicyMixin, MaskableActorCriticPolicy):
    """:class:`~text_gym.adapters.sb3.policy.LMActorCriticPolicy` with action masks, for
    ``MaskablePPO``; the arguments are the same (in ``policy_kwargs``)."""

    def forward(
        self, obs: dict[str, torch.Tensor], deterministic: bool = False, action_masks: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Actions (N,), values (N, 1) and log-probabilities (N,) of a rollout step, masked."""
        return self._act(obs, deterministic, action_masks)

    def evaluate_actions(
        self, obs: dict[str, torch.Tensor], actions: torch.Tensor, action_masks: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Values (B, 1), masked log-probabilities (B,) and entropies (B,), with gradients."""
        return self._evaluate(obs, actions, action_masks)

    def get_distribution(self, obs: dict[str, torch.Tensor], action_masks: Any = None) -> MaskableDistribution:
        """The masked action distribution at ``obs``, through ``predict``'s own cache."""
        return self._action_distribution(self._lm_outputs(obs, "predict")[0], action_masks)
