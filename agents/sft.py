"""Supervised warm start: teach a causal LM a task's reference responses.

The "Supervised" row of the learning tables, and the starting point of every RL agent.
One file, top to bottom, in the style of cleanrl. It uses text_gym's public API only:
the env gives the task (prompts and reference responses) and the tokenizer; evaluation
runs the model greedily through the env with the rollout backend.

    python agents/sft.py --env-id TextTranslate-v0 --total-updates 500
    python agents/sft.py --help
"""

from __future__ import annotations

import csv
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

import text_gym  # noqa: F401  (registers the env ids)
from text_gym.rollout import RolloutCollector, load_default_model, tiny_model


@dataclass
class Args:
    exp_name: str = "sft"
    """the name of this experiment (the run folder is runs/<env>__<exp>__<seed>)"""
    env_id: str = "TextTranslate-v0"
    """the env whose task references are the targets"""
    seed: int = 1
    """seed of the experiment"""
    model: str = "tiny"
    """'tiny' (a small Llama trained from scratch) or 'smollm2' (SmolLM2-135M-Instruct)"""
    tokenizer: str = "default"
    """the env's tokenizer ('default' is SmolLM2's; 'byte' for quick tiny-model runs)"""
    hidden: int = 128
    """tiny model: hidden size"""
    layers: int = 2
    """tiny model: number of layers"""
    total_updates: int = 300
    """number of gradient updates"""
    batch_size: int = 32
    """sequences per update"""
    learning_rate: float = 1e-3
    """AdamW learning rate"""
    max_grad_norm: float = 1.0
    """gradient clipping"""
    eval_split: str = "test"
    """the env's held-out split (passed as split=)"""
    eval_episodes: int = 64
    """episodes in the final evaluation (greedy)"""
    eval_envs: int = 32
    """parallel slots for evaluation"""
    checkpoint_every: int = 100
    """updates between checkpoints (0: only at the end)"""
    runs_dir: str = "runs"
    """where run folders go"""


def build_model(args: Args, tokenizer):
    if args.model == "smollm2":
        return load_default_model()
    return tiny_model(tokenizer, hidden=args.hidden, layers=args.layers, heads=4, kv_heads=2, seed=args.seed)


def make_batch(pairs: list[tuple[list[int], list[int]]], pad: int) -> tuple[torch.Tensor, ...]:
    """Right-padded prompt+response sequences; labels only on response tokens."""
    width = max(len(p) + len(r) for p, r in pairs)
    ids = torch.full((len(pairs), width), pad)  # (B, T)
    labels = torch.full((len(pairs), width), -100)  # (B, T)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)  # (B, T)
    for i, (p, r) in enumerate(pairs):
        seq = p + r
        ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, len(p) : len(seq)] = torch.tensor(r)
        mask[i, : len(seq)] = 1
    return ids, labels, mask


@torch.no_grad()
def evaluate(model, args: Args, tokenizer) -> float:
    """Mean reward of greedy episodes on the held-out split."""
    envs = gym.make_vec(args.env_id, num_envs=args.eval_envs, output="torch", tokenizer=tokenizer, split=args.eval_split)  # fmt: skip
    collector = RolloutCollector(model, envs, greedy=True)
    rewards: list[float] = []
    batch = collector.collect(1, seed=args.seed + 10_000)
    while True:
        done = batch.dones & batch.mask
        rewards += batch.rewards[done].tolist()
        if len(rewards) >= args.eval_episodes:
            return float(np.mean(rewards[: args.eval_episodes]))
        batch = collector.collect(envs.unwrapped.max_new_tokens)


def main(args: Args) -> dict[str, float]:
    run_dir = Path(args.runs_dir) / f"{args.env_id}__{args.exp_name}__{args.seed}"
    run_dir.mkdir(parents=True, exist_ok=True)

    # seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

    # data: the task's prompts and reference responses, tokenized as the env does
    env = gym.make(args.env_id, tokenizer=args.tokenizer).unwrapped
    tokenizer, task = env.tokenizer, env.task
    prompts = tokenizer.encode_batch([s.prompt for s in task.samples])
    answers = tokenizer.encode_batch([task.reference_response(s) for s in task.samples])
    pairs = [(p[-env.vector.prompt_tokens :], a + [tokenizer.eos_token_id]) for p, a in zip(prompts, answers)]  # fmt: skip

    model = build_model(args, tokenizer).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
    order = torch.Generator().manual_seed(args.seed)
    start = 0

    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.exists():  # resume where the last run stopped
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        order.set_state(state["order"])
        torch.set_rng_state(state["torch_rng"])
        start = state["update"]

    writer = SummaryWriter(str(run_dir))
    writer.add_text("hyperparameters", "\n".join(f"|{k}|{v}|" for k, v in asdict(args).items()))
    log = (run_dir / "metrics.csv").open("a", newline="")
    csv_out = csv.writer(log)
    started = time.time()
    loss = torch.tensor(0.0)
    for update in range(start + 1, args.total_updates + 1):
        idx = torch.randint(len(pairs), (args.batch_size,), generator=order).tolist()
        ids, labels, mask = make_batch([pairs[i] for i in idx], tokenizer.pad_token_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()

        sps = (update - start) * args.batch_size / (time.time() - started)
        writer.add_scalar("losses/sft_loss", loss.item(), update)
        writer.add_scalar("charts/SPS", sps, update)
        csv_out.writerow([update, "losses/sft_loss", loss.item()])
        if args.checkpoint_every and update % args.checkpoint_every == 0:
            save_checkpoint(checkpoint, model, optimizer, order, update)

    save_checkpoint(checkpoint, model, optimizer, order, args.total_updates)
    model.eval()
    eval_return = evaluate(model, args, tokenizer)
    writer.add_scalar("charts/eval_return", eval_return, args.total_updates)
    csv_out.writerow([args.total_updates, "charts/eval_return", eval_return])
    log.close()
    writer.close()
    return {"final_loss": float(loss.item()), "eval_return": eval_return}


def save_checkpoint(path: Path, model, optimizer, order: torch.Generator, update: int) -> None:
    """Write atomically: a killed run leaves the previous checkpoint intact."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "order": order.get_state(),
        "torch_rng": torch.get_rng_state(),
        "update": update,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


if __name__ == "__main__":
    print(main(tyro.cli(Args)))
