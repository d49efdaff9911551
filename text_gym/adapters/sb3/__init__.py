"""Stable-Baselines3 on text_gym's envs (``pip install 'text_gym[sb3]'``); see docs/adapters/sb3.md.

* :func:`to_vec_env`: the native ``TextVectorEnv`` as an SB3 ``VecEnv``.
"""

from text_gym.adapters.sb3.vec_env import SB3VecEnv, to_vec_env

__all__ = ["SB3VecEnv", "to_vec_env"]
