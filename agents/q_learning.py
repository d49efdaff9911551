"""Soft Q-learning on the token MDP: the language model's logits are its Q-values.

State: the tokens so far; action: the next token; reward: the task's score at the end.
The Q-function is read off the policy's logits, measured against the frozen starting
model (the prior of KL-regularised soft Q-learning):

    Q(s, a) = alpha * (log pi(a|s) - log pi_ref(a|s)) + V(s)

Logits fix Q only up to a constant per state; a value head on the hidden states
supplies it, and it is exactly the soft maximum ``alpha * log sum_a pi_ref(a|s)
exp(Q(s,a) / alpha)``, the soft form of ``max_a Q(s, a)``. So the update is the soft form
of Q(s,a) <- Q(s,a) + lr [r + gamma max_a' Q(s',a') - Q(s,a)]: regress Q(s_t, a_t) on
``r_t + gamma * V_target(s_{t+1})``, with the target network (policy and value head)
re-synced every ``target_update_every`` iterations. The greedy policy of the learned Q
is the model's own argmax, and sampling from it is sampling from the model. Episodes
are sampled with the rollout backend and kept in a replay buffer; one forward pass per
minibatch gives every token's Q. One file, top to bottom, in the style of cleanrl;
text_gym's public API only.

    python agents/q_learning.py --env-id TextTranslate-v0 --init-model runs/TextTranslate-v0__sft__1/model
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
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm
from transformers import AutoModelForCausalLM

import text_gym  # noqa: F401  (registers the env ids)
from text_gym import load_tokenizer
from text_gym.rollout import Episodes, RolloutCollector, tiny_model, token_logprobs


@dataclass
class Args:
    exp_name: str = "q_learning"
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
    """iterations (one batch of episodes into the buffer, then updates_per_iteration updates)"""
    num_envs: int = 32
    """env slots: episodes added to the replay buffer per iteration"""
    buffer_size: int = 512
    """episodes kept in the replay buffer (oldest dropped first)"""
    batch_size: int = 32
    """episodes per minibatch"""
    updates_per_iteration: int = 4
    """TD updates per iteration"""
    learning_rate: float = 1e-4
    """Adam learning rate"""
    alpha: float = 0.1
    """temperature of the KL to the reference: Q = alpha * (log pi - log pi_ref) + V"""
    gamma: float = 1.0
    """discount factor"""
    target_update_every: int = 5
    """iterations between copies of the network into the target network"""
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


def td_targets(rewards, values, agent, gamma: float) -> torch.Tensor:
    """r_t + gamma * V(next decision state) at each agent token (E, T-1), where ``values[:, t]``
    is V of the state token t+1 is chosen in; V after the last agent token is 0. Columns
    between two agent tokens (a simulated user's reply) are skipped."""
    targets = torch.zeros_like(rewards)
    following = torch.zeros_like(rewards[:, 0])  # V of the next decision state
    for t in reversed(range(rewards.shape[1])):
        acting = agent[:, t] > 0
        targets[:, t] = rewards[:, t] + gamma * following
        following = torch.where(acting, values[:, t], following)
    return targets


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
    reference = copy.deepcopy(model).eval().requires_grad_(False)  # the prior: Q is measured against it
    model.train()
    d = model.config.hidden_size
    value_head = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1)).to(args.device)
    target, target_value = copy.deepcopy(model).eval(), copy.deepcopy(value_head)
    envs = gym.make_vec(
        args.env_id,
        num_envs=args.num_envs,
        output="torch",
        device=args.device,
        tokenizer=tokenizer,
        **json.loads(args.env_kwargs),
    )
    collector = RolloutCollector(model, envs)  # samples the Boltzmann policy of Q: the model itself
    params = list(model.parameters()) + list(value_head.parameters())
    optimizer = torch.optim.Adam(params, lr=args.learning_rate)
    buffer: dict[str, torch.Tensor] = {}
    start = 0

    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.exists():  # resume where the last run stopped
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        value_head.load_state_dict(state["value_head"])
        target.load_state_dict(state["target"])
        target_value.load_state_dict(state["target_value"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        buffer, start = state["buffer"], state["iteration"]

    writer = SummaryWriter(str(run_dir), purge_step=start + 1)
    writer.add_text("hyperparameters", "\n".join(f"|{k}|{v}|" for k, v in asdict(args).items()))
    csv_out = metrics_csv(run_dir / "metrics.csv", start)
    started, tokens = time.time(), 0
    bar = tqdm(
        range(start + 1, args.total_iterations + 1), initial=start, total=args.total_iterations, desc=args.exp_name
    )
    for iteration in bar:
        # rollout with the Boltzmann policy; the episodes join the replay buffer
        model.eval()
        episodes = collector.collect_episodes(seed=args.seed * 1_000_000 + iteration * args.num_envs)
        model.train()
        fresh = {
            k: getattr(episodes, k)
            for k in ("input_ids", "attention_mask", "agent_mask", "rewards", "terminated", "sample_index")
        }
        buffer = {k: torch.cat((buffer[k], v))[-args.buffer_size :] if buffer else v for k, v in fresh.items()}

        for _ in range(args.updates_per_iteration):
            idx = torch.randint(len(buffer["rewards"]), (args.batch_size,))
            batch = Episodes(**{k: v[idx] for k, v in buffer.items()})
            ids, attn, agent = batch.trimmed()  # (B, T), (B, T), (B, T-1)
            B = ids.shape[0]
            with torch.no_grad():
                _, target_hidden = token_logprobs(target, ids, attn, hidden=True)
                v_target = target_value(target_hidden)[..., 0]  # (B, T-1): V(s_t) of the target net
                ref_logp, _ = token_logprobs(reference, ids, attn)
                rewards = torch.zeros_like(agent)
                last = (agent * torch.arange(agent.shape[1], device=agent.device)).argmax(
                    1
                )  # each row's last agent token
                rewards[torch.arange(B, device=last.device), last] = batch.rewards
                targets = td_targets(rewards, v_target, agent, args.gamma)  # r + gamma V(s')
            logp, hidden = token_logprobs(model, ids, attn, hidden=True)
            v = value_head(hidden.detach())[..., 0]  # (B, T-1)
            q = args.alpha * (logp - ref_logp) + v  # Q(s_t, a_t)
            td_loss = (torch.nn.functional.smooth_l1_loss(q, targets, reduction="none") * agent).sum() / agent.sum()
            optimizer.zero_grad()
            td_loss.backward()
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            optimizer.step()

        if iteration % args.target_update_every == 0:
            target.load_state_dict(model.state_dict())
            target_value.load_state_dict(value_head.state_dict())

        tokens += int(episodes.agent_mask.sum())
        sps = tokens / (time.time() - started)
        metrics = {
            "charts/episodic_return": episodes.rewards.mean().item(),
            "charts/episode_length": episodes.agent_mask.sum(1).float().mean().item(),
            "losses/td_loss": td_loss.item(),
            "losses/q_values": ((q.detach() * agent).sum() / agent.sum()).item(),
            "losses/kl_ref": (((logp - ref_logp).detach() * agent).sum() / B).item(),
            "charts/SPS": sps,
        }
        for key, value in metrics.items():
            writer.add_scalar(key, value, iteration)
            csv_out.writerow([iteration, key, value])
        bar.set_postfix(reward=f"{metrics['charts/episodic_return']:.3f}", sps=f"{sps:.0f}")
        if args.checkpoint_every and iteration % args.checkpoint_every == 0:
            save_checkpoint(
                checkpoint,
                model,
                optimizer,
                iteration,
                target=target.state_dict(),
                target_value=target_value.state_dict(),
                value_head=value_head.state_dict(),
                buffer=buffer,
            )

    done = max(start, args.total_iterations)  # a rerun with a smaller total keeps the step its weights reached
    save_checkpoint(
        checkpoint,
        model,
        optimizer,
        done,
        target=target.state_dict(),
        target_value=target_value.state_dict(),
        value_head=value_head.state_dict(),
        buffer=buffer,
    )
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
