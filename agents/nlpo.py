"""NLPO: PPO whose action space is masked to the top-p tokens of a periodically synced policy copy.

Natural Language Policy Optimization (Ramamurthy et al., 2023, RL4LMs) keeps PPO (value
head, GAE, clipped objective, adaptive KL penalty to a frozen reference) but samples and
scores every token from the policy restricted to the smallest set of tokens whose
probability under a *mask model* reaches ``top_p``. The mask model is a copy of the
policy re-synced every ``mask_sync_every`` iterations, so the action space shrinks to
what a recent policy found plausible. Sampling uses the rollout backend's
logits-processor hook; the mask model keeps its own KV cache by being fed the same
observations (``RolloutCollector.feed``). One file, top to bottom, in the style of
cleanrl; text_gym's public API only.

    python agents/nlpo.py --env-id TextTranslate-v0 --init-model runs/TextTranslate-v0__sft__1/model
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
from text_gym.rollout import RolloutCollector, tiny_model, token_logprobs, top_p_keep


@dataclass
class Args:
    exp_name: str = "nlpo"
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
    """iterations (one batch of episodes, then update_epochs passes over it)"""
    num_envs: int = 32
    """env slots: episodes per iteration"""
    learning_rate: float = 1e-4
    """Adam learning rate"""
    update_epochs: int = 2
    """passes over each batch of episodes"""
    num_minibatches: int = 2
    """minibatches per pass (episodes are split evenly)"""
    clip_coef: float = 0.2
    """the surrogate clipping coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    gamma: float = 1.0
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    init_kl_coef: float = 0.02
    """initial beta of the per-token KL penalty to the reference"""
    target_kl: float = 2.0
    """the adaptive controller's target for the episodes' KL to the reference (nats per episode)"""
    kl_horizon: int = 2000
    """the adaptive controller's horizon (episodes)"""
    top_p: float = 0.9
    """the mask keeps the smallest set of tokens whose mask-model probability reaches top_p"""
    mask_sync_every: int = 5
    """iterations between copies of the policy into the mask model"""
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
def mask_of(mask_model, ids, attn, vocab: int, top_p: float) -> torch.Tensor:
    """The mask model's top-p sets at every position of whole episodes, (E, T-1, V).

    Each set holds the token that came next in the episode: this full pass can round a
    sampled token just outside the nucleus that the rollout's incremental pass put it
    in (about once in 3,000 bfloat16 tokens), and a token outside its set gets a
    log-prob of about -1e9, a KL reward of about 2e7."""
    positions = (attn.cumsum(1) - 1).clamp(min=0)
    logits = mask_model(input_ids=ids, attention_mask=attn, position_ids=positions).logits[:, :-1, :vocab]
    return top_p_keep(logits, top_p).scatter_(2, ids[:, 1:, None], True)


def gae(rewards, values, agent, gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimates over each row's agent tokens (other columns, e.g. a
    simulated user's reply, are skipped); the value after the last agent token is 0."""
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        acting = agent[:, t] > 0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        step_gae = delta + gamma * lam * last_gae
        advantages[:, t] = torch.where(acting, step_gae, 0.0)
        last_gae = torch.where(acting, step_gae, last_gae)
        next_value = torch.where(acting, values[:, t], next_value)
    return advantages


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
    reference = copy.deepcopy(model).eval().requires_grad_(False)  # frozen: the KL anchor
    model.train()
    mask_model = copy.deepcopy(model).eval().requires_grad_(False)
    envs = gym.make_vec(
        args.env_id,
        num_envs=args.num_envs,
        output="torch",
        device=args.device,
        tokenizer=tokenizer,
        **json.loads(args.env_kwargs),
    )
    V = envs.unwrapped.vocab_size
    # the mask model follows the same observations with its own KV cache; the policy samples
    # only among the mask model's top-p tokens at each step
    mask_collector = RolloutCollector(mask_model, envs)

    def restrict(logits, obs):
        return logits.masked_fill(~top_p_keep(mask_collector.feed(obs)[0][:, :V], args.top_p), float("-inf"))

    collector = RolloutCollector(model, envs, logits_processor=restrict)
    d = model.config.hidden_size
    value_head = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1)).to(args.device)
    params = list(model.parameters()) + list(value_head.parameters())
    optimizer = torch.optim.Adam(params, lr=args.learning_rate)
    kl_coef, start = args.init_kl_coef, 0

    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.exists():  # resume where the last run stopped
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        value_head.load_state_dict(state["value_head"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        mask_model.load_state_dict(state["mask_model"])
        kl_coef, start = state["kl_coef"], state["iteration"]

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
        ids, attn, agent = episodes.trimmed()  # (E, T), (E, T), (E, T-1)
        E = ids.shape[0]

        # one batched pass for old log-probs (masked as sampled), values and the reference
        keep = mask_of(mask_model, ids, attn, V, args.top_p)  # (E, T-1, V)
        with torch.no_grad():
            old_logp, hidden = token_logprobs(model, ids, attn, hidden=True, keep=keep)
            old_values = value_head(hidden)[..., 0] * agent  # (E, T-1)
            ref_logp, _ = token_logprobs(reference, ids, attn)
            kl = (old_logp - ref_logp) * agent  # (E, T-1): per-token KL sample
            rewards = -kl_coef * kl
            last = (agent * torch.arange(agent.shape[1], device=agent.device)).argmax(1)  # each row's last agent token
            rewards[torch.arange(E, device=last.device), last] += episodes.rewards
            advantages = gae(rewards, old_values, agent, args.gamma, args.gae_lambda)
            returns = advantages + old_values
            n = agent.sum()
            mean = advantages.sum() / n
            std = (((advantages - mean) ** 2 * agent).sum() / n).sqrt()
            norm_adv = (advantages - mean) / (std + 1e-8) * agent

        # the clipped surrogate, several epochs of minibatches
        order = torch.randperm(E)
        clip_fracs = []
        for _ in range(args.update_epochs):
            for mb in order.chunk(args.num_minibatches):
                logp, hidden = token_logprobs(model, ids[mb], attn[mb], hidden=True, keep=keep[mb])
                values = value_head(hidden.detach())[..., 0]
                m = agent[mb]
                ratio = (logp - old_logp[mb]).exp()
                pg_loss1 = -norm_adv[mb] * ratio
                pg_loss2 = -norm_adv[mb] * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)
                pg_loss = (torch.max(pg_loss1, pg_loss2) * m).sum() / m.sum()
                v_loss = 0.5 * (((values - returns[mb]) ** 2) * m).sum() / m.sum()
                loss = pg_loss + args.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
                optimizer.step()
                clip_fracs.append((((ratio - 1).abs() > args.clip_coef).float() * m).sum().item() / m.sum().item())

        if iteration % args.mask_sync_every == 0:  # the mask follows the policy, with a lag
            mask_model.load_state_dict(model.state_dict())

        # adaptive KL controller: move beta towards the target KL
        episode_kl = kl.sum(1).mean().item()
        error = float(np.clip(episode_kl / args.target_kl - 1, -0.2, 0.2))
        kl_coef *= 1 + error * E / args.kl_horizon

        tokens += int(episodes.agent_mask.sum())
        sps = tokens / (time.time() - started)
        metrics = {
            "charts/episodic_return": episodes.rewards.mean().item(),
            "charts/episode_length": episodes.agent_mask.sum(1).float().mean().item(),
            "charts/kl_coef": kl_coef,
            "losses/policy_loss": pg_loss.item(),
            "losses/value_loss": v_loss.item(),
            "losses/approx_kl_ref": episode_kl,
            "losses/clipfrac": float(np.mean(clip_fracs)),
            "charts/mask_size": (keep.sum(-1).float() * agent).sum().item() / agent.sum().item(),
            "charts/SPS": sps,
        }
        for key, value in metrics.items():
            writer.add_scalar(key, value, iteration)
            csv_out.writerow([iteration, key, value])
        bar.set_postfix(reward=f"{metrics['charts/episodic_return']:.3f}", sps=f"{sps:.0f}")
        if args.checkpoint_every and iteration % args.checkpoint_every == 0:
            save_checkpoint(
                checkpoint, model, value_head, optimizer, iteration, kl_coef=kl_coef, mask_model=mask_model.state_dict()
            )

    done = max(start, args.total_iterations)  # a rerun with a smaller total keeps the step its weights reached
    save_checkpoint(checkpoint, model, value_head, optimizer, done, kl_coef=kl_coef, mask_model=mask_model.state_dict())
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


def save_checkpoint(path: Path, model, value_head, optimizer, iteration: int, **extra) -> None:
    """Write atomically: a killed run leaves the previous checkpoint intact."""
    state = {
        "model": model.state_dict(),
        "value_head": value_head.state_dict(),
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
