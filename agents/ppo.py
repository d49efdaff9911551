"""Token-level PPO for a causal LM, with a KL penalty to a frozen reference (RL4LMs, InstructGPT).

Each iteration samples one episode per env slot with the rollout backend (one forward
pass per generated token, KV cache). One batched pass over the finished episodes then
gives the old log-probs, the values and the reference log-probs (not four passes per
token). Every agent token gets the reward ``-beta * (log pi - log pi_ref)``, the last one
also the task's reward; advantages come from GAE; the clipped objective is optimised for
a few epochs of minibatches. ``beta`` follows an adaptive controller towards a target KL
(Ziegler et al., 2019). The value head is a small MLP on the policy's hidden states
(detached, so value regression does not pull the language model). One file, top to
bottom, in the style of cleanrl; the run plumbing (checkpoints, logging, evaluation) is
``common.py``'s; text_gym's public API only. ``nlpo.py`` reuses ``score``, ``update``,
``adapt_kl_coef`` and ``report``.

    python agents/ppo.py --env-id TextTranslate-v0 --init-model runs/TextTranslate-v0__sft__1/model
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import tyro
from common import BaseArgs, Run, collect, episode_metrics, load_policy, make_train_envs, seed_everything
from torch import nn

from text_gym.rollout import Episodes, RolloutCollector, token_logprobs


@dataclass
class Args(BaseArgs):
    exp_name: str = "ppo"
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


@dataclass
class Batch:
    """Finished episodes as the update reads them. ``ids`` and ``attn`` are (E, T); the rest
    are per token choice, (E, T-1), zero where the agent did not act; ``keep`` (E, T-1, V) is
    the allowed tokens at each position (NLPO's mask), None for the whole vocabulary."""

    ids: torch.Tensor
    attn: torch.Tensor
    agent: torch.Tensor
    old_logp: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    kl: torch.Tensor
    keep: torch.Tensor | None = None


def gae(rewards, values, agent, gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimates over each row's agent tokens (other columns, e.g. a
    simulated user's reply, are skipped); the value after the last agent token is 0."""
    advantages = torch.zeros_like(rewards)  # (E, T-1)
    last_gae = torch.zeros_like(rewards[:, 0])  # (E,)
    next_value = torch.zeros_like(rewards[:, 0])  # (E,)
    for t in reversed(range(rewards.shape[1])):
        acting = agent[:, t] > 0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        step_gae = delta + gamma * lam * last_gae
        advantages[:, t] = torch.where(acting, step_gae, 0.0)
        last_gae = torch.where(acting, step_gae, last_gae)
        next_value = torch.where(acting, values[:, t], next_value)
    return advantages


@torch.no_grad()
def score(model, reference, value_head, episodes: Episodes, kl_coef: float, args: Args, keep=None) -> Batch:
    """One batched pass over the finished episodes for the old log-probs, the values and the
    reference's log-probs; the per-token KL reward plus the task's reward on each row's last
    agent token; GAE advantages (normalised over all agent tokens) and returns."""
    ids, attn, agent = episodes.trimmed()  # (E, T), (E, T), (E, T-1)
    E = ids.shape[0]
    old_logp, hidden = token_logprobs(model, ids, attn, hidden=True, keep=keep)  # (E, T-1), (E, T-1, d)
    old_values = value_head(hidden)[..., 0] * agent  # (E, T-1)
    ref_logp, _ = token_logprobs(reference, ids, attn)  # (E, T-1)
    kl = (old_logp - ref_logp) * agent  # (E, T-1): per-token KL sample
    rewards = -kl_coef * kl
    last = (agent * torch.arange(agent.shape[1], device=agent.device)).argmax(1)  # (E,): each row's last agent token
    rewards[torch.arange(E, device=last.device), last] += episodes.rewards
    advantages = gae(rewards, old_values, agent, args.gamma, args.gae_lambda)
    returns = advantages + old_values
    n = agent.sum()
    mean = advantages.sum() / n
    std = (((advantages - mean) ** 2 * agent).sum() / n).sqrt()
    norm_adv = (advantages - mean) / (std + 1e-8) * agent
    return Batch(ids, attn, agent, old_logp, norm_adv, returns, kl, keep)


def update(model, value_head, optimizer, params: list, batch: Batch, args: Args) -> tuple[float, float, float]:
    """The clipped surrogate and the value regression, ``update_epochs`` passes over the
    batch in ``num_minibatches`` minibatches of whole episodes. Returns the last minibatch's
    policy and value losses and the mean fraction of clipped ratios."""
    order = torch.randperm(len(batch.ids))
    clip_fracs = []
    for _ in range(args.update_epochs):
        for mb in order.chunk(args.num_minibatches):
            keep = None if batch.keep is None else batch.keep[mb]
            logp, hidden = token_logprobs(model, batch.ids[mb], batch.attn[mb], hidden=True, keep=keep)  # (e, T-1)
            values = value_head(hidden.detach())[..., 0]  # (e, T-1)
            m, adv = batch.agent[mb], batch.advantages[mb]
            ratio = (logp - batch.old_logp[mb]).exp()
            pg_loss1 = -adv * ratio
            pg_loss2 = -adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)
            pg_loss = (torch.max(pg_loss1, pg_loss2) * m).sum() / m.sum()
            v_loss = 0.5 * (((values - batch.returns[mb]) ** 2) * m).sum() / m.sum()
            loss = pg_loss + args.vf_coef * v_loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            optimizer.step()
            clip_fracs.append((((ratio - 1).abs() > args.clip_coef).float() * m).sum().item() / m.sum().item())
    return pg_loss.item(), v_loss.item(), float(np.mean(clip_fracs))


def adapt_kl_coef(kl_coef: float, kl: torch.Tensor, args: Args) -> tuple[float, float]:
    """The adaptive KL controller: move beta towards the target KL, by at most 20% per
    ``kl_horizon`` episodes. Returns the new beta and the episodes' mean KL."""
    episode_kl = kl.sum(1).mean().item()
    error = float(np.clip(episode_kl / args.target_kl - 1, -0.2, 0.2))
    return kl_coef * (1 + error * kl.shape[0] / args.kl_horizon), episode_kl


def report(episodes: Episodes, kl_coef: float, episode_kl: float, losses: tuple[float, float, float]) -> dict:
    """An iteration's metrics."""
    pg_loss, v_loss, clipfrac = losses
    return {
        **episode_metrics(episodes),
        "charts/kl_coef": kl_coef,
        "losses/policy_loss": pg_loss,
        "losses/value_loss": v_loss,
        "losses/approx_kl_ref": episode_kl,
        "losses/clipfrac": clipfrac,
    }


def main(args: Args) -> dict[str, float]:
    run = Run(args, total=args.total_iterations)

    # seeding
    seed_everything(args.seed)

    model, tokenizer = load_policy(args)
    reference = copy.deepcopy(model).eval().requires_grad_(False)  # frozen: the KL anchor
    collector = RolloutCollector(model, make_train_envs(args, tokenizer, args.num_envs))
    d = model.config.hidden_size
    value_head = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1)).to(args.device)
    params = list(model.parameters()) + list(value_head.parameters())
    optimizer = torch.optim.Adam(params, lr=args.learning_rate)
    saved = run.resume(model=model, value_head=value_head, optimizer=optimizer)
    kl_coef = saved.get("kl_coef", args.init_kl_coef)

    for iteration in run.steps():
        # rollout: one episode per slot, prompts from seeded streams
        episodes = collect(model, collector, args, iteration)

        # one batched pass for old log-probs, values and the reference's log-probs; rewards, GAE
        batch = score(model, reference, value_head, episodes, kl_coef, args)

        # the clipped surrogate, several epochs of minibatches
        losses = update(model, value_head, optimizer, params, batch, args)

        # adaptive KL controller: move beta towards the target KL
        kl_coef, episode_kl = adapt_kl_coef(kl_coef, batch.kl, args)

        metrics = report(episodes, kl_coef, episode_kl, losses)
        run.log(iteration, metrics, int(episodes.agent_mask.sum()), show=("reward", "charts/episodic_return"))
        run.checkpoint(iteration, kl_coef=kl_coef)

    return {"eval_return": run.finish(model, tokenizer, kl_coef=kl_coef)}


if __name__ == "__main__":
    print(main(tyro.cli(Args)))
