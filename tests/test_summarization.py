"""TextSumm-v0's task: aclsum, the stdlib set, Hugging Face loading, ROUGE scoring."""

from __future__ import annotations

import doctest
import json
import logging
import sysconfig

import numpy as np
import pytest
from rouge_score import rouge_scorer

from text_gym import TextVectorEnv
from text_gym.rewards.rouge import ROUGE_TYPES
from text_gym.tasks import summarization
from text_gym.tasks.summarization import SummarizationTask, clean_rows, stdlib_samples, stdlib_split

# ---------------------------------------------------------------------- aclsum


@pytest.mark.parametrize("split, n", [("train", 100), ("val", 50), ("test", 100)])
def test_aclsum_splits(split, n):
    task = SummarizationTask(split=split)
    assert len(task) == n and len(SummarizationTask(split=split, aspect="all")) == 3 * n
    for s in task.samples:
        assert s.references[0].strip() and s.source.strip() and s.extra["aspect"] == "challenge"
        assert s.source in s.prompt and s.prompt.startswith("Title: ") and s.prompt.endswith("\nSummary:")
    assert " ( " not in task.samples[0].source and " ." not in task.samples[0].source  # detokenized


def test_aclsum_aspects():
    every = SummarizationTask(split="val", aspect="all").samples
    assert [s.extra["aspect"] for s in every[:4]] == ["challenge", "approach", "outcome", "challenge"]
    for k, aspect in enumerate(("challenge", "approach", "outcome")):
        one = SummarizationTask(split="validation", aspect=aspect).samples
        assert [s.references for s in one] == [s.references for s in every[k::3]]
        assert len({s.extra["id"] for s in one}) == 50
    assert len({s.references for s in every}) == 150  # three different summaries per paper


# ---------------------------------------------------------------------- stdlib


def test_stdlib_counts_and_fields():
    tasks = {split: SummarizationTask(dataset="stdlib", split=split) for split in ("train", "val", "test")}
    n = {split: len(t) for split, t in tasks.items()}
    assert n["train"] > 2000 and 200 < n["val"] < n["train"] / 4 and 200 < n["test"] < n["train"] / 4
    names = [s.extra["name"] for t in tasks.values() for s in t.samples]
    assert len(names) == len(set(names)) == len(stdlib_samples())  # the splits partition the set
    for s in tasks["val"].samples:
        assert len(s.references[0].split()) >= 3 and "\n" not in s.references[0]
        assert s.prompt.startswith("# ") and s.prompt.endswith("in one line.\nSummary:")
        assert '"""' + s.references[0][:20] not in s.prompt and s.source.lstrip().startswith(
            ("def ", "async def ", "@")
        )


def test_stdlib_is_deterministic_and_excludes_tests_and_private_names():
    cached = stdlib_samples()
    fresh = summarization._stdlib_samples.__wrapped__(sysconfig.get_paths()["stdlib"])
    assert fresh == cached and [s.prompt for s in fresh] == [s.prompt for s in cached]
    for s in cached:
        module, qualname = s.extra["name"].split(":")
        assert not {"test", "tests", "idle_test", "lib2to3", "distutils"} & set(module.split(".")), s.extra["name"]
        assert qualname.split(".")[-1] != "test"  # modules' self-test drivers
        assert not any(p.startswith(("_", "test_")) for p in module.split(".")), s.extra["name"]
        assert not any(p.startswith("_") for p in qualname.split("."))
        assert len(s.source.splitlines()) <= summarization.STDLIB_MAX_LINES
    # Splits hang on a stable hash of the name, not on Python's randomized hash().
    assert [stdlib_split(n) for n in ("json:dumps", "textwrap:dedent", "queue:Queue.qsize")] == [
        "train",
        "test",
        "train",
    ]


def _write(path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


GOOD = 'def public(x):\n    """Add one to a number and return it."""\n\n    return x + 1\n'
SKIPPED = {
    "private": 'def _private(x):\n    """Add one to a number and return it."""\n    return x + 1\n',
    "trivial": 'def stub(self):\n    """Do nothing at all here."""\n    pass\n',
    "short summary": 'def terse(x):\n    """Add one."""\n    return x + 1\n',
    "self test": 'def test():\n    """Run the module\'s own checks."""\n    return public(1)\n',
    "over 30 lines": 'def long(x):\n    """Count up to a big number."""\n' + "    x += 1\n" * 31,
}
METHOD = '''class Box:
    @property
    def size(self):
        """The number of items in the box,
        counted twice.
        """
        return 2 * len(self.items)
'''


def test_stdlib_extraction_rules_on_a_made_up_library(tmp_path):
    _write(tmp_path / "mod.py", "\n".join([GOOD, *SKIPPED.values(), METHOD]))
    for skipped in (
        "test/mod.py",
        "pkg/tests/mod.py",
        "test_mod.py",
        "_private_mod.py",
        "site-packages/pip/mod.py",
        "ensurepip/_bundled/mod.py",
        "idlelib/idle_test/mod.py",
    ):
        _write(tmp_path / skipped, GOOD)
    _write(tmp_path / "pkg/__init__.py", GOOD)
    _write(tmp_path / "latin1.py", '"""é"""\n'.encode("latin-1"))
    samples = summarization._stdlib_samples.__wrapped__(str(tmp_path))
    assert [s.extra["name"] for s in samples] == ["mod:public", "mod:Box.size", "pkg:public"]
    assert samples[0].prompt == (
        "# mod\ndef public(x):\n    return x + 1\n\nSummarize what this Python function does in one line.\nSummary:"
    )
    assert samples[0].references == ("Add one to a number and return it.",)
    assert samples[1].references == ("The number of items in the box, counted twice.",)
    assert samples[1].source == "@property\ndef size(self):\n    return 2 * len(self.items)"
    assert samples[1].prompt.startswith("# mod.Box\n@property\n")


# ---------------------------------------------------------------------- scoring


def test_scores_equal_rouge_score_and_are_batched():
    task = SummarizationTask(split="test", precision_recall=True)
    samples = task.samples[:6]
    responses = [
        " " + samples[0].references[0],
        "",
        samples[3].references[0],
        "the model",
        "x",
        samples[2].references[0],
    ]
    scores = task.score(responses, samples)  # one call, many responses
    assert scores.rewards.shape == (6,) and scores.rewards.dtype == np.float64
    assert scores.rewards[0] == 1.0 and scores.rewards[1] == 0.0 and 0 < scores.rewards[2] < 1
    np.testing.assert_array_equal(scores.rewards, scores.metrics["rougeL"])
    assert set(scores.metrics) == {*ROUGE_TYPES, *(f"{t}_{p}" for t in ROUGE_TYPES for p in ("precision", "recall"))}
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True, split_summaries=False)
    for i, (r, s) in enumerate(zip(responses, samples)):
        want = scorer.score(s.references[0], r)
        assert all(scores.metrics[t][i] == want[t].fmeasure for t in ROUGE_TYPES)
    one_by_one = [task.score([r], [s]).rewards[0] for r, s in zip(responses, samples)]
    assert scores.rewards.tolist() == one_by_one


def test_reward_and_metrics_options():
    task = SummarizationTask(split="val", reward="rouge2", metrics=("rouge1",), max_samples=3)
    assert len(task) == 3 and task.metrics == ("rouge1", "rouge2")
    scores = task.score(["the the", task.samples[1].references[0]], task.samples[:2])
    assert list(scores.metrics) == ["rouge1", "rouge2"] and scores.rewards[1] == 1.0
    np.testing.assert_array_equal(scores.rewards, scores.metrics["rouge2"])


# ---------------------------------------------------------------------- Hugging Face


def _jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_hugging_face_loader_offline_explicit_fields_and_convention(tmp_path):
    pytest.importorskip("datasets")
    rows = [
        {"body": "The cat sat on the mat all day.", "tldr": "Cat sits."},
        {"body": "Stocks rose sharply on Monday.", "tldr": "Stocks up."},
    ]
    files = {"train": _jsonl(tmp_path / "own.jsonl", rows)}
    task = SummarizationTask(dataset="json", data_files=files, text_field="body", summary_field="tldr")
    assert [s.references for s in task.samples] == [("Cat sits.",), ("Stocks up.",)]
    assert task.samples[0].prompt == "The cat sat on the mat all day.\n\nSummarize the text above.\nSummary:"
    xsum = [{"document": r["body"], "summary": r["tldr"], "id": str(i)} for i, r in enumerate(rows)]
    path = _jsonl(tmp_path / "xsum.jsonl", xsum)
    like = SummarizationTask(dataset="json", data_files=path, split="test", fields_like="xsum")
    assert like.samples == task.samples
    assert like.score(["Cat sits", ""], like.samples).rewards.tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match=r"no field 'article' \(its fields: \['document', 'summary', 'id'\]\)"):
        SummarizationTask(dataset="json", data_files=path, fields_like="cnn_dailymail")
    with pytest.raises(ValueError, match="pass text_field= and summary_field="):
        SummarizationTask(dataset="json", data_files=path)


def test_empty_rows_are_skipped_and_counted(tmp_path, caplog):
    pytest.importorskip("datasets")
    rows = [
        {"document": "Some text.", "summary": "A summary."},
        {"document": "  ", "summary": "x y"},
        {"document": "More text.", "summary": ""},
        {"document": "Text.", "summary": "日本語"},
        {"document": "Last text.", "summary": "Last one."},
    ]
    path = _jsonl(tmp_path / "x.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="text_gym.tasks.summarization"):
        task = SummarizationTask(dataset="json", data_files=path, fields_like="xsum")
    assert [s.extra["row"] for s in task.samples] == [0, 4]
    assert "skipped 3 of 5 rows" in caplog.text and "no ROUGE word" in caplog.text
    with pytest.raises(ValueError, match="no usable row: 1 with empty 'summary'"):
        SummarizationTask(dataset="json", data_files=_jsonl(tmp_path / "e.jsonl", rows[2:3]), fields_like="xsum")


def test_bad_rows_name_the_row_and_field(tmp_path):
    pytest.importorskip("datasets")
    ok = {"document": "Some text.", "summary": "A summary."}
    for bad, message in [
        ({"document": "Text."}, "is missing"),
        ({"document": "Text.", "summary": None}, "is missing"),
        ({"document": "Text.", "summary": 3}, "is a int, not text"),
    ]:
        path = _jsonl(tmp_path / "bad.jsonl", [ok, bad])
        with pytest.raises(ValueError, match=f"row 1 of json/train: field 'summary' {message}"):
            SummarizationTask(dataset="json", data_files=path, fields_like="xsum")
    with pytest.raises(ValueError, match="row 1 of rows: field 'document' is not UTF-8 text"):
        clean_rows([ok, {"document": "lone \ud800", "summary": "x y"}], ("document", "summary"), "rows")
    (tmp_path / "latin1.jsonl").write_bytes(
        b'{"document": "ok", "summary": "x y"}\n{"document": "caf\xe9", "summary": "x y"}\n'
    )
    with pytest.raises(ValueError, match="row 1 of json/train: field 'document' is not UTF-8 text"):
        SummarizationTask(dataset="json", data_files=str(tmp_path / "latin1.jsonl"), fields_like="xsum")
    (tmp_path / "surrogate.jsonl").write_text(
        '{"document": "ok", "summary": "x y"}\n{"document": "\\ud800", "summary": "x y"}\n'
    )
    with pytest.raises(ValueError, match="could not be read: .*surrogate.*row 1"):
        SummarizationTask(dataset="json", data_files=str(tmp_path / "surrogate.jsonl"), fields_like="xsum")


# ---------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(reward="bleu"),
            r"reward='bleu' is not valid; choose one of \['rouge1', 'rouge2', 'rougeL', 'rougeLsum'\]",
        ),
        (dict(metrics=("rouge3",)), "metrics entry='rouge3'"),
        (dict(split="dev"), r"split='dev' is not valid; choose one of \['train', 'val', 'test', 'validation'\]"),
        (
            dict(aspect="method"),
            r"aspect='method' is not valid; choose one of \['challenge', 'approach', 'outcome', 'all'\]",
        ),
        (dict(dataset="stdlib", aspect="outcome"), "aspect='outcome' applies only to dataset='aclsum'"),
        (dict(dataset="stdlib", text_field="x"), r"\['text_field'\] apply to Hugging Face datasets"),
        (
            dict(dataset="json", fields_like="cnn"),
            r"fields_like='cnn' is not valid; choose one of \['cnn_dailymail', 'samsum', 'xsum'\]",
        ),
        (dict(max_samples=0), "max_samples=0 must be an int >= 1"),
    ],
)
def test_bad_arguments_list_the_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SummarizationTask(**kwargs)


def test_unknown_kwargs_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['rouge'\].*'aspect', 'data_files'"):
        SummarizationTask.check_kwargs("TextSumm-v0", {"rouge": "rouge1", "split": "val"})


# ---------------------------------------------------------------------- env level


def test_env_smoke_batched_episodes():
    env = TextVectorEnv(
        4, task=SummarizationTask(split="val"), tokenizer="byte", max_prompt_tokens=256, max_new_tokens=8
    )
    env.reset(seed=0)
    rng, finished = np.random.default_rng(0), 0
    for _ in range(40):
        actions = rng.integers(32, 127, size=4)
        actions[rng.random(4) < 0.2] = env.tokenizer.eos_token_id
        _, rewards, terminated, truncated, info = env.step(actions)
        done = terminated | truncated
        if done.any():
            assert {k for k in info["metrics"] if not k.startswith("_")} == set(ROUGE_TYPES)
            assert ((0 <= rewards) & (rewards <= 1)).all()
            np.testing.assert_array_equal(rewards[done], info["metrics"]["rougeL"][done])
            finished += int(done.sum())
    assert finished >= 8 and env.num_truncated_prompts > 0  # abstracts exceed 256 bytes


@pytest.mark.parametrize("kwargs", [dict(split="test", aspect="outcome"), dict(dataset="stdlib", split="val")])
def test_env_reward_for_reference_response(kwargs):
    env = TextVectorEnv(1, task=SummarizationTask(**kwargs), tokenizer="byte")
    _, info = env.reset(seed=0)
    ref = env.task.samples[info["sample_index"][0]].references[0]
    for byte in (" " + ref).encode():
        env.step([byte])
    _, reward, terminated, _, info = env.step([env.tokenizer.eos_token_id])
    assert terminated[0] and reward[0] == 1.0 and info["response"][0] == " " + ref
    assert all(info["metrics"][t][0] == 1.0 for t in ROUGE_TYPES)


def test_doctests():
    result = doctest.testmod(summarization)
    assert result.failed == 0 and result.attempted > 0
