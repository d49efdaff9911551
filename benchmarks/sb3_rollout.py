"""SB3 rollout throughput: tokens/s of Stable-Baselines3 PPO's ``collect_rollouts`` with the
language-model policy, its KV cache against recomputing the window at every step.

Both runs use SB3's own, unmodified ``PPO.collect_rollouts`` (env steps, the rollout
buffer, the bootstrap values of truncated episodes and of the last step all included)
on the same model, env and number of slots, measured in the same process:

* ``cached``: ``LMActorCriticPolicy`` (``cache=True``): a KV cache per slot fed from each
  observation's ``new_span``, one forward per new token;
* ``recompute``: the same policy with ``cache=False``: the whole window (prompt and
  response so far) of every slot through the model at every step.

Before each rollout the policy enters and leaves training mode, as PPO's ``train()``
makes it do between rollouts, so the cached run pays what training costs it: every
slot's cache rebuilt from its window at the first step. The model samples from its own
distribution; a random model almost never draws the stop token, so episodes run to
``--new-tokens`` and are truncated there (SB3 then computes each truncated slot's
bootstrap value from its whole window, in both runs), and slots refill at the step
after. The two runs take turns for ``--rounds`` rollouts each and each keeps its best (a
burst of load from elsewhere on a shared machine then costs one round, not a figure).

The model is the rollout benchmark's ``tiny``: a randomly initialised Llama (hidden
256, 4 layers, 8 heads, 4 key/value heads) over SmolLM2's 49,152-token vocabulary, so
the LM head is as wide as a real model's (it is three quarters of the weights, and
every step runs it once per slot, cached or not). The envs (``--envs``) use SmolLM2's
tokenizer, through ``to_vec_env``: ``TextTranslate-v0`` (SCAN commands, short prompts)
and ``TextDialog-v0`` (chit-chat histories, prompts of ~90 tokens); the recompute cost
grows with the window, the cached one does not.

Run ``python benchmarks/sb3_rollout.py`` (``--quick``: a smoke run of a few seconds,
which writes nothing). Writes ``benchmarks/results/sb3_rollout.{json,md}`` and the table
on docs/adapters/sb3_policy.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from doc_tables import ROOT, publish, replace_block
from stable_baselines3 import PPO

from text_gym.adapters.sb3 import to_vec_env  # importing text_gym registers the env ids
from text_gym.adapters.sb3.policy import LMActorCriticPolicy
from text_gym.rollout import tiny_model
from text_gym.tokenizers import load_tokenizer

RESULTS = Path(__file__).resolve().parent / "results"
PAGE = ROOT / "docs" / "adapters" / "sb3_policy.md"  # the policy's page shows the table
MODELS = {
    "tiny": {"hidden": 256, "layers": 4, "heads": 8, "kv_heads": 4},
    "quick": {"hidden": 32, "layers": 1, "heads": 2, "kv_heads": 1},
}


def rollout_timer(model, env_id: str, slots: int, new_tokens: int, steps: int, cache: bool, seed: int, tokenizer):
    """A function that runs one PPO rollout of ``steps`` steps and returns its tokens/s,
    and the mean number of real prompt tokens of the env's first observation."""
    venv = to_vec_env(env_id, slots, tokenizer=tokenizer, max_new_tokens=new_tokens)
    ppo = PPO(
        LMActorCriticPolicy,
        venv,
        n_steps=steps,
        batch_size=slots * steps,
        seed=seed,
        device=next(model.parameters()).device,
        policy_kwargs={"model": model, "cache": cache},
    )
    _, callback = ppo._setup_learn(slots * steps, None)  # resets the envs: the first observation
    callback.on_training_start(locals(), globals())
    prompt = float(ppo._last_obs["attention_mask"].sum(1).mean())

    def run() -> float:
        ppo.policy.set_training_mode(True)  # as PPO.train() does between rollouts
        start = time.perf_counter()
        ppo.collect_rollouts(ppo.env, callback, ppo.rollout_buffer, n_rollout_steps=steps)
        return slots * steps / (time.perf_counter() - start)

    return run, prompt


def bench(name: str, env_id: str, slots: int, new_tokens: int, steps: int, rounds: int, seed: int) -> dict:
    tokenizer = load_tokenizer("byte" if name == "quick" else "default")
    model = tiny_model(tokenizer, **MODELS[name])
    cached, prompt = rollout_timer(model, env_id, slots, new_tokens, steps, True, seed, tokenizer)
    recompute, _ = rollout_timer(model, env_id, slots, new_tokens, steps, False, seed, tokenizer)
    cached()  # warm-up: first-call allocations
    row = {
        "model": name,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "vocab": len(tokenizer),
        "env": env_id,
        "prompt_tokens": prompt,
        "new_tokens": new_tokens,
        "slots": slots,
        "steps": steps,
        "cached": 0.0,
        "recompute": 0.0,
    }
    for _ in range(rounds):  # the two take turns; each keeps its best rollout
        row["cached"] = max(row["cached"], cached())
        row["recompute"] = max(row["recompute"], recompute())
    row["ratio"] = row["cached"] / row["recompute"]
    return row


def to_markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"SB3 PPO rollout tokens/s ({meta['date']}, {meta['machine']}): `collect_rollouts` with "
        "`LMActorCriticPolicy`, its per-slot KV cache against `cache=False` (the whole window every step).",
        "",
        "| model | params | vocab | env | mean prompt | new tokens | slots | steps | cached | recompute "
        "| cached/recompute |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params_m']:.1f}M | {r['vocab']:,} | {r['env']} | {r['prompt_tokens']:.0f} | "
            f"{r['new_tokens']} | {r['slots']} | {r['steps']} | {r['cached']:,.0f} | {r['recompute']:,.0f} | "
            f"{r['ratio']:.1f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=32, help="env slots (SB3's n_envs)")
    parser.add_argument("--new-tokens", type=int, default=64, help="max_new_tokens of each episode")
    parser.add_argument("--envs", nargs="+", default=["TextTranslate-v0", "TextDialog-v0"], help="env ids")
    parser.add_argument("--steps", type=int, default=64, help="PPO n_steps: steps per rollout")
    parser.add_argument("--rounds", type=int, default=2, help="timed rollouts of each run; the best counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run, writes nothing")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    name = "tiny"
    if args.quick:
        name, args.envs, args.slots, args.new_tokens, args.steps, args.rounds = "quick", args.envs[:1], 2, 4, 6, 1
    torch.manual_seed(args.seed)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU",
    }
    rows = []
    for env_id in args.envs:
        rows.append(bench(name, env_id, args.slots, args.new_tokens, args.steps, args.rounds, args.seed))
        print({k: round(v, 2) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)
    table = to_markdown(rows, meta)
    print(table)
    if not args.quick:
        publish("sb3_rollout", table, args.out, meta, rows)
        if args.out.resolve() == RESULTS:
            replace_block(PAGE, "sb3_rollout", table)


if __name__ == "__main__":
    main()
