"""NLPO: PPO whose action space is masked to the top-p tokens of a periodically synced policy copy.

Natural Language Policy Optimization (Ramamurthy et al., 2023, RL4LMs) keeps PPO (value
head, GAE, clipped objective, adaptive KL penalty to a frozen reference; ``ppo.py``'s
``score``, ``update``, ``adapt_kl_coef`` and ``report``) but samples and scores every
token from the policy restricted to the smallest set of tokens whose probability under a
*mask model* reaches ``top_p``. The mask model is a copy of the policy re-synced every
``mask_sync_every`` iterations, so the action space shrinks to what a recent policy found
plausible. Sampling uses the rollout backend's logits-processor hook; the mask model
keeps its own KV cache by being fed the same observations (``WindowRunner.feed``).
One file, top to bottom, in the style of cleanrl; the run plumbing is ``common.py``'s;
text_gym's public API only.

    python agents/nlpo.py --env-id TextTranslate-v0 --init-model runs/TextTranslate-v0__sft__1/model
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import ppo
import torch
import tyro
from common import Run, collect, load_policy, make_train_envs, seed_everything
from torch import nn

from text_gym.rollout import RolloutCollector, WindowRunner, top_p_keep


@dataclass
class Args(ppo.Args):
    exp_name: str = "nlpo"
    top_p: float = 0.9
    """the mask keeps the smallest set of tokens whose mask-model probability reaches top_p"""
    mask_sync_every: int = 5
    """iterations between copies of the policy into the mask model"""


@torch.no_grad()
def mask_of(mask_model, ids, attn, vocab: int, top_p: float) -> torch.Tensor:
    """The mask model's top-p sets at every position of whole episodes, (E, T-1, V).

    Each set also holds the token that came next in the episode: this full pass can round a
    sampled token just outside the nucleus that the rollout's incremental pass put it in,
    and a token outside its set would get a log-prob of about -1e9 (a huge KL reward)."""
    positions = (attn.cumsum(1) - 1).clamp(min=0)  # (E, T): left padding takes no position
    logits = mask_model(input_ids=ids, attention_mask=attn, position_ids=positions).logits[:, :-1, :vocab]
    return top_p_keep(logits, top_p).scatter_(2, ids[:, 1:, None], True)


def main(args: Args) -> dict[str, float]:
    run = Run(args, total=args.total_iterations)

    # seeding
    seed_everything(args.seed)

    model, tokenizer = load_policy(args)
    reference = copy.deepcopy(model).eval().requires_grad_(False)  # frozen: the KL anchor
    mask_model = copy.deepcopy(model).eval().requires_grad_(False)
    envs = make_train_envs(args, tokenizer, args.num_envs)
    V = envs.unwrapped.vocab_size
    # the mask model follows the same observations with its own KV cache; the policy samples
    # only among the mask model's top-p tokens at each step
    mask_runner = WindowRunner(mask_model, envs)

    def restrict(logits, obs):
        return logits.masked_fill(~top_p_keep(mask_runner.feed(obs)[0][:, :V], args.top_p), float("-inf"))

    collector = RolloutCollector(model, envs, logits_processor=restrict)
    d = model.config.hidden_size
    value_head = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1)).to(args.device)
    params = list(model.parameters()) + list(value_head.parameters())
    optimizer = torch.optim.Adam(params, lr=args.learning_rate)
    saved = run.resume(model=model, value_head=value_head, optimizer=optimizer, mask_model=mask_model)
    kl_coef = saved.get("kl_coef", args.init_kl_coef)

    for iteration in run.steps():
        # rollout: one episode per slot, each token sampled within the mask model's top-p set
        episodes = collect(model, collector, args, iteration)

        # PPO's batched pass and update, on the policy masked as it was sampled
        ids, attn, _ = episodes.trimmed()  # (E, T), (E, T)
        keep = mask_of(mask_model, ids, attn, V, args.top_p)  # (E, T-1, V)
        batch = ppo.score(model, reference, value_head, episodes, kl_coef, args, keep=keep)
        losses = ppo.update(model, value_head, optimizer, params, batch, args)

        if iteration % args.mask_sync_every == 0:  # the mask follows the policy, with a lag
            mask_model.load_state_dict(model.state_dict())

        kl_coef, episode_kl = ppo.adapt_kl_coef(kl_coef, batch.kl, args)

        agent = batch.agent  # (E, T-1)
        mask_size = (keep.sum(-1).float() * agent).sum().item() / agent.sum().item()
        metrics = {**ppo.report(episodes, kl_coef, episode_kl, losses), "charts/mask_size": mask_size}
        run.log(iteration, metrics, int(episodes.agent_mask.sum()), show=("reward", "charts/episodic_return"))
        run.checkpoint(iteration, kl_coef=kl_coef)

    return {"eval_return": run.finish(model, tokenizer, kl_coef=kl_coef)}


if __name__ == "__main__":
    print(main(tyro.cli(Args)))
