"""Rollout throughput: generated tokens/s of text_gym's KV-cache rollout against baselines.

Measured in one run, on the same model, batch, prompts and number of new tokens:

* (a) ``text_gym``: :class:`~text_gym.rollout.RolloutCollector` stepping a
  ``TextVectorEnv`` (env work included: token writes, EOS checks, scoring, refills);
* (b) ``generate``: ``model.generate`` with its KV cache (no env);
* (c) ``recompute``: a loop that runs the model over the whole sequence every step, as an
  agent that ignores incremental observations must;
* (d) ``rl4lms``: RL4LMs' pattern, ``generate`` then a replay of every token through the
  policy, a value model and a reference model (three more full forward passes);
* (a, random lengths): (a) where each episode stops at a random length (EOS forced at a
  per-episode length), so slots finish and refill at different times;
* (a, compiled), with ``--compile``: (a) with ``RolloutCollector(compile=True)`` (the
  decode step as one ``torch.compile`` graph; compiled in the untimed warm-up).

(a), (a, random lengths) and (b) are each timed over ``--repeats`` calls, in
``--rounds`` rounds in which they take turns, and keep their best round (a burst of
load from elsewhere on a shared machine then costs one round, not one runner's figure);
(c) and (d), 10-20x slower, run once.

Run ``python benchmarks/rollout_throughput.py`` (add ``--quick`` for a smoke run, which
writes nothing). Writes ``benchmarks/results/rollout_throughput.{json,md}``, and, when
``--out`` is the default, the table in ``docs/benchmarks.md`` and the headline table in
the README.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from doc_tables import publish

from text_gym import TextVectorEnv
from text_gym.rollout import RolloutCollector, load_default_model, tiny_model
from text_gym.tokenizers import load_tokenizer

RESULTS = Path(__file__).resolve().parent / "results"


def make_env(batch: int, new_tokens: int) -> TextVectorEnv:
    # SCAN prompts; rewards on (exact match only), never a stop token unless forced
    return TextVectorEnv(batch, output="torch", max_new_tokens=new_tokens, metrics=("exact_match",))


def never_stop(eos: int):
    return lambda logits, obs: logits.index_fill(1, torch.tensor([eos]), float("-inf"))


def random_lengths(eos: int, prompt_width: int, new_tokens: int, seed: int):
    """Force EOS once an episode's response reaches a length drawn per episode."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def process(logits: torch.Tensor, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        length = obs["new_span"][:, 1] - prompt_width
        if "target" not in state:
            state["target"] = torch.randint(1, new_tokens + 1, (len(length),), generator=gen)
        fresh = length == 0
        state["target"][fresh] = torch.randint(1, new_tokens + 1, (int(fresh.sum()),), generator=gen)
        logits = logits.index_fill(1, torch.tensor([eos]), float("-inf"))
        # the EOS column alone: a slot at its length can only stop (as cheap as never_stop,
        # so that the column measures refills, not this processor)
        logits[:, eos] = torch.where(length + 1 >= state["target"], 1e4, float("-inf"))
        return logits

    return process


def prompts_of(env: TextVectorEnv, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    obs, _ = env.reset(seed=seed)
    P = env.prompt_tokens
    return obs["input_ids"][:, :P], obs["attention_mask"][:, :P].long()


def sample(model, ids, mask, new_tokens, eos, pad) -> torch.Tensor:
    """``model.generate`` sampling exactly ``new_tokens`` tokens per row: (B, T + new_tokens)."""
    return model.generate(
        ids,
        attention_mask=mask,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=True,
        top_k=0,
        eos_token_id=eos,
        pad_token_id=pad,
    )


@torch.no_grad()
def run_generate(model, ids, mask, new_tokens, eos, pad) -> int:
    out = sample(model, ids, mask, new_tokens, eos, pad)
    return (out.shape[1] - ids.shape[1]) * ids.shape[0]


@torch.no_grad()
def run_recompute(model, ids, mask, new_tokens) -> int:
    for _ in range(new_tokens):
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        logits = model(ids, attention_mask=mask, position_ids=positions, use_cache=False).logits[:, -1]
        nxt = torch.multinomial(logits.float().softmax(-1), 1)
        ids, mask = torch.cat((ids, nxt), 1), torch.cat((mask, torch.ones_like(nxt)), 1)
    return new_tokens * ids.shape[0]


@torch.no_grad()
def run_rl4lms(model, ids, mask, new_tokens, eos, pad) -> int:
    """generate, then replay the full sequences through policy, value and reference models."""
    out = sample(model, ids, mask, new_tokens, eos, pad)
    full_mask = torch.cat((mask, torch.ones_like(out[:, ids.shape[1] :])), 1)
    for _ in range(3):  # policy (with grad in training), value head trunk, reference
        model(out, attention_mask=full_mask, use_cache=False)
    return (out.shape[1] - ids.shape[1]) * ids.shape[0]


def timed(fn, repeats: int, warmup: bool = True) -> float:
    if warmup:  # first-call allocations; skipped for the slow baselines, where they are noise
        fn()
    tokens, start = 0, time.perf_counter()
    for _ in range(repeats):
        tokens += fn()
    return tokens / (time.perf_counter() - start)


def bench(
    name: str, model, batch: int, new_tokens: int, repeats: int, rounds: int, seed: int, compiled: bool = False
) -> dict:
    tok_eos, pad = model.config.eos_token_id, model.config.pad_token_id
    eos = make_env(1, new_tokens).tokenizer.eos_token_id
    ids, mask = prompts_of(make_env(batch, new_tokens), seed)

    def ours(processor, **knobs):
        env = make_env(batch, new_tokens)  # its own env: the runners take turns
        collector = RolloutCollector(model, env, logits_processor=processor, **knobs)
        collector.collect(1, seed=seed)  # reset and prefill outside the timing

        def run():
            batch_out = collector.collect(new_tokens)
            return int(batch_out.mask.sum())  # agent tokens generated

        return run

    runners = {
        "text_gym": ours(never_stop(eos)),
        "text_gym_random_lengths": ours(random_lengths(eos, make_env(1, new_tokens).prompt_tokens, new_tokens, seed)),
        "generate": lambda: run_generate(model, ids, mask, new_tokens, tok_eos, pad),
    }
    if compiled:
        runners["text_gym_compiled"] = ours(never_stop(eos), compile=True)
    row = {"model": name, "batch": batch, "new_tokens": new_tokens}
    for round_ in range(rounds):
        for key, run in runners.items():
            row[key] = max(row.get(key, 0.0), timed(run, repeats, warmup=round_ == 0))
    row["recompute"] = timed(lambda: run_recompute(model, ids, mask, new_tokens), 1, warmup=False)
    row["rl4lms"] = timed(lambda: run_rl4lms(model, ids, mask, new_tokens, tok_eos, pad), 1, warmup=False)
    return row


def to_markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"Generated tokens/s ({meta['date']}, {meta['machine']}). (a) text_gym rollout through the env; "
        "(b) model.generate with KV cache; (c) full recompute each step; (d) RL4LMs pattern.",
        "",
        "| model | batch | new tokens | (a) text_gym | (a) random lengths | (b) generate | (c) recompute | (d) rl4lms "
        "| a/b | a/c | a(random)/a |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    compiled = all("text_gym_compiled" in r for r in rows)
    if compiled:
        lines[2] += " (a) compiled | compiled/a |"
        lines[3] += "---|---|"
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['new_tokens']} | {r['text_gym']:,.0f} | "
            f"{r['text_gym_random_lengths']:,.0f} | {r['generate']:,.0f} | {r['recompute']:,.0f} | "
            f"{r['rl4lms']:,.0f} | {r['text_gym'] / r['generate']:.2f}x | "
            f"{r['text_gym'] / r['recompute']:.1f}x | {r['text_gym_random_lengths'] / r['text_gym']:.2f}x |"
        )
        if compiled:
            lines[-1] += f" {r['text_gym_compiled']:,.0f} | {r['text_gym_compiled'] / r['text_gym']:.2f}x |"
    return "\n".join(lines) + "\n"


def headline(rows: list[dict], meta: dict) -> str:
    """The README's small table: the rollout's tokens/s and how many times each baseline's."""
    lines = [
        "| model | batch | text_gym tokens/s | vs `model.generate` | vs full recompute "
        "| vs generate + replay (RL4LMs) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['text_gym']:,.0f} | {r['text_gym'] / r['generate']:.1f}x | "
            f"{r['text_gym'] / r['recompute']:.1f}x | {r['text_gym'] / r['rl4lms']:.1f}x |"
        )
    lines += [
        "",
        f"Generated tokens per second, {rows[0]['new_tokens']} new tokens per episode; "
        f"{meta['machine']}; {meta['date']}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="calls per timing of (a) and (b)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (a) and (b); each keeps its best")
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2"], choices=["tiny", "smollm2"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="also time (a) with compile=True")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run, writes nothing")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.new_tokens, args.repeats, args.rounds, args.models = [2], 4, 1, 1, ["tiny"]
    torch.manual_seed(args.seed)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU",
    }
    rows = []
    for name in args.models:
        model = (
            tiny_model(load_tokenizer("default"), hidden=256, layers=4, heads=8, kv_heads=4)
            if name == "tiny"
            else load_default_model()
        )
        for batch in args.batch:
            rows.append(bench(name, model, batch, args.new_tokens, args.repeats, args.rounds, args.seed, args.compile))
            print({k: round(v, 1) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)
    table = to_markdown(rows, meta)
    print(table)
    if not args.quick:
        publish("rollout_throughput", table, args.out, meta, rows, headline=headline(rows, meta))


if __name__ == "__main__":
    main()
