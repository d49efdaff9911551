"""Dialogue: say the next turn of a human conversation (``TextDialog-v0``).

## Description

An episode shows the last ``history_turns`` turns of a conversation and asks for the
next one, scored against what the person actually said. The plain prompt labels the
speakers ``A`` (who opened the conversation) and ``B`` and ends with the responder's
label, so the response continues after a space: ``"A: hi\\nB: hey, you?\\nA:"``. Each
sample's ``extra["messages"]`` holds the same history as chat messages, roles
alternating so that the reference is the ``assistant``'s turn: the env's
``chat_template=True`` renders them with the env's tokenizer.

## Action and observation spaces

As every text_gym env (:class:`~text_gym.vector_env.TextVectorEnv`): ``Discrete(len(
tokenizer))`` token ids; a ``Dict`` of integer Boxes ``input_ids``, ``attention_mask``,
``agent_mask`` and ``new_span``.

## Rewards

0 until the last step, then the response's similarity to the reference in [0, 1]:
chrF / 100 (``reward="chrf"``, default; sacrebleu's sentence chrF) or the ROUGE-L
F-measure (``"rougeL"``; rouge-score, Porter stemmer). The reference itself scores 1.0,
an empty response 0.0; ``info["metrics"]`` has ``chrf`` (0-100) and ``rougeL`` (0-1).
ROUGE-L is 1.0 for a response equal to the reference up to whitespace even when the
reference has no ROUGE tokens (88 chitchat turns such as ``":)"``, 0 in rouge-score).
Hook for an embedding-similarity reward, once an offline embedding model ships in a
package: add its name to ``REWARDS`` and its batched call to :meth:`DialogueTask.score`.

## Episode end

``terminated`` on the stop token, ``truncated`` after ``max_new_tokens`` (env arguments).
Chitchat turns run up to 34,632 characters (99% under 448) and histories up to 8,111:
set ``max_new_tokens`` and ``max_prompt_tokens`` rather than the longest-sample defaults.

## Arguments

Those of :class:`DialogueTask`, passed through ``gym.make("TextDialog-v0", ...)``.

## Data

Default: the Chit Chat Challenge conversations of the ``chitchat-dataset`` package (BYU
PCC lab, MIT licence; 7,168 conversations), read from its ``dataset.json``. Messages
are whitespace-normalised; consecutive messages of one sender are joined with a space
into one turn, so turns alternate. Empty messages (33) are skipped, and conversations
left with under two turns (3,151, mostly someone waiting alone) give no samples; both
counts are logged (INFO) and kept in ``task.skipped``. Every later turn is one sample.
Splits are 80/10/10 by a SHA-256 hash of the conversation id, so no conversation spans
two splits: 103,676 / 14,541 / 13,331 samples. A missing field or text that is not
UTF-8 raises ``ValueError`` naming the conversation and the field.

``dataset=<name>`` loads a Hugging Face set whose rows list alternating utterances
(``daily_dialog``: field ``"dialog"``), with its own splits; ``dataset="json",
data_files=...`` reads local files so. There a missing field, an empty utterance
(dropping it would swap the speakers after it) or non-UTF-8 text raises ``ValueError``
naming the row and field; rows of one utterance are skipped and counted.

## Version history

* v0: initial version.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from text_gym.rewards import text_metrics
from text_gym.rewards.rouge import rouge
from text_gym.tasks.base import Sample, Scores, Task, check_choice, load_hf_rows

logger = logging.getLogger(__name__)

REWARDS = ("chrf", "rougeL")
SPLITS = ("train", "validation", "test")
SPLIT_BOUNDS = {"train": (0, 80), "validation": (80, 90), "test": (90, 100)}  # hash % 100
SPEAKERS = ("A", "B")
Conversation = tuple[str, tuple[str, ...]]  # (id, turns by alternating speakers)


class DialogueTask(Task):
    """Next-response generation; reward chrF / 100 or ROUGE-L F against the real turn.

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"`` for chitchat; any split name
            of a Hugging Face set.
        history_turns: how many turns before the response the prompt shows (>= 1;
            default 4). Earlier turns are dropped.
        dataset: ``"chitchat"`` (default), a Hugging Face dataset name, or ``"json"``
            with ``data_files``.
        dataset_config: the Hugging Face dataset's configuration name.
        data_files: local files for ``dataset="json"``: a path, or ``{split: path}``.
        dialog_field: the field of each Hugging Face row that lists its utterances.
        reward: ``"chrf"`` (default) or ``"rougeL"``, both in [0, 1].
        metrics: metrics computed for ``info["metrics"]`` besides the reward's own;
            default both. Each costs time for every finished response: ``metrics=()``
            keeps only the reward's own in training.
        max_samples: keep only the first ``max_samples`` samples of the split.

    Example:
        >>> task = DialogueTask(split="test", max_samples=2)
        >>> print(task.samples[1].prompt)
        A: hi anyone here
        B: hey whats up yeah how are you
        A:
        >>> task.samples[1].references
        ('im good im an international student from nigeria,and aspiring freshman',)
        >>> task.score([" " + task.samples[1].references[0], ""], [task.samples[1]] * 2).rewards
        array([1., 0.])
    """

    name = "dialogue"

    def __init__(
        self,
        *,
        split: str = "train",
        history_turns: int = 4,
        dataset: str = "chitchat",
        dataset_config: str | None = None,
        data_files: str | dict[str, str] | None = None,
        dialog_field: str = "dialog",
        reward: str = "chrf",
        metrics: tuple[str, ...] = REWARDS,
        max_samples: int | None = None,
    ) -> None:
        self._config = dict(
            split=split,
            history_turns=history_turns,
            dataset=dataset,
            dataset_config=dataset_config,
            data_files=data_files,
            dialog_field=dialog_field,
            reward=reward,
            metrics=tuple(metrics),
            max_samples=max_samples,
        )
        check_choice("reward", reward, REWARDS)
        for name in metrics:
            check_choice("metrics entry", name, REWARDS)
        self.reward = reward
        self.metrics = tuple(dict.fromkeys((*metrics, reward)))
        if isinstance(history_turns, bool) or not isinstance(history_turns, int) or history_turns < 1:
            raise ValueError(f"history_turns={history_turns!r} must be an int >= 1")
        if max_samples is not None and max_samples < 1:
            raise ValueError(f"max_samples={max_samples} must be >= 1 (or None for all)")
        if dataset == "chitchat":
            check_choice("split", split, SPLITS)
            conversations, skipped = load_chitchat()
            self.skipped = dict(skipped)
            conversations = [c for c in conversations if split_of(c[0]) == split]
        else:
            rows = load_hf_rows(dataset, dataset_config, data_files, split)
            conversations, self.skipped = rows_to_conversations(rows, dialog_field)
        self.samples = build_samples(conversations, history_turns, max_samples)
        if not self.samples:
            raise ValueError(f"dataset={dataset!r} split={split!r} has no conversation of two or more turns")

    def score(self, responses: Sequence[str], samples: Sequence[Sample]) -> Scores:
        refs = [s.references for s in samples]
        metrics = {}
        if "chrf" in self.metrics:
            metrics["chrf"] = text_metrics.chrf(responses, refs)
        if "rougeL" in self.metrics:
            metrics["rougeL"] = _rouge_l(responses, refs)
        rewards = metrics["chrf"] / 100 if self.reward == "chrf" else metrics["rougeL"]
        return Scores(np.asarray(rewards, dtype=np.float64), metrics)


def split_of(conversation_id: str) -> str:
    """The chitchat split of a conversation: SHA-256 of its id, mod 100, cut 80/10/10."""
    digest = hashlib.sha256(conversation_id.encode("utf-8", "surrogatepass")).digest()
    bucket = int.from_bytes(digest[:8], "big") % 100
    return next(s for s, (lo, hi) in SPLIT_BOUNDS.items() if lo <= bucket < hi)


def build_samples(
    conversations: Iterable[Conversation],
    history_turns: int,
    max_samples: int | None = None,
) -> list[Sample]:
    """One sample per turn after the first: the previous ``history_turns`` turns -> it."""
    samples = []
    for cid, turns in conversations:
        # Each turn's message as the user's and as the assistant's, shared by samples.
        as_role = [({"role": "user", "content": t}, {"role": "assistant", "content": t}) for t in turns]
        for k in range(1, len(turns)):
            shown = range(max(0, k - history_turns), k)
            plain = "".join(f"{SPEAKERS[j % 2]}: {turns[j]}\n" for j in shown) + f"{SPEAKERS[k % 2]}:"
            messages = [as_role[j][(k - j) % 2 == 0] for j in shown]  # ends with the user
            extra = {"conversation": cid, "turn": k, "messages": messages}
            samples.append(Sample(plain, (turns[k],), source=plain, extra=extra))
            if len(samples) == max_samples:
                return samples
    return samples


@functools.lru_cache(maxsize=4)
def load_chitchat(path: str | None = None) -> tuple[tuple[Conversation, ...], dict[str, int]]:
    """The conversations of two or more turns in a chitchat-format ``dataset.json``
    (default: the package's), and the skip counts (also logged).

    Raises ``ValueError`` naming the conversation and field if a field is missing or
    its text is not UTF-8.
    """
    if path is None:
        if (spec := importlib.util.find_spec("chitchat_dataset")) is None or spec.origin is None:
            raise ImportError("the default dialogue data needs `pip install chitchat-dataset`")
        path = str(Path(spec.origin).parent / "dataset.json")
    # Bytes that are not UTF-8 become lone surrogates, which _clean reports by field.
    data = json.loads(Path(path).read_bytes().decode("utf-8", "surrogateescape"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of conversation id -> conversation")
    skipped = Counter(empty_messages=0, short_conversations=0)
    conversations = [(cid, _chitchat_turns(cid, conv, skipped)) for cid, conv in data.items()]
    skipped["short_conversations"] = sum(len(turns) < 2 for _, turns in conversations)
    conversations = [(cid, turns) for cid, turns in conversations if len(turns) >= 2]
    logger.info(
        "chitchat (%s): skipped %d empty messages and %d conversations of under two turns",
        path,
        skipped["empty_messages"],
        skipped["short_conversations"],
    )
    return tuple(conversations), dict(skipped)


def _chitchat_turns(cid: str, conv: Any, skipped: Counter) -> tuple[str, ...]:
    groups = conv.get("messages") if isinstance(conv, dict) else None
    if not isinstance(groups, list):
        raise ValueError(f"conversation {cid!r}: field 'messages' is missing or not a list")
    turns: list[tuple[Any, list[str]]] = []  # (sender, texts)
    for g, group in enumerate(groups):
        for m, msg in enumerate(group if isinstance(group, list) else [group]):
            where = f"conversation {cid!r}, message [{g}][{m}]"
            if not isinstance(msg, dict) or "sender" not in msg:
                raise ValueError(f"{where}: field 'sender' is missing")
            text = _clean(msg.get("text"), where, "text")
            if not text:
                skipped["empty_messages"] += 1
            elif turns and turns[-1][0] == msg["sender"]:
                turns[-1][1].append(text)
            else:
                turns.append((msg["sender"], [text]))
    return tuple(" ".join(texts) for _, texts in turns)


def rows_to_conversations(
    rows: Iterable[dict[str, Any]], dialog_field: str = "dialog"
) -> tuple[list[Conversation], dict[str, int]]:
    """Conversations of daily_dialog-style rows (lists of alternating utterances), and
    the count of rows of under two utterances, which are skipped (also logged).

    Raises ``ValueError`` naming the row and field if the field is missing, or an
    utterance is empty or not UTF-8 text.
    """
    conversations, short = [], 0
    for i, row in enumerate(rows):
        utterances = row.get(dialog_field) if isinstance(row, dict) else None
        if not isinstance(utterances, (list, tuple)):
            keys = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(
                f"row {i}: field {dialog_field!r} is missing or not a list of utterances (row keys: {keys}); "
                "pass dialog_field="
            )
        turns = tuple(_clean(u, f"row {i}", f"{dialog_field}[{j}]") for j, u in enumerate(utterances))
        if "" in turns:
            raise ValueError(
                f"row {i}: field '{dialog_field}[{turns.index('')}]' is empty; remove the row or the utterance"
            )
        if len(turns) < 2:
            short += 1
        else:
            conversations.append((str(i), turns))
    logger.info("dialogue rows: skipped %d conversations of under two utterances", short)
    return conversations, {"short_conversations": short}


def _clean(text: Any, where: str, field: str) -> str:
    """``text`` with whitespace collapsed; ValueError if it is not UTF-8 encodable text."""
    if not isinstance(text, str):
        raise ValueError(f"{where}: field {field!r} is missing or not a string ({text!r})")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{where}: field {field!r} is not valid UTF-8 text ({err})") from None
    return " ".join(text.split())


def _rouge_l(completions: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
    """ROUGE-L F-measure of each completion, best over its references, in [0, 1].

    Equals rouge-score's, except that a completion equal to a reference up to whitespace
    scores 1.0 even when the reference has no ROUGE tokens (``":)"``).
    """
    scores = rouge(completions, references, ("rougeL",))["rougeL"]
    norm = text_metrics.normalize_text
    exact = [any(norm(c) == norm(r) for r in refs) for c, refs in zip(completions, references)]
    return np.where(exact, 1.0, scores)
