"""TextCode-v0's task: HumanEval split into asserts, the easy suite, MBPP-style loading, scoring."""

from __future__ import annotations

import hashlib
import json
import textwrap

import gymnasium as gym
import numpy as np
import pytest

from text_gym.tasks.base import Sample
from text_gym.tasks.code import (
    METRICS,
    REASONS,
    CodeTask,
    answer_code,
    easy_problems,
    easy_split,
    fenced_blocks,
    function_stub,
    split_check,
)


@pytest.fixture(scope="module")
def humaneval():
    return CodeTask()


def _by_id(task, task_id):
    return next(s for s in task.samples if s.source == task_id)


# ---------------------------------------------------------------- splitting HumanEval's checks


@pytest.mark.parametrize(
    "task_id, count",
    [
        ("HumanEval/0", 7),
        ("HumanEval/32", 1),
        ("HumanEval/34", 1),
        ("HumanEval/44", 7),
        ("HumanEval/53", 6),
        ("HumanEval/151", 7),
    ],
)
def test_humaneval_checks_split_into_known_counts(humaneval, task_id, count):
    assert len(_by_id(humaneval, task_id).extra["tests"]) == count


def test_humaneval_split_details(humaneval):
    assert len(humaneval) == 164
    assert sum(len(s.extra["tests"]) for s in humaneval.samples) == 1133
    loop = _by_id(humaneval, "HumanEval/44").extra["tests"][-1]
    assert loop.startswith("for x in range(2, 8):\n    assert candidate(x, x + 1) == str(x)")
    he151 = _by_id(humaneval, "HumanEval/151")
    assert "lst = list(range(-99, 100, 2))" in he151.extra["setup"]  # check's helper values
    assert he151.extra["setup"].index("candidate = double_the_difference") < he151.extra["setup"].index("lst =")
    # unseeded random inputs are seeded; `assert True` placeholders are dropped
    seeded = [s.source for s in humaneval.samples if 'random").seed(0)' in s.extra["setup"]]
    assert seeded == ["HumanEval/32", "HumanEval/38", "HumanEval/50", "HumanEval/53"]
    assert not any(t.startswith("assert True") for s in humaneval.samples for t in s.extra["tests"])
    s0 = humaneval.samples[0]
    assert s0.prompt.startswith("from typing import List") and s0.references[0].startswith("    for idx")


def test_split_check_fallbacks_and_errors():
    setup, tests = split_check("def check(candidate):\n    r = candidate(1)\n    assert r == 2\n", "f")
    assert tests == ("check(f)",) and "def check(candidate):" in setup
    with pytest.raises(ValueError, match="does not parse"):
        split_check("def check(candidate):\n    assert (\n", "f")
    with pytest.raises(ValueError, match=r"exactly one `def check\(candidate\)`"):
        split_check("assert f(1) == 2\n", "f")
    with pytest.raises(ValueError, match="no assert that calls 'candidate'"):
        split_check("def check(candidate):\n    assert True\n", "f")


# ---------------------------------------------------------------- scoring through the sandbox


def test_all_canonical_solutions_pass_and_stubs_fail(humaneval):
    samples = list(humaneval.samples)
    canonical = [s.references[0] for s in samples]
    stubs = ["    pass\n"] * len(samples)
    scores = humaneval.score(canonical + stubs, samples + samples)
    rewards, n = scores.rewards, len(samples)
    failed = {s.source: (r.reason, r.detail) for s, r, x in zip(samples, humaneval.last_runs, rewards) if x != 1.0}
    assert failed == {}
    assert (rewards[n:] < 1.0).all(), [s.source for s, x in zip(samples, rewards[n:]) if x == 1.0]
    assert scores.metrics["passed_all"][:n].sum() == n and scores.metrics["reason_ok"][:n].all()
    assert scores.metrics["num_tests"][:n].sum() == 1133
    # the same rewards and outcomes again (a 40-problem subset, canonical and stubs)
    pick = list(range(0, n, 4))[:40]
    again = humaneval.score([canonical[i] for i in pick] + [stubs[i] for i in pick], [samples[i] for i in pick] * 2)
    first = np.concatenate([rewards[pick], rewards[n:][pick]])
    assert again.rewards.tolist() == first.tolist()
    for key in METRICS:
        assert (
            again.metrics[key].tolist()
            == np.concatenate([scores.metrics[key][pick], scores.metrics[key][n:][pick]]).tolist()
        )


def test_partial_credit_metrics_and_reasons(humaneval):
    he0 = humaneval.samples[0]  # has_close_elements: 4 of its 7 asserts expect True
    task = CodeTask(timeout=1.0)
    wrong = Sample(
        "def f(x):\n",
        ("    return 2 * x\n",),
        extra={"tests": ("assert f(1) == 2", "assert f(2) == 4", "assert f(0) == 0"), "setup": ""},
    )
    responses = ["    return True\n", "    return x + 1\n", "    return (\n", "    while True:\n        pass\n"]
    scores = task.score(responses, [he0, wrong, wrong, wrong])
    assert np.allclose(scores.rewards, [4 / 7, 1 / 3, 0, 0])
    assert list(scores.metrics) == list(METRICS) and len(METRICS) == 3 + len(REASONS)
    assert scores.metrics["num_tests"].tolist() == [7, 3, 3, 3]
    assert scores.metrics["passed_all"].tolist() == [0, 0, 0, 0]
    reasons = [r.reason for r in task.last_runs]
    assert reasons[2:] == ["syntax_error", "timeout"]
    for i, reason in enumerate(reasons):
        assert [scores.metrics[f"reason_{r}"][i] for r in REASONS] == [float(r == reason) for r in REASONS]
    assert task.last_runs[1].passed == (True, False, False)


# ---------------------------------------------------------------- the easy suite


def test_easy_suite_is_deterministic_and_split_by_hash():
    problems = easy_problems()
    assert len(problems) == 932 and [s.prompt for s in problems] == [s.prompt for s in easy_problems()]
    assert {s.extra["level"] for s in problems} == {1, 2, 3}
    assert all(3 <= len(s.extra["tests"]) <= 8 for s in problems)
    assert len({s.prompt for s in problems}) == len(problems)
    train, test = CodeTask(dataset="easy"), CodeTask(dataset="easy", split="test")
    assert len(train) + len(test) == 932 and not {s.prompt for s in train.samples} & {s.prompt for s in test.samples}
    assert all(easy_split(s) == "test" for s in test.samples)
    assert {s.extra["level"] for s in CodeTask(dataset="easy", level=2).samples} == {2}
    assert problems[0].prompt.startswith("def ") and '    """' in problems[0].prompt


# sha256 of the generated suite (every field of every problem, in order), per level
# (None: all levels); a change to a template, its draws or their order, or to the
# behaviour keys and the split, changes these.
EASY_SUITE_SHA256 = {
    None: "43b0f247985505fbd8f9f136bc9d42fd0ca68e86c142c3e73e3fe6c8e52b6b12",
    1: "cc84dafb800157ac187beb4b020979dc1f0d7f4ddf3ee90203d15993080df3cb",
    2: "cac5e1f0e889b4abd9436f76be960be2adc72ef92a3167047a5c2e59f4d94dc4",
    3: "b2e2407646096d226b173872ad47ed944641989b13c0ad4910974f2dab4b3408",
}


@pytest.mark.parametrize("level", [None, 1, 2, 3])
def test_easy_suite_is_pinned(level):
    """Same prompts, references, tests, levels, template indices and split, in the same order."""
    rows = [
        [
            s.prompt,
            list(s.references),
            s.source,
            s.extra["setup"],
            list(s.extra["tests"]),
            s.extra["level"],
            s.extra["template"],
            s.extra["split"],
            s.extra["behaviour"],
        ]
        for s in easy_problems(level)
    ]
    assert hashlib.sha256(json.dumps(rows).encode()).hexdigest() == EASY_SUITE_SHA256[level]


def test_an_always_equal_object_scores_zero(humaneval):
    hack = "    class Any:\n        def __eq__(self, other):\n            return True\n    return Any()\n"
    easy = CodeTask(dataset="easy", max_samples=6)
    assert easy.score([hack] * 6, easy.samples).rewards.tolist() == [0.0] * 6
    samples = humaneval.samples[::8]  # HumanEval's asserts compare with == alone
    assert humaneval.score([hack] * len(samples), samples).rewards.tolist() == [0.0] * len(samples)
    assert all("NotPlain" in r.detail for r in humaneval.last_runs if r.reason == "ok")


SPY = """    return _seen[-1] if _seen else None
_seen = []
def _spy(f):
    def spy(s, *rest):
        _seen.append(s)
        return f(s, *rest)
    return spy
for _name in ("encode_cyclic", "encode_shift"):
    if _name in globals():
        globals()[_name] = _spy(globals()[_name])
if "poly" in globals():
    def poly(xs, x):
        return 0.0
"""


def test_tests_use_the_prompts_helpers_not_the_programs(humaneval):
    """A program that rewrites the prompt's helpers (a poly that calls every x a root, an
    encoder that remembers its plaintext) earns nothing from them: the tests' setup
    defines the prompt's own copies."""
    samples = [_by_id(humaneval, f"HumanEval/{i}") for i in (32, 38, 50)]
    assert all("def " in s.extra["setup"].split("candidate = ")[0] for s in samples)
    assert humaneval.score([SPY] * 3, samples).rewards.tolist() == [0.0] * 3
    assert humaneval.score([s.references[0] for s in samples], samples).rewards.tolist() == [1.0] * 3


def test_easy_references_pass_every_test():
    problems = easy_problems()
    task = CodeTask(dataset="easy")
    scores = task.score([s.references[0] for s in problems], problems)
    bad = [(s.source, r.reason, r.passed) for s, r in zip(problems, task.last_runs) if r.fraction != 1.0]
    assert bad == [] and scores.rewards.tolist() == [1.0] * len(problems)


# ---------------------------------------------------------------- MBPP-style sets offline

MBPP_ROWS = [
    {
        "text": "Write a function to find the shared elements from the given two lists.",
        "code": (
            "def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n"
            "  return (res) "
        ),
        "test_list": [
            "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))",
            "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))",
        ],
        "test_setup_code": "",
    },
    {
        "text": 'Write a function to find words of at least 4 characters using regex """.',
        "code": 'import re\r\ndef find_char_long(text):\r\n  return (re.findall(r"\\b\\w{4,}\\b", text))',
        "test_list": [
            "assert find_char_long('Please move back to stream') == ['Please', 'move', 'back', 'stream']",
            "assert find_char_long(WORDS) == ['Jing', 'Tech']",
        ],
        "test_setup_code": "WORDS = 'Jing Eco and Tech'",
    },
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_mbpp_style_loader_offline(tmp_path):
    pytest.importorskip("datasets")
    task = CodeTask(dataset="json", data_files=_jsonl(tmp_path / "mbpp.jsonl", MBPP_ROWS))
    s0, s1 = task.samples
    assert s0.prompt == (
        'def similar_elements(test_tup1, test_tup2):\n    """Write a function to find the shared elements '
        "from the given two lists.\n\n    >>> set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == "
        'set((4, 5))\n    True\n    """\n'
    )
    assert s1.prompt.startswith("import re\n\n\ndef find_char_long(text):") and r"\"\"\"" in s1.prompt
    assert (
        s1.references[0].startswith("    return re.findall")
        and s1.extra["setup"] == "import re\nWORDS = 'Jing Eco and Tech'"
    )
    scores = task.score([s.references[0] for s in task.samples] + ["    return []\n"], [s0, s1, s1])
    assert scores.rewards.tolist() == [1.0, 1.0, 0.0]


def test_mbpp_tests_see_the_codes_imports_and_helpers(tmp_path):
    # as in MBPP's harness, where code and tests share a namespace: tests that call
    # math.isclose, or build the helper class the function takes
    pytest.importorskip("datasets")
    rows = [
        {
            "text": "Volume of a cone.",
            "test_setup_code": "",
            "code": "import math\ndef volume_cone(r,h):\n  return (1.0/3) * math.pi * r * r * h",
            "test_list": ["assert math.isclose(volume_cone(5,12), 314.15926535897927, rel_tol=0.001)"],
        },
        {
            "text": "Longest chain of pairs.",
            "test_setup_code": "",
            "code": "class Pair(object):\n\tdef __init__(self, a, b):\n\t\tself.a = a\n\t\tself.b = b\n"
            "def max_chain_length(arr, n):\n\tmcl = [1] * n\n\tfor i in range(1, n):\n"
            "\t\tfor j in range(i):\n\t\t\tif arr[i].a > arr[j].b:\n\t\t\t\tmcl[i] = max(mcl[i], mcl[j] + 1)\n"
            "\treturn max(mcl)",
            "test_list": ["assert max_chain_length([Pair(5, 24), Pair(15, 25), Pair(27, 40), Pair(50, 60)], 4) == 3"],
        },
    ]
    task = CodeTask(dataset="json", data_files=_jsonl(tmp_path / "helpers.jsonl", rows))
    assert task.samples[1].prompt.startswith("class Pair(object):")
    scores = task.score([s.references[0] for s in task.samples] + ["    return 0\n"], [*task.samples, task.samples[1]])
    assert scores.rewards.tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize(
    "change, match",
    [
        ({"text": None}, r"row 1 of json/train: field 'text' is missing"),
        ({"code": 3}, r"row 1 of json/train: field 'code' is missing or not text"),
        ({"test_list": []}, r"row 1 of json/train: field 'test_list' must be a non-empty list"),
        ({"test_list": "assert f(1) == 2"}, r"row 1 of json/train: field 'test_list' must be a non-empty list"),
        ({"test_setup_code": ["import re"]}, r"row 1 of json/train: field 'test_setup_code' is a list, not text"),
    ],
)
def test_mbpp_bad_rows_name_the_row_and_field(tmp_path, change, match):
    pytest.importorskip("datasets")
    rows = [MBPP_ROWS[0], {**MBPP_ROWS[1], **change}]
    with pytest.raises(ValueError, match=match):
        CodeTask(dataset="json", data_files=_jsonl(tmp_path / "bad.jsonl", rows))


def test_mbpp_unusable_rows_are_skipped_and_counted(tmp_path, caplog):
    pytest.importorskip("datasets")
    bad = [
        {**MBPP_ROWS[1], "test_list": ["assert f(1) ==", "x"]},
        {**MBPP_ROWS[1], "test_setup_code": "x ="},
        {**MBPP_ROWS[1], "code": "def other(x):\n  return x"},
        {**MBPP_ROWS[1], "code": "def find_char_long(text):\nreturn 1"},
    ]
    with caplog.at_level("WARNING", logger="text_gym.tasks.code"):
        task = CodeTask(dataset="json", data_files=_jsonl(tmp_path / "some.jsonl", [MBPP_ROWS[0], *bad]))
    assert [s.extra["row"] for s in task.samples] == [0]
    assert "skipped 4 of 5 rows: 2 with a test or setup that does not parse (first: row 1), " in caplog.text
    assert "1 with code that defines no function the first test calls (first: row 3)" in caplog.text
    assert "1 with code that does not parse (first: row 4)" in caplog.text
    with pytest.raises(ValueError, match="json/train has no usable row: 2 with a test or setup"):
        CodeTask(dataset="json", data_files=_jsonl(tmp_path / "none.jsonl", bad[:2]))


def test_argument_checks():
    with pytest.raises(ValueError, match="has only 'test'"):
        CodeTask(split="train")
    with pytest.raises(ValueError, match="level=2 applies only to dataset='easy'"):
        CodeTask(level=2)
    with pytest.raises(ValueError, match="level=4 is not valid"):
        CodeTask(dataset="easy", level=4)
    with pytest.raises(ValueError, match="timeout=0"):
        CodeTask(timeout=0)
    with pytest.raises(ValueError, match="max_samples=0"):
        CodeTask(max_samples=0)
    assert len(CodeTask(max_samples=3)) == 3


# ---------------------------------------------------------------- the env


def test_env_reward_for_reference_response():
    from text_gym import TextVectorEnv

    task = CodeTask(dataset="easy", max_samples=4)
    env = TextVectorEnv(2, task=task, tokenizer="byte", max_new_tokens=64)
    _, info = env.reset(seed=0)
    eos = env.tokenizer.eos_token_id
    refs = [task.samples[j].references[0].encode() for j in info["sample_index"]]
    wrong = b"    return None\n"
    texts = [refs[0], wrong]  # slot 0: its reference, slot 1: a wrong body
    first = {}
    for t in range(max(map(len, texts)) + 1):
        _, rewards, terminated, _, info = env.step(np.array([x[t] if t < len(x) else eos for x in texts]))
        for slot in np.flatnonzero(terminated):  # the first episode of each slot
            first.setdefault(int(slot), (rewards[slot], info["response"][slot], info["metrics"]["passed_all"][slot]))
    assert first == {0: (1.0, refs[0].decode(), 1.0), 1: (0.0, wrong.decode(), 0.0)}


def test_docstring_examples():
    import doctest

    from text_gym.tasks import code, code_easy

    for module in (code, code_easy):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


# ---------------------------------------------------------------- chat answers (answer_format)

# HumanEval problems with imports (0), helpers (32, 38), a statement before the docstring (115)
CHAT_IDS = ("HumanEval/0", "HumanEval/32", "HumanEval/38", "HumanEval/115", "HumanEval/151")
PROSE = "I would loop over the items and keep the ones that match, then return them."


def chat_answers(sample: Sample) -> list[str]:
    """A chat model's ways to answer ``sample`` correctly: the whole prompt with its body,
    fenced, with prose around; the function without its docstring in a ``py`` block after
    a ``text`` block; the body fenced bare and unindented; a block left open at the end;
    the function unfenced before a lone closing fence (as SmolLM2-135M-Instruct writes it)."""
    body = sample.references[0]
    stub = function_stub(sample.prompt, sample.extra.get("entry_point") or sample.source)
    return [
        f"Sure! Here is the function:\n\n```python\n{sample.prompt}{body}```\n\nIt passes the examples.",
        f"For example:\n```text\n{PROSE}\n```\nThe code:\n```py\n{stub}{body}```",
        f"Write this as the body:\n```\n{textwrap.dedent(body)}```\n",
        f"```python\n{stub}{body}",
        f"{stub}{body}```\n\nThis returns the answer.",
    ]


def test_markdown_answers_score_like_the_canonical_body(humaneval):
    """Every way a chat answer holds the canonical solution scores 1.0, as the bare body does
    under "body"; prose without a block scores 0 and says why; "body" keeps today's scores."""
    chat = CodeTask(answer_format="markdown")
    easy = CodeTask(dataset="easy", split="test", answer_format="markdown")
    samples = [_by_id(chat, i) for i in CHAT_IDS] + list(easy.samples[:: len(easy) // 4][:4])
    answers = [(a, s) for s in samples for a in [*chat_answers(s), chat.reference_response(s), PROSE]]
    scores = chat.score([a for a, _ in answers], [s for _, s in answers])
    per_sample = scores.rewards.reshape(len(samples), -1)
    assert per_sample.tolist() == [[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]] * len(samples)
    prose_runs = chat.last_runs[6::7]
    assert all(r.reason == "syntax_error" and r.detail.startswith("no fenced code block") for r in prose_runs)
    assert not any(r.detail.startswith("no fenced") for i, r in enumerate(chat.last_runs) if i % 7 != 6)
    assert scores.metrics["reason_syntax_error"].reshape(len(samples), -1)[:, 6].all()
    # the whole function replaces the stub after the prompt's helpers (HumanEval/32's poly)
    program = chat.last_programs[7 * CHAT_IDS.index("HumanEval/32")]
    assert program.index("def poly(") < program.index("def find_zero(") and program.count("def find_zero(") == 1
    # "body" (the default): bare bodies score as they did; a chat answer does not compile
    body = CodeTask()
    assert body.answer_format == "body" and body.reference_response(samples[0]) == samples[0].references[0]
    bare = body.score([s.references[0] for s in samples[:5]] + chat_answers(samples[0])[:1], samples[:5] + samples[:1])
    assert bare.rewards.tolist() == [1.0] * 5 + [0.0] and body.last_runs[-1].reason == "syntax_error"
    assert body.last_programs[:5] == [s.prompt + s.references[0] for s in samples[:5]]


def test_markdown_answer_parsing():
    assert fenced_blocks("no code here") == []
    assert fenced_blocks("```bash\nls\n```") == []  # another language's block is not the answer
    assert fenced_blocks("a\n  ```Python3 extra words\n  x = 1\n  ```\nb") == ["  x = 1\n"]
    assert fenced_blocks("```python\nx = 1\n```\n```python\ny = 2\n```") == ["x = 1\n", "y = 2\n"]
    assert fenced_blocks("```python\nreturn 1") == ["return 1"]  # cut at the budget: to the end
    # the first block that defines the function wins; with none, the first block is the body
    example, function = "```python\nprint(f(1))\n```\n", "```python\ndef f(x):\n    return x\n```"
    assert answer_code(example + function, "f") == ("def f(x):\n    return x\n", True)
    assert answer_code(example + "```python\nreturn x\n```", "f") == ("print(f(1))\n", False)
    # code before a lone closing fence (as SmolLM2 writes it), from its first code line
    opened = "Sure.\nfrom math import pi\n\ndef f(x):\n    return x\n```\n\nIt returns x."
    assert answer_code(opened, "f") == ("from math import pi\n\ndef f(x):\n    return x\n", True)
    assert answer_code("def g(x):\n    return x\n```\nNo f here.", "f") == ("No f here.", False)
    task = CodeTask(dataset="easy", level=1, max_samples=1, answer_format="markdown")
    sample = task.samples[0]  # def plus_9(n: int) -> int
    indented = "1. Define it:\n   ```python\n   import math\n   def plus_9(n):\n       return n + 9\n   ```"
    assert task.program(indented, sample) == "import math\ndef plus_9(n):\n    return n + 9\n"
    # a def of another name is not the function to write: the block is its body
    other = task.program("```python\ndef helper(n):\n    return n\n```", sample)
    assert other == sample.prompt + "    def helper(n):\n        return n\n"
    assert task.program("    return n + 5", sample) == sample.prompt + "    return n + 5\n"  # no block: a body
    assert task.program("", sample) == sample.prompt


def test_answer_format_argument_and_chat_template_default():
    from text_gym import TextVectorEnv

    with pytest.raises(ValueError, match=r"answer_format='md' is not valid; choose one of \['body', 'markdown'\]"):
        CodeTask(answer_format="md")
    with pytest.raises(ValueError, match="answer_format='md' is not valid"):
        gym.make("TextCode-v0", tokenizer="byte", answer_format="md")
    formats = {
        "plain": gym.make("TextCode-v0", tokenizer="byte").unwrapped.task.answer_format,
        "chat": gym.make("TextCode-v0", chat_template=True).unwrapped.task.answer_format,
        "chat, explicit body": gym.make("TextCode-v0", chat_template=True, answer_format="body").unwrapped.task,
        "vector chat": gym.make_vec("TextCode-v0", num_envs=2, chat_template=True).unwrapped.task.answer_format,
        "built task": TextVectorEnv(1, task=CodeTask(max_samples=2), chat_template=True).task,
    }
    formats = {k: getattr(v, "answer_format", v) for k, v in formats.items()}
    assert formats == {
        "plain": "body",
        "chat": "markdown",
        "chat, explicit body": "body",
        "vector chat": "markdown",
        "built task": "body",  # a built task keeps its own format
    }
    # the default budget fits the fenced reference (the chat answer's measure)
    plain = gym.make("TextCode-v0").unwrapped.vector
    chat = gym.make("TextCode-v0", chat_template=True).unwrapped.vector
    longest = max(len(chat.tokenizer.encode(chat.task.reference_response(s))) for s in chat.task.samples)
    assert chat.max_new_tokens == longest + 1 > plain.max_new_tokens


def _env_reward(env: gym.Env, sample_index: int, text: str) -> tuple[float, dict]:
    """Step ``env`` on one sample with ``text``'s tokens and EOS: its final reward and info."""
    tokens = env.unwrapped.tokenizer.encode(text) + [env.unwrapped.eos_token_id]
    env.reset(seed=0, options={"sample_index": sample_index})
    for token in tokens:
        _, reward, terminated, truncated, info = env.step(token)
    assert terminated and info["response"] == text, (text, info["response"])
    return reward, info


@pytest.mark.parametrize("dataset, split", [("humaneval", None), ("easy", "test")])
def test_chat_env_scores_chat_answers(dataset, split):
    """The issue's check: gym.make("TextCode-v0", chat_template=True) scores the canonical
    solution 1.0 as a fenced whole function with prose around it and as a fenced body, and
    prose 0; answer_format="body" scores the bare body as before."""
    kwargs = {"dataset": dataset, **({"split": split} if split else {})}
    chat = gym.make("TextCode-v0", chat_template=True, max_new_tokens=600, **kwargs)
    body = gym.make("TextCode-v0", chat_template=True, answer_format="body", max_new_tokens=600, **kwargs)
    samples = chat.unwrapped.task.samples
    index = 0 if dataset == "humaneval" else len(samples) // 2
    sample = samples[index]
    whole, fenced_body = chat_answers(sample)[0], chat_answers(sample)[2]
    rewards = [_env_reward(chat, index, text)[0] for text in (whole, fenced_body)]
    prose_reward, info = _env_reward(chat, index, PROSE)
    assert rewards == [1.0, 1.0] and prose_reward == 0.0 and info["metrics"]["reason_syntax_error"] == 1.0
    assert _env_reward(body, index, sample.references[0])[0] == 1.0
    assert _env_reward(body, index, whole)[0] == 0.0
