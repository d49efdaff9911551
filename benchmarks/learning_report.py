"""The learning benchmark's report: paired statistics, the markdown table and the plots.

``benchmarks/learning.py`` runs the agents; this module reads their run folders and says what
the runs show. Every RL row is compared with two baselines from the same seed: the SFT warm
start it started from, and "SFT continued" (the warm start trained on as many more
supervised sequences as PPO spends). The comparison is paired twice over: seed ``s`` of a
row against seed ``s`` of its baseline (same warm start), and, within a seed, held-out
sample ``j`` against held-out sample ``j`` (both evaluations score the same samples). The
95% interval of the mean gain is a hierarchical paired bootstrap: each of ``resamples``
draws picks seeds with replacement and, within each picked seed, held-out samples with
replacement, and averages the per-sample differences; the interval is the 2.5th and 97.5th
percentiles of those means. A row is "better" (✓) when the whole interval lies above zero,
"worse" (✗) when it lies below, and "no difference" (·) otherwise.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

NAMES = {
    "zero_shot": "zero-shot (the untrained tiny model)",
    "teacher": "scripted strategy (shown to SFT)",
    "sft": "SFT (warm start)",
    "sft_continued": "SFT continued",
    "reinforce": "SFT + REINFORCE",
    "ppo": "SFT + PPO",
    "grpo": "SFT + GRPO",
    "nlpo": "SFT + NLPO",
    "q_learning": "SFT + Q-learning",
    "trl_grpo": "SFT + TRL GRPO",
    "sb3_ppo": "SFT + SB3 PPO (LM policy)",
}
BASELINES = ("sft", "sft_continued")
RESAMPLES = 10_000


# ------------------------------------------------------------------ reading run folders


def read_metric(run_dir: Path, key: str) -> list[float]:
    """The values of ``key`` in a run's metrics.csv, in order (empty for an unfinished run)."""
    path = run_dir / "metrics.csv"
    rows = list(csv.reader(path.open())) if path.exists() else []
    return [float(v) for _, k, v in rows if k == key]


def read_eval(run_dir: Path) -> dict[str, Any] | None:
    """A run's per-sample held-out evaluation (``eval_rewards.json``: sample indices, rewards
    and the task's metrics), or None for a run that predates it."""
    path = run_dir / "eval_rewards.json"
    return json.loads(path.read_text()) if path.exists() else None


# ------------------------------------------------------------------ statistics


def paired_bootstrap(
    differences: list[np.ndarray], resamples: int = RESAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """The mean of paired differences and its hierarchical bootstrap interval.

    Args:
        differences: one array per seed, the per-sample differences (row minus baseline) on
            that seed's held-out samples; an array of one value where only the seed's mean
            is known.
        resamples: bootstrap draws.
        seed: the draws' generator seed (the table is the same on every run).
        level: the interval's coverage.

    Returns:
        (mean gain, low, high): the mean over seeds of each seed's mean difference, and the
        interval's bounds.
    """
    rng = np.random.default_rng(seed)
    k = len(differences)
    # (k, R): each seed's mean over a resample of its samples
    within = np.stack([d[rng.integers(len(d), size=(resamples, len(d)))].mean(1) for d in differences])
    picks = rng.integers(k, size=(resamples, k))  # (R, k): the seeds of each draw
    means = within[picks, np.arange(resamples)[:, None]].mean(1)  # (R,)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(np.mean([d.mean() for d in differences])), float(low), float(high)


def verdict(low: float, high: float) -> str:
    return "better" if low > 0 else "worse" if high < 0 else "no difference"


MARKS = {"better": "✓", "worse": "✗", "no difference": "·"}


def compare(row: dict, base: dict) -> dict[str, Any]:
    """``row`` against ``base`` seed by seed (and sample by sample where both saved them)."""
    differences = []
    for i, (mine, theirs) in enumerate(zip(row["evals"], base["evals"])):
        if mine and theirs and mine["samples"] == theirs["samples"]:
            differences.append(np.asarray(mine["rewards"]) - np.asarray(theirs["rewards"]))
        else:
            differences.append(np.array([row["scores"][i] - base["scores"][i]]))
    mean, low, high = paired_bootstrap(differences)
    return {"gain": mean, "low": low, "high": high, "verdict": verdict(low, high)}


def summarise(tasks: list[dict], seeds: list[int], runs: Path) -> list[dict]:
    """One row per task and method: the held-out scores per seed, their mean and std, the
    task's metrics, the curves, and for every row after the warm start its paired gains over
    the baselines. ``tasks``: dicts with ``name``, ``env_id``, ``methods`` and ``metrics``."""
    rows = []
    for task in tasks:
        task_rows = {}
        for method in task["methods"]:
            dirs = [runs / task["env_id"] / f"{task['env_id']}__{method}__{seed}" for seed in seeds]
            scores = [read_metric(d, "charts/eval_return")[-1] for d in dirs]
            evals = [read_eval(d) for d in dirs]
            metrics = {
                name: float(np.mean([e["metrics"][name] for e in evals]))
                for name in task["metrics"]
                if all(e and name in e.get("metrics", {}) for e in evals)
            }
            task_rows[method] = {
                "task": task["name"],
                "env_id": task["env_id"],
                "method": method,
                "seeds": list(seeds),
                "scores": scores,
                "mean": float(np.mean(scores)),
                "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
                "metrics": metrics,
                "evals": evals,
                "train_curves": [read_metric(d, "charts/episodic_return") for d in dirs],
                "val_curves": [read_metric(d, "charts/val_return") for d in dirs],
            }
        for method, row in task_rows.items():
            for base in BASELINES:
                if base in task_rows and method not in ("teacher", "sft") and method != base:
                    row[f"vs_{base}"] = compare(row, task_rows[base])
        for row in task_rows.values():
            row["evals"] = [None if e is None else {k: e[k] for k in ("split", "samples")} for e in row["evals"]]
            rows.append(row)
    return rows


# ------------------------------------------------------------------ the table


def _gain(row: dict, base: str) -> str:
    c = row.get(f"vs_{base}")
    if c is None:
        return ""
    return f"{c['gain']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}] {MARKS[c['verdict']]}"


def to_markdown(rows: list[dict], meta: dict) -> str:
    """The tables: one per task (every method's held-out score and its paired gains), then
    the zero-shot rows of the default model, the budgets and the machine."""
    lines = [
        f"Held-out score (greedy; mean ± std over seeds {meta['seeds']}; preset `{meta['preset']}`). "
        "The gain columns compare each row with the same seed's SFT warm start and with the same "
        'seed\'s "SFT continued": the mean paired gain, then its 95% interval from a hierarchical '
        f"paired bootstrap ({RESAMPLES:,} draws of seeds, then of held-out samples within each seed), "
        "then ✓ where the interval lies above zero, ✗ below, · where it contains zero.",
        "",
    ]
    for task in dict.fromkeys(r["task"] for r in rows):
        task_rows = [r for r in rows if r["task"] == task]
        metric_names = sorted({m for r in task_rows for m in r.get("metrics", {})})
        head = ["method", "held-out score", *metric_names, "vs warm start", "vs SFT continued"]
        lines += [f"**{task}**", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        for r in task_rows:
            cells = [
                NAMES.get(r["method"], r["method"]),
                f"{r['mean']:.3f} ± {r['std']:.3f}",
                *(f"{r['metrics'][m]:.2f}" if m in r.get("metrics", {}) else "" for m in metric_names),
                _gain(r, "sft"),
                _gain(r, "sft_continued"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if meta.get("zero_shot"):
        lines += [
            "**Zero-shot, the default model** (SmolLM2-135M-Instruct, greedy, chat template, answers "
            "scored from their first fenced code block)",
            "",
            "| task | samples | pass fraction | all tests passed |",
            "|---|---|---|---|",
        ]
        for z in meta["zero_shot"]:
            lines.append(f"| {z['task']} | {z['n']} | {z['mean_reward']:.3f} | {z['passed_all']:.3f} |")
        lines.append("")
    if meta.get("note"):
        lines += [meta["note"], ""]
    lines += [
        f"Budgets: {meta['budgets']}",
        "",
        f"Machine: {meta['machine']}; {meta['date']}; wall time {meta['wall_minutes']:.1f} min (first run "
        f"start to last run end) with {meta['workers']} parallel runs of one CPU thread each.",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ plots


def plot(rows: list[dict], out: Path, preset: str) -> list[str]:
    """Per task: the RL agents' training reward per iteration, and SFT's validation curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for task in dict.fromkeys(r["task"] for r in rows):
        sft = next(r for r in rows if r["task"] == task and r["method"] == "sft")
        validated = any(sft["val_curves"])  # a warm start without a validation part has no curve
        fig, axes = plt.subplots(1, 1 + validated, figsize=(5.5 * (1 + validated), 4), squeeze=False)
        ax = axes[0, 0]
        for r in rows:
            curves = [c for c in r["train_curves"] if c]
            if r["task"] != task or r["method"] in ("teacher", "sft", "sft_continued") or not curves:
                continue
            width = min(len(c) for c in curves)
            curves = np.array([c[:width] for c in curves])  # (seeds, iterations)
            x = np.arange(1, width + 1)
            mean, std = np.nanmean(curves, 0), np.nanstd(curves, 0)  # SB3: NaN where no episode ended
            ax.plot(x, mean, label=NAMES.get(r["method"], r["method"]))
            ax.fill_between(x, mean - std, mean + std, alpha=0.15)
        ax.axhline(sft["mean"], color="k", ls="--", lw=1, label="SFT warm start (held-out)")
        ax.set(xlabel="iteration", ylabel="training reward (mean over seeds)", title=f"{task}: RL ({preset})")
        ax.legend(fontsize=7)
        if validated:
            val = axes[0, 1]
            for seed, curve in zip(sft["seeds"], sft["val_curves"]):
                val.plot(np.arange(1, len(curve) + 1), curve, marker=".", label=f"seed {seed}")
            val.set(xlabel="validation check", ylabel="validation reward (greedy)", title=f"{task}: SFT validation")
            val.legend(fontsize=7)
        name = f"learning_{preset}_{task.split()[0].lower()}.png"
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        files.append(name)
    return files
