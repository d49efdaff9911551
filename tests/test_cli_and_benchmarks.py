"""The main job (text-gym demo) and the benchmark scripts run end to end."""

from __future__ import annotations

import importlib
import json
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
    for name in ("| SFT continued |", "| SFT + PPO |", "| SFT + Q-learning |", "| SFT + TRL GRPO |", "Budgets:"):
        assert name in result.stdout
    assert "| SFT + SB3 PPO (LM policy) |" in result.stdout
    assert len(list(tmp_path.glob("*/*__ppo__*/model/config.json"))) == 2  # both seeds ran
    # every row after the warm start has its paired interval over both baselines
    ppo = next(line for line in result.stdout.splitlines() if line.startswith("| SFT + PPO |"))
    assert ppo.count("[") == 2 and ppo.count("]") == 2


def test_publish_elsewhere_leaves_the_pages_alone(tmp_path, monkeypatch):
    """A benchmark run with --out somewhere else writes its table there, not into
    docs/benchmarks.md or the README."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import doc_tables

    before = {page: page.read_text() for page in (doc_tables.DOCS, doc_tables.README)}
    try:
        doc_tables.publish("rollout_throughput", "| a table |\n", tmp_path, {"date": "x"}, [], headline="| a |\n")
        assert (tmp_path / "rollout_throughput.md").read_text() == "| a table |\n"
        assert {page: page.read_text() for page in before} == before
    finally:
        for page, text in before.items():
            if page.read_text() != text:
                page.write_text(text)


def test_publish_to_the_results_folder_fills_the_blocks(tmp_path, monkeypatch):
    """Into benchmarks/results, a table goes between its markers on the docs page, and a
    headline between the same markers in the README; a page without the markers is left alone."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import doc_tables

    docs, readme = tmp_path / "benchmarks.md", tmp_path / "README.md"
    docs.write_text("# B\n<!-- x:start -->\nold\n<!-- x:end -->\nafter\n")
    readme.write_text("# R\n<!-- x:start -->\n<!-- x:end -->\n")
    for attribute, value in {"RESULTS": tmp_path / "results", "DOCS": docs, "README": readme, "ROOT": tmp_path}.items():
        monkeypatch.setattr(doc_tables, attribute, value)
    doc_tables.publish("x", "| new |\n", tmp_path / "results", {}, [], headline="| short |\n")
    assert docs.read_text() == "# B\n<!-- x:start -->\n| new |\n<!-- x:end -->\nafter\n"
    assert readme.read_text() == "# R\n<!-- x:start -->\n| short |\n<!-- x:end -->\n"
    doc_tables.publish("y", "| y |\n", tmp_path / "results", {}, [])  # no y block anywhere
    assert "| y |" not in docs.read_text() and (tmp_path / "results" / "y.md").read_text() == "| y |\n"


@pytest.mark.parametrize(
    "script, name",
    [
        ("env_throughput", "env_throughput"),
        ("sandbox_throughput", "sandbox_throughput"),
        ("rollout_throughput", "rollout_throughput"),
        ("learning", "learning_quick"),
        ("sb3_rollout", "sb3_rollout"),
    ],
)
def test_published_tables_match_their_results(script, name, monkeypatch):
    """Each table in docs/benchmarks.md, and the README's headline table, is what its
    script renders from benchmarks/results/<name>.json: no page goes stale or is edited by hand."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    doc_tables = importlib.import_module("doc_tables")
    module = importlib.import_module(script)
    saved = json.loads((doc_tables.RESULTS / f"{name}.json").read_text())
    table = module.to_markdown(saved["rows"], saved["meta"])
    assert (doc_tables.RESULTS / f"{name}.md").read_text() == table
    assert doc_tables.block(doc_tables.DOCS, name) == table
    headline = getattr(module, "headline", None)
    expected = None if headline is None else headline(saved["rows"], saved["meta"])
    assert doc_tables.block(doc_tables.README, name) == expected
    if script == "rollout_throughput":
        assert expected is not None  # the README's headline table is this one
