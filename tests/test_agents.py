"""Reference agents run end to end on a tiny budget: they learn, repeat, and resume."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_agent(name: str):
    spec = importlib.util.spec_from_file_location(f"agent_{name}", ROOT / "agents" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


def losses(run_dir: Path) -> list[float]:
    rows = list(csv.reader((run_dir / "metrics.csv").open()))
    return [float(v) for _, key, v in rows if key == "losses/sft_loss"]


def tiny_args(sft, runs: Path, **overrides):
    base = dict(tokenizer="byte", hidden=32, layers=1, batch_size=8, total_updates=30, learning_rate=3e-3,
                eval_episodes=4, eval_envs=4, checkpoint_every=10, runs_dir=str(runs))  # fmt: skip
    return sft.Args(**{**base, **overrides})


def test_sft_learns_repeats_and_resumes(tmp_path):
    sft = load_agent("sft")
    result = sft.main(tiny_args(sft, tmp_path / "a"))
    run_a = next((tmp_path / "a").iterdir())
    first = losses(run_a)
    assert len(first) == 30 and sum(first[-5:]) / 5 < 0.7 * sum(first[:5]) / 5  # it learns
    assert 0.0 <= result["eval_return"] <= 1.0

    sft.main(tiny_args(sft, tmp_path / "b"))  # same seed, another folder: same numbers
    assert losses(next((tmp_path / "b").iterdir())) == first

    # a run stopped after 20 updates, then started again, continues from its checkpoint
    sft.main(tiny_args(sft, tmp_path / "c", total_updates=20))
    resumed = sft.main(tiny_args(sft, tmp_path / "c"))
    assert losses(next((tmp_path / "c").iterdir())) == first
    assert resumed["final_loss"] == result["final_loss"]
