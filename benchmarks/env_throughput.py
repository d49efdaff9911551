"""Env-only throughput: steps/s of TextVectorEnv against per-env peers and a floor.

Four ways to step ``num_envs`` token-level episodes, fed the same actions in one run:

* ``TextVectorEnv``: the native vector env, default settings (numpy output, copies),
  and with ``copy=False`` (read-only views, for agents that consume each observation
  before the next step);
* ``Sync(TextEnv)``: ``gymnasium.vector.SyncVectorEnv`` of single ``TextEnv``;
* ``Sync(peer)``: ``SyncVectorEnv`` of a minimal per-slot token env written in plain
  Python/numpy below, the way a user would write one: same observation window, same
  EOS/length rule, and the same decode + task scoring when an episode ends;
* ``floor``: a bare loop that writes one token per slot into a tensor and nothing else;
* ``floor+score``: the floor plus what every token env must do when episodes end, and
  nothing else: decode the finished responses (with the env's own batched decode) and
  score them with the task, in one batched call per step (no observations, no infos,
  no refills). It bounds any env that scores with this task; ``native / (floor+score)``
  is the share of that bound the native env reaches.

Actions are random token ids with the stop token mixed in (``--p-eos``), so episodes
end both by EOS and by the length limit. Each configuration is run twice: with the
task's default metrics (chrF computed for every finished episode) and reward-only
(``metrics=("exact_match",)``), for the peer as for the native env. Figures are steps
of the whole batch per second, each timed for ``--min-seconds`` (cycling through the
action rows) and kept as the runner's best of ``--repeats`` rounds in which all runners
take turns (a burst of load from elsewhere on a shared machine then costs one round,
not one runner's figure); ratios compare rows measured in the same run. Run::

    python benchmarks/env_throughput.py                 # 32, 256, 1024 envs
    python benchmarks/env_throughput.py --quick         # a smoke run

Writes ``benchmarks/results/env_throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from doc_tables import publish

import text_gym  # noqa: F401  (registers the env ids)
from text_gym.tokenizers import decode_rows

RESULTS = Path(__file__).resolve().parent / "results"


class PeerTokenEnv(gym.Env):
    """A per-slot token env as a user would write it: numpy buffers, Python control flow."""

    def __init__(self, prompts: list[list[int]], task, tokenizer, prompt_len: int, max_new: int) -> None:
        self.prompts, self.task, self.tokenizer = prompts, task, tokenizer
        self.P, self.T, self.eos = prompt_len, max_new, tokenizer.eos_token_id
        L, V = prompt_len + max_new, len(tokenizer)
        self.observation_space = gym.spaces.Dict(
            {
                "input_ids": gym.spaces.Box(0, V - 1, (L,), np.int64),
                "attention_mask": gym.spaces.Box(0, 1, (L,), np.int8),
            }
        )
        self.action_space = gym.spaces.Discrete(V)
        self.ids = np.full(L, tokenizer.pad_token_id, dtype=np.int64)
        self.mask = np.zeros(L, dtype=np.int8)

    def _obs(self):
        return {"input_ids": self.ids.copy(), "attention_mask": self.mask.copy()}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.sample = int(self.np_random.integers(len(self.prompts)))
        prompt = self.prompts[self.sample][-self.P :]
        self.ids[:] = self.tokenizer.pad_token_id
        self.mask[:] = 0
        self.ids[self.P - len(prompt) : self.P] = prompt
        self.mask[self.P - len(prompt) : self.P] = 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        action = int(action)
        self.ids[self.P + self.t] = action
        self.mask[self.P + self.t] = 1
        self.t += 1
        terminated = action == self.eos
        truncated = not terminated and self.t >= self.T
        reward, info = 0.0, {}
        if terminated or truncated:
            n = self.t - int(terminated)
            response = self.tokenizer.decode_batch([self.ids[self.P : self.P + n].tolist()])[0]
            sample = self.task.samples[self.sample]
            scores = self.task.score([response], [sample])
            reward = float(scores.rewards[0])
            info = {"response": response, "metrics": {k: float(v[0]) for k, v in scores.metrics.items()}}
        return self._obs(), reward, terminated, truncated, info


def make_peer(env_id: str, num_envs: int, **kwargs) -> gym.vector.SyncVectorEnv:
    native = gym.make_vec(env_id, num_envs=1, **kwargs).unwrapped
    tok, task = native.tokenizer, native.task
    prompts = tok.encode_batch([s.prompt for s in task.samples])
    P, T = native.prompt_tokens, native.max_new_tokens
    return gym.vector.SyncVectorEnv([lambda: PeerTokenEnv(prompts, task, tok, P, T) for _ in range(num_envs)])


def floor_runner(env_id: str, num_envs: int) -> Callable[[np.ndarray], None]:
    """The bare minimum: write one token per slot into a (N, L) tensor."""
    native = gym.make_vec(env_id, num_envs=1).unwrapped
    P, T = native.prompt_tokens, native.max_new_tokens
    buf = torch.zeros((num_envs, P + T), dtype=torch.int64)
    rows = torch.arange(num_envs)
    state = {"t": 0}

    def step(actions: np.ndarray) -> None:
        buf[rows, P + state["t"]] = torch.from_numpy(actions)
        state["t"] = (state["t"] + 1) % T

    return step


def floor_score_runner(env_id: str, num_envs: int, **kwargs) -> Callable[[np.ndarray], None]:
    """The floor plus the decode and task scoring of the episodes that end each step."""
    native = gym.make_vec(env_id, num_envs=1, **kwargs).unwrapped
    tok, task, T = native.tokenizer, native.task, native.max_new_tokens
    stops = np.asarray(native.stop_token_ids)
    buf = np.zeros((num_envs, T), dtype=np.int64)
    rows, length = np.arange(num_envs), np.zeros(num_envs, dtype=np.int64)
    pending = np.zeros(num_envs, dtype=bool)  # ended last step: this step's action is ignored
    draw = np.random.default_rng(0)
    sample = draw.integers(len(task), size=num_envs)

    def step(actions: np.ndarray) -> None:
        live = ~pending
        buf[rows, np.minimum(length, T - 1)] = actions
        length[:] += live
        stopped = (actions == stops[0] if len(stops) == 1 else np.isin(actions, stops)) & live
        ended = stopped | ((length >= T) & live)
        done = np.flatnonzero(ended)
        if done.size:
            keep = length[done] - stopped[done]
            responses = decode_rows(tok, buf[done], keep)
            task.score(responses, [task.samples[j] for j in sample[done].tolist()])
        length[pending] = 0  # these start over (NEXT_STEP autoreset, as the envs do)
        sample[pending] = draw.integers(len(task), size=int(pending.sum()))  # on a new sample
        pending[:] = ended

    return step


def timed(step: Callable[[np.ndarray], object], actions: np.ndarray, min_seconds: float) -> tuple[float, int]:
    """Steps per second over at least ``min_seconds`` and 20 steps, cycling through the
    action rows (fast runners would otherwise finish them in a few milliseconds)."""
    step(actions[0])  # warm-up
    start, done = time.perf_counter(), 0
    for row in itertools.cycle(actions[1:]):
        step(row)
        done += 1
        if done >= 20 and time.perf_counter() - start > min_seconds:
            break
    return done / (time.perf_counter() - start), done


def bench(
    env_id: str, kwargs: dict, num_envs: int, steps: int, p_eos: float, min_seconds: float, seed: int, repeats: int
) -> dict:
    """Each runner's best steps/s over ``repeats`` rounds; every round runs all of them in
    turn, so a burst of load from elsewhere on a shared machine hits one round, not one runner."""
    native = gym.make_vec(env_id, num_envs=num_envs, **kwargs)
    vocab, eos = native.single_action_space.n, native.unwrapped.tokenizer.eos_token_id
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, vocab, size=(steps + 1, num_envs))
    actions[rng.random(actions.shape) < p_eos] = eos

    envs = {
        "TextVectorEnv": native,
        "TextVectorEnv(copy=False)": gym.make_vec(env_id, num_envs=num_envs, copy=False, **kwargs),
        "Sync(TextEnv)": gym.vector.SyncVectorEnv([lambda: gym.make(env_id, **kwargs) for _ in range(num_envs)]),
        "Sync(peer)": make_peer(env_id, num_envs, **kwargs),
    }

    def stepper(name: str) -> Callable[[np.ndarray], object]:
        if name == "floor":
            return floor_runner(env_id, num_envs)
        if name == "floor+score":
            return floor_score_runner(env_id, num_envs, **kwargs)
        envs[name].reset(seed=seed)
        return envs[name].step

    row = {"num_envs": num_envs}
    for _ in range(repeats):
        for name in [*envs, "floor", "floor+score"]:
            rate, done = timed(stepper(name), actions, min_seconds)
            if rate > row.get(name, 0.0):
                row[name], row[f"{name} steps"] = rate, done
    for env in envs.values():
        env.close()
    return row


CONFIGS = {
    "default metrics (exact match reward, chrF in info)": {},
    "reward only (metrics=('exact_match',))": {"metrics": ("exact_match",)},
}


def to_markdown(rows: list[dict], meta: dict) -> str:
    names = ["TextVectorEnv", "TextVectorEnv(copy=False)", "Sync(TextEnv)", "Sync(peer)", "floor", "floor+score"]
    ratio_names = [
        "native / peer",
        "native(copy=False) / peer",
        "native(copy=False) / (floor+score)",
        "floor / native(copy=False)",
    ]
    lines = [
        f"Env-only steps/s (batch steps per second; x num_envs for env steps), `{meta['env_id']}`, "
        f"p_eos={meta['p_eos']:.4g}, {meta['date']}, on {meta['machine']}.",
        "",
        "| num_envs | " + " | ".join(names + ratio_names) + " |",
        "|---" * (len(names) + len(ratio_names) + 1) + "|",
    ]
    config = None
    for r in rows:
        if r["config"] != config:
            config = r["config"]
            lines.append(f"| **{config}** |" + " |" * (len(names) + len(ratio_names)))
        cells = [f"{r[n]:,.0f}" for n in names]
        ratios = [
            r["TextVectorEnv"] / r["Sync(peer)"],
            r["TextVectorEnv(copy=False)"] / r["Sync(peer)"],
            r["TextVectorEnv(copy=False)"] / r["floor+score"],
            r["floor"] / r["TextVectorEnv(copy=False)"],
        ]
        ratio_cells = [f"{x:.1f}x" if i != 2 else f"{x:.2f}x" for i, x in enumerate(ratios)]
        lines.append(f"| {r['num_envs']} | " + " | ".join(cells + ratio_cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="TextTranslate-v0")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[32, 256, 1024])
    parser.add_argument("--steps", type=int, default=600, help="distinct action rows (cycled)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="time each runner this long per round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over all runners; each keeps its best")
    parser.add_argument("--p-eos", type=float, default=1 / 64, help="chance an action is the stop token")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (not written to results/)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--from-json", action="store_true", help="only re-render the table and docs/benchmarks.md from the last JSON"
    )
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads((args.out / "env_throughput.json").read_text())
        publish("env_throughput", to_markdown(saved["rows"], saved["meta"]), args.out, saved["meta"], saved["rows"])
        return
    if args.quick:
        args.num_envs, args.steps, args.min_seconds, args.repeats = [4], 30, 0.2, 1
    torch.set_num_threads(max(1, torch.get_num_threads()))
    meta = {
        "env_id": args.env_id,
        "p_eos": args.p_eos,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"{_cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
    }
    rows = []
    for config, kwargs in CONFIGS.items():
        for n in args.num_envs:
            row = bench(args.env_id, kwargs, n, args.steps, args.p_eos, args.min_seconds, args.seed, args.repeats)
            rows.append({"config": config, **row})
            print({k: round(v, 1) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)
    table = to_markdown(rows, meta)
    print(table)
    if not args.quick:
        publish("env_throughput", table, args.out, meta, rows)


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
