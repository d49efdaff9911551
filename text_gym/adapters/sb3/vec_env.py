"""The native TextVectorEnv as a Stable-Baselines3 ``VecEnv``, with no single-env copies.

SB3 steps a ``VecEnv``: ``reset()`` returns observations only (seeds come from
``seed()``), ``step()`` returns observations, float32 rewards, bool dones and one info dict
per slot, and a slot that finishes is reset within the step, its last observation in its
info as ``terminal_observation``. That is :class:`~text_gym.vector_env.TextVectorEnv` in
``SAME_STEP`` autoreset mode, where the finished slots' last observations and infos come
back as ``final_obs``/``final_info``. :class:`SB3VecEnv` only renames: a step is one call
of the env, and Python touches the slots that finished, not the running ones.

Example:
    >>> from text_gym.adapters.sb3 import to_vec_env
    >>> venv = to_vec_env("TextTranslate-v0", num_envs=2, tokenizer="byte")
    >>> venv.seed(0)
    [0, 1]
    >>> obs = venv.reset()
    >>> obs, rewards, dones, infos = venv.step([venv.get_attr("tokenizer")[0].eos_token_id] * 2)
    >>> dones.tolist(), sorted(infos[0])[:4]
    ([True, True], ['TimeLimit.truncated', 'metrics', 'prompt', 'prompt_truncated'])
    >>> P = venv.get_attr("prompt_tokens")[0]
    >>> infos[0]["terminal_observation"]["new_span"].tolist() == [P, P + 1]  # the EOS just written
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from text_gym.env_checks import parse_autoreset_mode
from text_gym.vector_env import TextVectorEnv

try:
    from stable_baselines3.common.vec_env import VecEnv
    from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError("text_gym.adapters.sb3 needs Stable-Baselines3: pip install 'text_gym[sb3]'") from error


def to_vec_env(
    env: TextVectorEnv | str, num_envs: int | None = None, *, bootstrap_truncated: bool = False, **env_kwargs: Any
) -> SB3VecEnv:
    """A Stable-Baselines3 ``VecEnv`` over one native :class:`~text_gym.vector_env.TextVectorEnv`.

    Args:
        env: a built ``TextVectorEnv`` (numpy output, ``autoreset_mode=SAME_STEP``,
            ``copy=True``), or an env id, built with ``gym.make_vec(env, num_envs,
            autoreset_mode="SAME_STEP", **env_kwargs)``.
        num_envs: number of slots, with an env id (default 1).
        bootstrap_truncated: report an episode cut at ``max_new_tokens`` as
            ``TimeLimit.truncated`` (SB3 then adds ``gamma`` times the critic's value of its
            last observation to its reward). Default False: the env pays the task's final
            reward on that step and nothing follows, so the episode is over, as a
            terminated one is.
        **env_kwargs: env arguments, with an env id (``tokenizer="byte"``, ...).

    Returns:
        An :class:`SB3VecEnv`: ``PPO("MultiInputPolicy", to_vec_env(...))`` trains on it.

    Raises:
        ValueError: the env's settings do not suit SB3 (the message names the fix), or
            ``num_envs``/``env_kwargs`` were given with a built env.
        TypeError: ``env`` is neither an env id nor a ``TextVectorEnv``.
    """
    if isinstance(env, str):
        mode = env_kwargs.pop("autoreset_mode", AutoresetMode.SAME_STEP)
        if parse_autoreset_mode(mode) is not AutoresetMode.SAME_STEP:
            raise ValueError(
                f"autoreset_mode={mode!r}: Stable-Baselines3 resets a finished slot within the step, "
                "so to_vec_env builds the env with SAME_STEP; leave autoreset_mode out"
            )
        built = gym.make_vec(
            env, num_envs=1 if num_envs is None else num_envs, autoreset_mode="SAME_STEP", **env_kwargs
        )
        return SB3VecEnv(built, bootstrap_truncated=bootstrap_truncated)
    if num_envs is not None or env_kwargs:
        given = (["num_envs"] if num_envs is not None else []) + sorted(env_kwargs)
        raise ValueError(
            f"to_vec_env got {given} with an already built env; pass them to its constructor, or pass an env id instead"
        )
    return SB3VecEnv(env, bootstrap_truncated=bootstrap_truncated)


class SB3VecEnv(VecEnv):
    """One :class:`~text_gym.vector_env.TextVectorEnv` behind Stable-Baselines3's ``VecEnv`` API.

    Build it with :func:`to_vec_env`. Spaces are the env's single-slot spaces (SB3's
    convention). Semantics, as SB3's ``DummyVecEnv`` has them for single envs:

    * ``reset()`` starts every slot, with the seeds of the last ``seed(s)`` call (slot
      ``i`` gets ``s + i``, as ``reset(seed=s)`` of the env does), then forgets them; the
      options of ``set_options`` apply likewise (``{"sample_index": k}`` per slot, given
      for every slot or none). ``reset_infos[i]`` holds slot ``i``'s reset info.
    * ``step()`` returns rewards as float32 and ``dones = terminated | truncated``. Each
      slot's info dict has ``TimeLimit.truncated`` (truncated and not terminated, with
      ``bootstrap_truncated``; else always False, see :func:`to_vec_env`); a slot
      that finished also has ``terminal_observation`` (its last observation, before the
      autoreset) and the env's final info (``response``, ``metrics``, ...), and its
      ``reset_infos`` entry gets the info of the episode that started.

    All slots share one env object, so the per-env calls read or change that object:
    ``get_attr(name, indices)`` returns the env's attribute once per index (the same
    object); ``env_method(name, ..., indices)`` calls the method once and returns its
    result once per index; ``set_attr`` sets the attribute of the env, for all slots, so
    it refuses ``indices`` that leave some slot out. ``env_is_wrapped`` is False for every
    slot (no Gymnasium wrapper sits inside). ``render()`` with ``render_mode="ansi"``
    returns the env's text of every slot.

    Args:
        env: a ``TextVectorEnv`` with numpy output, ``autoreset_mode=SAME_STEP`` and
            ``copy=True``.
        bootstrap_truncated: see :func:`to_vec_env`.

    Raises:
        TypeError: ``env`` is not a ``TextVectorEnv`` (a Gymnasium vector wrapper around one
            included: wrap the ``VecEnv`` with SB3's wrappers instead).
        ValueError: the env gives torch output, autoresets otherwise than ``SAME_STEP``,
            or returns views (``copy=False``).
    """

    def __init__(self, env: TextVectorEnv, bootstrap_truncated: bool = False) -> None:
        check_env(env)
        self.env, self.bootstrap_truncated = env, bool(bootstrap_truncated)
        self._actions: np.ndarray | None = None
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self.metadata = {**self.metadata, "autoreset_mode": env.autoreset_mode}

    # ------------------------------------------------------------------ reset / step

    def reset(self) -> VecEnvObs:
        """Start every slot; return the observations (see the class docstring)."""
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        obs, infos = self.env.reset(seed=seeds, options=self._batched_options())
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [slot_info(infos, i) for i in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        """Step every slot with the actions of ``step_async`` (see the class docstring)."""
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async(): call step(actions)")
        actions, self._actions = self._actions, None
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        dones = terminated | truncated
        time_limit = truncated & ~terminated & self.bootstrap_truncated
        slot_infos = [{"TimeLimit.truncated": t} for t in time_limit.tolist()]
        finished = infos.get("_final_obs")
        if finished is not None:
            final_obs, final_info = infos["final_obs"], infos["final_info"]
            for slot in np.flatnonzero(finished).tolist():
                slot_infos[slot].update(slot_info(final_info, slot))
                slot_infos[slot]["terminal_observation"] = final_obs[slot]
                self.reset_infos[slot] = slot_info(infos, slot, skip=("final_obs", "final_info"))
        return obs, rewards.astype(np.float32), dones, slot_infos

    def _batched_options(self) -> dict[str, Any] | None:
        """The per-slot options of ``set_options`` as the env's batched reset options."""
        given = [bool(o) for o in self._options]
        if not any(given):
            return None
        if not all(given) or any(set(o) != {"sample_index"} for o in self._options):
            raise ValueError(
                f"set_options({self._options!r}): the env takes one option per slot, "
                "'sample_index', given for every slot or for none"
            )
        return {"sample_index": np.array([o["sample_index"] for o in self._options], dtype=np.int64)}

    # ------------------------------------------------------------------ the one env

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The env's attribute ``attr_name``, once per index (all slots share the env)."""
        value = getattr(self.env, attr_name)  # AttributeError: SB3's has_attr() reads it
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set the env's attribute ``attr_name``: for all slots, as they share the env."""
        wanted = sorted(set(self._get_indices(indices)))
        if wanted != list(range(self.num_envs)):
            raise ValueError(
                f"set_attr({attr_name!r}, indices={indices!r}): the {self.num_envs} slots share one "
                "TextVectorEnv, so an attribute is set for all of them; pass indices=None"
            )
        setattr(self.env, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        """Call the env's method once; return its result once per index."""
        result = getattr(self.env, method_name)(*method_args, **kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """False per index: no Gymnasium wrapper sits inside (SB3's wrappers go outside)."""
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        warnings.warn(f"render_mode is {self.render_mode!r}: text_gym envs render text, not images", stacklevel=2)
        return [None for _ in range(self.num_envs)]

    def render(self, mode: str | None = None) -> tuple[str, ...] | None:  # type: ignore[override]
        """With ``render_mode="ansi"``: every slot's prompt and response so far, as text."""
        if mode not in (None, self.render_mode):
            warnings.warn(
                f"render(mode={mode!r}): the env was built with render_mode={self.render_mode!r}", stacklevel=2
            )
            return None
        return self.env.render()

    def __repr__(self) -> str:
        return f"SB3VecEnv({self.env!r})"


def check_env(env: Any) -> None:
    """Raise unless ``env`` is a ``TextVectorEnv`` set up as Stable-Baselines3 needs it."""
    if not isinstance(env, TextVectorEnv):
        inner = getattr(env, "unwrapped", None)
        hint = (
            "pass the TextVectorEnv itself (env.unwrapped) and wrap the result with SB3's VecEnv wrappers"
            if isinstance(inner, TextVectorEnv)
            else "pass an env id (to_vec_env('TextTranslate-v0', num_envs=8)) or a TextVectorEnv"
        )
        raise TypeError(f"to_vec_env takes a text_gym TextVectorEnv, not {type(env).__name__}: {hint}")
    if env.output != "numpy":
        raise ValueError(
            f"the env gives output={env.output!r}; Stable-Baselines3 reads numpy arrays: build it with output='numpy'"
        )
    if env.autoreset_mode is not AutoresetMode.SAME_STEP:
        raise ValueError(
            f"the env autoresets with {env.autoreset_mode.name}; Stable-Baselines3 resets a finished "
            "slot within the step: build it with autoreset_mode='SAME_STEP'"
        )
    if not env.copy:
        raise ValueError(
            "the env returns views of its buffers (copy=False), which the next step overwrites, and "
            "Stable-Baselines3 keeps the last observation across a step: build it with copy=True"
        )


def slot_info(infos: dict[str, Any], slot: int, skip: Sequence[str] = ()) -> dict[str, Any]:
    """Slot ``slot``'s info out of Gymnasium's vector info layout (the keys its ``_key``
    mask marks; nested dicts likewise; numpy bools as Python bools, as a single env has
    them), leaving out ``skip``."""
    info = {}
    for key, values in infos.items():
        if key.startswith("_") or key in skip or not infos["_" + key][slot]:
            continue
        value = slot_info(values, slot) if isinstance(values, dict) else values[slot]
        info[key] = bool(value) if isinstance(value, np.bool_) else value
    return info
