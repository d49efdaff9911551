"""Learning benchmark: held-out task scores of zero-shot, SFT, SFT continued and SFT + each RL agent.

For every task and seed: ``agents/sft.py`` trains a warm start; ``agents/sft.py
--init-model`` continues it for as many sequence gradients as PPO spends (the fair
baseline); each RL agent starts from the same warm start. Every run ends with a greedy
evaluation on the task's held-out split, and the table shows mean +- std over seeds,
with the budgets printed beside it. The table, the JSON, and one learning-curve plot per
task (training reward per iteration, mean and spread over seeds) go under
``benchmarks/results/`` and into ``docs/benchmarks.md``; nothing is edited by hand.

    python benchmarks/learning.py --quick   # CPU: tiny models from scratch, SCAN and the easy code suite
    python benchmarks/learning.py --full    # GPU: SmolLM2-135M on every task
    python benchmarks/learning.py --smoke   # a minute-long check of the pipeline (writes nothing)

Runs go to ``--runs-dir`` (default ``runs/learning_<preset>``); a finished run is not run
again, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from doc_tables import publish

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
RL_AGENTS = ("reinforce", "ppo", "grpo", "nlpo", "q_learning")


@dataclass(frozen=True)
class Task:
    name: str
    env_id: str
    env_kwargs: dict
    sft_updates: int  # warm start
    sft_batch: int
    sft_lr: float


@dataclass(frozen=True)
class Preset:
    name: str
    tasks: tuple[Task, ...]
    seeds: tuple[int, ...]
    model: str  # "tiny" (from scratch) or "smollm2"
    tokenizer: str  # for a tiny model
    hidden: int
    layers: int
    rl_iterations: int
    num_envs: int
    rl_lr: float
    eval_episodes: int
    agent_args: dict = field(default_factory=dict)  # per agent: extra command-line flags
    device: str = "cpu"

    @property
    def continued_updates(self) -> int:
        """SFT continued gets PPO's sequence gradients: iterations x episodes x 2 epochs."""
        return self.rl_iterations * self.num_envs * 2


SCAN = Task("SCAN (simple)", "TextTranslate-v0", {}, sft_updates=400, sft_batch=64, sft_lr=2e-3)
# the easy problems run in milliseconds: a 1 s limit keeps a sampled infinite loop cheap
CODE = Task("Easy code", "TextCode-v0", {"dataset": "easy", "timeout": 1.0}, sft_updates=300, sft_batch=32, sft_lr=2e-3)
AGENT_ARGS = {"grpo": ("--group-size", "4"), "q_learning": ("--alpha", "1.0", "--target-update-every", "2")}
PRESETS = {
    "quick": Preset(
        "quick",
        (SCAN, CODE),
        (1, 2, 3),
        "tiny",
        "words",
        128,
        2,
        rl_iterations=40,
        num_envs=64,
        rl_lr=1e-4,
        eval_episodes=256,
        agent_args=AGENT_ARGS,
    ),
    # every task with references to imitate; TextDialogGoal-v0 is left out: its "reference"
    # is the hidden number, so SFT on it would teach guessing the answer outright
    "full": Preset(
        "full",
        (
            replace(SCAN, sft_updates=500, sft_batch=32, sft_lr=5e-5),
            replace(CODE, sft_updates=300, sft_batch=16, sft_lr=5e-5),
            Task("Summarization", "TextSumm-v0", {}, 300, 16, 5e-5),
            Task("Dialogue", "TextDialog-v0", {}, 300, 16, 5e-5),
        ),
        (1, 2, 3),
        "smollm2",
        "default",
        0,
        0,
        rl_iterations=200,
        num_envs=64,
        rl_lr=1e-5,
        eval_episodes=512,
        agent_args=AGENT_ARGS,
        device="cuda",
    ),
    "smoke": Preset(
        "smoke",
        (replace(SCAN, sft_updates=5, sft_batch=8),),
        (1, 2),
        "tiny",
        "words",
        32,
        1,
        rl_iterations=2,
        num_envs=8,
        rl_lr=1e-4,
        eval_episodes=8,
        agent_args=AGENT_ARGS,
    ),
}


def run(cmd: list[str], log: Path) -> None:
    """Run one agent as its own process (as a user would); its output goes to ``log``."""
    with log.open("w") as out:
        done = subprocess.run([sys.executable, *cmd], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {done.returncode}); see {log}")


def read_metric(run_dir: Path, key: str) -> list[float]:
    rows = list(csv.reader((run_dir / "metrics.csv").open())) if (run_dir / "metrics.csv").exists() else []
    return [float(v) for _, k, v in rows if k == key]


def jobs(preset: Preset, runs: Path) -> tuple[list, list]:
    """(phase 1, phase 2) command lists: warm starts and zero-shot, then what starts from them."""
    first, second = [], []
    for task in preset.tasks:
        common = [
            "--env-id",
            task.env_id,
            "--env-kwargs",
            json.dumps(task.env_kwargs),
            "--eval-episodes",
            str(preset.eval_episodes),
            "--threads",
            "1",
            "--device",
            preset.device,
        ]
        for seed in preset.seeds:
            base = [*common, "--seed", str(seed), "--runs-dir", str(runs / task.env_id)]
            new_model = [
                "--model",
                preset.model,
                "--tokenizer",
                preset.tokenizer,
                "--hidden",
                str(preset.hidden),
                "--layers",
                str(preset.layers),
            ]
            sft = ["--batch-size", str(task.sft_batch), "--learning-rate", str(task.sft_lr)]
            first.append(
                (
                    "zero_shot",
                    task,
                    seed,
                    ["agents/sft.py", *base, *new_model, "--exp-name", "zero_shot", "--total-updates", "0"],
                )
            )
            first.append(
                (
                    "sft",
                    task,
                    seed,
                    [
                        "agents/sft.py",
                        *base,
                        *new_model,
                        *sft,
                        "--exp-name",
                        "sft",
                        "--total-updates",
                        str(task.sft_updates),
                    ],
                )
            )
            warm = str(runs / task.env_id / f"{task.env_id}__sft__{seed}" / "model")
            second.append(
                (
                    "sft_continued",
                    task,
                    seed,
                    [
                        "agents/sft.py",
                        *base,
                        *sft,
                        "--init-model",
                        warm,
                        "--exp-name",
                        "sft_continued",
                        "--total-updates",
                        str(preset.continued_updates // task.sft_batch),
                    ],
                )
            )
            for agent in RL_AGENTS:
                rl = [
                    "--init-model",
                    warm,
                    "--exp-name",
                    agent,
                    "--total-iterations",
                    str(preset.rl_iterations),
                    "--num-envs",
                    str(preset.num_envs),
                    "--learning-rate",
                    str(preset.rl_lr),
                ]
                second.append(
                    (agent, task, seed, [f"agents/{agent}.py", *base, *rl, *preset.agent_args.get(agent, ())])
                )
    return first, second


def run_phase(phase: list, runs: Path, workers: int) -> None:
    def one(job) -> None:
        method, task, seed, cmd = job
        run_dir = runs / task.env_id / f"{task.env_id}__{method}__{seed}"
        if read_metric(run_dir, "charts/eval_return"):
            return  # finished in an earlier invocation
        started = time.time()
        run_dir.mkdir(parents=True, exist_ok=True)
        run(cmd, run_dir / "stdout.log")
        print(
            f"{task.name:14s} {method:14s} seed {seed}: "
            f"{read_metric(run_dir, 'charts/eval_return')[-1]:.3f} ({time.time() - started:.0f} s)",
            flush=True,
        )

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, phase))


def summarise(preset: Preset, runs: Path) -> list[dict]:
    rows = []
    for task in preset.tasks:
        for method in ("zero_shot", "sft", "sft_continued", *RL_AGENTS):
            scores, curves = [], []
            for seed in preset.seeds:
                run_dir = runs / task.env_id / f"{task.env_id}__{method}__{seed}"
                scores.append(read_metric(run_dir, "charts/eval_return")[-1])
                curves.append(read_metric(run_dir, "charts/episodic_return"))
            rows.append(
                {
                    "task": task.name,
                    "env_id": task.env_id,
                    "method": method,
                    "scores": scores,
                    "mean": float(np.mean(scores)),
                    "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
                    "train_curves": curves,
                }
            )
    for row in rows:  # the acceptance test: RL beats the warm start by more than 2 std
        sft = next(r for r in rows if r["task"] == row["task"] and r["method"] == "sft")
        gains = np.array(row["scores"]) - np.array(sft["scores"])  # seed i starts from warm start i
        row["gain_mean"] = float(gains.mean())
        row["gain_std"] = float(gains.std(ddof=1)) if len(gains) > 1 else 0.0
        if row["method"] not in RL_AGENTS:
            row["beats_sft"] = None
            continue
        # both ways: the rows' scores (the larger std of the two) and the paired per-seed gains
        row["beats_sft_unpaired"] = bool(row["mean"] - sft["mean"] > 2 * max(row["std"], sft["std"]))
        row["beats_sft_paired"] = bool(row["gain_mean"] > 2 * row["gain_std"])
        row["beats_sft"] = row["beats_sft_unpaired"] and row["beats_sft_paired"]
    return rows


def wall_minutes(runs: Path) -> float:
    """From the first run's start (its TensorBoard file's timestamp) to the last run's end
    (its metrics file's last write): the benchmark's wall time, even across resumed invocations."""
    starts = [int(f.name.split(".")[3]) for f in runs.glob("*/*/events.out.tfevents.*")]
    ends = [f.stat().st_mtime for f in runs.glob("*/*/metrics.csv")]
    return (max(ends) - min(starts)) / 60 if starts and ends else 0.0


NAMES = {
    "zero_shot": "zero-shot",
    "sft": "SFT (warm start)",
    "sft_continued": "SFT continued",
    "reinforce": "SFT + REINFORCE",
    "ppo": "SFT + PPO",
    "grpo": "SFT + GRPO",
    "nlpo": "SFT + NLPO",
    "q_learning": "SFT + Q-learning",
}


def check_mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def to_markdown(rows: list[dict], meta: dict) -> str:
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    lines = [
        f"Held-out score (greedy; mean +- std over seeds {meta['seeds']}; preset `{meta['preset']}`). "
        "For the RL rows, the per-seed gain over the warm start that seed started from follows "
        "in brackets (mean +- std), then two marks for 'beats the SFT warm start by more than two "
        "standard deviations': first paired (the mean gain exceeds twice the gains' std), then "
        "unpaired (the two rows' means differ by more than twice the larger of their stds). "
        "✓: it does; ✗: it does not.",
        "",
        "| method | " + " | ".join(tasks) + " |",
        "|---|" + "---|" * len(tasks),
    ]
    for method in NAMES:
        cells = []
        for task in tasks:
            r = next(x for x in rows if x["task"] == task and x["method"] == method)
            gain = "" if r["beats_sft"] is None else f" ({r['gain_mean']:+.3f} ± {r['gain_std']:.3f})"
            mark = (
                ""
                if r["beats_sft"] is None
                else f" {check_mark(r['beats_sft_paired'])} {check_mark(r['beats_sft_unpaired'])}"
            )
            cells.append(f"{r['mean']:.3f} ± {r['std']:.3f}{gain}{mark}")
        lines.append(f"| {NAMES[method]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Budgets: {meta['budgets']}",
        "",
        f"Machine: {meta['machine']}; {meta['date']}; "
        f"wall time {meta['wall_minutes']:.1f} min (first run start to last run end) with "
        f"{meta['workers']} parallel runs of one CPU thread each.",
        "",
    ]
    return "\n".join(lines)


def plot(rows: list[dict], out: Path, preset: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for task in dict.fromkeys(r["task"] for r in rows):
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in rows:
            if r["task"] != task or r["method"] not in RL_AGENTS:
                continue
            curves = np.array(r["train_curves"])  # (seeds, iterations)
            x = np.arange(1, curves.shape[1] + 1)
            mean, std = curves.mean(0), curves.std(0)
            ax.plot(x, mean, label=NAMES[r["method"]])
            ax.fill_between(x, mean - std, mean + std, alpha=0.15)
        sft = next(r for r in rows if r["task"] == task and r["method"] == "sft")
        ax.axhline(sft["mean"], color="k", ls="--", lw=1, label="SFT warm start (held-out)")
        ax.set(xlabel="iteration", ylabel="training reward (mean over seeds)", title=f"{task} ({preset})")
        ax.legend(fontsize=7)
        name = f"learning_{preset}_{task.split()[0].lower()}.png"
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        files.append(name)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    for name in PRESETS:
        group.add_argument(f"--{name}", dest="preset", action="store_const", const=name)
    parser.add_argument(
        "--workers", type=int, default=len(os.sched_getaffinity(0)), help="runs at once (one CPU thread each)"
    )
    parser.add_argument("--runs-dir", type=Path, default=None, help="where the agents' run folders go")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    runs = (args.runs_dir or ROOT / "runs" / f"learning_{preset.name}").resolve()

    first, second = jobs(preset, runs)
    run_phase(first, runs, args.workers)
    run_phase(second, runs, args.workers)
    rows = summarise(preset, runs)
    budgets = (
        f"{preset.model} model"
        + (
            f" (hidden {preset.hidden}, {preset.layers} layers, {preset.tokenizer} tokenizer, trained from scratch)"
            if preset.model == "tiny"
            else ""
        )
        + "; SFT warm start "
        + ", ".join(f"{t.name} {t.sft_updates} updates x {t.sft_batch}" for t in preset.tasks)
        + f"; each RL agent {preset.rl_iterations} iterations x {preset.num_envs} episodes (lr {preset.rl_lr}); "
        f"SFT continued {preset.continued_updates} sequences (PPO's 2 epochs over the same episodes); "
        f"evaluation on up to {preset.eval_episodes} held-out samples"
    )
    meta = {
        "preset": preset.name,
        "seeds": list(preset.seeds),
        "budgets": budgets,
        "config": asdict(preset),
        "machine": (
            f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
        ),
        "date": time.strftime("%Y-%m-%d"),
        "workers": args.workers,
        "wall_minutes": wall_minutes(runs),
    }
    table = to_markdown(rows, meta)
    print(table)
    if preset.name == "smoke":
        return
    meta["plots"] = plot(rows, args.out, preset.name)
    publish(f"learning_{preset.name}", table, args.out, meta, rows)


if __name__ == "__main__":
    main()
