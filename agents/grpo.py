"""GRPO: group-relative policy optimisation (Shao et al., 2024, DeepSeekMath), for a causal LM.

Each iteration draws ``num_envs / group_size`` prompts and answers each ``group_size``
times: the env's ``sample_index`` reset option puts one prompt in a group of slots, and
the rollout backend samples every answer in one batch (one forward pass per token, KV
cache). An answer's advantage is its reward standardised within its group, so no value
model is needed; every token of the answer shares it. The loss is PPO's clipped
surrogate per token plus an optional KL term to the frozen starting model (the k3
estimator). One file, top to bottom, in the style of cleanrl; text_gym's public API only.

    python agents/grpo.py --env-id TextTranslate-v0 --init-model runs/TextTranslate-v0__sft__1/model
"""

from __future__ import annotations

import copy
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
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm
from transformers import AutoModelForCausalLM

import text_gym  # noqa: F401  (registers the env ids)
from text_gym import load_tokenizer
from text_gym.rollout import RolloutCollector, tiny_model, token_logprobs


@dataclass
class Args:
    exp_name: str = "grpo"
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
    """iterations (one batch of groups, then update_epochs passes over it)"""
    num_envs: int = 32
    """env slots: answers per iteration (a multiple of group_size)"""
    group_size: int = 8
    """answers sampled per prompt"""
    learning_rate: float = 1e-4
    """Adam learning rate"""
    update_epochs: int = 2
    """passes over each batch"""
    num_minibatches: int = 2
    """minibatches per pass (whole answers, split evenly)"""
    clip_coef: float = 0.2
    """the surrogate clipping coefficient"""
    beta: float = 0.02
    """weight of the KL term to the starting model (0: none)"""
    scale_rewards: bool = True
    """divide group-centred rewards by the group's standard deviation"""
    max_grad_norm: float = 1.0
    """gradient clipping"""
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
    if args.group_size < 2 or args.num_envs % args.group_size:
        raise ValueError(f"num_envs={args.num_envs} must be a multiple of group_size={args.group_size} >= 2")
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
    reference = copy.deepcopy(model).eval().requires_grad_(False)  # frozen: the KL anchor
    model.train()
    envs = gym.make_vec(
        args.env_id,
        num_envs=args.num_envs,
        output="torch",
        device=args.device,
        tokenizer=tokenizer,
        **json.loads(args.env_kwargs),
    )
    num_prompts = len(envs.unwrapped.task)
    collector = RolloutCollector(model, envs)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    start = 0

    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.exists():  # resume where the last run stopped
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
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
        # rollout: group_size answers to each of num_envs / group_size prompts
        draw = torch.Generator().manual_seed(args.seed * 1_000_000 + iteration)
        prompts = torch.randint(num_prompts, (args.num_envs // args.group_size,), generator=draw)
        model.eval()
        episodes = collector.collect_episodes(
            seed=args.seed * 1_000_000 + iteration * args.num_envs,
            sample_index=prompts.repeat_interleave(args.group_size).numpy(),
        )
        model.train()
        ids, attn, agent = episodes.trimmed()  # (E, T), (E, T), (E, T-1)
        E = ids.shape[0]

        # group-relative advantages: each answer against the others to its prompt
        groups = episodes.rewards.view(-1, args.group_size)  # (prompts, G)
        advantages = groups - groups.mean(1, keepdim=True)
        if args.scale_rewards:
            advantages = advantages / (groups.std(1, keepdim=True) + 1e-4)
        advantages = advantages.reshape(E, 1)  # every token of an answer shares it
        with torch.no_grad():
            old_logp, _ = token_logprobs(model, ids, attn)
            ref_logp, _ = token_logprobs(reference, ids, attn) if args.beta else (old_logp, None)

        order = torch.randperm(E)
        clip_fracs, kls = [], []
        for _ in range(args.update_epochs):
            for mb in order.chunk(args.num_minibatches):
                logp, _ = token_logprobs(model, ids[mb], attn[mb])
                m = agent[mb]
                ratio = (logp - old_logp[mb]).exp()
                pg_loss1 = -advantages[mb] * ratio
                pg_loss2 = -advantages[mb] * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)
                log_ratio_ref = (ref_logp[mb] - logp) * m
                kl = log_ratio_ref.exp() - log_ratio_ref - 1  # k3: unbiased, always >= 0
                pg_loss = (torch.max(pg_loss1, pg_loss2) * m).sum() / m.sum()
                kl_loss = (kl * m).sum() / m.sum()
                loss = pg_loss + args.beta * kl_loss
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                clip_fracs.append((((ratio - 1).abs() > args.clip_coef).float() * m).sum().item() / m.sum().item())
                kls.append(kl_loss.item())

        tokens += int(episodes.agent_mask.sum())
        sps = tokens / (time.time() - started)
        metrics = {
            "charts/episodic_return": episodes.rewards.mean().item(),
            "charts/episode_length": episodes.agent_mask.sum(1).float().mean().item(),
            "charts/solved_groups": (groups.max(1).values > groups.min(1).values).float().mean().item(),
            "losses/policy_loss": pg_loss.item(),
            "losses/kl_ref": float(np.mean(kls)),
            "losses/clipfrac": float(np.mean(clip_fracs)),
            "charts/SPS": sps,
        }
        for key, value in metrics.items():
            writer.add_scalar(key, value, iteration)
            csv_out.writerow([iteration, key, value])
        bar.set_postfix(reward=f"{metrics['charts/episodic_return']:.3f}", sps=f"{sps:.0f}")
        if args.checkpoint_every and iteration % args.checkpoint_every == 0:
            save_checkpoint(checkpoint, model, optimizer, iteration)

    done = max(start, args.total_iterations)  # a rerun with a smaller total keeps the step its weights reached
    save_checkpoint(checkpoint, model, optimizer, done)
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


def save_checkpoint(path: Path, model, optimizer, iteration: int, **extra) -> None:
    """Write atomically: a killed run leaves the previous checkpoint intact."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "iteration": iteration,
        **extra,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


if __name__ == "__main__":
    print(main(tyro.cli(Args)))
