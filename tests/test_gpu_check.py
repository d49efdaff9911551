"""benchmarks/gpu_check.sh in its CPU mode: every step runs at tiny sizes and writes its
files into the folder it is given, so the script a GPU machine runs keeps working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_mode_writes_its_results(tmp_path):
    out = tmp_path / "gpu"
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,  # about a minute on a quiet machine; the guard is for a loaded one
        env=env,
        cwd=tmp_path,  # the script finds the repository itself
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"writing to {out}" in result.stdout and "all steps passed" in result.stdout
    # (a) the CUDA tests ran (skipped here, with their reason)
    suite = ET.parse(out / "cuda_tests.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) >= 4 and int(suite.get("failures")) == 0 and int(suite.get("errors")) == 0
    # (b) the rollout benchmark: both throughput rows and the overhead row
    saved = json.loads((out / "rollout_throughput.json").read_text())
    kinds = [(r["kind"], r["batch"]) for r in saved["rows"]]
    assert kinds == [("throughput", 2), ("throughput", 4), ("overhead", 4)]
    overhead = saved["rows"][-1]
    assert overhead["text_gym_ms"] > 0 and overhead["generate_ms"] > 0
    assert set(overhead["breakdown_ms"]) == {"model", "runner", "sampling", "env", "collector"}
    table = (out / "rollout_throughput.md").read_text()
    assert "| tiny | 4 | 4 |" in table and "Overhead-bound rollout" in table
    # (c) the learning benchmark's slice: its table, and the log of every step
    learning = (out / "learning_smoke.md").read_text()
    assert "| SFT (warm start) |" in learning and "| SFT + GRPO |" in learning and "| SFT + PPO |" not in learning
    log = (out / "gpu_check.log").read_text()
    for step in ("tests", "rollout", "learning"):
        assert f"== {step}: done in" in log
