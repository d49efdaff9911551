"""Summarization (``TextSumm-v0``): summarize a text; the reward is its ROUGE score.

## Description

Each episode shows a text (an ACL paper's abstract by default) and asks for a summary,
written token by token. Prompts end with the instruction and ``Summary:``, so the env's
default left truncation of an overlong prompt keeps them; a response starts with a space.

## Spaces

As for every text_gym env (:class:`~text_gym.vector_env.TextVectorEnv`): observations
are a ``Dict`` of ``input_ids``, ``attention_mask``, ``agent_mask`` (integer Boxes of
length ``max_prompt_tokens + max_new_tokens``) and ``new_span``; the action is the next
token, ``Discrete(len(tokenizer))``.

## Rewards

0 until the last step, then the ``reward=`` ROUGE F-measure (default ``rougeL``), in
[0, 1], of the decoded response against the reference, by ``rouge-score`` with the
Porter stemmer (:mod:`text_gym.rewards.rouge`): 1.0 for the
reference itself, 0.0 for an empty response. ``info["metrics"]`` has each ``metrics=``
type's F-measure (default all four), and with ``precision_recall=True`` its precision
and recall.

## Episode end

Terminated by a stop token (EOS by default); truncated after ``max_new_tokens`` tokens
(default: the longest reference + 1).

## Data

* ``"aclsum"`` (default): ACLSum (Takeshita et al., 2024) from the ``aclsum`` package's
  files (MIT licence); ``train``/``val``/``test`` have 100/50/100 papers. Title and
  abstract (its tokenized sentences lightly detokenized) -> the annotators' one-sentence
  summary of the paper's ``aspect`` (``challenge``, ``approach``, ``outcome``);
  ``aspect="all"``: one sample per paper and aspect, the prompt naming the aspect.
* ``"stdlib"``: the running Python's standard library (so the set follows the Python
  version; CPython's source, PSF licence): a function's source without its docstring,
  under a ``# module.Class`` comment -> the docstring's summary. Split 80/10/10 by
  sha256 of ``"module:qualname"``. Kept: public (no ``_`` name on the path, so no
  private module such as ``_pydecimal``) functions and methods at module or class
  level, but not modules' ``test()`` self-test drivers, whose docstring's first
  paragraph (the reference, whitespace-collapsed: a wrapped summary line stays whole)
  has <= 2 lines and >= 3 words, whose body is more than ``pass``/``...``/a ``raise``,
  and whose source without docstring has <= ``STDLIB_MAX_LINES`` (30) lines. Not walked:
  ``test``, ``tests``, ``idle_test``,
  ``site-packages``, ``lib2to3`` and ``distutils`` (deprecated, gone in later Pythons),
  ``turtledemo`` (demos), ``config-*`` and private folders (``ensurepip/_bundled``),
  ``test_*.py`` files. Sorted walk, done once per process and cached.
* A Hugging Face set: a name in ``FIELDS`` (``cnn_dailymail``: article -> highlights,
  ``xsum``: document -> summary, ``samsum``: dialogue -> summary; owner prefix
  optional), or any name with ``text_field=``/``summary_field=``; ``"json"`` (or
  ``"csv"``, ``"parquet"``) reads ``data_files=``, ``fields_like="xsum"`` naming fields.

Bad data raises ``ValueError`` at construction, naming the row and field: a field
missing from the data or a row, a value that is not a string, text that is not UTF-8
(a file's bytes, a lone surrogate). Rows with an empty text or summary, or a summary
without a word ROUGE counts (only ``[a-z0-9]`` words count: it would score 0 whatever
the response), are skipped and counted in a logged warning, as public sets have a few.

## Version history

* v0: initial version.
"""

from __future__ import annotations

import ast
import gc
import hashlib
import importlib.util
import json
import logging
import os
import re
import sysconfig
import textwrap
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from text_gym.rewards.rouge import ROUGE_TYPES, rouge, scorable
from text_gym.tasks.base import Sample, Scores, Task, check_choice, load_hf_rows, report_skipped_rows

logger = logging.getLogger(__name__)

ASPECTS = ("challenge", "approach", "outcome")
SPLITS = ("train", "val", "test", "validation")  # "validation" is "val"
FIELDS = {
    "cnn_dailymail": ("article", "highlights"),
    "xsum": ("document", "summary"),
    "samsum": ("dialogue", "summary"),
}
CONFIGS = {"cnn_dailymail": "3.0.0"}
STDLIB_MAX_LINES = 30
ACLSUM_PROMPT = "Title: {title}\nAbstract: {abstract}\n\nIn one sentence, summarize {aspect}.\nSummary:"
ASPECT_TEXT = {
    "challenge": "the problem this paper addresses",
    "approach": "the approach this paper takes",
    "outcome": "what this paper finds",
}
STDLIB_PROMPT = "{code}\n\nSummarize what this Python function does in one line.\nSummary:"
TEXT_PROMPT = "{text}\n\nSummarize the text above.\nSummary:"
_SKIP_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "lib2to3", "distutils", "turtledemo", "lib-dynload"}
)


class SummarizationTask(Task):
    """Summarize a text; reward a ROUGE F-measure in [0, 1] (see the module docstring).

    Args:
        split: ``train``, ``val`` (or ``validation``), ``test``; for a Hugging Face set,
            any of its splits.
        dataset: ``"aclsum"`` (default), ``"stdlib"``, a Hugging Face dataset name, or
            ``"json"``/``"csv"``/``"parquet"`` with ``data_files``.
        aspect: aclsum's ``challenge`` (default), ``approach``, ``outcome`` or ``all``.
        dataset_config: Hugging Face configuration (default ``3.0.0`` for cnn_dailymail).
        data_files: local files: a path, or ``{split: path}``.
        text_field, summary_field: the columns of the text and of its summary.
        fields_like: take both field names from this ``FIELDS`` convention.
        reward: ``rouge1``, ``rouge2``, ``rougeL`` (default) or ``rougeLsum``.
        metrics: ROUGE types in ``info["metrics"]`` (default all; the reward's is added).
        precision_recall: also report ``<type>_precision`` and ``<type>_recall``.
        max_samples: keep only the first ``max_samples`` samples.

    Example:
        >>> task = SummarizationTask(split="val", aspect="outcome")
        >>> len(task), task.samples[0].prompt.endswith("what this paper finds.\\nSummary:")
        (50, True)
        >>> task.score([" " + task.samples[0].references[0], ""], task.samples[:2]).rewards
        array([1., 0.])
    """

    name = "summarization"
    response_prefix = "Summary:"

    def __init__(
        self,
        *,
        split: str = "train",
        dataset: str = "aclsum",
        aspect: str | None = None,
        dataset_config: str | None = None,
        data_files: str | dict[str, str] | None = None,
        text_field: str | None = None,
        summary_field: str | None = None,
        fields_like: str | None = None,
        reward: str = "rougeL",
        metrics: tuple[str, ...] = ROUGE_TYPES,
        precision_recall: bool = False,
        max_samples: int | None = None,
    ) -> None:
        self._config = dict(
            split=split,
            dataset=dataset,
            aspect=aspect,
            dataset_config=dataset_config,
            data_files=data_files,
            text_field=text_field,
            summary_field=summary_field,
            fields_like=fields_like,
            reward=reward,
            metrics=tuple(metrics),
            precision_recall=precision_recall,
            max_samples=max_samples,
        )
        check_choice("reward", reward, ROUGE_TYPES)
        for name in metrics:
            check_choice("metrics entry", name, ROUGE_TYPES)
        self.reward, self.precision_recall = reward, bool(precision_recall)
        self.metrics = tuple(dict.fromkeys((*metrics, reward)))
        if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
            raise ValueError(f"max_samples={max_samples!r} must be an int >= 1 (or None for all)")
        if aspect is not None and dataset != "aclsum":
            raise ValueError(f"aspect={aspect!r} applies only to dataset='aclsum', not {dataset!r}")
        if dataset in ("aclsum", "stdlib"):
            hf_only = dict(
                dataset_config=dataset_config,
                data_files=data_files,
                text_field=text_field,
                summary_field=summary_field,
                fields_like=fields_like,
            )
            given = sorted(k for k, v in hf_only.items() if v is not None)
            if given:
                raise ValueError(f"{given} apply to Hugging Face datasets, not dataset={dataset!r}")
            check_choice("split", split, SPLITS)
            split = "val" if split == "validation" else split
        if dataset == "aclsum":
            check_choice("aspect", aspect or ASPECTS[0], (*ASPECTS, "all"))
            samples = aclsum_samples(split, aspect or ASPECTS[0])
        elif dataset == "stdlib":
            samples = [s for s in stdlib_samples() if stdlib_split(s.extra["name"]) == split]
        else:
            base = dataset.rsplit("/", 1)[-1]
            fields = resolve_fields(dataset, fields_like, text_field, summary_field)
            rows = load_hf_rows(dataset, dataset_config or CONFIGS.get(base), data_files, split, max_samples)
            samples = [
                Sample(TEXT_PROMPT.format(text=text), (summary,), source=text, extra={"row": i})
                for i, (text, summary) in clean_rows(rows, fields, f"{dataset}/{split}")
            ]
        self.samples = samples[:max_samples]

    def score(self, responses: Sequence[str], samples: Sequence[Sample]) -> Scores:
        refs = [s.references for s in samples]
        metrics = rouge(responses, refs, self.metrics, components=self.precision_recall)
        return Scores(metrics[self.reward].copy(), metrics)


def clean_rows(rows: Any, fields: Sequence[str], where: str) -> list[tuple[int, list[str]]]:
    """``(row index, stripped values of fields)`` of the usable rows; the last field is a
    reference.

    Raises:
        ValueError: a field is missing, not a string, or not UTF-8 (names row and field),
            or no row is usable. Rows with an empty value or an unscorable reference
            are skipped, counted in a logged warning.
    """
    if hasattr(rows, "column_names"):  # a datasets.Dataset: read whole columns at once
        absent = [f for f in fields if f not in rows.column_names]
        if absent:
            raise ValueError(
                f"{where} has no field {absent[0]!r} (its fields: {rows.column_names}); "
                f"pass text_field= and summary_field=, or fields_like= one of {sorted(FIELDS)}"
            )
        columns = [_column(rows, f, where) for f in fields]
    else:
        columns = [[r.get(f) if isinstance(r, Mapping) else None for r in rows] for f in fields]
    kept, skipped, first = [], Counter(), {}
    for i, values in enumerate(zip(*columns)):
        for field, value in zip(fields, values):
            if (bad := _not_text(value)) is not None:
                raise ValueError(f"row {i} of {where}: field {field!r} is {bad}; fix or drop the row")
        values = [v.strip() for v in values]
        reason = next((f"empty {f!r}" for f, v in zip(fields, values) if not v), None)
        if reason is None and not scorable(values[-1]):
            reason = f"no ROUGE word ([a-z0-9]) in {fields[-1]!r}"
        if reason:
            skipped[reason] += 1
            first.setdefault(reason, i)
            continue
        kept.append((i, values))
    report_skipped_rows(where, kept, skipped, first, logger)
    return kept


def _column(rows: Any, field: str, where: str) -> list[Any]:
    """A Dataset's column as Python values; pyarrow can hold bytes that are not UTF-8."""
    try:
        return list(rows[field])
    except UnicodeDecodeError:
        column = rows.with_format("arrow")[field]
        for i in range(len(column)):
            try:
                column[i].as_py()
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"row {i} of {where}: field {field!r} is not UTF-8 text ({err.reason} at byte {err.start})"
                ) from None
        raise


def _not_text(value: Any) -> str | None:
    """Why ``value`` is not usable text, or None."""
    if not isinstance(value, str):
        return "missing" if value is None else f"a {type(value).__name__}, not text"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"not UTF-8 text ({err.reason} at character {err.start})"
    return None


def resolve_fields(dataset: str, like: str | None, text: str | None, summary: str | None) -> tuple[str, str]:
    """The (text, summary) field names: explicit ones, else ``like``'s, else the dataset's."""
    if like is not None:
        check_choice("fields_like", like, sorted(FIELDS))
    known = FIELDS.get(like or dataset.rsplit("/", 1)[-1], (None, None))
    text, summary = text or known[0], summary or known[1]
    if not text or not summary:
        raise ValueError(
            f"dataset={dataset!r} has no known field names: pass text_field= and summary_field= "
            f"(the columns of the text and its summary), or fields_like= one of {sorted(FIELDS)}"
        )
    return text, summary


def aclsum_samples(split: str, aspect: str) -> list[Sample]:
    """ACLSum's ``split`` (train/val/test): one sample per paper, or per paper and aspect."""
    spec = importlib.util.find_spec("aclsum")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("dataset='aclsum' needs the aclsum package: pip install aclsum")
    path = Path(list(spec.submodule_search_locations)[0], "dataset", f"{split}.jsonl")
    rows = []
    for i, line in enumerate(path.read_bytes().splitlines()):
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"row {i} of {path} is not UTF-8 JSON: {err}") from None
        abstract = _dig(row, "sentences", "abstract")
        if isinstance(abstract, list) and all(isinstance(s, str) for s in abstract):
            abstract = _detokenize(" ".join(abstract))
        rows.append(
            {
                "id": str(_dig(row, "id")),
                "title": _dig(row, "title"),
                "abstract": abstract,
                **{f"summary.{a}": _dig(row, "summary", a) for a in ASPECTS},
            }
        )
    samples = []
    for a in ASPECTS if aspect == "all" else (aspect,):
        fields = ("title", "abstract", f"summary.{a}")
        for i, (title, abstract, ref) in clean_rows(rows, fields, f"aclsum/{split}"):
            prompt = ACLSUM_PROMPT.format(title=title, abstract=abstract, aspect=ASPECT_TEXT[a])
            samples.append(Sample(prompt, (ref,), source=abstract, extra={"id": rows[i]["id"], "aspect": a, "row": i}))
    if aspect == "all":  # paper-major order: a paper's aspects side by side
        samples.sort(key=lambda s: s.extra["row"])
    return samples


def _dig(row: Any, *keys: str) -> Any:
    """``row[k1][k2]...``, or None where a level is missing."""
    for key in keys:
        row = row.get(key) if isinstance(row, Mapping) else None
    return row


def _detokenize(text: str) -> str:
    """Undo the ``( MT ) ,`` spacing of tokenized text (quotes are left alone)."""
    text = re.sub(r" ([.,;:?!%)\]]|'s\b|n't\b)", r"\1", text)
    return re.sub(r"([(\[]) ", r"\1", text)


def stdlib_split(name: str) -> str:
    """``train``/``val``/``test`` (80/10/10) by a stable hash of ``"module:qualname"``."""
    bucket = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % 10
    return "train" if bucket < 8 else "val" if bucket == 8 else "test"


def stdlib_samples(root: str | None = None) -> tuple[Sample, ...]:
    """Every usable function of the standard library at ``root`` (default: this Python's)."""
    return _stdlib_samples(root or sysconfig.get_paths()["stdlib"])


@lru_cache(maxsize=4)
def _stdlib_samples(root: str) -> tuple[Sample, ...]:
    enabled = gc.isenabled()
    gc.disable()  # ast.parse makes many objects: a full collection per file would triple the time
    try:
        samples, counts = _walk(root)
    finally:
        if enabled:
            gc.enable()
    logger.info("stdlib at %s: %d functions kept; skipped: %s", root, len(samples), dict(counts))
    return tuple(samples.values())


def _walk(root: str) -> tuple[dict[str, Sample], Counter]:
    samples: dict[str, Sample] = {}
    counts: Counter = Counter()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith(("_", "config-")))
        for file in sorted(files):
            if not file.endswith(".py") or file.startswith("test_") or file.startswith("_") and file != "__init__.py":
                continue
            parts = Path(os.path.relpath(os.path.join(folder, file), root)).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            try:  # read_text: universal newlines, so lines match ast's line numbers
                text = Path(folder, file).read_text("utf-8")
                tree = ast.parse(text)
            except (UnicodeDecodeError, SyntaxError, ValueError):
                counts["unreadable files"] += 1
                continue
            _collect(tree.body, module, "", text.split("\n"), samples, counts)
    return samples, counts


def _collect(
    body: list[ast.stmt], module: str, cls: str, lines: list[str], out: dict[str, Sample], counts: Counter
) -> None:
    for node in body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            _collect(node.body, module, f"{cls}{node.name}.", lines, out, counts)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name[0] != "_" and node.name != "test":
            name = f"{module}:{cls}{node.name}"
            found = _function(node, lines)
            if isinstance(found, str):
                counts[found] += 1
            elif name not in out:  # a redefinition (e.g. a property's setter) is dropped
                header = f"# {module}.{cls[:-1]}" if cls else f"# {module}"
                prompt = STDLIB_PROMPT.format(code=f"{header}\n{found[0]}")
                out[name] = Sample(prompt, (found[1],), source=found[0], extra={"name": name})


def _function(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> tuple[str, str] | str:
    """(code without docstring, summary), or why the function is skipped."""
    doc = ast.get_docstring(node)
    if not doc:
        return "no docstring"
    paragraph = re.split(r"\n\s*\n", doc.strip(), maxsplit=1)[0].splitlines()
    summary = " ".join(" ".join(paragraph).split())
    if len(paragraph) > 2 or len(summary.split()) < 3:
        return "summary of > 2 lines or < 3 words"
    rest, d = node.body[1:], node.body[0]
    if (
        not rest
        or len(rest) == 1
        and (
            isinstance(rest[0], (ast.Pass, ast.Raise))
            or isinstance(rest[0], ast.Expr)
            and isinstance(rest[0].value, ast.Constant)
        )
    ):
        return "trivial body"
    if (
        lines[d.lineno - 1].encode()[: d.col_offset].strip()
        or lines[d.end_lineno - 1].encode()[d.end_col_offset :].strip()
        or rest[0].lineno <= d.end_lineno
    ):
        return "docstring shares a line"
    start = min([x.lineno for x in node.decorator_list] + [node.lineno])
    after = lines[d.end_lineno : node.end_lineno]
    while after and not after[0].strip():
        after.pop(0)
    code = lines[start - 1 : d.lineno - 1] + after
    if len(code) > STDLIB_MAX_LINES:
        return f"over {STDLIB_MAX_LINES} lines"
    return textwrap.dedent("\n".join(code)), summary
