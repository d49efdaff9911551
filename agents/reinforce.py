"""REINFORCE: the policy-gradient update theta <- theta + alpha * grad J, for a causal LM.

Each iteration samples one episode per env slot with the rollout backend (one forward
pass per generated token, KV cache), then takes one gradient step on
``-(R - b) * sum_t log pi(a_t | s_t)``. The baseline ``b`` is either the mean reward of
the other episodes in the batch (leave-one-out, so the estimate stays unbiased) or a
learned value head on the hidden state before each token. One file, top to bottom, in
the style of cleanrl; the run plumbing (checkpoints, logging, evaluation) is
``common.py``'s; text_gym's public API only.

    python agents/sft.py --env-id TextTranslate-v0 --tokenizer words --total-updates 200
    python agents/reinforce.py --env-id TextTranslate-v0 \
        --init-model runs/TextTranslate-v0__sft__1/model
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import tyro
from common import BaseArgs, Run, collect, episode_metrics, load_policy, make_train_envs, seed_everything
from torch import nn

from text_gym.rollout import RolloutCollector, token_logprobs


@dataclass
class Args(BaseArgs):
    exp_name: str = "reinforce"
    total_iterations: int = 100
    """iterations (one batch of episodes and one gradient step each)"""
    num_envs: int = 32
    """env slots: episodes per iteration"""
    learning_rate: float = 1e-4
    """Adam learning rate"""
    baseline: str = "mean"
    """'mean' (leave-one-out batch mean reward) or 'value' (a learned value head)"""
    temperature: float = 1.0
    """sampling temperature of the rollouts"""


def main(args: Args) -> dict[str, float]:
    run = Run(args, total=args.total_iterations)

    # seeding
    seed_everything(args.seed)

    model, tokenizer = load_policy(args)
    envs = make_train_envs(args, tokenizer, args.num_envs)
    collector = RolloutCollector(model, envs, temperature=args.temperature)
    value_head = nn.Linear(model.config.hidden_size, 1).to(args.device)
    params = list(model.parameters()) + list(value_head.parameters())
    optimizer = torch.optim.Adam(params, lr=args.learning_rate)
    run.resume(model=model, value_head=value_head, optimizer=optimizer)

    for iteration in run.steps():
        # rollout: one episode per slot, prompts from seeded streams
        episodes = collect(model, collector, args, iteration)
        R = episodes.rewards  # (E,)
        E = len(R)

        # the policy gradient, with a baseline
        ids, attn, agent = episodes.trimmed()  # (E, T), (E, T), (E, T-1)
        logp, hidden = token_logprobs(model, ids, attn, hidden=args.baseline == "value")  # (E, T-1), (E, T-1, d)
        if args.baseline == "value":
            values = value_head(hidden.detach())[..., 0]  # (E, T-1): V(s_t), its own regression
            advantages = R[:, None] - values.detach()  # (E, T-1)
            v_loss = ((values - R[:, None]) ** 2 * agent).sum() / agent.sum()
        else:
            advantages = (R - (R.sum() - R) / max(E - 1, 1))[:, None]  # (E, 1): leave-one-out mean
            v_loss = torch.zeros((), device=R.device)
        pg_loss = -(advantages * logp * agent).sum() / E
        loss = pg_loss + v_loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        optimizer.step()

        metrics = {
            **episode_metrics(episodes),
            "losses/policy_loss": pg_loss.item(),
            "losses/value_loss": v_loss.item(),
        }
        run.log(iteration, metrics, int(episodes.agent_mask.sum()), show=("reward", "charts/episodic_return"))
        run.checkpoint(iteration)

    return {"eval_return": run.finish(model, tokenizer)}


if __name__ == "__main__":
    print(main(tyro.cli(Args)))
