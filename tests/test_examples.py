"""The scripts in examples/ run as a user runs them, in a fresh process, and do what their docstrings say.

A fresh process each: an example may load a second framework (TensorFlow) beside the torch
that text_gym uses, which is the example's business, not the test runner's.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def start_example(script: str, *args: str) -> subprocess.Popen:
    """Start ``python examples/<script> <args>`` on CPU, with this checkout first on the path."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, str(EXAMPLES / script), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


def output_of(process: subprocess.Popen, timeout: int = 300) -> list[str]:
    """The stdout lines of a started example, once it has exited successfully."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, f"{process.args}: exit {process.returncode}\n{stderr[-4000:]}"
    return stdout.splitlines()


def require_tensorflow() -> None:
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip(
            "TensorFlow is not installed, so the Keras example cannot run: "
            "pip install 'text_gym[tensorflow]' (tensorflow-cpu on Linux x86_64)"
        )


def test_keras_reinforce_learns_and_reads_the_prompt():
    require_tensorflow()
    # the two runs side by side: most of each is importing TensorFlow and torch
    run = start_example("keras_reinforce.py", "--iterations", "400", "--seed", "0")
    short = start_example("keras_reinforce.py", "--iterations", "15", "--seed", "0")
    try:
        lines, short_lines = output_of(run), output_of(short)
    finally:
        for process in (run, short):
            if process.poll() is None:
                process.kill()
    summary = json.loads(lines[-1])
    # the mean reward rises: ~0.14 in the first iterations, ~0.82 in the last (chrF / 100)
    assert summary["reward_last_iterations"] > summary["reward_first_iterations"] + 0.4, summary
    # the greedy answers to held-out commands improve alike, from ~0.04 to ~0.85, above the
    # ~0.61 of the best single answer to all of them (a beam search over action sequences)
    assert summary["eval_after"] > summary["eval_before"] + 0.4 and summary["eval_after"] > 0.7, summary
    # and they answer their own command: against other commands' references they score ~0.47
    assert summary["eval_after"] > summary["eval_after_other_prompts"] + 0.2, summary

    # deterministic given --seed: a shorter run repeats the first iterations exactly
    iterations = [line for line in lines if line.startswith("iteration")]
    assert [line for line in short_lines if line.startswith("iteration")] == iterations[:15]
