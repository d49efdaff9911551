"""Run plumbing shared by the reference agents: arguments, seeding, checkpoints, logging, evaluation.

Every agent in this folder imports it (``from common import ...``; a script's own folder is on
``sys.path``), so a fix to how runs are saved, logged or evaluated is made once, here. The
algorithms stay in their own files. A run lives in ``runs/<env>__<exp>__<seed>/``:

- ``checkpoint.pt``: the state of the run, written atomically every ``--checkpoint-every``
  steps and at the end; a run started again with the same arguments resumes from it;
- ``metrics.csv``: ``step,key,value`` rows, the same values as the TensorBoard events beside it;
- ``model/``: the trained policy and its tokenizer as a Hugging Face folder
  (``AutoModelForCausalLM`` and ``AutoTokenizer`` load it), which ``--init-model`` starts
  another agent from;
- ``eval_rewards.json``: the final greedy evaluation sample by sample (split, sample
  indices, rewards), so that a benchmark can bootstrap over samples, and the means of the
  task's metrics (``metrics``: e.g. a dialogue's ``success`` and ``turns``).

The validation part of a train split (``validation_samples``) is one fixed set for every
seed and agent: SFT does not train on it and selects its best weights on it, and
``--eval-split validation`` scores any agent on it, so a hyperparameter sweep can select
on it without touching the held-out split.
"""

from __future__ import annotations

import csv
import json
import os
import random
import sys
import time
import types
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM

from text_gym import load_tokenizer  # importing text_gym registers the env ids
from text_gym.rollout import Episodes, RolloutCollector, tiny_model
from text_gym.tokenizers import save_tokenizer


@dataclass
class BaseArgs:
    """The arguments of every agent; each agent's ``Args`` adds its own (and its ``exp_name``)."""

    exp_name: str = "agent"
    """the name of this experiment (the run folder is runs/<env>__<exp>__<seed>)"""
    env_id: str = "TextTranslate-v0"
    """the env to train on"""
    env_kwargs: str = "{}"
    """extra gym.make keyword arguments as JSON, e.g. '{"dataset": "easy", "level": 1}'"""
    seed: int = 1
    """seed of the experiment"""
    init_model: str = ""
    """the model to start from: a text_gym checkpoint (runs/<sft run>/model), a transformers model
    folder with its tokenizer, or a hub name; empty: a new tiny model"""
    tokenizer: str = "byte"
    """new tiny model only (an --init-model brings its own): its tokenizer ('byte', 'default',
    a saved word vocabulary)"""
    max_grad_norm: float = 1.0
    """gradient clipping"""
    eval_split: str = "test"
    """the split of the final greedy evaluation: the env's held-out split (passed as split=), or
    'validation' (the --val-fraction validation samples of the train split)"""
    eval_episodes: int = 256
    """samples in the final greedy evaluation (evenly spaced over the split)"""
    val_fraction: float = 0.1
    """the fraction of the train split set aside as validation samples, the same for every seed and
    agent: SFT does not train on them, --eval-split validation scores them"""
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


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators and ask torch for deterministic
    kernels, so that one seed gives one run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


# ------------------------------------------------------------------ the policy and the envs


def load_policy(args: BaseArgs, tokenizer: Any = None, hidden: int = 128, layers: int = 2):
    """The model, on ``--device`` and in train mode, and its tokenizer: from ``--init-model``
    (``load_pretrained``), or a new tiny model with ``tokenizer`` (default: ``--tokenizer``)."""
    if args.init_model:
        return load_pretrained(args.init_model, args.device)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(args.tokenizer)
    model = tiny_model(tokenizer, hidden=hidden, layers=layers, heads=4, kv_heads=2, seed=args.seed)
    return model.to(args.device).train(), tokenizer


def load_pretrained(spec: str, device: str = "cpu"):
    """A causal LM and its tokenizer from one place, the model on ``device`` in train mode.

    ``spec`` is a folder ``save_policy`` wrote (its tokenizer is the text_gym tokenizer it
    records, or for older checkpoints its ``words.json`` or the tokenizer its config names),
    a transformers model folder with its own tokenizer files, or a hub name (model and
    tokenizer from the hub). The tokenizer's name goes into ``model.config.text_gym_tokenizer``,
    which the rollout checks against the env's.

    Raises:
        ValueError: no model can be loaded from ``spec``, or it has no tokenizer.
    """
    try:
        model = AutoModelForCausalLM.from_pretrained(spec)
    except (OSError, ValueError) as error:
        reason = (str(error).strip().splitlines() or [""])[0]
        raise ValueError(
            f"no causal LM at {spec!r} ({type(error).__name__}: {reason}): pass a "
            "text_gym checkpoint (runs/<run>/model), a transformers model folder (save_pretrained), or a hub "
            "name (needs network or the hub's cache)"
        ) from error
    try:
        tokenizer = load_tokenizer(spec)
    except ValueError as error:
        raise ValueError(f"no tokenizer for the model {spec!r}: {error}") from error
    model.config.text_gym_tokenizer = tokenizer.name
    return model.to(device).train(), tokenizer


def save_policy(folder: Path, model, tokenizer) -> None:
    """The model and its tokenizer as one Hugging Face folder: ``AutoModelForCausalLM``,
    ``AutoTokenizer`` (``tokenizer.json``) and ``load_pretrained`` all read it."""
    model.save_pretrained(folder)
    save_tokenizer(tokenizer, folder)


def make_envs(args: BaseArgs, tokenizer, num_envs: int, **overrides) -> gym.vector.VectorEnv:
    """The vector env of ``--env-id`` with ``--env-kwargs`` (``overrides`` win), torch output on ``--device``."""
    return gym.make_vec(
        args.env_id,
        num_envs=num_envs,
        output="torch",
        device=args.device,
        tokenizer=tokenizer,
        **{**json.loads(args.env_kwargs), **overrides},
    )


def make_train_envs(args: BaseArgs, tokenizer, num_envs: int) -> gym.vector.VectorEnv:
    """``make_envs`` for training: episodes draw only from ``training_samples``, never from
    the validation part of the split (``--val-fraction``) that ``--eval-split validation``
    scores."""
    envs = make_envs(args, tokenizer, num_envs)
    keep_to_training_samples(envs.unwrapped, args)
    return envs


def keep_to_training_samples(env, args: BaseArgs) -> np.ndarray:
    """Pool ``env``'s (a ``TextVectorEnv``) seeded draws to ``training_samples`` of its task
    (``set_sample_pool``), and return them."""
    pool = training_samples(len(env.task), args.val_fraction)
    env.set_sample_pool(pool)
    return pool


def collect(model, collector: RolloutCollector, args: Any, iteration: int, **options) -> Episodes:
    """One episode per env slot (``args.num_envs``), sampled in eval mode, with ``options``
    passed to ``collect_episodes``. Iteration i resets slot j with seed
    ``seed * 1e6 + i * num_envs + j``: the prompts are a function of the seed and the
    iteration alone, so a resumed run draws what the unbroken run drew."""
    model.eval()
    episodes = collector.collect_episodes(seed=args.seed * 1_000_000 + iteration * args.num_envs, **options)
    model.train()
    return episodes


def episode_metrics(episodes: Episodes) -> dict[str, float]:
    """The mean reward and agent-token length of a batch of episodes."""
    return {
        "charts/episodic_return": episodes.rewards.mean().item(),
        "charts/episode_length": episodes.agent_mask.sum(1).float().mean().item(),
    }


# ------------------------------------------------------------------ validation and evaluation

VALIDATION = "validation"  # the --eval-split that names the validation part of the train split
VALIDATION_SEED = 0  # the fixed draw of every split's validation part, whatever the run's seed


def validation_samples(n: int, fraction: float) -> np.ndarray:
    """The validation part of a train split of ``n`` samples: sorted sample indices.

    ``round(fraction * n)`` of them (at least one when ``fraction > 0``), drawn by a
    permutation with a fixed seed, so the set depends on ``n`` and ``fraction`` only: every
    seed and every agent sees the same validation samples.

    Args:
        n: the number of samples in the train split.
        fraction: the share set aside, in ``[0, 1)``; 0 gives no validation samples.

    Returns:
        int64 ``(k,)`` indices, ascending.

    Raises:
        ValueError: ``fraction`` is outside ``[0, 1)``, or it leaves no sample to train on.

    Example:
        >>> validation_samples(10, 0.2).tolist() == validation_samples(10, 0.2).tolist()
        True
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction={fraction!r} must be in [0, 1): the share of the train split to validate on")
    k = max(1, round(fraction * n)) if fraction > 0 else 0
    if k >= n:
        raise ValueError(f"val_fraction={fraction!r} of a train split of {n} samples leaves none to train on; lower it")
    return np.sort(np.random.default_rng(VALIDATION_SEED).permutation(n)[:k])


def training_samples(n: int, fraction: float) -> np.ndarray:
    """The train split's samples outside ``validation_samples(n, fraction)``, ascending."""
    return np.setdiff1d(np.arange(n), validation_samples(n, fraction))


def evenly_spaced(n: int, episodes: int) -> np.ndarray:
    """Indices of ``min(n, episodes)`` evenly spaced items of ``n``, ascending: the samples an
    evaluation scores (a benchmark scoring something else on them calls this too)."""
    return np.unique(np.linspace(0, n - 1, min(n, episodes)).round().astype(int))


class Evaluation:
    """Greedy evaluation on fixed samples of one split; its envs are built once, so a run can
    score its model many times (SFT's validation) at the cost of the episodes alone.

    Args:
        args: the agent's arguments (``env_id``, ``env_kwargs``, ``eval_envs``, ``val_fraction``,
            ``device`` are read here).
        tokenizer: the model's tokenizer.
        split: an env split (passed as ``split=``), or ``"validation"``: the
            ``validation_samples`` of the train split (``--env-kwargs``' split, else ``"train"``).
        episodes: how many samples, evenly spaced over the split's (or its validation part).

    Attributes:
        split: as given.
        samples: the sample indices scored, ascending (indices into the env's task).

    Raises:
        ValueError: ``split`` is ``"validation"`` and ``--val-fraction`` is 0.
    """

    def __init__(self, args: BaseArgs, tokenizer, split: str, episodes: int) -> None:
        train_split = json.loads(args.env_kwargs).get("split", "train")
        self.split = split
        self.envs = make_envs(args, tokenizer, args.eval_envs, split=train_split if split == VALIDATION else split)
        n = len(self.envs.unwrapped.task)
        pool = validation_samples(n, args.val_fraction) if split == VALIDATION else np.arange(n)
        if len(pool) == 0:
            raise ValueError("the validation split is empty with --val-fraction 0: pass e.g. --val-fraction 0.1")
        self.samples = pool[evenly_spaced(len(pool), episodes)]

    @torch.no_grad()
    def rewards(self, model, metrics: bool = False) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(len(samples),) the greedy reward of each sample, in order; with ``metrics=True``
        also the task's metrics per sample (``info["metrics"]``, e.g. a dialogue's ``success``
        and ``turns``). The model's train/eval mode is left as it was."""
        was_training = model.training
        model.eval()
        result = RolloutCollector(model, self.envs, greedy=True).evaluate(self.samples, metrics=metrics)
        model.train(was_training)
        return result


def evaluate(model, args: BaseArgs, tokenizer) -> float:
    """Mean greedy reward on ``--eval-episodes`` evenly spaced samples of ``--eval-split``."""
    return Evaluation(args, tokenizer, args.eval_split, args.eval_episodes).rewards(model).mean().item()


# ------------------------------------------------------------------ the run folder


def _state_of(thing: Any) -> Any:
    if isinstance(thing, torch.Generator):
        return thing.get_state()
    return thing.state_dict()


def _restore(thing: Any, state: Any) -> None:
    if isinstance(thing, torch.Generator):
        thing.set_state(state)
    else:
        thing.load_state_dict(state)


class Run:
    """One run's folder, ``<runs_dir>/<env_id>__<exp_name>__<seed>/``: its checkpoint, its metrics
    (TensorBoard and ``metrics.csv``), the progress bar, and the final model and evaluation.

    Args:
        args: the agent's arguments (``runs_dir``, ``env_id``, ``exp_name``, ``seed``,
            ``checkpoint_every``, ``threads`` are read here).
        total: the step the run trains to (iterations or updates).
        step_key: the checkpoint's key for the step reached.
    """

    def __init__(self, args: BaseArgs, total: int, step_key: str = "iteration") -> None:
        self.args, self.total, self.step_key = args, total, step_key
        self.dir = Path(args.runs_dir) / f"{args.env_id}__{args.exp_name}__{args.seed}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = self.dir / "checkpoint.pt"
        if args.threads:
            torch.set_num_threads(args.threads)
        self.start, self.state = 0, {}

    def resume(self, **state) -> dict[str, Any]:
        """Register what a checkpoint holds (modules and optimizers by ``state_dict``, generators
        by ``get_state``) and, if the folder has a checkpoint, load it into them and restore
        torch's generators. Opens the logs at the step reached. Returns the checkpoint's
        other entries (what ``save`` got as ``extra``), empty for a new run."""
        self.state, saved = state, {}
        if self.checkpoint_path.exists():
            saved = torch.load(self.checkpoint_path, weights_only=False)
            for name, thing in state.items():
                _restore(thing, saved.pop(name))
            torch.set_rng_state(saved.pop("torch_rng"))
            cuda_rng = saved.pop("cuda_rng")
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
            self.start = saved.pop(self.step_key)
        self.writer = summary_writer(self.dir, purge_step=self.start + 1)
        self.writer.add_text("hyperparameters", "\n".join(f"|{k}|{v}|" for k, v in asdict(self.args).items()))
        self.csv_file = open_metrics_csv(self.dir / "metrics.csv", self.start)
        self.csv = csv.writer(self.csv_file)
        self.started, self.tokens = time.time(), 0
        return saved

    def steps(self) -> Iterator[int]:
        """The steps left, ``start + 1`` to ``total``, behind a progress bar."""
        self.bar = tqdm(
            range(self.start + 1, self.total + 1), initial=self.start, total=self.total, desc=self.args.exp_name
        )
        return iter(self.bar)

    def log(self, step: int, metrics: dict[str, float], tokens: int, show: tuple[str, str]) -> None:
        """Write ``metrics`` and ``charts/SPS`` at ``step``. SPS is tokens per second since this
        process started, ``tokens`` being this step's (the RL agents count the agent's
        tokens, SFT the batch's); ``show`` is (label, key) of the value the progress bar shows."""
        self.tokens += tokens
        sps = self.tokens / (time.time() - self.started)
        for key, value in {**metrics, "charts/SPS": sps}.items():
            self.writer.add_scalar(key, value, step)
            self.csv.writerow([step, key, value])
        label, key = show
        self.bar.set_postfix({label: f"{metrics[key]:.3f}", "sps": f"{sps:.0f}"})

    def checkpoint(self, step: int, **extra) -> None:
        """``save`` when ``step`` is a multiple of ``--checkpoint-every``."""
        if self.args.checkpoint_every and step % self.args.checkpoint_every == 0:
            self.save(step, **extra)

    def save(self, step: int, **extra) -> None:
        """Write the registered state, torch's generators, ``step`` and ``extra`` atomically: a
        run killed while writing leaves the previous checkpoint intact."""
        state = {
            **{name: _state_of(thing) for name, thing in self.state.items()},
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            self.step_key: step,
            **extra,
        }
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)

    def finish(self, model, tokenizer, step: int | None = None, weights: dict | None = None, **extra) -> float:
        """The last checkpoint, the model folder and the greedy evaluation on ``--eval-split``
        (``charts/eval_return``, and each sample's reward in ``eval_rewards.json``); returns
        the evaluation's mean reward.

        Args:
            model, tokenizer: the policy.
            step: the step the run reached (default: ``total``, or the checkpoint's step
                when a rerun asks for fewer; SFT passes the update it stopped early at).
            weights: a state dict loaded into ``model`` after the checkpoint is written, so
                that ``model/`` and the evaluation get them (SFT's best validation weights)
                while the checkpoint keeps the last ones to resume from.
            extra: further checkpoint entries.
        """
        done = step if step is not None else max(self.start, self.total)  # a smaller total keeps the step reached
        self.save(done, **extra)
        if weights is not None:
            model.load_state_dict(weights)
        save_policy(self.dir / "model", model, tokenizer)
        evaluation = Evaluation(self.args, tokenizer, self.args.eval_split, self.args.eval_episodes)
        rewards, metrics = evaluation.rewards(model, metrics=True)  # (eval samples,), {name: (eval samples,)}
        eval_return = rewards.mean().item()
        record = {"env_id": self.args.env_id, "split": evaluation.split, "step": done, "mean": eval_return}
        record.update(samples=evaluation.samples.tolist(), rewards=rewards.tolist())
        record["metrics"] = {name: values.float().mean().item() for name, values in metrics.items()}
        (self.dir / "eval_rewards.json").write_text(json.dumps(record) + "\n")
        self.writer.add_scalar("charts/eval_return", eval_return, done)
        self.csv.writerow([done, "charts/eval_return", eval_return])
        self.writer.close()
        self.csv_file.close()
        return eval_return


def summary_writer(folder: Path, purge_step: int):
    """TensorBoard's event writer for ``folder``, without TensorFlow.

    The writer needs no TensorFlow, but tensorboard imports it whenever it is installed
    (the ``tensorflow`` extra), which adds seconds to every agent process; the
    ``tensorboard.compat.notf`` module is tensorboard's own switch to the stub API it uses
    when TensorFlow is absent. Imported here, not at the top, so that ``--help`` and
    argument checks import no tensorboard at all."""
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder), purge_step=purge_step)


def open_metrics_csv(path: Path, start: int):
    """The metrics file, open for appending (step, key, value) rows, line-buffered so that a
    killed run leaves whole rows. Rows after ``start`` (left by a killed run after its last
    checkpoint) and the evaluation row are dropped first, so that a resumed run does not
    repeat them."""
    rows = []
    if path.exists():
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    kept = [r for r in rows if int(r[0]) <= start and r[1] != "charts/eval_return"]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(kept)
    return path.open("a", newline="", buffering=1)
