"""How the agents are built: their shared run plumbing stays in agents/common.py (no block of code
stands in two agent files, so a fix to checkpoints, logging or evaluation touches one file), and
every flag keeps its field docstring as its --help."""

from __future__ import annotations

import ast
import dataclasses
import io
import itertools
import re
import tokenize
from pathlib import Path

import pytest
import tyro

from tests.test_agents import load_agent

AGENTS = Path(__file__).resolve().parents[1] / "agents"
MIN_LINES = 6


def code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, normalized text) of each line that counts: comments, blank lines, import
    statements and lone punctuation (a closing bracket) are left out, white space is folded."""
    source = path.read_text()
    imports = {
        n
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for n in range(node.lineno, node.end_lineno + 1)
    }
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:  # cut the comment off its line
            row, col = tok.start
            lines[row - 1] = lines[row - 1][:col]
    kept = []
    for number, line in enumerate(lines, start=1):
        text = " ".join(line.split())
        if text and number not in imports and not re.fullmatch(r"[\W_]*", text):
            kept.append((number, text))
    return kept


def longest_shared_run(a: list[tuple[int, str]], b: list[tuple[int, str]]) -> tuple[int, int, int]:
    """(length, start in a, start in b) of the longest run of equal lines the two share."""
    best = (0, 0, 0)
    previous = [0] * (len(b) + 1)
    for i in range(1, len(a) + 1):
        current = [0] * (len(b) + 1)
        for j in range(1, len(b) + 1):
            if a[i - 1][1] == b[j - 1][1]:
                current[j] = previous[j - 1] + 1
                if current[j] > best[0]:
                    best = (current[j], i - current[j], j - current[j])
        previous = current
    return best


def repeated_blocks(files: list[Path], min_lines: int = MIN_LINES) -> list[str]:
    """'a.py:10-24 ~ b.py:40-54 (n lines)' for each pair of files sharing a run of at least
    ``min_lines`` counted lines (the longest run of the pair)."""
    lines = {f: code_lines(f) for f in files}
    found = []
    for a, b in itertools.combinations(sorted(files), 2):
        n, i, j = longest_shared_run(lines[a], lines[b])
        if n >= min_lines:
            (la, lb), (ea, eb) = (lines[a][i][0], lines[b][j][0]), (lines[a][i + n - 1][0], lines[b][j + n - 1][0])
            found.append(f"{a.name}:{la}-{ea} ~ {b.name}:{lb}-{eb} ({n} lines)")
    return found


def test_no_block_of_six_lines_stands_in_two_agent_files():
    files = sorted(AGENTS.glob("*.py"))
    assert {"sft.py", "reinforce.py", "ppo.py", "grpo.py", "nlpo.py", "q_learning.py", "common.py"} <= {
        f.name for f in files
    }
    found = repeated_blocks(files)
    assert not found, "blocks repeated across agent files (merge them into agents/common.py, or import them from\n" + (
        "the agent that owns them):\n" + "\n".join(found)
    )


def test_the_check_finds_a_repeated_block(tmp_path):
    body = [f"    total_{i} = step({i}) * scale" for i in range(6)]
    (tmp_path / "one.py").write_text("\n".join(["import os", "", "def f():", *body[:3], "", *body[3:]]) + "\n")
    (tmp_path / "two.py").write_text(
        "\n".join(["from os import path", "def g():", "    x = 1", *body[:3], "    # a comment", *body[3:]]) + "\n"
    )
    three = ["import os", "", "def h():", *body[:5], "    y = 2  # one line short", body[5]]
    (tmp_path / "three.py").write_text("\n".join(three) + "\n")
    found = repeated_blocks([tmp_path / "one.py", tmp_path / "two.py", tmp_path / "three.py"])
    # blank lines, comments and imports do not break or make a run; one other line breaks it
    assert found == ["one.py:4-10 ~ two.py:4-10 (6 lines)"]
    assert repeated_blocks([tmp_path / "one.py", tmp_path / "three.py"], min_lines=5) == [
        "one.py:4-9 ~ three.py:4-8 (5 lines)"
    ]


@pytest.mark.parametrize("name", ["sft", "reinforce", "ppo", "grpo", "nlpo", "q_learning", "trl_grpo", "sb3_ppo"])
def test_every_flag_has_its_docstring_in_the_help(name, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one line per flag
    agent = load_agent(name)
    with pytest.raises(SystemExit):
        tyro.cli(agent.Args, args=["--help"])
    entries = re.split(r"\n\W*(?=--)", capsys.readouterr().out)  # one per option, wrapped lines included
    for field in dataclasses.fields(agent.Args):
        flag = "--" + field.name.replace("_", "-")
        entry = next((e for e in entries if re.match(f"{flag}[ ,]", e)), "")
        words = re.sub(r"[\s│]+", " ", entry).split(" ", 2)  # the flag, its metavar (or --no-flag), the rest
        described = words[2].split("(default:")[0].strip() if len(words) == 3 else ""
        assert described, f"{name}: {flag} has no description in --help: {entry!r}"
