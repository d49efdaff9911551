"""REINFORCE: the policy-gradient update theta <- theta + alpha * grad J, for a causal LM.

Each iteration samples one episode per env slot with the rollout backend (one forward
pass per generated token, KV cache), then takes one gradient step on
``-(R - b) * sum_t log pi(a_t | s_t)``. The baseline ``b`` is either the mean reward of
the other episodes in the batch (leave-one-out, so the estimate stays unbiased) or a
learned value head on the hidden state before each token. One file, top to bottom, in
the style of cleanrl; text_gym's public API only.

    python agents/sft.py --env-id TextTranslate-v0 --tokenizer words --total-updates 200
    python agents/reinforce.py --env-id TextTranslate-v0 \
        --init-model runs/TextTranslate-v0__sft__1/model
"""

from __future__ import annotations

import csv
import json
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import tyro
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm
from transformers import AutoModelForCausalLM

import text_gym  # noqa: F401  (registers the env ids)
from text_gym import load_tokenizer
from text_gym.rollout import RolloutCollector, tiny_model, token_logprobs


@dataclass
class Args:
    exp_name: str = "reinforce"
    """the name of this experiment (the run folder is runs/<env>__<exp>__<seed>)"""
    env_id: str = "TextTranslate-v0"
    """the env to train on"""
    env_kwargs: str = "{}"
    """extra gym.make keyword arguments as JSON, e.g. '{"dataset": "easy", "level": 1}'"""
    seed: int = 1
    """seed of the experiment"""
    init_model: str = ""
    """the model folder to start from (runs/<sft run>/model); empty: a new tiny model"""
    tokenizer: str = "byte"
    """new tiny model only: its tokenizer ('byte', 'default')"""
    total_iterations: int = 100
    """iterations (one batch of episodes and one gradient step each)"""
    num_envs: int = 32
    """env slots: episodes per iteration"""
    learning_rate: float = 1e-4
    """Adam learning rate"""
    max_grad_norm: float = 1.0
    """gradient clipping"""
    baseline: str = "mean"
    """'mean' (leave-one-out batch mean reward) or 'value' (a learned value head)"""
    temperature: float = 1.0
    """sampling temperature of the rollouts"""
    eval_split: str = "test"
    """the env's held-out split (passed as split=)"""
    eval_episodes: int = 256
    """held-out samples in the final greedy evaluation (evenly spaced over the split)"""
    eval_envs: int = 32
    """parallel slots for evaluation"""
    checkpoint_every: int = 10
    """iterations between checkpoints (0: only at the end)"""
    runs_dir: str = "runs"
    """where run folders go"""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""
    device: str = "cpu"
    """torch device of the model and the envs ('cuda' on a GPU)"""


def load_policy(args: Args):
    """The model and its tokenizer: from ``--init-model``, or a new tiny model."""
    if args.init_model:
        folder = Path(args.init_model)
        model = AutoModelForCausalLM.from_pretrained(folder)
        words = folder / "words.json"
        return model, load_tokenizer(str(words) if words.exists() else model.config.text_gym_tokenizer)
    tokenizer = load_tokenizer(args.tokenizer)
    return tiny_model(tokenizer, hidden=128, layers=2, heads=4, kv_heads=2, seed=args.seed), tokenizer


@torch.no_grad()
def evaluate(model, args: Args, tokenizer) -> float:
    """Mean greedy reward on ``eval_episodes`` evenly spaced samples of the held-out split."""
    envs = gym.make_vec(
        args.env_id,
        num_envs=args.eval_envs,
        output="torch",
        device=args.device,
        tokenizer=tokenizer,
        **{**json.loads(args.env_kwargs), "split": args.eval_split},
    )
    n = len(envs.unwrapped.task)
    samples = np.unique(np.linspace(0, n - 1, min(n, args.eval_episodes)).round().astype(int))
    model.eval()
    score = RolloutCollector(model, envs, greedy=True).evaluate(samples).mean().item()
    model.train()
    return score


def main(args: Args) -> dict[str, float]:
    run_dir = Path(args.runs_dir) / f"{args.env_id}__{args.exp_name}__{args.seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)

    # seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

    model, tokenizer = load_policy(args)
    model.to(args.device)
    model.train()
    envs = gym.make_vec(
        args.env_id,
        num_envs=args.num_envs,
        output="torch",
        device=args.device,
        tokenizer=tokenizer,
        **json.loads(args.env_kwargs),
    )
    collector = RolloutCollector(model, envs, temperature=args.temperature)
    value_head = nn.Linear(model.config.hidden_size, 1).to(args.device)
    params = list(model.parameters()) + list(value_head.parameters())
    optimizer = torch.optim.Adam(params, lr=args.learning_rate)
    start = 0

    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.exists():  # resume where the last run stopped
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        value_head.load_state_dict(state["value_head"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        start = state["iteration"]

    writer = SummaryWriter(str(run_dir), purge_step=start + 1)
    writer.add_text("hyperparameters", "\n".join(f"|{k}|{v}|" for k, v in asdict(args).items()))
    csv_out = metrics_csv(run_dir / "metrics.csv", start)
    started, tokens = time.time(), 0
    bar = tqdm(
        range(start + 1, args.total_iterations + 1), initial=start, total=args.total_iterations, desc=args.exp_name
    )
    for iteration in bar:
        # rollout: one episode per slot, prompts from seeded streams
        model.eval()
        episodes = collector.collect_episodes(seed=args.seed * 1_000_000 + iteration * args.num_envs)
        model.train()
        R = episodes.rewards  # (E,)
        E = len(R)

        # the policy gradient, with a baseline
        ids, attn, agent = episodes.trimmed()  # (E, T), (E, T), (E, T-1)
        logp, hidden = token_logprobs(model, ids, attn, hidden=args.baseline == "value")
        if args.baseline == "value":
            values = value_head(hidden.detach())[..., 0]  # (E, T-1): V(s_t), its own regression
            advantages = R[:, None] - values.detach()
            v_loss = ((values - R[:, None]) ** 2 * agent).sum() / agent.sum()
        else:
            advantages = (R - (R.sum() - R) / max(E - 1, 1))[:, None]  # leave-one-out mean
            v_loss = torch.zeros((), device=R.device)
        pg_loss = -(advantages * logp * agent).sum() / E
        loss = pg_loss + v_loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        optimizer.step()

        tokens += int(episodes.agent_mask.sum())
        sps = tokens / (time.time() - started)
        metrics = {
            "charts/episodic_return": R.mean().item(),
            "charts/episode_length": episodes.agent_mask.sum(1).float().mean().item(),
            "losses/policy_loss": pg_loss.item(),
            "losses/value_loss": v_loss.item(),
            "charts/SPS": sps,
        }
        for key, value in metrics.items():
            writer.add_scalar(key, value, iteration)
            csv_out.writerow([iteration, key, value])
        bar.set_postfix(reward=f"{R.mean().item():.3f}", sps=f"{sps:.0f}")
        if args.checkpoint_every and iteration % args.checkpoint_every == 0:
            save_checkpoint(checkpoint, model, value_head, optimizer, iteration)

    done = max(start, args.total_iterations)  # a rerun with a smaller total keeps the step its weights reached
    save_checkpoint(checkpoint, model, value_head, optimizer, done)
    model.save_pretrained(run_dir / "model")
    if (Path(args.init_model) / "words.json").exists():
        (run_dir / "model" / "words.json").write_bytes((Path(args.init_model) / "words.json").read_bytes())
    eval_return = evaluate(model, args, tokenizer)
    writer.add_scalar("charts/eval_return", eval_return, done)
    csv_out.writerow([done, "charts/eval_return", eval_return])
    writer.close()
    return {"eval_return": eval_return}


def metrics_csv(path: Path, start: int):
    """A CSV writer appending (step, key, value) rows; rows after ``start`` (left by a killed
    run after its last checkpoint) are dropped so that a resumed run does not repeat them."""
    rows = list(csv.reader(path.open())) if path.exists() else []
    kept = [r for r in rows if int(r[0]) <= start and r[1] != "charts/eval_return"]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(kept)
    return csv.writer(path.open("a", newline="", buffering=1))


def save_checkpoint(path: Path, model, value_head, optimizer, iteration: int) -> None:
    """Write atomically: a killed run leaves the previous checkpoint intact."""
    state = {
        "model": model.state_dict(),
        "value_head": value_head.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "iteration": iteration,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


if __name__ == "__main__":
    print(main(tyro.cli(Args)))
