"""Hyperparameter sweep of the RL agents on the validation part of SCAN's training split.

For the learning benchmark's preset (``--quick``), each agent runs a small grid of settings
from the same SFT warm start (the benchmark's own, trained first if missing), with the
preset's budget (iterations x episodes), and is scored greedily on the validation samples
(``--eval-split validation``: the part of the training split that SFT holds out; the test
split is never looked at). The best setting per agent (highest mean validation reward over
the sweep's seeds) is what ``benchmarks/learning.py``'s presets run with
(``AGENT_ARGS``; a test checks that they agree with ``benchmarks/results/sweep_<preset>.json``).

    python benchmarks/sweep.py --quick            # about 25 minutes on 2 CPU cores
    python benchmarks/sweep.py --quick --seeds 1,2

Writes ``benchmarks/results/sweep_<preset>.{json,md}`` and the table in ``docs/benchmarks.md``.
Finished runs are not run again, so an interrupted sweep resumes.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from doc_tables import publish
from learning import PRESETS, RESULTS, ROOT, jobs, run_dir_of, run_phase, wall_minutes
from learning_report import NAMES, read_metric

# per agent: the settings tried, each a tuple of command-line flags (an agent's other flags
# keep their defaults); the learning rate is each agent's most sensitive knob at this budget.
# A setting's index names its run folder, so settings are only ever appended: the lowest rates
# came last, after the first sweep found several agents' best at the grid's lowest rate
GRID: dict[str, list[tuple[str, ...]]] = {
    "reinforce": [("--learning-rate", lr) for lr in ("3e-5", "1e-4", "3e-4", "1e-5")],
    "ppo": [("--learning-rate", lr) for lr in ("3e-5", "1e-4", "3e-4", "1e-5")],
    "grpo": [("--learning-rate", lr, "--group-size", g) for lr in ("1e-4", "3e-4", "3e-5") for g in ("4", "8")],
    "nlpo": [("--learning-rate", lr) for lr in ("3e-5", "1e-4", "3e-4", "1e-5")],
    "q_learning": [
        ("--learning-rate", lr, "--alpha", a, "--target-update-every", "2")
        for lr in ("1e-4", "3e-4", "3e-5")
        for a in ("0.1", "1.0")
    ],
    "trl_grpo": [("--learning-rate", lr, "--group-size", "4") for lr in ("1e-4", "3e-4", "3e-5")],
    "sb3_ppo": [("--learning-rate", lr) for lr in ("1e-4", "3e-4", "3e-5")],
}


def sweep_jobs(preset, runs: Path, agents: list[str]) -> list:
    """(exp name, task, seed, command) for every agent, setting and seed: the benchmark's own
    command for the agent, with the grid's flags instead of the preset's, scored on validation."""
    task = preset.tasks[0]
    _, second = jobs(replace(preset, tasks=(task,), agent_args={}), runs)
    out = []
    for method, _, seed, cmd in second:
        if method not in agents:
            continue
        for i, flags in enumerate(GRID[method]):
            name = f"sweep_{method}_{i}"
            rest = drop(drop(cmd, "--exp-name"), "--learning-rate")
            out.append((name, task, seed, [*rest, "--exp-name", name, "--eval-split", "validation", *flags]))
    return out


def drop(cmd: list[str], flag: str) -> list[str]:
    """``cmd`` without ``flag`` and its value."""
    i = cmd.index(flag)
    return cmd[:i] + cmd[i + 2 :]


def to_markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"Validation reward (greedy, on the validation part of {meta['task']}'s training split; mean over "
        f"seeds {meta['seeds']}) of each agent's settings, from the `{meta['preset']}` preset's SFT warm "
        "start and budget. **Bold**: the best, which the learning benchmark uses.",
        "",
        "| agent | settings | validation reward |",
        "|---|---|---|",
    ]
    if "warm_start" in meta:
        lines.append(
            f"| SFT (warm start) | its best validation, the weights the agents start from | {meta['warm_start']:.3f} |"
        )
    for r in rows:
        score = f"{r['mean']:.3f}"
        lines.append(f"| {NAMES[r['agent']]} | `{' '.join(r['flags'])}` | {f'**{score}**' if r['best'] else score} |")
    lines += [
        "",
        f"Machine: {meta['machine']}; {meta['date']}; wall time {meta['wall_minutes']:.1f} min (the sweep's runs, "
        f"first start to last end; {meta['workers']} at a time).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", dest="preset", action="store_const", const="quick", required=True)
    parser.add_argument("--seeds", type=str, default="1", help="comma-separated seeds")
    parser.add_argument("--agents", type=str, default=",".join(GRID), help="comma-separated agents")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--runs-dir", type=Path, default=None, help="the benchmark's runs folder (warm starts)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    preset = replace(PRESETS[args.preset], seeds=tuple(int(s) for s in args.seeds.split(",")))
    runs = (args.runs_dir or ROOT / "runs" / f"learning_{preset.name}").resolve()
    agents = args.agents.split(",")

    warm, _ = jobs(replace(preset, tasks=preset.tasks[:1]), runs)
    run_phase(warm, runs, args.workers)
    todo = sweep_jobs(preset, runs, agents)
    run_phase(todo, runs, args.workers)

    task, rows = preset.tasks[0], []
    for agent in agents:
        scores = [
            [
                read_metric(run_dir_of(runs, task, f"sweep_{agent}_{i}", s), "charts/eval_return")[-1]
                for s in preset.seeds
            ]
            for i in range(len(GRID[agent]))
        ]
        best = int(np.argmax([np.mean(s) for s in scores]))
        for i, flags in enumerate(GRID[agent]):
            rows.append(
                {
                    "agent": agent,
                    "flags": list(flags),
                    "scores": scores[i],
                    "mean": float(np.mean(scores[i])),
                    "best": i == best,
                }
            )
    warm_scores = [max(read_metric(run_dir_of(runs, task, "sft", s), "charts/val_return")) for s in preset.seeds]
    meta = {
        "warm_start": float(np.mean(warm_scores)),  # the same validation samples the sweep scores
        "preset": preset.name,
        "task": task.name,
        "seeds": list(preset.seeds),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "workers": args.workers,
        "wall_minutes": wall_minutes(runs, "*/*__sweep_*"),  # across resumed invocations, warm starts apart
    }
    table = to_markdown(rows, meta)
    print(table)
    publish(f"sweep_{preset.name}", table, args.out, meta, rows)


if __name__ == "__main__":
    main()
