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

The *overhead* row (``--only overhead``, or ``--overhead-batch``) is where the rollout's own
per-step work decides throughput: a tiny model (hidden 128, 2 layers) over a word
vocabulary built from SCAN's texts, as ``agents/sft.py --tokenizer words`` makes it, at 64
slots, sampling, env and scoring included, against ``model.generate`` on the same model,
batch and token count. It reports milliseconds per decode step of both (a call's time over
its tokens per slot, prefill included) and where the rollout's step goes: the model's body,
the runner's own work (cache writes, masks, the LM head), the sampler, the env step and the
collector's remainder.

(a), (a, random lengths) and (b) are each timed over ``--repeats`` calls, in
``--rounds`` rounds in which they take turns, and keep their best round (a burst of
load from elsewhere on a shared machine then costs one round, not one runner's figure);
(c) and (d), 10-20x slower, run once.

Run ``python benchmarks/rollout_throughput.py`` (add ``--quick`` for a smoke run, which
writes nothing). Writes ``benchmarks/results/rollout_throughput.{json,md}``, and, when
``--out`` is the default, the table in ``docs/benchmarks.md`` and the headline table in
the README. ``--only throughput`` or ``--only overhead`` runs one part; published into
the default folder, it keeps the other part's last rows. ``--device cuda`` runs on a GPU
(``benchmarks/gpu_check.sh``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from doc_tables import publish

import text_gym.rollout.collector as collector_module
from text_gym import TextVectorEnv, WordTokenizer
from text_gym.rollout import RolloutCollector, load_default_model, tiny_model
from text_gym.tasks import make_task
from text_gym.tokenizers import load_tokenizer

RESULTS = Path(__file__).resolve().parent / "results"


def make_env(batch: int, new_tokens: int, device: str = "cpu", tokenizer="default") -> TextVectorEnv:
    # SCAN prompts; rewards on (exact match only), never a stop token unless forced
    return TextVectorEnv(
        batch, output="torch", max_new_tokens=new_tokens, metrics=("exact_match",), device=device, tokenizer=tokenizer
    )


def never_stop(eos: int, device: str = "cpu"):
    index = torch.tensor([eos], device=device)
    return lambda logits, obs: logits.index_fill(1, index, float("-inf"))


def random_lengths(eos: int, prompt_width: int, new_tokens: int, seed: int, device: str = "cpu"):
    """Force EOS once an episode's response reaches a length drawn per episode."""
    gen = torch.Generator(device).manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    index = torch.tensor([eos], device=device)

    def process(logits: torch.Tensor, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        length = obs["new_span"][:, 1] - prompt_width
        if "target" not in state:
            state["target"] = torch.randint(1, new_tokens + 1, (len(length),), generator=gen, device=device)
        fresh = length == 0
        draws = torch.randint(1, new_tokens + 1, (len(length),), generator=gen, device=device)
        state["target"] = torch.where(fresh, draws, state["target"])
        logits = logits.index_fill(1, index, float("-inf"))
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


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int, warmup: bool = True, device: str = "cpu") -> float:
    if warmup:  # first-call allocations; skipped for the slow baselines, where they are noise
        fn()
    synchronize(device)
    tokens, start = 0, time.perf_counter()
    for _ in range(repeats):
        tokens += fn()
    synchronize(device)
    return tokens / (time.perf_counter() - start)


def bench(
    name: str,
    model,
    batch: int,
    new_tokens: int,
    repeats: int,
    rounds: int,
    seed: int,
    compiled: bool = False,
    device: str = "cpu",
    slow_baselines: bool = True,
) -> dict:
    tok_eos, pad = model.config.eos_token_id, model.config.pad_token_id
    eos = make_env(1, new_tokens).tokenizer.eos_token_id
    ids, mask = prompts_of(make_env(batch, new_tokens, device), seed)

    def ours(processor, **knobs):
        env = make_env(batch, new_tokens, device)  # its own env: the runners take turns
        collector = RolloutCollector(model, env, logits_processor=processor, **knobs)
        collector.collect(1, seed=seed)  # reset and prefill outside the timing

        def run():
            batch_out = collector.collect(new_tokens)
            return int(batch_out.mask.sum())  # agent tokens generated

        return run

    width = make_env(1, new_tokens).prompt_tokens
    runners = {
        "text_gym": ours(never_stop(eos, device)),
        "text_gym_random_lengths": ours(random_lengths(eos, width, new_tokens, seed, device)),
        "generate": lambda: run_generate(model, ids, mask, new_tokens, tok_eos, pad),
    }
    if compiled:
        runners["text_gym_compiled"] = ours(never_stop(eos, device), compile=True)
    row = {"model": name, "batch": batch, "new_tokens": new_tokens}
    for round_ in range(rounds):
        for key, run in runners.items():
            row[key] = max(row.get(key, 0.0), timed(run, repeats, warmup=round_ == 0, device=device))
    if slow_baselines:
        row["recompute"] = timed(lambda: run_recompute(model, ids, mask, new_tokens), 1, warmup=False, device=device)
        row["rl4lms"] = timed(
            lambda: run_rl4lms(model, ids, mask, new_tokens, tok_eos, pad), 1, warmup=False, device=device
        )
    return row


# ---------------------------------------------------------------------- the overhead row

OVERHEAD_PARTS = ("model", "runner", "sampling", "env", "collector")


def scan_words() -> WordTokenizer:
    """The word vocabulary of SCAN's prompts and references, as ``agents/sft.py --tokenizer words`` builds it."""
    task = make_task("translation")
    return WordTokenizer.from_texts(
        [s.prompt for s in task.samples] + [task.reference_response(s) for s in task.samples]
    )


class StepClock:
    """Wall time of the parts of a rollout step, by wrapping the env's ``step``, the sampler,
    the runner's ``feed`` and forward hooks on the model's body (synchronizing a GPU at
    each edge, so the figures are the parts' own; the wrapping adds a little to each)."""

    def __init__(self, collector: RolloutCollector, device: str) -> None:
        self.totals = dict.fromkeys(("model", "feed", "sampling", "env"), 0.0)
        self.device, self._started = device, 0.0
        self._undo: list = []
        self._wrap(collector.env, "step", "env")
        self._wrap(collector.runner, "feed", "feed")
        self._wrap(collector_module, "sample_actions", "sampling")
        body = collector.runner._body or collector.model
        self._undo += [body.register_forward_pre_hook(self._body_start), body.register_forward_hook(self._body_end)]

    def _wrap(self, owner, attribute: str, part: str) -> None:
        inner = getattr(owner, attribute)

        def timed_call(*args, **kwargs):
            synchronize(self.device)
            start = time.perf_counter()
            out = inner(*args, **kwargs)
            synchronize(self.device)
            self.totals[part] += time.perf_counter() - start
            return out

        setattr(owner, attribute, timed_call)
        self._undo.append((owner, attribute, inner))

    def _body_start(self, module, args) -> None:
        synchronize(self.device)
        self._started = time.perf_counter()

    def _body_end(self, module, args, output) -> None:
        synchronize(self.device)
        self.totals["model"] += time.perf_counter() - self._started

    def close(self) -> None:
        """Undo the wrapping: the module's function back, the instances' own attributes and the hooks gone."""
        for undo in self._undo:
            if not isinstance(undo, tuple):
                undo.remove()
            elif undo[0] is collector_module:
                setattr(*undo)
            else:
                delattr(undo[0], undo[1])


def bench_overhead(batch: int, new_tokens: int, rounds: int, seed: int, device: str = "cpu") -> dict:
    """The overhead-bound row: ms per decode step of the rollout and of ``model.generate``
    on a tiny word-vocabulary model, each its fastest call of ``rounds`` (they take turns),
    and the rollout step's breakdown (ms per step) from two more, instrumented, calls."""
    words = scan_words()
    model = tiny_model(words, hidden=128, layers=2, heads=4, kv_heads=2, seed=seed).to(device).eval()
    env = make_env(batch, new_tokens, device, tokenizer=words)
    collector = RolloutCollector(model, env, logits_processor=never_stop(words.eos_token_id, device))
    collector.collect(1, seed=seed)  # reset and prefill outside the timing
    ids, mask = prompts_of(make_env(batch, new_tokens, device, tokenizer=words), seed)

    def ours() -> int:
        return int(collector.collect(new_tokens).mask.sum())

    def theirs() -> int:
        return run_generate(model, ids, mask, new_tokens, words.eos_token_id, words.pad_token_id)

    best = {"text_gym": 0.0, "generate": 0.0}
    for round_ in range(rounds):
        best["text_gym"] = max(best["text_gym"], timed(ours, 1, warmup=round_ == 0, device=device))
        best["generate"] = max(best["generate"], timed(theirs, 1, warmup=round_ == 0, device=device))
    clock = StepClock(collector, device)
    try:
        start, tokens = time.perf_counter(), sum(ours() for _ in range(2))
        total = time.perf_counter() - start
    finally:
        clock.close()
    per_step = 1000 * batch / tokens  # ms per (s of a call) -> ms per step, over `tokens / batch` steps
    parts = clock.totals
    breakdown = {
        "model": parts["model"],
        "runner": parts["feed"] - parts["model"],
        "sampling": parts["sampling"],
        "env": parts["env"],
        "collector": total - parts["feed"] - parts["sampling"] - parts["env"],
    }
    return {
        "kind": "overhead",
        "model": f"tiny words (hidden 128, 2 layers, vocab {len(words)})",
        "batch": batch,
        "new_tokens": new_tokens,
        "device": str(device),
        "text_gym_ms": 1000 * batch / best["text_gym"],
        "generate_ms": 1000 * batch / best["generate"],
        "breakdown_ms": {k: v * per_step for k, v in breakdown.items()},
        "profiled_ms": total * per_step,
    }


def to_markdown(rows: list[dict], meta: dict) -> str:
    throughput = [r for r in rows if r.get("kind", "throughput") == "throughput"]
    overhead = [r for r in rows if r.get("kind") == "overhead"]
    parts = [throughput_table(throughput, meta)] if throughput else []
    if overhead:
        parts.append(overhead_table(overhead, meta))
    return "\n".join(parts)


def throughput_table(rows: list[dict], meta: dict) -> str:
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
        slow = "recompute" in r
        recompute = f"{r['recompute']:,.0f}" if slow else "-"
        rl4lms = f"{r['rl4lms']:,.0f}" if slow else "-"
        a_c = f"{r['text_gym'] / r['recompute']:.1f}x" if slow else "-"
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['new_tokens']} | {r['text_gym']:,.0f} | "
            f"{r['text_gym_random_lengths']:,.0f} | {r['generate']:,.0f} | {recompute} | "
            f"{rl4lms} | {r['text_gym'] / r['generate']:.2f}x | "
            f"{a_c} | {r['text_gym_random_lengths'] / r['text_gym']:.2f}x |"
        )
        if compiled:
            lines[-1] += f" {r['text_gym_compiled']:,.0f} | {r['text_gym_compiled'] / r['text_gym']:.2f}x |"
    return "\n".join(lines) + "\n"


def overhead_table(rows: list[dict], meta: dict) -> str:
    """Milliseconds per decode step where the rollout's own work decides throughput, and the
    rollout step's parts (measured in a separate, instrumented pass)."""
    machine = rows[0].get("machine", meta.get("machine", ""))
    date = rows[0].get("date", meta.get("date", ""))
    lines = [
        f"Overhead-bound rollout: ms per decode step ({date}, {machine}); SCAN prompts, sampling, env and "
        "scoring included, against model.generate on the same model, batch and tokens. The rollout step's parts "
        "(an instrumented pass): the model's body; the runner's own work (cache, masks, LM head); the sampler; "
        "the env step; the collector's remainder.",
        "",
        "| model | device | batch | new tokens | text_gym ms/step | generate ms/step | generate/text_gym "
        "| " + " | ".join(OVERHEAD_PARTS) + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(OVERHEAD_PARTS),
    ]
    for r in rows:
        parts = " | ".join(f"{r['breakdown_ms'][p]:.2f}" for p in OVERHEAD_PARTS)
        lines.append(
            f"| {r['model']} | {r['device']} | {r['batch']} | {r['new_tokens']} | {r['text_gym_ms']:.2f} | "
            f"{r['generate_ms']:.2f} | {r['generate_ms'] / r['text_gym_ms']:.2f}x | {parts} |"
        )
    return "\n".join(lines) + "\n"


def headline(rows: list[dict], meta: dict) -> str:
    """The README's small table: the rollout's tokens/s and how many times each baseline's."""
    rows = [r for r in rows if r.get("kind", "throughput") == "throughput" and "recompute" in r]
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 32], help="batch sizes of the throughput rows")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="calls per timing of (a) and (b)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (a) and (b); each keeps its best")
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2"], choices=["tiny", "smollm2"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="also time (a) with compile=True")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="torch device of the models and envs (cpu, cuda)")
    parser.add_argument("--only", choices=["throughput", "overhead"], help="run one part of the benchmark")
    parser.add_argument("--overhead-batch", type=int, default=64, help="slots of the overhead row")
    parser.add_argument("--overhead-new-tokens", type=int, default=48, help="new tokens per episode there")
    parser.add_argument("--overhead-rounds", type=int, default=8, help="timed calls of each there; each keeps its best")
    parser.add_argument("--no-slow-baselines", action="store_true", help="skip (c) recompute and (d) rl4lms")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run, writes nothing")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and table")
    args = parser.parse_args(argv)
    for name in (
        "batch",
        "new_tokens",
        "repeats",
        "rounds",
        "overhead_batch",
        "overhead_new_tokens",
        "overhead_rounds",
    ):
        values = getattr(args, name)
        if any(v < 1 for v in (values if isinstance(values, list) else [values])):
            parser.error(f"--{name.replace('_', '-')}: {values} must be >= 1")
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here; pass --device cpu")
    if args.quick:
        args.batch, args.new_tokens, args.repeats, args.rounds, args.models = [2], 4, 1, 1, ["tiny"]
        args.overhead_batch, args.overhead_new_tokens, args.overhead_rounds = 4, 4, 1
    return args


def kept_rows(out: Path, only: str | None) -> tuple[list[dict], dict | None]:
    """With ``--only``, the other part's rows from the last results in ``out``, and their
    meta (the date and machine they were measured on); none elsewhere."""
    path = out / "rollout_throughput.json"
    if only is None or not path.exists():
        return [], None
    saved = json.loads(path.read_text())
    return [r for r in saved["rows"] if r.get("kind", "throughput") != only], saved["meta"]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, {where}",
    }
    rows, kept_meta = kept_rows(args.out, args.only) if not args.quick else ([], None)
    here = dict(meta)  # this run's date and machine, kept in the overhead row itself
    if args.only == "overhead" and kept_meta is not None:
        meta = kept_meta  # the table's header describes the throughput rows it keeps
    if args.only != "overhead":
        for name in args.models:
            model = (
                tiny_model(load_tokenizer("default"), hidden=256, layers=4, heads=8, kv_heads=4)
                if name == "tiny"
                else load_default_model()
            ).to(device)
            for batch in args.batch:
                row = bench(
                    name,
                    model,
                    batch,
                    args.new_tokens,
                    args.repeats,
                    args.rounds,
                    args.seed,
                    args.compile,
                    args.device,
                    slow_baselines=not args.no_slow_baselines,
                )
                rows.append({"kind": "throughput", **row})
                print({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    if args.only != "throughput":
        row = bench_overhead(
            args.overhead_batch, args.overhead_new_tokens, args.overhead_rounds, args.seed, args.device
        )
        rows.append({**row, "date": here["date"], "machine": here["machine"]})
        print(row, flush=True)
    rows.sort(key=lambda r: r.get("kind", "throughput") == "overhead")  # the throughput rows first
    table = to_markdown(rows, meta)
    print(table)
    if not args.quick:
        headline_table = headline(rows, meta) if any("recompute" in r for r in rows) else None
        publish("rollout_throughput", table, args.out, meta, rows, headline=headline_table)
        print(f"wrote {args.out / 'rollout_throughput.json'} and {args.out / 'rollout_throughput.md'}")


if __name__ == "__main__":
    main()
