"""Gymnasium's vector info layout: per-key arrays over all slots, plus ``_key`` masks.

:class:`~text_gym.vector_env.TextVectorEnv` writes its infos with :func:`put_info`, so
a native step's infos equal those ``SyncVectorEnv`` builds from single envs.

Example:
    >>> infos = {}
    >>> put_info(infos, "response", np.array([2]), ["hi"], slot_mask(np.array([2]), 3))
    >>> infos["response"].tolist(), infos["_response"].tolist()
    ([None, None, 'hi'], [False, False, True])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def slot_mask(slots: np.ndarray, n: int) -> np.ndarray:
    """A bool array over ``n`` slots, True at ``slots``."""
    mask = np.zeros(n, dtype=np.bool_)
    mask[slots] = True
    return mask


def put_info(infos: dict[str, Any], key: str, slots: np.ndarray, values: Sequence[Any], mask: np.ndarray) -> None:
    """Write ``values`` for ``slots`` (``mask``: the same slots as a bool array over all
    of them) into ``infos[key]`` the way Gymnasium's vector envs do.

    The array's dtype follows ``VectorEnv._add_info``: numbers and bools get numeric
    arrays, anything else an object array, so a native step equals ``SyncVectorEnv``'s.
    """
    if key not in infos:
        first = values[0]
        if isinstance(values, np.ndarray) and values.dtype != object:
            array = np.zeros(len(mask), dtype=values.dtype)
        elif isinstance(first, (bool, np.bool_)):
            array = np.zeros(len(mask), dtype=np.bool_)
        elif isinstance(first, (int, float, np.number)):
            array = np.zeros(len(mask), dtype=np.asarray(first).dtype)
        else:
            array = np.empty(len(mask), dtype=object)  # None everywhere
        infos[key], infos["_" + key] = array, mask.copy()
    else:
        infos["_" + key] |= mask
    array = infos[key]
    if array.dtype == object:
        for slot, value in zip(slots.tolist(), values):
            array[slot] = value
    else:
        array[slots] = values
