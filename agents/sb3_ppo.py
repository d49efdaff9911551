"""Stable-Baselines3's PPO, unmodified, with a language-model policy: the "SFT + SB3 PPO (LM policy)" row.

SB3's ``PPO`` trains ``LMActorCriticPolicy`` (``text_gym.adapters.sb3``), its actor the warm
start's causal LM (``init_from=--init-model``) and its critic a linear head on the LM's last
hidden state, on ``to_vec_env(env_id, num_envs)``: one env step is one token, the env pays
the task's reward at the episode's last token. SB3 collects ``n_steps`` steps in each of
``num_envs`` slots, then trains ``update_epochs`` passes of ``num_minibatches`` minibatches
of steps, with GAE and the clipped surrogate; a slot's episode that is cut by the end of a
rollout goes on in the next one.

The episodes budget: an iteration is one SB3 rollout plus its update. Episodes have
variable length, so ``n_steps`` is set to the mean number of agent tokens of an episode
(by default the mean reference response of the training split in the env's tokens, plus
its stop token, which a warm start's answers track), and an iteration then holds about
``num_envs`` episodes, as an iteration of ``ppo.py`` does; the number that finished is
logged (``charts/episodes``). A ``BaseCallback`` logs each iteration's mean return of the
episodes that finished in it (``charts/episodic_return``) and SB3's training losses through
``common.Run``, and checkpoints the policy and its optimizer; the run ends with
``run.finish`` on the policy's LM: the model folder and the greedy held-out evaluation
through the rollout backend, as for every agent.

    python agents/sb3_ppo.py --env-id TextTranslate-v0 --init-model runs/TextTranslate-v0__sft__1/model
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import tyro
from common import BaseArgs, Run, keep_to_training_samples, seed_everything
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from text_gym import load_tokenizer
from text_gym.adapters.sb3 import LMActorCriticPolicy, to_vec_env


@dataclass
class Args(BaseArgs):
    exp_name: str = "sb3_ppo"
    total_iterations: int = 100
    """iterations (one SB3 rollout of about num_envs episodes, then update_epochs passes over it)"""
    num_envs: int = 32
    """env slots (episodes per iteration, about)"""
    n_steps: int = 0
    """steps per slot in a rollout (0: the mean agent tokens of a reference answer, so an iteration
    holds about num_envs episodes)"""
    learning_rate: float = 1e-4
    """Adam learning rate"""
    update_epochs: int = 2
    """passes over each rollout (SB3's n_epochs)"""
    num_minibatches: int = 2
    """minibatches per pass (of n_steps * num_envs steps)"""
    clip_coef: float = 0.2
    """the surrogate clipping coefficient (SB3's clip_range)"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    gamma: float = 1.0
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE lambda"""


def steps_per_episode(args: Args, tokenizer) -> int:
    """The mean agent tokens of an episode that writes a reference answer: its tokens plus
    the stop token, within the env's response budget."""
    env = gym.make(args.env_id, tokenizer=tokenizer, disable_env_checker=True, **json.loads(args.env_kwargs))
    task, budget = env.unwrapped.vector.task, env.unwrapped.vector.max_new_tokens
    answers = [" " + s.references[0] for s in task.samples]
    lengths = [min(len(ids) + 1, budget) for ids in tokenizer.encode_batch(answers)]
    return max(1, math.ceil(np.mean(lengths)))


class LogIterations(BaseCallback):
    """Per iteration: the mean return, length and count of the episodes that finished in its
    rollout, and SB3's losses of its update, written through ``common.Run`` once the update
    is done (at the next rollout's start, or the end of training); then the checkpoint."""

    def __init__(self, run: Run, num_envs: int) -> None:
        super().__init__()
        self.run, self.returns, self.lengths = run, np.zeros(num_envs), np.zeros(num_envs, dtype=np.int64)
        self.finished_returns: list[float] = []
        self.finished_lengths: list[int] = []
        self.iterations, self.rollout = run.steps(), None

    def _on_rollout_start(self) -> None:
        self._write()

    def _on_step(self) -> bool:
        dones = self.locals["dones"]  # (num_envs,) episodes that ended at this step
        self.returns += self.locals["rewards"]
        self.lengths += 1
        self.finished_returns.extend(self.returns[dones].tolist())
        self.finished_lengths.extend(self.lengths[dones].tolist())
        self.returns[dones], self.lengths[dones] = 0.0, 0
        return True

    def _on_rollout_end(self) -> None:
        returns, lengths = self.finished_returns, self.finished_lengths
        self.rollout = {
            "charts/episodic_return": float(np.mean(returns)) if returns else float("nan"),
            "charts/episode_length": float(np.mean(lengths)) if lengths else float("nan"),
            "charts/episodes": len(returns),
        }

    def _on_training_end(self) -> None:
        self._write()

    def _write(self) -> None:
        self.finished_returns, self.finished_lengths = [], []
        if self.rollout is None:  # the first rollout starts: nothing done yet
            return
        losses = self.model.logger.name_to_value  # the update's values, until SB3 dumps them
        metrics = {
            **self.rollout,
            "losses/policy_loss": losses.get("train/policy_gradient_loss", float("nan")),
            "losses/value_loss": losses.get("train/value_loss", float("nan")),
            "losses/approx_kl": losses.get("train/approx_kl", float("nan")),
            "losses/clipfrac": losses.get("train/clip_fraction", float("nan")),
        }
        iteration, self.rollout = next(self.iterations), None
        steps = self.model.n_steps * self.model.n_envs
        self.run.log(iteration, metrics, steps, show=("return", "charts/episodic_return"))
        self.run.checkpoint(iteration)


def main(args: Args) -> dict[str, float]:
    if not args.init_model:
        raise ValueError("sb3_ppo starts from a warm start: pass --init-model runs/<env>__sft__<seed>/model")
    run = Run(args, total=args.total_iterations)

    # seeding (SB3 seeds again, and the env, with the same seed)
    seed_everything(args.seed)

    tokenizer = load_tokenizer(args.init_model)
    n_steps = args.n_steps or steps_per_episode(args, tokenizer)
    batch = n_steps * args.num_envs
    if batch % args.num_minibatches:
        raise ValueError(
            f"n_steps * num_envs = {n_steps} * {args.num_envs} = {batch} steps per rollout must be a multiple "
            f"of num_minibatches={args.num_minibatches}; choose --n-steps or --num-minibatches to fit"
        )
    venv = to_vec_env(args.env_id, args.num_envs, tokenizer=tokenizer, **json.loads(args.env_kwargs))
    keep_to_training_samples(venv.env.unwrapped, args)  # episodes never start on a validation sample
    model = PPO(
        LMActorCriticPolicy,
        venv,
        n_steps=n_steps,
        batch_size=batch // args.num_minibatches,
        n_epochs=args.update_epochs,
        learning_rate=args.learning_rate,
        gamma=args.gamma,
        gae_lambda=args.gae_lambda,
        clip_range=args.clip_coef,
        vf_coef=args.vf_coef,
        ent_coef=args.ent_coef,
        max_grad_norm=args.max_grad_norm,
        seed=args.seed,
        device=args.device,
        policy_kwargs={"init_from": args.init_model, "tokenizer": tokenizer},
    )
    run.resume(policy=model.policy, optimizer=model.policy.optimizer)

    remaining = args.total_iterations - run.start
    if remaining > 0:
        model.learn(remaining * batch, callback=LogIterations(run, args.num_envs))

    return {"eval_return": run.finish(model.policy.lm, tokenizer), "n_steps": n_steps}


if __name__ == "__main__":
    print(main(tyro.cli(Args)))
