"""TopPMasks: a reference model's top-p action masks for sb3-contrib's MaskablePPO (NLPO in SB3).

NLPO (Ramamurthy et al., 2023) restricts the policy, at each step, to the tokens of a
reference model's top-p nucleus for the current text. sb3-contrib's ``MaskablePPO`` takes
such a restriction as ``action_masks()``, read once per step through
``venv.env_method("action_masks")`` before the policy acts. :class:`TopPMasks` is a
``VecEnvWrapper`` that answers that call: it follows the observations with the reference
model and a per-slot KV cache (:class:`~text_gym.rollout.WindowRunner`), so a step costs
one forward over the tokens new in that step, and keeps the masks of the current
observation ready.

Example:
    >>> from sb3_contrib import MaskablePPO
    >>> from text_gym.adapters.sb3 import TopPMasks, to_vec_env
    >>> from text_gym.rollout import tiny_model
    >>> venv = to_vec_env("TextTranslate-v0", num_envs=2, tokenizer="byte", max_new_tokens=4)
    >>> masked = TopPMasks(venv, tiny_model(venv.env.tokenizer), top_p=0.9)
    >>> model = MaskablePPO("MultiInputPolicy", masked, n_steps=4, batch_size=8, device="cpu")
    >>> model = model.learn(8)
    >>> masked.action_masks().shape, bool(masked.action_masks().any(1).all())
    ((2, 258), True)
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import torch

from text_gym.adapters.sb3.vec_env import SB3VecEnv
from text_gym.rollout import WindowRunner, top_p_keep

try:
    from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
    from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError("text_gym.adapters.sb3 needs Stable-Baselines3: pip install 'text_gym[sb3]'") from error

MASK_METHOD = "action_masks"  # the name sb3-contrib's get_action_masks() calls


class TopPMasks(VecEnvWrapper):
    """Allow, in each slot, only the reference model's top-p tokens for its current text.

    ``action_masks()`` returns a bool array (num_envs, vocab): row ``i`` is the nucleus of
    the reference model's next-token distribution for slot ``i``'s current observation
    (the smallest set of most likely tokens whose probability reaches ``top_p``, as
    :func:`~text_gym.rollout.top_p_keep` computes it), and always holds the most likely
    token, so no row is empty. ``env_method("action_masks", indices=...)`` returns its rows
    one per index and ``has_attr("action_masks")`` is True, which is how sb3-contrib's
    ``MaskablePPO`` finds the masks through this wrapper and through SB3's wrappers put
    around it (``VecMonitor``).

    The reference model reads every observation that comes back from ``reset()`` and
    ``step()``, in order, with its own KV cache laid out like the env's window: one forward
    per step over the tokens new in that step. So it must wrap the observations as the env
    returns them: put it right on :func:`to_vec_env`'s result, below any wrapper that
    changes observations (``VecNormalize``, frame stacking). The model stays as given (keep
    it frozen: NLPO's mask model is a copy of the policy, synced now and then).

    Args:
        venv: the result of :func:`~text_gym.adapters.sb3.to_vec_env` (or an SB3 wrapper
            around it that leaves observations unchanged).
        reference_model: a Hugging Face causal LM for the env's tokenizer, on the device
            where its forward should run (the numpy observations are viewed as CPU tensors
            without a copy, and moved there when it is not the CPU), e.g.
            :func:`~text_gym.rollout.tiny_model`.
        top_p: the nucleus mass, in (0, 1]; 1 allows every token.
        **runner_kwargs: passed to :class:`~text_gym.rollout.WindowRunner`
            (``prefix_cache``, ``compile``, ...).

    Raises:
        TypeError: ``venv`` does not reach an :class:`SB3VecEnv`.
        ValueError: ``top_p`` is out of range, a wrapper below changes the observation
            space, or the model does not fit the env (:class:`WindowRunner`'s checks).
    """

    def __init__(self, venv: VecEnv, reference_model: Any, top_p: float = 0.9, **runner_kwargs: Any) -> None:
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p={top_p!r} must be in (0, 1]: the nucleus mass (1 allows every token)")
        base = venv.unwrapped
        if not isinstance(base, SB3VecEnv):
            raise TypeError(
                f"TopPMasks wraps the VecEnv of text_gym.adapters.sb3.to_vec_env, not {type(base).__name__}: "
                "build it with to_vec_env(...)"
            )
        env = base.env
        if venv.observation_space != env.single_observation_space:
            raise ValueError(
                f"the observations reaching TopPMasks ({venv.observation_space}) are not the env's: put "
                "TopPMasks right on to_vec_env's result, below wrappers that change observations"
            )
        super().__init__(venv)
        self._env, self.top_p = env, float(top_p)
        self._device = next(reference_model.parameters()).device
        facts = types.SimpleNamespace(
            num_envs=env.num_envs,
            prompt_tokens=env.prompt_tokens,
            window=env.window,
            vocab_size=env.vocab_size,
            device=self._device,
            tokenizer=env.tokenizer,
        )
        self.runner = WindowRunner(reference_model, facts, **runner_kwargs)
        self._masks: torch.Tensor | None = None  # (N, V) bool: the current observation's
        self._fed_calls = -1  # env.calls when the runner last read an observation

    def reset(self) -> VecEnvObs:
        obs = self.venv.reset()
        self._follow(obs, restart=True)
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        self._follow(obs, restart=False)
        return obs, rewards, dones, infos

    def _follow(self, obs: dict[str, np.ndarray], restart: bool) -> None:
        """Feed the reference model the tokens new in ``obs``; keep the masks of its logits."""
        if not restart and self._env.calls != self._fed_calls + 1:
            raise RuntimeError(
                f"the env was reset or stepped {self._env.calls - self._fed_calls - 1} time(s) behind TopPMasks, "
                "so its reference model's cache is stale: step and reset through the wrapper, or call reset()"
            )
        self._fed_calls = self._env.calls
        tensors = {k: torch.from_numpy(obs[k]).to(self._device) for k in ("input_ids", "attention_mask", "new_span")}
        logits = self.runner.feed(tensors)[0][:, : self._env.vocab_size]  # (N, V)
        if self.top_p >= 1:  # the whole vocabulary (a float32 cumsum reaches 1 before the tail)
            keep = torch.ones_like(logits, dtype=torch.bool)
        else:
            keep = top_p_keep(logits, self.top_p)
        keep[torch.arange(len(keep), device=keep.device), logits.argmax(-1)] = True  # never empty
        self._masks = keep

    def action_masks(self) -> np.ndarray:
        """The allowed actions of every slot for its current observation, (num_envs, vocab) bool."""
        if self._masks is None:
            raise RuntimeError("action_masks() before reset(): call reset() first")
        return self._masks.cpu().numpy()

    def has_attr(self, attr_name: str) -> bool:
        return attr_name == MASK_METHOD or self.venv.has_attr(attr_name)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        """``"action_masks"``: each requested slot's row of :meth:`action_masks`; any other
        method goes to the wrapped ``VecEnv``."""
        if method_name != MASK_METHOD:
            return self.venv.env_method(method_name, *method_args, indices=indices, **kwargs)
        masks = self.action_masks()
        return [masks[i] for i in self._get_indices(indices)]
