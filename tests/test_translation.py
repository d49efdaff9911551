"""TextTranslate-v0's task: SCAN prompts and scoring, Hugging Face translation sets."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from text_gym.tasks import TranslationTask, make_task
from text_gym.tasks.scan import scan_split


def test_scan_task_uses_the_chosen_split():
    task = make_task("translation", split="test", scan_split="length")
    assert len(task) == 3920
    assert task.samples[0].references[0] == scan_split("length", "test")[0][1]
    assert task.samples[0].prompt.endswith("\nActions:") and task.samples[0].source in task.samples[0].prompt


def test_scan_scores_exact_match_with_chrf_in_metrics():
    task = TranslationTask()
    sample = task.samples[0]
    ref = sample.references[0]
    scores = task.score([" " + ref + " ", "", ref + " I_WALK"], [sample] * 3)
    assert scores.rewards.tolist() == [1.0, 0.0, 0.0]
    assert scores.metrics["chrf"][0] == 100.0 and scores.metrics["chrf"][1] == 0.0
    assert 0 < scores.metrics["chrf"][2] < 100


def test_env_reward_for_reference_response():
    env = gym.make("TextTranslate-v0", split="test", scan_split="addprim_jump", tokenizer="byte")
    _, info = env.reset(seed=0)
    task = env.unwrapped.task
    ref = task.samples[info["sample_index"]].references[0]
    assert "I_JUMP" in ref  # the held-out primitive is in every test command
    for byte in (" " + ref).encode():
        env.step(byte)
    _, reward, terminated, _, info = env.step(env.unwrapped.eos_token_id)
    assert terminated and reward == 1.0 and info["metrics"]["exact_match"] == 1.0
    assert info["metrics"]["chrf"] == 100.0 and info["response"] == " " + ref


def _write_wmt_style(path, rows):
    path.write_text("".join(json.dumps({"translation": r}) + "\n" for r in rows))
    return str(path)


def test_hugging_face_translation_loader_offline(tmp_path):
    pytest.importorskip("datasets")
    rows = [{"de": "Guten Morgen", "en": "Good morning"}, {"de": "Danke", "en": "Thank you"}]
    files = {"train": _write_wmt_style(tmp_path / "train.jsonl", rows)}
    env = gym.make(
        "TextTranslate-v0",
        dataset="json",
        data_files=files,
        source_lang="de",
        target_lang="en",
        tokenizer="byte",
    )
    task = env.unwrapped.task
    assert [s.references for s in task.samples] == [("Good morning",), ("Thank you",)]
    assert task.samples[0].prompt == "Translate German to English.\nGerman: Guten Morgen\nEnglish:"
    assert task.reward == "chrf"
    scores = task.score(["Good morning", "Thanks"], task.samples)
    assert scores.rewards[0] == 1.0 and 0 < scores.rewards[1] < 1
    env.reset(seed=0)


def test_hugging_face_bad_rows_name_the_row_and_field(tmp_path):
    pytest.importorskip("datasets")
    rows = [{"de": "Ja", "en": "Yes"}, {"de": "Nein", "en": ""}]
    files = {"train": _write_wmt_style(tmp_path / "bad.jsonl", rows)}
    with pytest.raises(ValueError, match=r"row 1: field 'translation.en' is missing or empty"):
        TranslationTask(dataset="json", data_files=files, source_lang="de", target_lang="en")
    with pytest.raises(ValueError, match="source_lang= and target_lang="):
        TranslationTask(dataset="json", data_files=files)


def test_max_samples():
    assert len(TranslationTask(max_samples=10)) == 10
    with pytest.raises(ValueError, match="max_samples=0"):
        TranslationTask(max_samples=0)
    assert np.isclose(TranslationTask(reward="chrf").score(["x"], [TranslationTask().samples[0]]).rewards[0], 0.0)


def test_metrics_option_skips_chrf_but_keeps_the_reward():
    task = TranslationTask(metrics=("exact_match",))
    scores = task.score([task.samples[0].references[0]], task.samples[:1])
    assert list(scores.metrics) == ["exact_match"] and scores.rewards.tolist() == [1.0]
    chrf_reward = TranslationTask(reward="chrf", metrics=())
    assert list(chrf_reward.score(["x"], task.samples[:1]).metrics) == ["chrf"]
    with pytest.raises(ValueError, match="metrics entry='bleu'"):
        TranslationTask(metrics=("bleu",))


def test_chat_template_prompts_match_the_tokenizers_own_template():
    env = gym.make("TextTranslate-v0", chat_template=True)
    obs, info = env.reset(seed=0)
    vec = env.unwrapped.vector
    hf = vec.tokenizer.hf
    sample = vec.task.samples[info["sample_index"]]
    expected = hf.apply_chat_template([{"role": "user", "content": sample.prompt}], add_generation_prompt=True)
    expected = expected["input_ids"] if isinstance(expected, dict) or hasattr(expected, "keys") else expected
    start, end = obs["new_span"]
    assert obs["input_ids"][start:end].tolist() == list(expected)
    assert obs["input_ids"][start] == hf.convert_tokens_to_ids("<|im_start|>")
    with pytest.raises(ValueError, match="has no chat template"):
        gym.make("TextTranslate-v0", chat_template=True, tokenizer="byte")
