"""Per-slot streams of sample indices: which task sample each episode of a slot starts from.

A counter-based stream per slot: episode ``k`` of a slot seeded ``s`` draws sample
``mix(mix(s * G + G) + k * G) mod n``, with ``G`` the 64-bit golden ratio and ``mix``
SplitMix64's finaliser. A draw depends only on the seed and the episode count, so a
slot's episodes are the same whatever the other slots do, and a vector env equals a
``SyncVectorEnv`` of single envs seeded ``s + i``.

Example:
    >>> streams = SampleStreams(2)
    >>> streams.seed(np.array([True, True]), [7, 8])
    >>> first = streams.next(np.array([0, 1]), 1000)
    >>> streams.seed(np.array([True, False]), [7, None])  # slot 0 starts over, slot 1 goes on
    >>> int(streams.next(np.array([0]), 1000)[0]) == int(first[0])
    True
"""

from __future__ import annotations

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_U64 = (1 << 64) - 1


class SampleStreams:
    """The sample streams of ``n`` slots: each slot's stream base and episode count.

    A slot never seeded gets a base from fresh OS entropy the first time :meth:`seed`
    covers it without a seed.
    """

    def __init__(self, n: int) -> None:
        self.base = np.zeros(n, dtype=np.uint64)  # mix(seed * G + G)
        self.episode = np.zeros(n, dtype=np.uint64)  # episodes drawn so far
        self.seeded = np.zeros(n, dtype=bool)
        self.pool: np.ndarray | None = None  # the samples draws come from; None: all of them

    def seed(self, mask: np.ndarray, seeds: list[int | None]) -> None:
        """Restart the streams of the slots in ``mask`` (bool, one per slot) that ``seeds``
        gives a seed; the other slots of ``mask`` go on, or start from entropy if new."""
        given = [i for i in np.flatnonzero(mask).tolist() if seeds[i] is not None]
        if given:
            self.base[given] = stream_of(np.array([seeds[i] for i in given], dtype=np.uint64))
            self.episode[given], self.seeded[given] = 0, True
        unseeded = mask & ~self.seeded
        if unseeded.any():
            entropy = np.random.SeedSequence().generate_state(int(unseeded.sum()), np.uint64)
            self.base[unseeded], self.episode[unseeded] = stream_of(entropy), 0
            self.seeded[unseeded] = True

    def next(self, slots: np.ndarray, n: int, samples: np.ndarray | None = None) -> np.ndarray:
        """Advance ``slots`` to their next episode and return its sample index in [0, n),
        drawn from ``pool`` when set, or ``samples`` when given (pinned samples still
        advance the streams)."""
        if samples is None:
            pool = self.pool
            k = draws(self.base[slots], self.episode[slots] + np.uint64(1), n if pool is None else len(pool))
            samples = k if pool is None else pool[k]
        self.episode[slots] += np.uint64(1)
        return samples


# The stream arithmetic is on uint64 arrays, never scalars: numpy wraps array overflow
# silently (as the hash wants), where a scalar would warn.


def stream_of(seed: np.ndarray) -> np.ndarray:
    """The base of each seed's counter-based sample stream."""
    return mix(seed * GOLDEN + GOLDEN)


def mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijective, well-mixed hash of uint64 arrays."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _mix_int(x: int) -> int:
    """:func:`mix` of one uint64 as a Python int."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _U64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _U64
    return x ^ (x >> 31)


def draws(streams: np.ndarray, episodes: np.ndarray, n: int) -> np.ndarray:
    """Sample indices in [0, n) of episode ``episodes[i]`` of stream ``streams[i]``:
    ``mix(stream + episode * G) % n``. A few draws (the usual refill) in Python ints,
    where the dozen numpy calls cost more; more on uint64 arrays."""
    if len(streams) > 8:
        return (mix(streams + episodes * GOLDEN) % np.uint64(n)).astype(np.int64)
    g = int(GOLDEN)
    out = [_mix_int((s + e * g) & _U64) % n for s, e in zip(streams.tolist(), episodes.tolist())]
    return np.array(out, dtype=np.int64)
