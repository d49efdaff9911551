"""The main job (text-gym demo) and the benchmark scripts run end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from text_gym import cli

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_every_env_and_renders(capsys):
    cli.main(["demo", "--num-envs", "4", "--episodes", "6", "--p-eos", "0.3"])
    out = capsys.readouterr().out
    for env_id in cli.text_gym.env_ids():
        assert f"env_id={env_id} episodes=" in out
    assert "--- response (" in out and "references=" in out


def test_random_policy_stats_add_up():
    stats = cli.run_random("TextTranslate-v0", num_envs=8, episodes=3, seed=0, p_eos=0.9)
    assert stats["episodes"] == 3 and stats["terminated"] + stats["truncated"] == 3  # not all that ended
    assert stats["mean_reward"] == 0.0  # random tokens never spell a SCAN answer
    assert 1 <= stats["mean_episode_tokens"] < 4  # p_eos=0.9: about one token


def test_list_prints_ids(capsys):
    cli.main(["list"])
    assert "TextTranslate-v0" in capsys.readouterr().out


def test_demo_skips_the_code_env_where_nothing_confines_programs(capsys, monkeypatch):
    from collections import OrderedDict

    import text_gym.tasks
    from text_gym.rewards import sandbox

    nothing = dict.fromkeys(
        ("uid_switch", "filesystem", "private_proc", "network", "pid_namespace", "no_new_privs"), False
    )
    monkeypatch.setattr(sandbox, "_isolation", lambda: ((), nothing))
    monkeypatch.delenv(sandbox.UNCONFINED, raising=False)
    monkeypatch.setattr(text_gym.tasks, "_BUILT", OrderedDict())  # no code task built before
    cli.main(["demo", "--env-id", "TextCode-v0", "TextTranslate-v0", "--num-envs", "2", "--episodes", "2"])
    out = capsys.readouterr().out
    assert "env_id=TextCode-v0 skipped: the code sandbox cannot confine programs" in out
    assert "env_id=TextTranslate-v0 episodes=" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env-id", "Bogus"], "invalid choice: 'Bogus'"),
        (["--num-envs", "0"], "--num-envs: 0 is not >= 1"),
        (["--episodes", "0"], "--episodes: 0 is not >= 1"),
        (["--p-eos", "1.5"], "--p-eos: 1.5 is not a probability"),
    ],
)
def test_demo_rejects_bad_arguments_with_a_usage_error(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    "script, expected",
    [
        ("env_throughput.py", ["| 4 |", "TextVectorEnv"]),
        ("rollout_throughput.py", ["| tiny | 2 | 4 |"]),
        ("sandbox_throughput.py", ["| sandbox | humaneval |", "| sandbox | easy |"]),
    ],
)
def test_benchmark_scripts_quick(script, expected):
    """Each benchmark runs end to end in its --quick mode (which writes nothing)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for text in expected:
        assert text in result.stdout


def test_learning_benchmark_smoke(tmp_path):
    """The learning benchmark's whole pipeline (warm starts, every agent, the table) on a
    minute-long preset; the agents run as subprocesses, as the benchmark runs them."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "learning.py"), "--smoke", "--runs-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for name in ("| zero-shot |", "| SFT continued |", "| SFT + PPO |", "| SFT + Q-learning |", "Budgets:"):
        assert name in result.stdout
    assert len(list(tmp_path.glob("*/*__ppo__*/model/config.json"))) == 2  # both seeds ran


def test_publish_elsewhere_leaves_the_readme_alone(tmp_path, monkeypatch):
    """A benchmark run with --out somewhere else writes its table there, not into the README."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import readme_tables

    readme = ROOT / "README.md"
    before = readme.read_text()
    try:
        readme_tables.publish("env_throughput", "| a table |\n", tmp_path, {"date": "x"}, [])
        assert (tmp_path / "env_throughput.md").read_text() == "| a table |\n"
        assert readme.read_text() == before
    finally:
        if readme.read_text() != before:
            readme.write_text(before)
