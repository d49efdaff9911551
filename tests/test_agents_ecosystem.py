"""The ecosystem agents (agents/trl_grpo.py: TRL's GRPOTrainer; agents/sb3_ppo.py: SB3's PPO with
LMActorCriticPolicy) run from an agents/sft.py warm start, log each iteration's training reward
and the held-out evaluation as the other agents do, learn, and save a model folder that loads."""

from __future__ import annotations

import csv
import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.test_agents import load_agent, metric, register_say_env, say_tokenizer, tiny_args, training_rows
from text_gym import TextVectorEnv
from text_gym.adapters.trl import EnvReward

pytest.importorskip("trl", reason="the TRL GRPO agent needs the trl extra: pip install 'text_gym[trl]'")
pytest.importorskip("stable_baselines3", reason="the SB3 PPO agent needs the sb3 extra: pip install 'text_gym[sb3]'")

ITERATIONS = 12


@pytest.fixture(scope="module")
def warm_start(tmp_path_factory) -> Path:
    """A tiny SFT warm start on the Say task (two updates: it answers, mostly wrongly)."""
    runs = tmp_path_factory.mktemp("warm")
    sft = load_agent("sft")
    args = dict(
        env_id=register_say_env(), tokenizer=say_tokenizer(runs), total_updates=2, checkpoint_every=0, val_fraction=0
    )
    sft.main(tiny_args(sft, runs / "runs", **args))
    return next((runs / "runs").iterdir()) / "model"


def eco_args(agent, runs: Path, warm: Path, **overrides):
    base = {
        "env_id": register_say_env(),
        "init_model": str(warm),
        "total_iterations": ITERATIONS,
        "num_envs": 16,
        "learning_rate": 1e-3,
        "eval_episodes": 3,
        "eval_envs": 3,
        "checkpoint_every": 5,
        "runs_dir": str(runs),
        "threads": 1,  # torch's default threads crawl on a loaded machine (tens of times slower)
        "val_fraction": 0.0,  # all three prompts
    }
    if agent.__name__.endswith("trl_grpo"):  # the Say task's 3 prompts, 4 answers each
        base.update(num_envs=12, group_size=4)
    return agent.Args(**{**base, **overrides})


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def evaluate_folder(folder: Path, args) -> float:
    """common.evaluate's greedy held-out score of a saved model folder."""
    common = importlib.import_module("common")  # agents/ is on sys.path once an agent is loaded
    model, tokenizer = common.load_pretrained(str(folder))
    return common.evaluate(model, args, tokenizer)


def check_run(name: str, run: Path, warm: Path, result: dict) -> list[float]:
    """What every agent's run leaves: one training reward per iteration, then the evaluation,
    and a model folder that loads, with weights moved away from the warm start's."""
    returns = metric(run, "charts/episodic_return")
    assert len(returns) == ITERATIONS and np.isfinite(returns).all()
    steps = [int(r[0]) for r in csv.reader((run / "metrics.csv").open()) if r[1] == "charts/episodic_return"]
    assert steps == list(range(1, ITERATIONS + 1))
    assert metric(run, "charts/eval_return") == [result["eval_return"]]
    trained = weights(AutoModelForCausalLM.from_pretrained(run / "model"))
    start = weights(AutoModelForCausalLM.from_pretrained(warm))
    assert trained.keys() == start.keys()
    moved = max((trained[k] - start[k]).abs().max().item() for k in start)
    assert moved > 1e-4, f"{name}: the weights did not change"
    early, late = np.mean(returns[:4]), np.mean(returns[-4:])
    assert late > early + 0.1, f"{name}: mean training reward {early:.3f} -> {late:.3f}"  # it learns
    return returns


def test_trl_grpo_learns_logs_and_resumes(warm_start, tmp_path, monkeypatch):
    agent = load_agent("trl_grpo")
    result = agent.main(eco_args(agent, tmp_path / "a", warm_start))
    run = next((tmp_path / "a").iterdir())
    check_run("trl_grpo", run, warm_start, result)

    # the held-out evaluation scored the trained weights: evaluating the saved folder again agrees
    assert evaluate_folder(run / "model", eco_args(agent, tmp_path, warm_start)) == result["eval_return"]

    # a finished run started again trains nothing: the same rows, the same evaluation
    rows = training_rows(run)
    assert agent.main(eco_args(agent, tmp_path / "a", warm_start)) == result
    assert training_rows(run) == rows

    # killed while logging iteration 7 (TRL's last checkpoint is iteration 5's), started again:
    # it resumes from TRL's checkpoint and logs iterations 6 to 12 once each (not the unbroken
    # run's numbers from there on: TRL's resumed run does not draw the same prompts and samples)
    log = agent.LogIterations.on_log

    def killed_at_7(self, args, state, control, logs=None, **kwargs):
        if logs and "reward" in logs and state.global_step == 7 * self.steps_per_iteration:
            raise KeyboardInterrupt
        return log(self, args, state, control, logs, **kwargs)

    monkeypatch.setattr(agent.LogIterations, "on_log", killed_at_7)
    with pytest.raises(KeyboardInterrupt):
        agent.main(eco_args(agent, tmp_path / "c", warm_start))
    monkeypatch.undo()
    run_c = next((tmp_path / "c").iterdir())
    assert len(metric(run_c, "charts/episodic_return")) == 6
    resumed = agent.main(eco_args(agent, tmp_path / "c", warm_start))
    returns = metric(run_c, "charts/episodic_return")
    steps = [int(r[0]) for r in training_rows(run_c) if r[1] == "charts/episodic_return"]
    assert steps == list(range(1, ITERATIONS + 1)) and returns[:5] == metric(run, "charts/episodic_return")[:5]
    assert 0.0 <= resumed["eval_return"] <= 1.0


def test_trl_grpo_refuses_a_bad_batch_and_a_missing_warm_start(tmp_path, warm_start):
    agent = load_agent("trl_grpo")
    with pytest.raises(ValueError, match="num_envs=10 must be a multiple of group_size=4"):
        agent.main(eco_args(agent, tmp_path, warm_start, num_envs=10))
    with pytest.raises(ValueError, match="pass --init-model"):
        agent.main(eco_args(agent, tmp_path, warm_start, init_model=""))
    with pytest.raises(ValueError, match="has 3 prompts, fewer than"):
        agent.main(eco_args(agent, tmp_path, warm_start, num_envs=16))


def test_sb3_ppo_learns_logs_and_resumes(warm_start, tmp_path, monkeypatch):
    agent = load_agent("sb3_ppo")
    result = agent.main(eco_args(agent, tmp_path / "a", warm_start))
    run = next((tmp_path / "a").iterdir())
    check_run("sb3_ppo", run, warm_start, result)
    # the Say answers are one word and the stop token: two steps per slot hold one episode each
    assert result["n_steps"] == 2
    episodes = metric(run, "charts/episodes")
    assert len(episodes) == ITERATIONS and 8 <= np.mean(episodes) <= 32

    assert evaluate_folder(run / "model", eco_args(agent, tmp_path, warm_start)) == result["eval_return"]

    # a finished run started again trains nothing: the same rows, the same evaluation
    rows = training_rows(run)
    assert agent.main(eco_args(agent, tmp_path / "a", warm_start)) == result
    assert training_rows(run) == rows

    # killed before logging iteration 7 (the last checkpoint is iteration 5's), started again:
    # the policy and optimizer come back from the checkpoint and iterations 6 to 12 run once
    write, written = agent.LogIterations._write, []

    def killed_at_7(self):
        written.append(self.rollout is not None)
        if sum(written) == 7:
            raise KeyboardInterrupt
        write(self)

    monkeypatch.setattr(agent.LogIterations, "_write", killed_at_7)
    with pytest.raises(KeyboardInterrupt):
        agent.main(eco_args(agent, tmp_path / "c", warm_start))
    monkeypatch.undo()
    run_c = next((tmp_path / "c").iterdir())
    assert metric(run_c, "charts/episodic_return") == metric(run, "charts/episodic_return")[:6]
    agent.main(eco_args(agent, tmp_path / "c", warm_start))
    steps = [int(r[0]) for r in training_rows(run_c) if r[1] == "charts/episodic_return"]
    assert steps == list(range(1, ITERATIONS + 1))


def test_sb3_ppo_refuses_a_rollout_that_does_not_split(tmp_path, warm_start):
    agent = load_agent("sb3_ppo")
    with pytest.raises(ValueError, match="must be a multiple of num_minibatches=3"):
        agent.main(eco_args(agent, tmp_path, warm_start, num_minibatches=3, n_steps=2))


def test_ecosystem_agents_never_train_on_the_validation_samples(warm_start, tmp_path, monkeypatch):
    common = importlib.import_module("common")
    held_out = set(common.validation_samples(3, 0.3).tolist())  # one of the three Say prompts
    quick = {"val_fraction": 0.3, "total_iterations": 2, "checkpoint_every": 0}

    trl, scored = load_agent("trl_grpo"), []
    score = EnvReward.__call__

    def recording_reward(self, *args, sample_index=None, **kwargs):
        scored.extend(sample_index)
        return score(self, *args, sample_index=sample_index, **kwargs)

    monkeypatch.setattr(EnvReward, "__call__", recording_reward)
    trl.main(eco_args(trl, tmp_path / "trl", warm_start, num_envs=8, **quick))
    assert len(scored) == 16 and set(scored) and not set(scored) & held_out

    sb3, drawn, step = load_agent("sb3_ppo"), [], TextVectorEnv.step

    def recording_step(self, actions):  # the autoresets of SB3's env (SAME_STEP; the evaluation's is NEXT_STEP)
        out = step(self, actions)
        info = out[-1]
        if "sample_index" in info and self.autoreset_mode.name == "SAME_STEP":
            drawn.extend(np.asarray(info["sample_index"])[info["_sample_index"]].tolist())
        return out

    monkeypatch.setattr(TextVectorEnv, "step", recording_step)
    sb3.main(eco_args(sb3, tmp_path / "sb3", warm_start, **quick))
    assert len(drawn) >= 16 and not set(drawn) & held_out
