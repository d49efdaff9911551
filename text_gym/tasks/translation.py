"""Translation (``TextTranslate-v0``): SCAN commands to action sequences, or any Hugging
Face translation set.

## Description

The default data is SCAN (Lake & Baroni, 2018; see :mod:`text_gym.tasks.scan`),
regenerated from its grammar so the env works offline: the prompt asks for the action
sequence of a command (``"...\nCommand: jump twice\nActions:"``) and the response should
be ``" I_JUMP I_JUMP"``. ``dataset=`` names a Hugging Face ``datasets`` translation set
instead (rows ``{"translation": {src: ..., tgt: ...}}``, as in wmt16, iwslt2017 or
opus_books), or ``dataset="json"`` with ``data_files=`` reads local files in that format.

## Action and observation spaces

As every text_gym env (:class:`~text_gym.vector_env.TextVectorEnv`).

## Rewards

0 until the last step, then: exact match of the whitespace-normalised response with the
reference (SCAN default, ``reward="exact_match"``) or chrF / 100 (default for natural
language, sacrebleu's sentence chrF). ``info["metrics"]``: ``exact_match`` and ``chrf``
(0-100); ``metrics=("exact_match",)`` skips chrF where only the reward matters.

## Episode end

Terminated on the stop token; truncated after ``max_new_tokens`` (default: the split's
longest reference in tokens, plus one).

## Arguments

Those of :class:`TranslationTask`, passed through ``gym.make("TextTranslate-v0", ...)``.

## Data and licence

SCAN is BSD-licensed; it is regenerated here from the grammar in the paper, no data file
is copied. Hugging Face sets carry their own licences.

## Version history

* v0: initial version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from text_gym.rewards import text_metrics
from text_gym.tasks import scan
from text_gym.tasks.base import Sample, Scores, Task, check_choice, load_hf_rows

SCAN_PROMPT = "Translate the command into actions.\nCommand: {command}\nActions:"
TEXT_PROMPT = "Translate {src_name} to {tgt_name}.\n{src_name}: {text}\n{tgt_name}:"
REWARDS = ("exact_match", "chrf")
LANGUAGE_NAMES = {
    "cs": "Czech",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fi": "Finnish",
    "fr": "French",
    "it": "Italian",
    "ja": "Japanese",
    "nl": "Dutch",
    "ro": "Romanian",
    "ru": "Russian",
    "tr": "Turkish",
    "zh": "Chinese",
}


class TranslationTask(Task):
    """Translate a source text; reward exact match (SCAN) or chrF / 100 (natural language).

    Args:
        split: ``"train"`` or ``"test"`` for SCAN; any split name of a Hugging Face set.
        scan_split: the SCAN experiment, one of ``simple``, ``length``, ``addprim_jump``,
            ``addprim_turn_left``.
        scan_seed: seed of the ``simple`` split's random 80/20 partition.
        dataset: ``"scan"`` (default), a Hugging Face dataset name, or ``"json"`` with
            ``data_files``.
        dataset_config: the dataset's configuration name (e.g. ``"de-en"`` for wmt16).
        data_files: local files for ``dataset="json"``: a path, or ``{split: path}``.
        source_lang, target_lang: keys of each row's ``translation`` dict.
        reward: ``"exact_match"`` (default for SCAN) or ``"chrf"`` (default otherwise,
            scaled to [0, 1]).
        metrics: the metrics computed for ``info["metrics"]`` besides the reward's own;
            default both. chrF costs more than the env's own per-episode work:
            ``metrics=("exact_match",)`` skips it in training.
        max_samples: keep only the first ``max_samples`` rows of the split.
    """

    name = "translation"

    def __init__(
        self,
        *,
        split: str = "train",
        scan_split: str = "simple",
        scan_seed: int = 0,
        dataset: str = "scan",
        dataset_config: str | None = None,
        data_files: str | dict[str, str] | None = None,
        source_lang: str | None = None,
        target_lang: str | None = None,
        reward: str | None = None,
        metrics: tuple[str, ...] = REWARDS,
        max_samples: int | None = None,
    ) -> None:
        self._config = dict(
            split=split,
            scan_split=scan_split,
            scan_seed=scan_seed,
            dataset=dataset,
            dataset_config=dataset_config,
            data_files=data_files,
            source_lang=source_lang,
            target_lang=target_lang,
            reward=reward,
            metrics=tuple(metrics),
            max_samples=max_samples,
        )
        self.reward = reward or ("exact_match" if dataset == "scan" else "chrf")
        check_choice("reward", self.reward, REWARDS)
        for name in metrics:
            check_choice("metrics entry", name, REWARDS)
        self.metrics = tuple(dict.fromkeys((*metrics, self.reward)))
        if dataset == "scan":
            check_choice("scan_split", scan_split, scan.SCAN_SPLITS)
            check_choice("split", split, ("train", "test"))
            samples = [
                Sample(SCAN_PROMPT.format(command=c), (a,), source=c)
                for c, a in scan.scan_split(scan_split, split, scan_seed)
            ]
        else:
            rows = load_hf_rows(dataset, dataset_config, data_files, split, max_samples)
            samples = rows_to_samples(rows, source_lang, target_lang)
        if max_samples is not None:
            if max_samples < 1:
                raise ValueError(f"max_samples={max_samples} must be >= 1 (or None for all)")
            samples = samples[:max_samples]
        self.samples = samples

    def score(self, responses: Sequence[str], samples: Sequence[Sample]) -> Scores:
        refs = [s.references for s in samples]
        metrics = {name: getattr(text_metrics, name)(responses, refs) for name in self.metrics}
        rewards = metrics["exact_match"] if self.reward == "exact_match" else metrics["chrf"] / 100
        return Scores(np.asarray(rewards, dtype=np.float64), metrics)


def rows_to_samples(rows: Sequence[dict[str, Any]], source_lang: str | None, target_lang: str | None) -> list[Sample]:
    """Turn ``{"translation": {src: text, tgt: text}}`` rows into samples.

    Raises:
        ValueError: a language is not given, or a row lacks the field or has empty text;
            the message names the row index and the field.
    """
    if not source_lang or not target_lang:
        raise ValueError(
            "a translation dataset needs source_lang= and target_lang=, the keys of each "
            f"row's 'translation' dict (got source_lang={source_lang!r}, "
            f"target_lang={target_lang!r})"
        )
    src_name = LANGUAGE_NAMES.get(source_lang, source_lang)
    tgt_name = LANGUAGE_NAMES.get(target_lang, target_lang)
    samples = []
    for i, row in enumerate(rows):
        pair = row.get("translation") if isinstance(row, dict) else None
        if not isinstance(pair, dict):
            raise ValueError(f"row {i} has no 'translation' dict (keys: {sorted(row)})")
        for lang in (source_lang, target_lang):
            text = pair.get(lang)
            if not isinstance(text, str) or not text.strip():
                raise ValueError(
                    f"row {i}: field 'translation.{lang}' is missing or empty ({text!r}); "
                    "clean the dataset or pick other languages"
                )
        prompt = TEXT_PROMPT.format(src_name=src_name, tgt_name=tgt_name, text=pair[source_lang])
        samples.append(Sample(prompt, (pair[target_lang],), source=pair[source_lang]))
    return samples
