"""TRL's GRPO, unmodified, on a text_gym task: the "SFT + TRL GRPO" row of the learning table.

TRL's ``GRPOTrainer`` trains the warm start on ``prompt_dataset(env_id)`` with
``reward_function(env_id)`` (``text_gym.adapters.trl``): it samples whole completions with
``model.generate`` and scores them with the task's own scorer, the env's final reward for
the same text. The flags mirror ``grpo.py`` and map onto TRL's settings so that one
iteration is the same budget of episodes:

* an iteration is one generation batch of ``num_envs`` completions, ``group_size`` per
  prompt (TRL's ``generation_batch_size``, ``num_generations``), then ``update_epochs``
  passes (``num_iterations``) of ``num_minibatches`` optimizer steps
  (``steps_per_generation``, ``per_device_train_batch_size = num_envs / num_minibatches``);
* completions stop at the env's stop token or its response budget
  (``max_completion_length``), sampled at temperature 1; Adam at a constant learning rate,
  the clipped surrogate (``epsilon``) and the KL term to the starting model (``beta``).

A ``TrainerCallback`` logs each iteration's mean training reward (``charts/episodic_return``)
through ``common.Run``; the run ends as every agent's does, with ``run.finish``: the model
folder and the greedy held-out evaluation through the rollout backend. TRL's own checkpoints
go to ``<run>/trl/`` every ``--checkpoint-every`` iterations: a run started again resumes
from the last (weights, optimizer, data order); a finished run started again only evaluates
its final weights again.

    python agents/trl_grpo.py --env-id TextTranslate-v0 --init-model runs/TextTranslate-v0__sft__1/model
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import tyro
from common import BaseArgs, Run, load_policy, seed_everything, training_samples
from transformers import AutoTokenizer, PrinterCallback, TrainerCallback, TrainerState
from transformers.trainer_utils import get_last_checkpoint
from trl import GRPOConfig, GRPOTrainer

from text_gym.adapters.trl import prompt_dataset, reward_function


@dataclass
class Args(BaseArgs):
    exp_name: str = "trl_grpo"
    total_iterations: int = 100
    """iterations (one generation batch of num_envs completions, then update_epochs passes over it)"""
    num_envs: int = 32
    """completions per iteration (a multiple of group_size and of num_minibatches)"""
    group_size: int = 8
    """completions sampled per prompt (TRL's num_generations)"""
    learning_rate: float = 1e-4
    """Adam learning rate (constant)"""
    update_epochs: int = 2
    """passes over each generation batch (TRL's num_iterations)"""
    num_minibatches: int = 2
    """optimizer steps per pass (TRL's steps_per_generation)"""
    clip_coef: float = 0.2
    """the surrogate clipping coefficient (TRL's epsilon)"""
    beta: float = 0.02
    """weight of the KL term to the starting model (0: none, and no reference model is kept)"""
    scale_rewards: bool = True
    """divide group-centred rewards by the group's standard deviation"""
    loss_type: str = "dapo"
    """TRL's token-loss aggregation ('dapo': mean over the batch's completion tokens, as grpo.py)"""


class LogIterations(TrainerCallback):
    """Writes TRL's log of each iteration through ``common.Run``: the training reward as
    ``charts/episodic_return``, the completions' mean length, the loss and the KL term."""

    def __init__(self, run: Run, steps_per_iteration: int, num_envs: int) -> None:
        self.run, self.steps_per_iteration, self.num_envs = run, steps_per_iteration, num_envs
        self.iterations = run.steps()  # the progress bar, from the iteration a resumed run reached

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "reward" not in logs:  # the summary log at the end of train()
            return
        iteration = next(self.iterations)
        if iteration * self.steps_per_iteration != state.global_step:
            raise RuntimeError(f"TRL logged at step {state.global_step}, not at the end of iteration {iteration}")
        length = logs.get("completions/mean_length", 0.0)
        metrics = {
            "charts/episodic_return": logs["reward"],
            "charts/episode_length": length,
            "losses/policy_loss": logs.get("loss", float("nan")),
            "losses/kl_ref": logs.get("kl", 0.0),
        }
        self.run.log(iteration, metrics, int(length * self.num_envs), show=("reward", "charts/episodic_return"))


def main(args: Args) -> dict[str, float]:
    if args.group_size < 2 or args.num_envs % args.group_size or args.num_envs % args.num_minibatches:
        raise ValueError(
            f"num_envs={args.num_envs} must be a multiple of group_size={args.group_size} >= 2 "
            f"and of num_minibatches={args.num_minibatches}"
        )
    if not args.init_model:
        raise ValueError("trl_grpo starts from a warm start: pass --init-model runs/<env>__sft__<seed>/model")
    run = Run(args, total=args.total_iterations)
    steps_per_iteration = args.update_epochs * args.num_minibatches

    # seeding (TRL seeds again with the same seed when the trainer is built)
    seed_everything(args.seed)

    model, tokenizer = load_policy(args)
    hf_tokenizer = AutoTokenizer.from_pretrained(args.init_model)
    hf_ids, env_ids = (
        (hf_tokenizer.eos_token_id, hf_tokenizer.pad_token_id),
        (tokenizer.eos_token_id, tokenizer.pad_token_id),
    )
    if hf_ids != env_ids:
        raise ValueError(
            f"{args.init_model}: AutoTokenizer's eos/pad ids {hf_ids} are not the env tokenizer's {env_ids}; "
            "save the model folder with agents/sft.py, which writes both"
        )
    model.generation_config.eos_token_id = tokenizer.eos_token_id  # a completion ends where the env's episode ends
    env_kwargs = {**json.loads(args.env_kwargs), "tokenizer": tokenizer}
    dataset = prompt_dataset(args.env_id, **env_kwargs)
    dataset = dataset.select(training_samples(len(dataset), args.val_fraction))  # never the validation part
    reward = reward_function(args.env_id, **env_kwargs)
    if len(dataset) < args.num_envs // args.group_size:  # TRL's sampler would yield no batch at all
        raise ValueError(
            f"{args.env_id} has {len(dataset)} prompts, fewer than the num_envs / group_size = "
            f"{args.num_envs // args.group_size} distinct prompts of an iteration; lower --num-envs or raise "
            "--group-size"
        )

    # resume: TRL's last checkpoint, or nothing to train when the run has finished
    output_dir = run.dir / "trl"
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if last and not run.checkpoint_path.exists():
        run.start = TrainerState.load_from_json(f"{last}/trainer_state.json").global_step // steps_per_iteration
    run.resume(model=model)  # a finished run's checkpoint holds its final weights
    if run.checkpoint_path.exists() and run.start < run.total:
        raise ValueError(
            f"{run.dir} finished at iteration {run.start}; a run of {run.total} iterations needs a new "
            "folder (another --exp-name or --runs-dir)"
        )

    config = GRPOConfig(
        output_dir=str(output_dir),
        max_steps=args.total_iterations * steps_per_iteration,
        per_device_train_batch_size=args.num_envs // args.num_minibatches,
        steps_per_generation=args.num_minibatches,
        num_iterations=args.update_epochs,
        num_generations=args.group_size,
        max_completion_length=reward.max_new_tokens,
        temperature=1.0,
        learning_rate=args.learning_rate,
        lr_scheduler_type="constant",
        max_grad_norm=args.max_grad_norm,
        epsilon=args.clip_coef,
        beta=args.beta,
        scale_rewards="group" if args.scale_rewards else "none",
        loss_type=args.loss_type,
        disable_dropout=True,
        logging_steps=steps_per_iteration,
        save_strategy="steps" if args.checkpoint_every else "no",
        save_steps=max(1, args.checkpoint_every) * steps_per_iteration,
        save_total_limit=1,
        seed=args.seed,
        use_cpu=args.device == "cpu",
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=config,
        train_dataset=dataset,
        processing_class=hf_tokenizer,
        callbacks=[LogIterations(run, steps_per_iteration, args.num_envs)],
    )
    trainer.remove_callback(PrinterCallback)  # the run's progress bar shows the reward; the rows go to metrics.csv
    if run.start < run.total:
        trainer.train(resume_from_checkpoint=last)

    return {"eval_return": run.finish(trainer.model, tokenizer)}


if __name__ == "__main__":
    print(main(tyro.cli(Args)))
