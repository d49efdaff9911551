"""The prompts of a task as token rows, ready to copy into an env's window.

Two layers, each with one job:

* :class:`EncodedPrompts`: a task's prompt texts (plain, or rendered with the
  tokenizer's chat template) and their token ids, encoded lazily and shared by every
  env built on the same tokenizer, task configuration and prompt format
  (:func:`encoded_prompts`).
* :class:`PromptTable`: those prompts cut to the window's prompt width by the
  truncation rule and left-padded into rows of a numpy table, so starting an episode
  gathers rows instead of tokenizing. Rows are added the first time a sample is drawn.

Example:
    >>> from text_gym.tasks import make_task
    >>> from text_gym.tokenizers import load_tokenizer
    >>> tok = load_tokenizer("byte")
    >>> encoded = encoded_prompts(tok, make_task("translation", split="test"), chat_template=False)
    >>> table = PromptTable(encoded, width=8, truncation="left", pad_token_id=tok.pad_token_id)
    >>> rows = table.rows(np.array([0, 0]))
    >>> table.size, table.lengths[rows].tolist(), bool(table.truncated[rows[0]])
    (1, [8, 8], True)
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from text_gym.tasks.base import Sample, Task
from text_gym.tokenizers import Tokenizer

EAGER_TABLE_BYTES = 64 << 20  # a bigger prompt table fills as samples are drawn


def chat_messages(sample: Sample) -> list[dict[str, str]]:
    """A sample's prompt as chat messages: ``sample.extra["messages"]`` when the task
    gives them (e.g. a dialogue history), else one user message with the prompt text."""
    return sample.extra.get("messages") or [{"role": "user", "content": sample.prompt}]


class EncodedPrompts:
    """A task's prompts as token ids for one tokenizer and prompt format, encoded lazily.

    Large datasets (chitchat has 100k+ prompts) are slow to encode up front;
    a sample is encoded the first time an episode draws it, in a batch with the other
    slots that reset in the same step, and kept. Defaults that need every prompt (the
    longest prompt, the longest reference) encode everything once.
    """

    def __init__(self, tokenizer: Tokenizer, task: Task, chat_template: bool) -> None:
        self.tokenizer, self.task, self.chat_template = tokenizer, task, chat_template
        self._texts: list[str | None] = [None] * len(task)
        self._ids: list[list[int] | None] = [None] * len(task)
        self._missing = len(task)  # prompts not encoded yet
        self._longest_reference: int | None = None

    def text(self, j: int) -> str:
        """The prompt text of sample ``j`` as the env shows it."""
        if self._texts[j] is None:
            sample = self.task.samples[j]
            self._texts[j] = (
                self.tokenizer.apply_chat_template(chat_messages(sample)) if self.chat_template else sample.prompt
            )
        return self._texts[j]

    def texts(self, samples: Sequence[int]) -> list[str]:
        """The prompt texts of ``samples`` (ints)."""
        texts = self._texts
        return [texts[j] if texts[j] is not None else self.text(j) for j in samples]

    def ids(self, samples: Sequence[int]) -> list[list[int]]:
        """Token ids of the prompts of ``samples``; the missing ones in one batch."""
        missing = sorted({int(j) for j in samples if self._ids[j] is None})
        if missing:
            for j, ids in zip(missing, self.tokenizer.encode_batch([self.text(j) for j in missing])):
                self._ids[j] = ids
            self._missing -= len(missing)
        return [self._ids[j] for j in samples]

    @property
    def complete(self) -> bool:
        """Whether every prompt is encoded."""
        return self._missing == 0

    def lengths(self) -> np.ndarray:
        """Every prompt's length in tokens (encodes the whole task once)."""
        return np.array([len(ids) for ids in self.ids(range(len(self.task)))], dtype=np.int64)

    @property
    def longest_reference(self) -> int:
        """Tokens in the longest reference response (``Task.reference_response``)."""
        if self._longest_reference is None:
            refs = [self.task.reference_response(s) for s in self.task.samples]
            self._longest_reference = max(len(r) for r in self.tokenizer.encode_batch(refs))
        return self._longest_reference


_ENCODED: weakref.WeakKeyDictionary[Any, dict[str, EncodedPrompts]] = weakref.WeakKeyDictionary()


def encoded_prompts(tokenizer: Tokenizer, task: Task, chat_template: bool) -> EncodedPrompts:
    """Tokenize a task once per (tokenizer, task configuration, prompt format), then reuse it.

    A task without a ``config`` cannot be told apart from another of its class, so it
    gets an encoding of its own.
    """
    if not task.config:
        return EncodedPrompts(tokenizer, task, chat_template)
    per_tokenizer = _ENCODED.setdefault(tokenizer, {})
    key = f"{task.fingerprint()}|chat={chat_template}"
    if key not in per_tokenizer:
        per_tokenizer[key] = EncodedPrompts(tokenizer, task, chat_template)
    return per_tokenizer[key]


class PromptTable:
    """Prompt rows as an env's window shows them: cut to ``width`` tokens, left-padded.

    ``"left"`` truncation keeps a long prompt's last ``width`` tokens (where the
    instruction to answer is), ``"right"`` its first. Row ``r`` holds
    ``tokens[r]`` (``(width,)`` int32), ``lengths[r]`` (tokens kept) and ``truncated[r]``
    (the prompt was cut). When every prompt is encoded already and the table is small
    (``EAGER_TABLE_BYTES``), all rows are added here; otherwise a sample's row is added
    the first time :meth:`rows` sees it, the table growing by doubling.

    Args:
        encoded: the task's prompts.
        width: the window's prompt width in tokens.
        truncation: ``"left"`` or ``"right"`` (an env refuses long prompts itself under
            ``"error"``; no row here is then cut).
        pad_token_id: the id that fills the columns left of a short prompt.
    """

    def __init__(self, encoded: EncodedPrompts, width: int, truncation: str, pad_token_id: int) -> None:
        self.encoded, self.width, self.truncation, self.pad_token_id = encoded, width, truncation, pad_token_id
        n = len(encoded.task)
        self._row_of = np.full(n, -1, dtype=np.int64)  # sample -> table row
        self.tokens = np.empty((0, width), dtype=np.int32)
        self.lengths = np.empty(0, dtype=np.int64)
        self.truncated = np.empty(0, dtype=bool)
        self.size = 0  # rows in use
        if encoded.complete and n * width * 4 <= EAGER_TABLE_BYTES:
            self._add(range(n))  # all encoded already: no first-draw cost

    def rows(self, samples: np.ndarray) -> np.ndarray:
        """Rows of the table holding ``samples``' prompts (an int array); samples seen for
        the first time are encoded (in one batch) and added."""
        rows = self._row_of[samples]
        if (rows < 0).any():
            self._add(sorted(set(samples[rows < 0].tolist())))
            rows = self._row_of[samples]
        return rows

    def _add(self, new: Sequence[int]) -> None:
        """Append the rows of samples ``new`` (distinct, not yet in the table)."""
        start, P = self.size, self.width
        if start + len(new) > len(self.tokens):  # grow by doubling
            size = max(2 * len(self.tokens), start + len(new), 64)
            self.tokens = np.resize(self.tokens, (size, P))
            self.lengths = np.resize(self.lengths, size)
            self.truncated = np.resize(self.truncated, size)
        encoded = self.encoded.ids(new)
        kept = [ids[-P:] if self.truncation == "left" else ids[:P] for ids in encoded]
        lengths = np.fromiter(map(len, kept), np.int64, len(kept))
        block = self.tokens[start : start + len(new)]
        block[:] = self.pad_token_id
        # row-major boolean assignment: row i's last lengths[i] columns, in order
        block[np.arange(P) >= P - lengths[:, None]] = np.fromiter(
            itertools.chain.from_iterable(kept), np.int32, int(lengths.sum())
        )
        self.lengths[start : start + len(new)] = lengths
        self.truncated[start : start + len(new)] = np.fromiter(map(len, encoded), np.int64, len(new)) > P
        self._row_of[new] = np.arange(start, start + len(new))
        self.size = start + len(new)
