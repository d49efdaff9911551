"""The shape of the house: imports run one way with no circles, modules and functions stay small.

The checks read the source with ``ast`` (nothing is imported), so they see every import,
at module level or inside a function, absolute or relative. Each check is a function
that returns its offenders; the tests at the bottom run them on small synthetic packages
to show they catch what they are for.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "text_gym"
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80

# What knows of models and frameworks; everything else in text_gym (the env and its parts,
# tasks, rewards, tokenizers) must not reach it.
ABOVE_THE_ENV = ("text_gym.rollout", "text_gym.adapters", "text_gym.distributed", "text_gym.cli")
# (importers, what they may reach (None: anything but `forbidden`), what they must not
# reach, why). A module matches a name when it is that module or inside that package;
# "reach" follows explicit imports transitively (not the implicit import of parent packages).
LAYER_RULES = (
    (
        ("text_gym.tasks",),
        ("text_gym.tasks", "text_gym.rewards", "text_gym.tokenizers", "text_gym.assets"),
        (),
        "a task knows nothing of the env, models or frameworks",
    ),
    (("text_gym.rewards",), ("text_gym.rewards",), (), "text_gym.rewards imports nothing else of the package"),
    (("text_gym",), None, ABOVE_THE_ENV, "an env knows no model and no framework"),
)


# ---------------------------------------------------------------------- the checks


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``root / package``."""
    files = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def imported_names(path: Path, module: str) -> set[str]:
    """Every name ``path`` (module ``module``) imports, anywhere in the file, absolute:
    ``import a.b`` gives ``a.b``, ``from a import b`` and ``from . import b`` (in ``a``)
    give ``a.b``, whether ``b`` is a module or a name defined in ``a``."""
    is_package = path.name == "__init__.py"
    package = module.split(".") if is_package else module.split(".")[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = [node.module] if node.module else []
            if node.level:  # relative: level 1 is this package, 2 its parent, ...
                base = package[: len(package) - node.level + 1] + base
            names.update(".".join([*base, alias.name]) for alias in node.names)
    return names


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports. An imported name counts as the
    longest module it is or lies in: ``from pkg import mod`` imports ``pkg.mod`` when that
    is a module, and ``pkg`` (its ``__init__``) when ``mod`` is a name defined there."""
    files = module_files(root, package)
    graph = {}
    for module, path in files.items():
        targets = {_owner(name, files) for name in imported_names(path, module)}
        graph[module] = targets - {None, module}
    return graph


def _owner(name: str, files: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` is or lies inside, or None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in files:
            return ".".join(parts[:end])
    return None


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One import circle per strongly connected group of modules, as ``[a, b, ..., a]``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(group[0], set(group), graph) for group in sorted(groups)]


def _cycle_through(start: str, group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path ``start -> ... -> start`` inside ``group`` (breadth first)."""
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:  # v closes the circle: walk back to start
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if w not in parent:
                    parent[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")


def _inside(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def shortest_paths(graph: dict[str, set[str]], start: str) -> dict[str, list[str]]:
    """Every module ``start`` reaches through explicit imports -> the shortest import path."""
    paths, frontier = {start: [start]}, [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    following.append(w)
        frontier = following
    return paths


def layer_violations(
    graph: dict[str, set[str]], rules: Sequence[tuple[Sequence[str], Sequence[str] | None, Sequence[str], str]]
) -> list[str]:
    """``importer -> ... -> reached (why)`` for every module a rule's importer reaches,
    directly or through other modules, that the rule does not allow."""
    found = []
    for module in sorted(graph):
        paths = shortest_paths(graph, module)
        for importers, allowed, forbidden, why in rules:
            if not _inside(module, importers) or _inside(module, forbidden):
                continue
            for target, path in sorted(paths.items()):
                if allowed is not None and not _inside(target, allowed) or _inside(target, forbidden):
                    found.append(f"{' -> '.join(path)} ({why})")
    return found


def size_offenders(root: Path, package: str, max_file: int, max_function: int) -> list[str]:
    """Files over ``max_file`` lines and functions (``def`` to their last line, docstring
    included) over ``max_function`` lines, each with its length."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(root).as_posix()
        lines = len(text.splitlines())
        if lines > max_file:
            found.append(f"{where}: {lines} lines (limit {max_file})")
        for qualname, node in _functions(ast.parse(text, str(path))):
            length = node.end_lineno - node.lineno + 1
            if length > max_function:
                found.append(f"{where}:{node.lineno} {qualname}: {length} lines (limit {max_function})")
    return found


def _functions(tree: ast.AST, prefix: str = "") -> Iterable[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


# ---------------------------------------------------------------------- text_gym


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(REPO, PACKAGE)


def test_the_walker_sees_the_package(graph):
    """The checks below cannot pass for want of imports: the known ones are seen."""
    assert {"text_gym.vector_env", "text_gym.tasks.base", "text_gym.rewards.sandbox"} <= set(graph)
    assert {"text_gym.tasks", "text_gym.prompt_table"} <= graph["text_gym.vector_env"]
    assert "text_gym.rewards.sandbox" in graph["text_gym.tasks.code"]


def test_no_import_circles(graph):
    cycles = find_cycles(graph)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_run_one_way(graph):
    found = layer_violations(graph, LAYER_RULES)
    assert not found, "imports against the layering (DESIGN.md):\n" + "\n".join(found)


def test_the_library_never_imports_agents_or_benchmarks():
    found = [
        f"{module} imports {name}"
        for module, path in module_files(REPO, PACKAGE).items()
        for name in sorted(imported_names(path, module))
        if _inside(name, ["agents", "benchmarks"])
    ]
    assert not found, "\n".join(found)


def test_modules_and_functions_stay_small():
    found = size_offenders(REPO, PACKAGE, MAX_FILE_LINES, MAX_FUNCTION_LINES)
    assert not found, f"{len(found)} over the size limits:\n" + "\n".join(found)


# ---------------------------------------------------------------------- the checks catch


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_circle_is_found_and_reported(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg import env\n",
            "pkg/env.py": "from pkg.tasks import base\n",
            "pkg/tasks/__init__.py": "",
            # a function-level, relative import closes the circle env -> tasks.base -> env
            "pkg/tasks/base.py": "def hint():\n    from ..env import Env\n",
            "pkg/rewards/__init__.py": "",
            "pkg/rewards/a.py": "from . import b\n",
            "pkg/rewards/b.py": "import pkg.rewards.a\n",
            "pkg/leaf.py": "import os\nimport pkg\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg"] == {"pkg.env"} and graph["pkg.tasks.base"] == {"pkg.env"}
    assert graph["pkg.leaf"] == {"pkg"}
    assert find_cycles(graph) == [
        ["pkg.env", "pkg.tasks.base", "pkg.env"],
        ["pkg.rewards.a", "pkg.rewards.b", "pkg.rewards.a"],
    ]
    with pytest.raises(AssertionError, match=r"pkg.env -> pkg.tasks.base -> pkg.env"):
        test_no_import_circles(graph)
    del graph["pkg.tasks.base"]
    graph["pkg.rewards.b"] = set()
    assert find_cycles(graph) == []


def test_layer_violations_are_listed(tmp_path):
    _write(
        tmp_path,
        {
            "text_gym/__init__.py": "",
            "text_gym/vector_env.py": "from text_gym.rollout import collector\nfrom text_gym import tasks\n",
            "text_gym/rollout/__init__.py": "",
            "text_gym/rollout/collector.py": "",
            "text_gym/tasks/__init__.py": "",
            "text_gym/tasks/code.py": (
                "def f():\n    from text_gym.vector_env import X\n"
                "    import text_gym.rewards.a\n    from .. import rewards\n"
            ),
            "text_gym/rewards/__init__.py": "from .sandbox import run\n",
            "text_gym/rewards/sandbox.py": "from ..tasks.code import f\n",
            "text_gym/rewards/a.py": "",
            # a wrong-way import through a module that no rule names
            "text_gym/tasks/dialogue.py": "from text_gym import tokenizers\n",
            "text_gym/tokenizers.py": "from text_gym.rollout import runner\n",
            "text_gym/rollout/runner.py": "",
        },
    )
    graph = import_graph(tmp_path, "text_gym")
    found = layer_violations(graph, LAYER_RULES)
    why_task = "(a task knows nothing of the env, models or frameworks)"
    why_env = "(an env knows no model and no framework)"
    assert "text_gym.tasks.dialogue -> text_gym.tokenizers -> text_gym.rollout.runner " + why_task in found
    assert "text_gym.tasks.dialogue -> text_gym.tokenizers -> text_gym.rollout.runner " + why_env in found
    assert "text_gym.tokenizers -> text_gym.rollout.runner " + why_env in found
    assert "text_gym.tasks.code -> text_gym.vector_env " + why_task in found
    assert "text_gym.vector_env -> text_gym.rollout.collector " + why_env in found
    assert (
        "text_gym.rewards.sandbox -> text_gym.tasks.code (text_gym.rewards imports nothing else of the package)"
        in found
    )
    assert not [f for f in found if f.startswith(("text_gym.rollout", "text_gym.tasks.code -> text_gym.rewards "))]
    with pytest.raises(AssertionError, match=r"(?s)rewards.sandbox -> .*tasks.code -> .*vector_env -> "):
        test_imports_run_one_way(graph)


def test_oversized_files_and_functions_are_listed(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(78))
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            # 80 lines: def, docstring and 78 statements; at the limit, not over it
            "pkg/ok.py": f'def fits():\n    """Doc."""\n{body}',
            "pkg/big.py": "x = 1\n" * 601,
            "pkg/long.py": f'class A:\n    @property\n    def method(self):\n        """Doc."""\n{body}{body}'.replace(
                "\n    x", "\n        x"
            ),
        },
    )
    found = size_offenders(tmp_path, "pkg", 600, 80)
    assert found == [
        "pkg/big.py: 601 lines (limit 600)",
        "pkg/long.py:3 A.method: 158 lines (limit 80)",
    ]
