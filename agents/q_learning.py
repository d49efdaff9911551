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
minibatch gives every token's Q. One file, top to bottom, in the style of cleanrl; the
run plumbing (checkpoints, logging, evaluation) is ``common.py``'s; text_gym's public API
only.

    python agents/q_learning.py --env-id TextTranslate-v0 --init-model runs/TextTranslate-v0__sft__1/model
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import tyro
from common import BaseArgs, Run, collect, episode_metrics, load_policy, make_train_envs, seed_everything
from torch import nn

from text_gym.rollout import Episodes, RolloutCollector, token_logprobs


@dataclass
class Args(BaseArgs):
    exp_name: str = "q_learning"
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


def td_targets(rewards, values, agent, gamma: float) -> torch.Tensor:
    """r_t + gamma * V(next decision state) at each agent token (E, T-1), where ``values[:, t]``
    is V of the state token t+1 is chosen in; V after the last agent token is 0. Columns
    between two agent tokens (a simulated user's reply) are skipped."""
    targets = torch.zeros_like(rewards)  # (E, T-1)
    following = torch.zeros_like(rewards[:, 0])  # (E,): V of the next decision state
    for t in reversed(range(rewards.shape[1])):
        acting = agent[:, t] > 0
        targets[:, t] = rewards[:, t] + gamma * following
        following = torch.where(acting, values[:, t], following)
    return targets


def main(args: Args) -> dict[str, float]:
    run = Run(args, total=args.total_iterations)

    # seeding
    seed_everything(args.seed)

    model, tokenizer = load_policy(args)
    reference = copy.deepcopy(model).eval().requires_grad_(False)  # the prior: Q is measured against it
    d = model.config.hidden_size
    value_head = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1)).to(args.device)
    target, target_value = copy.deepcopy(model).eval(), copy.deepcopy(value_head)
    envs = make_train_envs(args, tokenizer, args.num_envs)
    collector = RolloutCollector(model, envs)  # samples the Boltzmann policy of Q: the model itself
    params = list(model.parameters()) + list(value_head.parameters())
    optimizer = torch.optim.Adam(params, lr=args.learning_rate)
    saved = run.resume(
        model=model, value_head=value_head, target=target, target_value=target_value, optimizer=optimizer
    )
    buffer: dict[str, torch.Tensor] = saved.get("buffer", {})

    for iteration in run.steps():
        # rollout with the Boltzmann policy; the episodes join the replay buffer
        episodes = collect(model, collector, args, iteration)
        fresh = {
            k: getattr(episodes, k)
            for k in ("input_ids", "attention_mask", "agent_mask", "rewards", "terminated", "sample_index")
        }
        buffer = {k: torch.cat((buffer[k], v))[-args.buffer_size :] if buffer else v for k, v in fresh.items()}

        # TD updates on minibatches of replayed episodes
        for _ in range(args.updates_per_iteration):
            idx = torch.randint(len(buffer["rewards"]), (args.batch_size,))
            batch = Episodes(**{k: v[idx] for k, v in buffer.items()})
            ids, attn, agent = batch.trimmed()  # (B, T), (B, T), (B, T-1)
            B = ids.shape[0]
            with torch.no_grad():
                _, target_hidden = token_logprobs(target, ids, attn, hidden=True)  # (B, T-1, d)
                v_target = target_value(target_hidden)[..., 0]  # (B, T-1): V(s_t) of the target net
                ref_logp, _ = token_logprobs(reference, ids, attn)  # (B, T-1)
                rewards = torch.zeros_like(agent)  # (B, T-1): the task's reward on each row's last agent token
                last = (agent * torch.arange(agent.shape[1], device=agent.device)).argmax(1)  # (B,)
                rewards[torch.arange(B, device=last.device), last] = batch.rewards
                targets = td_targets(rewards, v_target, agent, args.gamma)  # r + gamma V(s')
            logp, hidden = token_logprobs(model, ids, attn, hidden=True)  # (B, T-1), (B, T-1, d)
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

        metrics = {
            **episode_metrics(episodes),
            "losses/td_loss": td_loss.item(),
            "losses/q_values": ((q.detach() * agent).sum() / agent.sum()).item(),
            "losses/kl_ref": (((logp - ref_logp).detach() * agent).sum() / B).item(),
        }
        run.log(iteration, metrics, int(episodes.agent_mask.sum()), show=("reward", "charts/episodic_return"))
        run.checkpoint(iteration, buffer=buffer)

    return {"eval_return": run.finish(model, tokenizer, buffer=buffer)}


if __name__ == "__main__":
    print(main(tyro.cli(Args)))
