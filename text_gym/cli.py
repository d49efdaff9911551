"""The ``text-gym`` command: list the envs, or run each with a random policy.

Usage::

    text-gym list
    text-gym demo [--env-id ID ...] [--num-envs 16] [--episodes 32] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import gymnasium as gym
import numpy as np

import text_gym
from text_gym.rewards.sandbox import SandboxUnavailable


def run_random(env_id: str, num_envs: int, episodes: int, seed: int, p_eos: float) -> dict:
    """Run a uniform random policy (stop token with probability ``p_eos``) to ``episodes``."""
    envs = gym.make_vec(env_id, num_envs=num_envs)
    env = envs.unwrapped
    rng = np.random.default_rng(seed)
    envs.reset(seed=seed)
    rewards, lengths, stopped = [], [], []  # per finished episode
    steps, start = 0, time.perf_counter()
    age = np.zeros(num_envs, dtype=np.int64)  # tokens written in each slot's episode
    while len(rewards) < episodes:
        actions = rng.integers(0, env.vocab_size, num_envs)
        actions[rng.random(num_envs) < p_eos] = env.tokenizer.eos_token_id
        _, reward, terminated, truncated, _ = envs.step(actions)
        steps += 1
        age += 1
        for i in np.flatnonzero(terminated | truncated):
            rewards.append(float(reward[i]))
            lengths.append(int(age[i]))
            stopped.append(bool(terminated[i]))
            age[i] = -1  # the next step is the autoreset step (NEXT_STEP mode)
    seconds = time.perf_counter() - start
    # the first `episodes` of them (the last step may have ended a few more)
    rewards, lengths, stopped = rewards[:episodes], lengths[:episodes], stopped[:episodes]
    ends = {"terminated": sum(stopped), "truncated": episodes - sum(stopped)}
    envs.close()
    return {
        "env_id": env_id,
        "episodes": len(rewards),
        "mean_reward": float(np.mean(rewards)),
        "mean_episode_tokens": float(np.mean(lengths)),
        **ends,
        "env_steps_per_s": steps * num_envs / seconds,
    }


def render_episode(env_id: str, seed: int, p_eos: float) -> str:
    """One random-policy episode of ``env_id``, rendered as text at its end."""
    env = gym.make(env_id, render_mode="ansi")
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    eos = env.unwrapped.eos_token_id
    while True:
        action = eos if rng.random() < p_eos else int(rng.integers(env.action_space.n))
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    text = env.render()
    env.close()
    metrics = {k: round(float(v), 4) for k, v in info["metrics"].items()}
    return f"{text}reward={reward:.4g} metrics={metrics} references={info['references']}"


def _at_least(low: int):  # an argparse type: an int >= low
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is not >= {low}")
        return value

    return parse


def _chance(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is not a probability in [0, 1]")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="text-gym", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the registered env ids")
    demo = sub.add_parser("demo", help="run every env with a random policy")
    ids = text_gym.env_ids()
    demo.add_argument("--env-id", nargs="+", default=ids, choices=[*ids, *(f"text_gym/{i}" for i in ids)], metavar="ID")
    demo.add_argument("--num-envs", type=_at_least(1), default=16)
    demo.add_argument("--episodes", type=_at_least(1), default=32)
    demo.add_argument("--seed", type=_at_least(0), default=0)
    demo.add_argument("--p-eos", type=_chance, default=0.05, help="chance the policy stops")
    args = parser.parse_args(argv)
    if args.command == "list":
        for env_id, kwargs in text_gym.ENV_TABLE.items():
            print(f"{env_id:24s} {kwargs}")
        return
    for env_id in args.env_id:
        try:
            stats = run_random(env_id, args.num_envs, args.episodes, args.seed, args.p_eos)
        except SandboxUnavailable as e:  # the code env, where nothing can confine programs
            print(f"env_id={env_id} skipped: {e}")
            continue
        print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items()))
        print(render_episode(env_id, args.seed, args.p_eos))


if __name__ == "__main__":
    main()
