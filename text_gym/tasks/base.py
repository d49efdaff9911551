"""The task protocol: a data split, a prompt format and a batched scorer.

A task knows nothing about tokens, tensors or agents. The env asks it for its samples
once, at construction, and calls :meth:`Task.score` once per step with every response
that finished in that step.
"""

from __future__ import annotations

import abc
import difflib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One dataset row, ready for an episode.

    Attributes:
        prompt: the full prompt text the episode starts from (format already applied).
        references: one or more reference responses (never empty).
        source: the untouched input (e.g. the SCAN command), for display and debugging.
    """

    prompt: str
    references: tuple[str, ...]
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


class Scores(NamedTuple):
    """The result of scoring a batch of ``n`` responses.

    Attributes:
        rewards: (n,) float64, the task's reward for each response.
        metrics: name -> (n,) float64, every component the reward is built from or
            reported beside it (shown in ``info["metrics"]``).
    """

    rewards: np.ndarray
    metrics: dict[str, np.ndarray]


class Task(abc.ABC):
    """Base class of every task: subclasses fill ``samples`` and implement ``score``.

    Class attributes:
        name: short task name used in the registry and in error messages.
        response_prefix: text the prompt ends with, before the response (informative).
    """

    name: str = "task"
    samples: Sequence[Sample]

    def __len__(self) -> int:
        return len(self.samples)

    @abc.abstractmethod
    def score(self, responses: Sequence[str], samples: Sequence[Sample]) -> Scores:
        """Score ``responses[i]`` against ``samples[i]`` for every ``i``, in one call."""

    def reference_response(self, sample: Sample) -> str:
        """The response text that reproduces ``sample``'s first reference.

        Prompts end where the answer begins (``"...\nActions:"``), so by default the
        response is the reference after one space. Used for the default
        ``max_new_tokens`` and by supervised warm starts.
        """
        return " " + sample.references[0]

    def fingerprint(self) -> str:
        """A string that changes whenever the samples change (used to cache tokenization)."""
        return f"{type(self).__qualname__}:{self.config!r}"

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments that define the task (set by subclasses)."""
        return getattr(self, "_config", {})

    @classmethod
    def check_kwargs(cls, env_id: str, kwargs: dict[str, Any], env_args: Sequence[str] = ()) -> None:
        """Raise ``ValueError`` listing the valid names if ``kwargs`` has unknown keys.

        ``env_args``: the names the env that builds the task takes itself (an env passes
        its own), so the message can suggest the closest of those too and list them.
        """
        params = inspect.signature(cls.__init__).parameters
        valid = sorted(n for n, p in params.items() if n != "self" and p.kind is p.KEYWORD_ONLY)
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            env_args = sorted(env_args)
            close = {n: difflib.get_close_matches(n, valid + env_args, 1) for n in unknown}
            hint = ", ".join(f"{m[0]!r} for {n!r}" for n, m in close.items() if m)
            hint = f" (did you mean {hint}?)" if hint else ""
            listed = f"Task arguments: {valid}" + (f"; env arguments: {env_args}" if env_args else "")
            raise ValueError(f"unknown argument(s) {unknown} for {env_id} (task {cls.name!r}){hint}. {listed}")


class MultiTurnTask(Task):
    """A task with a simulated user who answers each agent turn.

    The agent's turn ends when it emits a stop token; the env then decodes that turn,
    calls :meth:`user_replies` once for every slot whose turn ended in the step, and
    appends each reply's tokens to the slot's window (``agent_mask`` 0). The episode
    ends when a reply says the dialogue is over (terminated), or when the window has no
    room for the next reply (truncated). Dialogue state is a plain object per episode,
    created by :meth:`new_dialogue`; :meth:`score` receives them at the end.
    """

    @abc.abstractmethod
    def new_dialogue(self, sample: Sample) -> Any:
        """Fresh state for an episode on ``sample`` (deterministic given the sample)."""

    @abc.abstractmethod
    def user_replies(self, dialogues: Sequence[Any], turns: Sequence[str]) -> list[tuple[str, bool]]:
        """Update each dialogue with the agent's ``turns``; return ``(reply, over)`` for each."""

    @abc.abstractmethod
    def score(  # type: ignore[override]
        self, responses: Sequence[str], samples: Sequence[Sample], dialogues: Sequence[Any]
    ) -> Scores:
        """Score finished dialogues (``responses`` are the decoded response regions)."""

    def response_budget(self, encode: Any) -> int:
        """Default ``max_new_tokens`` for the whole dialogue, given ``encode(texts)``."""
        raise NotImplementedError

    teachers: tuple[str, ...] = ()
    """the names :meth:`demonstration` knows (none here: a task with scripted teachers lists them)"""

    def demonstration(self, sample: Sample, teacher: str) -> list[tuple[str, bool]]:
        """A scripted ``teacher``'s whole dialogue on ``sample``, as the env's window shows it.

        Returns ``(text, is_agent)`` segments: the prompt (``False``), then each agent turn
        as the agent types it before its stop token (``True``) and the user's reply as the
        env appends it (``False``), in turn. Their concatenation is the window's text; the
        agent segments, each followed by a stop token, are what a supervised warm start
        imitates.

        Raises:
            ValueError: ``teacher`` is not one of :attr:`teachers` (here: this task has none).
        """
        raise ValueError(
            f"task {self.name!r} has no scripted teacher {teacher!r}; the teachers it knows: {list(self.teachers)}"
        )


def check_choice(name: str, value: Any, choices: Sequence[Any], error: type[ValueError] = ValueError) -> None:
    """Raise ``error`` (a ``ValueError``) naming ``value`` and listing ``choices`` if it is
    not one of them."""
    if value not in choices:
        raise error(f"{name}={value!r} is not valid; choose one of {list(choices)}")


def load_hf_rows(dataset: str, config: str | None, data_files: Any, split: str, limit: int | None = None) -> Any:
    """A Hugging Face ``datasets`` split by name (or ``"json"`` etc. with ``data_files``).

    ``data_files`` may be one path (used for ``split``) or ``{split: path}``; ``limit``
    keeps the first rows. Unreadable files raise ``ValueError`` naming the dataset and the
    files, with the underlying cause.
    """
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            f"dataset={dataset!r} needs the Hugging Face `datasets` package: pip install 'text_gym[hf]'"
        ) from err
    files = {split: data_files} if isinstance(data_files, str) else data_files
    try:
        rows = datasets.load_dataset(dataset, config, data_files=files, split=split)
    except (datasets.exceptions.DatasetGenerationError, UnicodeDecodeError, ValueError) as err:
        cause = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        raise ValueError(f"dataset={dataset!r}, data_files={files!r} could not be read: {cause}") from err
    return rows.select(range(min(limit, len(rows)))) if limit else rows


def report_skipped_rows(
    where: str, kept: Sequence[Any], skipped: dict[str, int], first: dict[str, int], logger: Any
) -> None:
    """After a load that skipped some rows: raise if none was kept, else log the counts.

    ``skipped`` counts rows per reason and ``first`` gives the first row skipped for each,
    so the message says what to look at.
    """
    why = ", ".join(f"{n} with {r} (first: row {first[r]})" for r, n in skipped.items())
    if not kept:
        raise ValueError(f"{where} has no usable row: {why or 'it is empty'}")
    if skipped:
        total = len(kept) + sum(skipped.values())
        logger.warning("%s: skipped %d of %d rows: %s", where, sum(skipped.values()), total, why)
