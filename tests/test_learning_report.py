"""The learning benchmark's statistics and table (benchmarks/learning_report.py), on made-up runs."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
learning_report = importlib.import_module("learning_report")  # benchmarks/ is not a package


def test_bootstrap_of_a_constant_gain_is_that_gain():
    mean, low, high = learning_report.paired_bootstrap([np.full(50, 0.2), np.full(30, 0.2)])
    assert mean == pytest.approx(0.2) and low == pytest.approx(0.2) and high == pytest.approx(0.2)


def test_bootstrap_interval_matches_the_normal_one_for_one_seed():
    """One seed, many samples: the interval is close to mean +- 1.96 standard errors."""
    d = np.random.default_rng(1).normal(0.1, 1.0, size=2000)
    mean, low, high = learning_report.paired_bootstrap([d], resamples=4000)
    se = d.std(ddof=1) / np.sqrt(len(d))
    assert mean == pytest.approx(d.mean())
    assert low == pytest.approx(d.mean() - 1.96 * se, abs=0.25 * se)
    assert high == pytest.approx(d.mean() + 1.96 * se, abs=0.25 * se)


def test_bootstrap_counts_seed_to_seed_spread():
    """Seeds that disagree (one gains, one loses) give an interval containing zero even
    though each seed's own samples are noiseless."""
    _, low, high = learning_report.paired_bootstrap([np.full(100, 0.3), np.full(100, -0.1)])
    assert low < 0 < high and learning_report.verdict(low, high) == "no difference"
    assert learning_report.verdict(0.01, 0.2) == "better" and learning_report.verdict(-0.2, -0.01) == "worse"


def _fake_run(runs: Path, env_id: str, method: str, seed: int, rewards: list[float], metrics=None) -> None:
    folder = runs / env_id / f"{env_id}__{method}__{seed}"
    folder.mkdir(parents=True)
    rows = [f"{i},charts/episodic_return,{0.1 * i}" for i in range(1, 4)]
    rows.append(f"3,charts/eval_return,{np.mean(rewards)}")
    (folder / "metrics.csv").write_text("\n".join(rows) + "\n")
    saved = {"split": "test", "samples": list(range(len(rewards))), "rewards": rewards}
    if metrics:
        saved["metrics"] = metrics
    (folder / "eval_rewards.json").write_text(json.dumps(saved))


def test_summarise_pairs_each_seed_with_its_own_baselines(tmp_path):
    """The gains are per seed and per sample: a row that adds exactly 0.25 on every sample
    of every seed gains 0.25 with a zero-width interval, whatever the warm starts' spread."""
    env = "TextTranslate-v0"
    for seed, warm in ((1, 0.0), (2, 0.5)):
        base = [warm, warm, 0.25, 0.25]
        _fake_run(tmp_path, env, "sft", seed, base, {"success": 0.5})
        _fake_run(tmp_path, env, "sft_continued", seed, base, {"success": 0.5})
        _fake_run(tmp_path, env, "ppo", seed, [r + 0.25 for r in base], {"success": 0.75})
    tasks = [{"name": "SCAN", "env_id": env, "methods": ("sft", "sft_continued", "ppo"), "metrics": ("success",)}]
    rows = learning_report.summarise(tasks, [1, 2], tmp_path)
    ppo = next(r for r in rows if r["method"] == "ppo")
    for base in ("vs_sft", "vs_sft_continued"):
        assert ppo[base]["gain"] == pytest.approx(0.25)
        assert ppo[base]["low"] == pytest.approx(0.25) and ppo[base]["high"] == pytest.approx(0.25)
        assert ppo[base]["verdict"] == "better"
    assert ppo["metrics"] == {"success": 0.75} and ppo["train_curves"][0] == pytest.approx([0.1, 0.2, 0.3])
    assert "vs_sft" not in next(r for r in rows if r["method"] == "sft")
    table = learning_report.to_markdown(
        rows,
        {
            "seeds": [1, 2],
            "preset": "t",
            "budgets": "b",
            "machine": "m",
            "date": "d",
            "wall_minutes": 1.0,
            "workers": 2,
        },
    )
    assert "| SFT + PPO | 0.500 ± 0.177 | 0.75 | +0.250 [+0.250, +0.250] ✓ | +0.250 [+0.250, +0.250] ✓ |" in table


def test_sweep_runs_each_setting_from_the_benchmarks_warm_start_and_scores_it_on_validation(tmp_path):
    """benchmarks/sweep.py's commands are the learning benchmark's own, with the grid's flags
    in place of the preset's (one learning rate, no duplicate flags) and the validation split."""
    learning, sweep = importlib.import_module("learning"), importlib.import_module("sweep")
    preset = learning.PRESETS["quick"]
    jobs = sweep.sweep_jobs(preset, tmp_path, list(sweep.GRID))
    assert len(jobs) == sum(len(g) for g in sweep.GRID.values()) * len(preset.seeds)
    warm = str(tmp_path / "TextTranslate-v0" / "TextTranslate-v0__sft__1" / "model")
    for name, task, seed, cmd in jobs:
        agent, i = name.removeprefix("sweep_").rsplit("_", 1)
        assert cmd[0] == f"agents/{agent}.py" and task is preset.tasks[0]
        assert cmd[cmd.index("--init-model") + 1] == warm.replace("__sft__1", f"__sft__{seed}")
        assert cmd[cmd.index("--eval-split") + 1] == "validation" and cmd[-len(sweep.GRID[agent][int(i)]) :] == list(
            sweep.GRID[agent][int(i)]
        )
        flags = [a for a in cmd if a.startswith("--")]
        assert len(flags) == len(set(flags)), cmd  # each flag once: the grid's learning rate replaces the preset's


def test_presets_run_each_agent_with_the_sweeps_best_settings():
    """AGENT_ARGS is the published sweep's choice: each agent's best row in
    benchmarks/results/sweep_quick.json, flags and all (the sweep's grid covers every agent)."""
    learning, sweep = importlib.import_module("learning"), importlib.import_module("sweep")
    published = Path(learning.RESULTS) / "sweep_quick.json"
    rows = json.loads(published.read_text())["rows"]
    best = {r["agent"]: tuple(r["flags"]) for r in rows if r["best"]}
    assert set(best) == set(sweep.GRID) and len(best) == len([r for r in rows if r["best"]])
    assert {r["agent"]: len([s for s in rows if s["agent"] == r["agent"]]) for r in rows} == {
        a: len(g) for a, g in sweep.GRID.items()
    }
    assert learning.AGENT_ARGS == best
    assert learning.PRESETS["quick"].agent_args == learning.PRESETS["full"].agent_args == best
