"""Zero-shot code scores of the default model: SmolLM2-135M-Instruct, greedy, as a chat model.

The model answers each problem of two code sets once, greedily, through the env with
``chat_template=True``, so the prompt is a user message and the answer is read as a chat
answer (``answer_format="markdown"``: the first fenced block, a whole function or a
body; see docs/envs/code.md):

* ``HumanEval``: ``TextCode-v0``, all 164 problems;
* ``easy (test)``: ``TextCode-v0`` with ``dataset="easy", split="test"``, the held-out
  part of the generated easy suite.

Episodes run through the rollout backend (:class:`~text_gym.rollout.RolloutCollector`,
its KV cache, ``greedy=True``) in chunks of ``num_envs`` samples, as
``RolloutCollector.evaluate`` (the agents' held-out score) runs them, and the env's own
reward scores them (the sandbox). Each row has the mean reward (the pass fraction of the
problems' tests), the share of problems that pass every test (``passed_all``, pass@1
with greedy decoding), and the seconds the set took (model and env included).

The budgets (``SETS``: 384 new tokens on HumanEval, 192 on the easy suite) hold the model's
usual answer: the whole function in a fenced block, often with its docstring or a usage
example, and a sentence or two about it. The env's own default for chat prompts fits the
fenced reference without a docstring (282 tokens on HumanEval, 84 on the easy suite), too
little for a function that repeats its docstring. An answer cut at the budget keeps what
it wrote: an open fenced block runs to the end. A chunk of episodes lasts as long as its
longest answer, and a greedy small model sometimes repeats a line until the budget, so the
budget sets the run's time.

``zero_shot_rows()`` gives the rows (``benchmarks/learning.py --zero-shot`` calls it); run
``python benchmarks/zero_shot.py [--limit N] [--device D] [--threads T]`` to print the
table and write ``benchmarks/results/zero_shot.{json,md}`` (``--limit``: the first N
problems of each set, a quick look, written only with ``--out``).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from doc_tables import publish

from text_gym.rollout import RolloutCollector, load_default_model  # importing text_gym registers the env ids
from text_gym.tasks import make_task
from text_gym.tokenizers import decode_rows, load_tokenizer

RESULTS = Path(__file__).resolve().parent / "results"
NUM_ENVS = 16  # slots decoded together
SETS = (  # (name, env id, env arguments, max_new_tokens)
    ("HumanEval", "TextCode-v0", {"dataset": "humaneval"}, 384),
    ("easy (test)", "TextCode-v0", {"dataset": "easy", "split": "test"}, 192),
)


def greedy_answers(model: Any, envs: Any, samples: list[int]) -> tuple[list[float], list[str]]:
    """One greedy episode per sample index, in chunks of ``envs.num_envs`` (the last one
    padded with its last sample, as ``RolloutCollector.evaluate`` pads it): each episode's
    reward and response text (the env's decoded response: the agent's tokens before the
    stop token)."""
    collector = RolloutCollector(model, envs, greedy=True)
    vector, N = envs.unwrapped, envs.num_envs
    P = vector.prompt_tokens
    rewards: list[float] = []
    texts: list[str] = []
    for start in range(0, len(samples), N):
        chunk = samples[start : start + N]
        episodes = collector.collect_episodes(seed=start, sample_index=chunk + chunk[-1:] * (N - len(chunk)))
        lengths = episodes.agent_mask[:, P:].sum(1) - episodes.terminated.long()  # (N,) the stop token is no text
        rows = episodes.input_ids[:, P:].cpu().numpy()
        texts += decode_rows(vector.tokenizer, rows, lengths.cpu().numpy())[: len(chunk)]
        rewards += episodes.rewards[: len(chunk)].tolist()
    return rewards, texts


def zero_shot_rows(
    device: str = "cpu",
    limit: int | None = None,
    max_new_tokens: int | None = None,
    threads: int | None = None,
    *,
    model: Any = None,
    num_envs: int = NUM_ENVS,
    responses: bool = False,
    verbose: bool = False,
) -> list[dict[str, Any]]:
    """The zero-shot rows: SmolLM2-135M-Instruct, greedy, ``chat_template=True``, on each set.

    Args:
        device: torch device of the model and the envs.
        limit: the first ``limit`` problems of each set; ``None``: all.
        max_new_tokens: the answer budget of every set; ``None``: each set's own (``SETS``).
        threads: torch CPU threads; ``None`` leaves torch's setting.
        model: another causal LM over the default tokenizer (a test's stand-in);
            ``None`` loads the default model (``load_default_model``).
        num_envs: slots decoded together (at most the problems of a set).
        responses: also keep each answer's text (``"responses"``).
        verbose: print each set's figures as it finishes.

    Returns:
        One dict per set: ``task``, ``env_id``, ``env_kwargs`` (the env's arguments,
        ``chat_template`` and ``max_new_tokens`` included), ``n``, ``mean_reward`` (the
        mean pass fraction), ``passed_all`` (the share of problems passing every test),
        ``seconds``, ``rewards`` (per problem, in order), and with ``responses=True``
        ``responses``.

    Raises:
        ValueError: ``limit``, ``max_new_tokens``, ``threads`` or ``num_envs`` is not a
            positive int.
    """
    for name, value in (("limit", limit), ("max_new_tokens", max_new_tokens), ("threads", threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}={value!r} must be a positive int, or None for the default")
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs={num_envs!r} must be a positive int")
    if threads is not None:
        torch.set_num_threads(threads)
    tokenizer = load_tokenizer("default")
    model = (load_default_model(device=device) if model is None else model).eval()
    rows = []
    for task, env_id, kwargs, budget in SETS:
        env_kwargs = {**kwargs, "chat_template": True, "max_new_tokens": max_new_tokens or budget}
        start = time.perf_counter()
        n = len(make_task("code", **kwargs))
        n = n if limit is None else min(limit, n)
        envs = gym.make_vec(
            env_id, num_envs=min(num_envs, n), tokenizer=tokenizer, output="torch", device=device, **env_kwargs
        )
        rewards, texts = greedy_answers(model, envs, list(range(n)))
        envs.close()
        row = {
            "task": task,
            "env_id": env_id,
            "env_kwargs": env_kwargs,
            "n": n,
            "mean_reward": sum(rewards) / n,
            "passed_all": sum(r == 1.0 for r in rewards) / n,
            "seconds": time.perf_counter() - start,
            "rewards": rewards,
        }
        rows.append({**row, "responses": texts} if responses else row)
        if verbose:
            print(
                f"{task}: n={n}, mean reward {row['mean_reward']:.3f}, passed all {row['passed_all']:.3f}, "
                f"{row['seconds']:.0f} s",
                flush=True,
            )
    return rows


def to_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The table of ``rows`` with its caption (the date, the machine, the settings)."""
    lines = [
        f"Zero-shot code scores of {meta['model']} ({meta['date']}, {meta['machine']}): greedy, "
        "`chat_template=True` (chat answers: the fenced function or body; docs/envs/code.md), "
        f"{meta['num_envs']} slots; {meta['seconds']:.0f} s in all"
        + (f" (load average {meta['load'][0]} at the start, {meta['load'][1]} at the end)." if "load" in meta else "."),
        "",
        "| set | env | n | new tokens | mean reward (pass fraction) | passed all (pass@1) | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        args = ", ".join(
            f"{k}={v!r}" for k, v in r["env_kwargs"].items() if k not in ("chat_template", "max_new_tokens")
        )
        lines.append(
            f"| {r['task']} | `{r['env_id']}` ({args}) | {r['n']} | {r['env_kwargs']['max_new_tokens']} | "
            f"{r['mean_reward']:.3f} | "
            f"{r['passed_all']:.3f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="the first N problems of each set (default: all)")
    parser.add_argument("--device", default="cpu", help="torch device of the model and the envs")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="the answer budget (default: each set's)")
    parser.add_argument("--num-envs", type=int, default=NUM_ENVS, help="slots decoded together")
    parser.add_argument("--out", type=Path, default=None, help=f"results folder (default: {RESULTS}, full runs)")
    args = parser.parse_args()
    start, load = time.perf_counter(), os.getloadavg()[0]
    rows = zero_shot_rows(
        args.device, args.limit, args.max_new_tokens, args.threads, num_envs=args.num_envs, verbose=True
    )
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "model": "SmolLM2-135M-Instruct",
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"{args.device}",
        "num_envs": args.num_envs,
        "seconds": time.perf_counter() - start,
        "load": [round(load, 1), round(os.getloadavg()[0], 1)],  # 1-minute load average, at start and end
    }
    table = to_markdown(rows, meta)
    print(table)
    out = args.out or (RESULTS if args.limit is None else None)
    if out is not None:
        publish("zero_shot", table, out, meta, rows)


if __name__ == "__main__":
    main()
