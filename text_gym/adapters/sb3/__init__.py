"""Stable-Baselines3 on text_gym's envs (``pip install 'text_gym[sb3]'``); see docs/adapters/sb3.md.

* :func:`to_vec_env`: the native ``TextVectorEnv`` as an SB3 ``VecEnv``.
* :class:`TokenEmbedding`: a features extractor for SB3's own policies, the cheap
  baseline without a language model.
* :class:`TopPMasks`: a reference model's top-p action masks for sb3-contrib's
  ``MaskablePPO`` (NLPO's mask in SB3).
* :class:`LMActorCriticPolicy`: an actor-critic policy whose actor is a Hugging Face
  causal LM with a per-slot KV cache, for SB3's own PPO and A2C (docs/adapters/sb3_policy.md);
  ``text_gym.adapters.sb3.maskable_policy.MaskableLMActorCriticPolicy`` is its
  ``MaskablePPO`` variant (imported from its module: it needs sb3-contrib).
"""

from text_gym.adapters.sb3.features import TokenEmbedding
from text_gym.adapters.sb3.masks import TopPMasks
from text_gym.adapters.sb3.policy import LMActorCriticPolicy
from text_gym.adapters.sb3.vec_env import SB3VecEnv, to_vec_env

__all__ = ["LMActorCriticPolicy", "SB3VecEnv", "TokenEmbedding", "TopPMasks", "to_vec_env"]
