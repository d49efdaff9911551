"""GRPO: group-relative policy optimisation (Shao et al., 2024, DeepSeekMath), for a causal LM.

Each iteration draws ``num_envs / group_size`` prompts and answers each ``group_size``
times: the env's ``sample_index`` reset option puts one prompt in a group of slots, and
the rollout backend samples every answer in one batch (one forward pass per token, KV
cache). An answer's advantage is its reward standardised within its group, so no value
model is needed; every token of the answer shares it. The loss is PPO's clipped
surrogate per token plus an optional KL term to the frozen starting model (the k3
estimator). One file, top to bottom, in the style of cleanrl; the run plumbing
(checkpoints, logging, evaluation) is ``common.py``'s; text_gym's public API only.

    python agents/grpo.py --env-id TextTranslate-v0 --init-model runs/TextTranslate-v0__sft__1/model
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import tyro
from common import (
    BaseArgs,
    Run,
    collect,
    episode_metrics,
    keep_to_training_samples,
    load_policy,
    make_envs,
    seed_everything,
)

from text_gym.rollout import RolloutCollector, token_logprobs


@dataclass
class Args(BaseArgs):
    exp_name: str = "grpo"
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


def main(args: Args) -> dict[str, float]:
    if args.group_size < 2 or args.num_envs % args.group_size:
        raise ValueError(f"num_envs={args.num_envs} must be a multiple of group_size={args.group_size} >= 2")
    run = Run(args, total=args.total_iterations)

    # seeding
    seed_everything(args.seed)

    model, tokenizer = load_policy(args)
    reference = copy.deepcopy(model).eval().requires_grad_(False)  # frozen: the KL anchor
    envs = make_envs(args, tokenizer, args.num_envs)
    pool = torch.as_tensor(keep_to_training_samples(envs.unwrapped, args))  # the groups' prompts: not validation
    collector = RolloutCollector(model, envs)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    run.resume(model=model, optimizer=optimizer)

    for iteration in run.steps():
        # rollout: group_size answers to each of num_envs / group_size prompts
        draw = torch.Generator().manual_seed(args.seed * 1_000_000 + iteration)
        prompts = pool[torch.randint(len(pool), (args.num_envs // args.group_size,), generator=draw)]
        sample_index = prompts.repeat_interleave(args.group_size).numpy()  # (E,): G slots per prompt
        episodes = collect(model, collector, args, iteration, sample_index=sample_index)
        ids, attn, agent = episodes.trimmed()  # (E, T), (E, T), (E, T-1)
        E = ids.shape[0]

        # group-relative advantages: each answer against the others to its prompt
        groups = episodes.rewards.view(-1, args.group_size)  # (prompts, G)
        advantages = groups - groups.mean(1, keepdim=True)
        if args.scale_rewards:
            advantages = advantages / (groups.std(1, keepdim=True) + 1e-4)
        advantages = advantages.reshape(E, 1)  # every token of an answer shares it
        with torch.no_grad():
            old_logp, _ = token_logprobs(model, ids, attn)  # (E, T-1)
            ref_logp, _ = token_logprobs(reference, ids, attn) if args.beta else (old_logp, None)

        # the clipped surrogate plus the KL term, several epochs of minibatches
        order = torch.randperm(E)
        clip_fracs, kls = [], []
        for _ in range(args.update_epochs):
            for mb in order.chunk(args.num_minibatches):
                logp, _ = token_logprobs(model, ids[mb], attn[mb])  # (e, T-1)
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

        metrics = {
            **episode_metrics(episodes),
            "charts/solved_groups": (groups.max(1).values > groups.min(1).values).float().mean().item(),
            "losses/policy_loss": pg_loss.item(),
            "losses/kl_ref": float(np.mean(kls)),
            "losses/clipfrac": float(np.mean(clip_fracs)),
        }
        run.log(iteration, metrics, int(episodes.agent_mask.sum()), show=("reward", "charts/episodic_return"))
        run.checkpoint(iteration)

    return {"eval_return": run.finish(model, tokenizer)}


if __name__ == "__main__":
    print(main(tyro.cli(Args)))
