"""Checks of what users pass to :class:`~text_gym.vector_env.TextVectorEnv`.

Each function takes one argument as given, returns it in the form the env keeps, and
raises ``ValueError`` naming the value and the fix otherwise, before the env changes
any state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode


class UnsupportedRenderMode(ValueError, TypeError):
    """A ``render_mode`` other than ``None`` and ``"ansi"``. Also a ``TypeError``: the
    error on which Stable-Baselines3 (``make_vec_env``, and algorithms given an env id)
    retries ``gym.make`` without the ``render_mode="rgb_array"`` it asks for first."""


def is_int(value: Any) -> bool:
    """An int (Python or numpy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def usable_device(device: Any) -> torch.device:
    """``torch.device(device)``, checked to hold data here (a clear error for a CUDA
    device without CUDA, or the data-less ``meta`` device), as its tensors report it:
    ``"cuda"`` becomes ``cuda:<current index>`` and ``"cpu:0"`` ``cpu``, so it compares
    equal to the device of a model's parameters."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device={device!r} is not a torch device ({e}); use 'cpu' or 'cuda'") from None
    if dev.type == "meta":
        raise ValueError("device='meta' holds no data; the env keeps its windows on the device: use 'cpu' or 'cuda'")
    try:
        return torch.zeros(1, device=dev).device
    except (AssertionError, RuntimeError) as e:  # torch raises AssertionError for CUDA without it
        raise ValueError(f"device={device!r} is not usable here ({e}); use 'cpu' or an available device") from None


def parse_autoreset_mode(mode: AutoresetMode | str) -> AutoresetMode:
    """An ``AutoresetMode``, or its name or value in any case, with or without ``_``."""
    if isinstance(mode, AutoresetMode):
        return mode
    for m in AutoresetMode:
        if str(mode).lower().replace("_", "") in (m.name.lower().replace("_", ""), m.value.lower()):
            return m
    raise ValueError(f"autoreset_mode={mode!r} is not valid; choose one of {[m.name for m in AutoresetMode]}")


def stop_ids(stop_token_ids: Any, eos_token_id: int, vocab: int) -> tuple[int, ...]:
    """The ids that end an episode: ``stop_token_ids`` (one id or a list), default the EOS."""
    stops = [eos_token_id] if stop_token_ids is None else stop_token_ids
    one = isinstance(stops, (int, np.integer, str, bytes)) or not hasattr(stops, "__iter__")
    stops = [stops] if one else list(stops)  # one id (or a str, refused below)
    if not stops or not all(is_int(s) and 0 <= s < vocab for s in stops):
        raise ValueError(
            f"stop_token_ids={stop_token_ids!r} must be an int id or a non-empty list of int ids in [0, {vocab})"
        )
    return tuple(int(s) for s in stops)


def per_slot_seeds(seed: Any, n: int) -> list[int | None]:
    """``reset(seed=...)`` for ``n`` slots: ``None``, an int ``s`` (slot ``i`` gets
    ``s + i``) or ``n`` ints/None, each in [0, 2**64)."""
    if seed is None:
        return [None] * n
    if is_int(seed):
        seeds: list[Any] = [int(seed) + i for i in range(n)]
    elif isinstance(seed, (list, tuple, np.ndarray)) and len(seed) == n:
        seeds = list(seed)
    else:
        raise ValueError(f"seed={seed!r} must be None, an int, or a list of {n} ints/None")
    for s in seeds:
        if s is not None and (not is_int(s) or not 0 <= s < 2**64):
            raise ValueError(f"seed {s!r} must be an int in [0, 2**64) (or None); slot i of seed=s gets s + i")
    return [None if s is None else int(s) for s in seeds]


def reset_options(options: dict[str, Any] | None, n: int, num_samples: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``reset``'s ``options`` for ``n`` slots: the bool mask of the slots to reset (all
    by default) and, under ``"sample_index"``, the task samples of those slots (else None)."""
    options = dict(options or {})
    mask = options.pop("reset_mask", None)
    pinned = options.pop("sample_index", None)
    if options:
        raise ValueError(f"unknown reset options {sorted(options)}; valid: 'reset_mask', 'sample_index'")
    if mask is None:
        mask = np.ones(n, dtype=bool)
    mask = np.asarray(mask)
    if mask.shape != (n,) or mask.dtype != np.bool_ or not mask.any():
        raise ValueError(
            f"options['reset_mask'] must be a bool array of shape ({n},) with at least "
            f"one True; got dtype {mask.dtype}, shape {mask.shape}"
        )
    if pinned is not None:
        pinned = np.asarray(pinned)
        if pinned.shape != (n,) or pinned.dtype.kind not in "iu" or not ((pinned >= 0) & (pinned < num_samples)).all():
            raise ValueError(
                f"options['sample_index'] must be ints in [0, {num_samples}) of shape ({n},) "
                f"(one per slot; entries of slots not reset are ignored); got {pinned!r}"
            )
        pinned = pinned[mask]
    return mask, pinned


def check_actions(
    actions: Any, num_envs: int, vocab_size: int, device: torch.device, host_buffers: bool, tokenizer: Any
) -> tuple[np.ndarray, torch.Tensor | None]:
    """A step's ``actions``, checked to be ``num_envs`` token ids in [0, vocab_size).

    Returns them as a host int64 array (for a tensor on an accelerator, its one copy to
    the host this step) and, for a torch tensor off the CPU or an env whose buffers are
    not on the host (``host_buffers`` False), the tensor itself as int64 on ``device``
    (else None). ``tokenizer`` is named in the out-of-range message.
    """
    device_actions = None
    if isinstance(actions, torch.Tensor):
        if actions.is_floating_point() or actions.is_complex() or actions.dtype == torch.bool:
            raise ValueError(
                f"actions must be integer token ids, got a {actions.dtype} tensor "
                f"{actions.flatten()[:8].tolist()}; cast with .long()"
            )
        if actions.shape != (num_envs,):
            raise ValueError(f"actions must have shape ({num_envs},), got {tuple(actions.shape)}")
        if actions.device.type != "cpu" or not host_buffers:
            device_actions = actions.to(device, torch.int64)
        array = actions.detach().cpu().numpy()
    else:
        array = np.asarray(actions)
        if array.dtype.kind not in "iu":
            raise ValueError(
                f"actions must be integer token ids, got dtype {array.dtype} "
                f"({array.ravel()[:8].tolist()}); cast with .astype(np.int64)"
            )
        if array.shape != (num_envs,):
            raise ValueError(f"actions must have shape ({num_envs},), got {array.shape} ({actions!r:.80})")
    host = np.ascontiguousarray(array, dtype=np.int64)  # no copy when it already is
    # One reduction checks both ends: a negative id reads as a huge unsigned one.
    if host.view(np.uint64).max() >= vocab_size:
        bad = np.flatnonzero((array < 0) | (array >= vocab_size))
        raise ValueError(
            f"action {int(array[bad[0]])} (slot {int(bad[0])}; {bad.size} bad slot(s)) is "
            f"out of range: valid token ids are 0..{vocab_size - 1}, "
            f"Discrete({vocab_size}) for tokenizer {tokenizer.name!r}"
        )
    return host, device_actions
