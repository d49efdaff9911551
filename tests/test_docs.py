"""Every code block of README.md and docs/**/*.md runs, or is checked, as written.

The rule, by the fenced block's language:

* ``python``: executed. The blocks of one page run in order in one namespace, in a fresh
  Python process with the repository root as working directory, on CPU
  (``CUDA_VISIBLE_DEVICES`` empty) and offline (Hugging Face's offline flags; outbound
  internet connections are refused). A failure's traceback names the page and its line.
* ``bash``: every command in it (one per line; ``\\`` continues a line, ``&&`` and ``;``
  separate commands, ``#`` starts a comment; ``VAR=value`` before a command sets that
  variable for it) must match one of these rules:

  - ``make TARGET``: the Makefile has the target and ``make -n TARGET`` (a dry run that
    builds nothing) succeeds. Make targets set up environments, run the test suite or the
    benchmarks: too long for a test.
  - a program: ``python SCRIPT.py ARGS``, ``python -m MODULE ARGS``, or a console script
    of setup.cfg (``text-gym ARGS``). With ``-h``/``--help``, or when the command is in
    ``CHEAP``, it runs for real and must exit 0. Any other run (training, a benchmark, the
    demo) is too long for a test, so only its arguments are checked: the program runs until
    its own parser (argparse or tyro) has accepted ARGS and stops there, before doing any
    work; the check fails if its parser rejects them or if no parser read them (by then
    such a program has run to its end: a program without a parser belongs in a bash block
    only with ``--help``).
  - a shell script of the repository (``benchmarks/gpu_check.sh``): it exists, is
    executable, and answers ``--help`` (its arguments are not checked: a run is too long).
  - ``pip install ...``: the extras named in ``.[extra,...]`` exist in setup.cfg.
    Nothing is installed (the tests have no network), so other package names are not
    checked.
  - anything else fails the test: add a rule here for it.

* ``text``, ``json``, ``console``: output, not run.
* A block with no language or another language fails: say what it is.

Links from one page to another (``[x](docs/concepts.md#observations)``) must reach an
existing file, and a heading of it when they name one.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import text_gym

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_LIMIT = 10_000  # characters: the README is a front page; the rest lives in docs/
OUTPUT = {"text", "json", "console"}
CHEAP = {"text-gym list"}  # commands without --help that are quick enough to run for real
TIMEOUT = 300  # seconds, per page of python blocks and per command


def pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def name(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the block's first line of code
    language: str
    code: str


FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)")


def blocks(page: Path) -> list[Block]:
    """The page's fenced code blocks, in order (their indentation removed)."""
    lines = page.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"{name(page)}:{i + 1}: a code block that is never closed"
        code = textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n"
        found.append(Block(page, i + 2, match.group(2), code))
        i = end + 1
    return found


def environment() -> dict[str, str]:
    """The environment of every process these tests start: CPU, offline, this checkout first."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    offline = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return {**os.environ, **offline, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": path}


# ---- python blocks ----

PYTHON_RUNNER = r"""
import json, socket, sys

def refuse(connect):
    def guarded(self, address, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"the docs tests have no network: connection to {address!r} refused")
        return connect(self, address, *args)
    return guarded

socket.socket.connect = refuse(socket.socket.connect)
socket.socket.connect_ex = refuse(socket.socket.connect_ex)
namespace = {"__name__": "__main__"}
for page, line, code in json.load(sys.stdin):
    exec(compile("\n" * (line - 1) + code, page, "exec"), namespace)
"""


def run_python_blocks(page: Path) -> subprocess.CompletedProcess:
    """Run the page's python blocks in order, in one namespace, in a fresh process."""
    code = [(name(page), b.line, b.code) for b in blocks(page) if b.language == "python"]
    return subprocess.run(
        [sys.executable, "-c", PYTHON_RUNNER],
        input=json.dumps(code),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment(),
        timeout=TIMEOUT,
    )


# ---- bash blocks ----

PROGRAM_RUNNER = r"""
import argparse, importlib, runpy, sys
from pathlib import Path

mode, kind, target, *args = sys.argv[1:]
ACCEPTED = "docs-test: arguments accepted"
if mode == "parse":
    original, depth = argparse.ArgumentParser.parse_known_args, 0

    def parse_known_args(self, args=None, namespace=None):
        global depth
        depth += 1
        try:
            parsed, extras = original(self, args, namespace)
        finally:
            depth -= 1
        if depth == 0:  # the outermost parser (subcommands' parsers run inside it)
            if extras:
                self.error("unrecognized arguments: " + " ".join(extras))
            print(ACCEPTED, "by", self.prog)
            sys.exit(0)
        return parsed, extras

    argparse.ArgumentParser.parse_known_args = parse_known_args
    try:
        import tyro
    except ImportError:
        pass
    else:
        tyro_cli = tyro.cli

        def cli(*a, **k):
            argparse.ArgumentParser.parse_known_args = original  # tyro's own parse is the check
            tyro_cli(*a, **k)
            print(ACCEPTED, "by tyro")
            sys.exit(0)

        tyro.cli = cli
if kind == "script":
    sys.argv, sys.path[0] = [target, *args], str(Path(target).parent)
    runpy.run_path(target, run_name="__main__")
elif kind == "module":
    sys.argv = [target, *args]
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    module, _, function = target.partition(":")
    sys.argv = [module.rpartition(".")[2], *args]
    result = getattr(importlib.import_module(module), function)()
    if mode == "run":
        sys.exit(result)
if mode == "parse":
    sys.exit("docs-test: the program ended without reading its arguments with argparse or tyro")
"""


def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def console_scripts() -> dict[str, str]:
    lines = setup_cfg()["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=", 1)) for line in lines)


def extras() -> set[str]:
    return set(setup_cfg()["options.extras_require"])


def commands(block: Block) -> list[tuple[int, list[str]]]:
    """``(line, argv)`` of each command in a bash block."""
    found, line, text = [], None, ""
    for number, raw in enumerate(block.code.splitlines(), block.line):
        line = line or number
        if raw.endswith("\\"):  # continued on the next line
            text += raw[:-1] + " "
            continue
        text += raw
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        argv: list[str] = []
        for token in [*lexer, ";"]:
            if token in ("&&", ";"):
                if argv:
                    found.append((line, argv))
                argv = []
            else:
                argv.append(token)
        line, text = None, ""
    return found


def check_command(argv: list[str]) -> None:
    """Check one bash command by the rule of the module docstring; AssertionError if it fails."""
    shown = shlex.join(argv)
    env = environment()
    while argv and re.match(r"^[A-Za-z_]\w*=", argv[0]):
        key, _, value = argv.pop(0).partition("=")
        env[key] = value
    assert argv, f"{shown}: no command"
    program, args = argv[0], argv[1:]
    assert not set(args) & {"|", "||", ">", ">>", "<", "&", "(", ")"}, f"{shown}: no rule for pipes or redirections"
    if program == "make":
        check_make(shown, args)
    elif program == "pip" or argv[:3] in (["python", "-m", "pip"], ["python3", "-m", "pip"]):
        check_pip(shown, args[2:] if program != "pip" else args)
    elif program in ("python", "python3") and args[:1] == ["-m"]:
        check_program(shown, "module", args[1], args[2:], env)
    elif program in ("python", "python3"):
        assert args and args[0].endswith(".py"), f"{shown}: no rule for python without a script or -m"
        script = ROOT / args[0]
        assert script.is_file(), f"{shown}: {args[0]} does not exist"
        check_program(shown, "script", str(script), args[1:], env)
    elif program in console_scripts():
        check_program(shown, "entry", console_scripts()[program], args, env)
    elif program.endswith(".sh"):  # a script of the repository: it exists, runs, and answers --help
        script = ROOT / program
        assert script.is_file() and os.access(script, os.X_OK), f"{shown}: {program} is not an executable file"
        result = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert result.returncode == 0 and result.stdout.strip(), f"{shown}: {program} --help failed\n{result.stderr}"
    else:
        raise AssertionError(f"{shown}: no rule for {program!r} in tests/test_docs.py")


def check_make(shown: str, args: list[str]) -> None:
    targets = [a for a in args if "=" not in a and not a.startswith("-")]
    makefile = (ROOT / "Makefile").read_text()
    for target in targets:
        assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), f"{shown}: no {target!r} target"
    result = subprocess.run(["make", "-n", *args], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, f"{shown}: make -n failed\n{result.stderr}"


def check_pip(shown: str, args: list[str]) -> None:
    assert args[:1] == ["install"], f"{shown}: no rule for pip {args[:1]}"
    for arg in args:
        match = re.fullmatch(r"\.\[([\w,-]+)\]", arg)
        if match:
            missing = set(match.group(1).split(",")) - extras()
            assert not missing, f"{shown}: setup.cfg has no extras {sorted(missing)}"


def check_program(shown: str, kind: str, target: str, args: list[str], env: dict[str, str]) -> None:
    real = bool({"-h", "--help"} & set(args)) or shown in CHEAP
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM_RUNNER, "run" if real else "parse", kind, target, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=TIMEOUT,
    )
    output = f"\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"{shown}: exit status {result.returncode}{output}"
    if real and shown not in CHEAP:
        assert "usage" in result.stdout.lower(), f"{shown}: no usage in the help{output}"
    if not real:
        assert "docs-test: arguments accepted" in result.stdout, f"{shown}: arguments not checked{output}"


# ---- links ----

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def broken_links(page: Path) -> list[str]:
    """Relative links of the page whose file, or heading, does not exist."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
            continue
        if anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", file.read_text(), flags=re.M)
            if anchor not in {slug(h) for h in headings}:
                broken.append(target)
    return broken


# ---- the tests ----

PYTHON_PAGES = [p for p in pages() if any(b.language == "python" for b in blocks(p))]
COMMANDS = [
    pytest.param(argv, id=f"{name(b.page)}:{line} {shlex.join(argv)}")
    for p in pages()
    for b in blocks(p)
    if b.language == "bash"
    for line, argv in commands(b)
]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=name)
def test_python_blocks_run(page):
    result = run_python_blocks(page)
    assert result.returncode == 0, f"{name(page)}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"


@pytest.mark.parametrize("argv", COMMANDS)
def test_bash_commands_check(argv):
    check_command(list(argv))


@pytest.mark.parametrize("page", pages(), ids=name)
def test_every_block_has_a_known_language(page):
    for block in blocks(page):
        assert block.language in {"python", "bash", *OUTPUT}, (
            f"{name(page)}:{block.line - 1}: a block of language {block.language!r}; "
            f"use python (run), bash (checked) or one of {sorted(OUTPUT)} (output)"
        )


@pytest.mark.parametrize("page", pages(), ids=name)
def test_links_reach_their_pages(page):
    assert broken_links(page) == []


def test_the_docs_have_code():
    assert README in PYTHON_PAGES and COMMANDS


def test_readme_is_a_front_page():
    text = README.read_text()
    assert len(text) <= README_LIMIT, f"README.md has {len(text)} characters; move detail to docs/"
    for env_id in text_gym.env_ids():
        assert f"`{env_id}`" in text, f"the README's env table lacks {env_id}"


def test_readme_quick_start_matches_makefile():
    text = README.read_text()
    make = (ROOT / "Makefile").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make demo" in text and "make test" in text
    assert "\ndemo: setup" in make and "\ntest: setup" in make
    assert "make test" in ci


# ---- the checks catch what they should ----


def test_a_broken_python_block_fails_and_names_its_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n```python\nx = 1\n```\n\ntext\n\n```python\nassert x == 2, 'x is 1'\n```\n")
    result = run_python_blocks(page)
    assert result.returncode != 0
    assert f'File "{page}", line 10' in result.stderr and "AssertionError: x is 1" in result.stderr


def test_python_blocks_have_no_network(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nimport socket\nsocket.create_connection(('192.0.2.1', 80), timeout=5)\n```\n")
    result = run_python_blocks(page)
    assert result.returncode != 0 and "the docs tests have no network" in result.stderr


@pytest.mark.parametrize(
    "command, message",
    [
        ("make no-such-target", "no 'no-such-target' target"),
        ("python agents/no_such_agent.py --help", "does not exist"),
        ("python agents/grpo.py --no-such-flag 1", "exit status"),
        ("python benchmarks/env_throughput.py --num-envs many", "exit status"),
        ("text-gym demo --episodes 0", "exit status"),
        ("curl https://example.com", "no rule for 'curl'"),
        ("pip install -e '.[no-such-extra]'", "no extras ['no-such-extra']"),
        ("text-gym list | head", "no rule for pipes"),
    ],
)
def test_a_broken_command_fails(tmp_path, command, message):
    page = tmp_path / "page.md"
    page.write_text(f"```bash\n{command}  # a comment\n```\n")
    [(line, argv)] = commands(blocks(page)[0])
    assert line == 2
    with pytest.raises(AssertionError, match=re.escape(message)):
        check_command(argv)


def test_a_program_that_reads_no_arguments_fails_the_check(tmp_path):
    script = tmp_path / "quiet.py"
    script.write_text("print('did its work')\n")
    with pytest.raises(AssertionError, match="without reading its arguments"):
        check_program("python quiet.py --x", "script", str(script), ["--x"], environment())


def test_commands_split_and_continue():
    block = Block(README, 5, "bash", "A=1 make demo && make test; \\\n  python x.py --a 1  # note\n\n")
    assert commands(block) == [(5, ["A=1", "make", "demo"]), (5, ["make", "test"]), (5, ["python", "x.py", "--a", "1"])]


def test_a_block_without_a_language_and_a_broken_link_are_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n```\nx\n```\n\n[a](missing.md) [b](#title) [c](#nothing) [d](https://x.org)\n")
    assert [b.language for b in blocks(page)] == [""]
    assert broken_links(page) == ["missing.md", "#nothing"]
