"""Supervised warm start: teach a causal LM a task's reference responses.

The "Supervised" row of the learning tables, and the starting point of every RL agent.
One file, top to bottom, in the style of cleanrl. It uses text_gym's public API only:
the env gives the task (prompts and reference responses) and the tokenizer; evaluation
runs the model greedily through the env with the rollout backend. The trained model is
saved as a Hugging Face folder, ``runs/<run>/model``, which the RL agents start from
(``--init-model``); ``--init-model`` here continues supervised training from one (the
"SFT continued" baseline).

    python agents/sft.py --env-id TextTranslate-v0 --tokenizer words --total-updates 500
    python agents/sft.py --help
"""

from __future__ import annotations

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
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm
from transformers import AutoModelForCausalLM

import text_gym  # noqa: F401  (registers the env ids)
from text_gym import WordTokenizer, load_tokenizer
from text_gym.rollout import RolloutCollector, load_default_model, tiny_model


@dataclass
class Args:
    exp_name: str = "sft"
    """the name of this experiment (the run folder is runs/<env>__<exp>__<seed>)"""
    env_id: str = "TextTranslate-v0"
    """the env whose task references are the targets"""
    env_kwargs: str = "{}"
    """extra gym.make keyword arguments as JSON, e.g. '{"dataset": "easy", "level": 1}'"""
    seed: int = 1
    """seed of the experiment"""
    init_model: str = ""
    """a model folder saved by an agent (runs/<run>/model) to continue from; empty: a new model"""
    model: str = "tiny"
    """new model: 'tiny' (a small Llama trained from scratch) or 'smollm2' (SmolLM2-135M-Instruct)"""
    tokenizer: str = "default"
    """new model: 'default' (SmolLM2's), 'byte', or 'words' (a word vocabulary of the task's texts)"""
    hidden: int = 128
    """tiny model: hidden size"""
    layers: int = 2
    """tiny model: number of layers"""
    total_updates: int = 300
    """number of gradient updates"""
    batch_size: int = 32
    """sequences per update"""
    learning_rate: float = 1e-3
    """AdamW learning rate"""
    max_grad_norm: float = 1.0
    """gradient clipping"""
    eval_split: str = "test"
    """the env's held-out split (passed as split=)"""
    eval_episodes: int = 256
    """held-out samples in the final greedy evaluation (evenly spaced over the split)"""
    eval_envs: int = 32
    """parallel slots for evaluation"""
    checkpoint_every: int = 100
    """updates between checkpoints (0: only at the end)"""
    runs_dir: str = "runs"
    """where run folders go"""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""
    device: str = "cpu"
    """torch device of the model and the envs ('cuda' on a GPU)"""


def load_policy(args: Args, task_texts: list[str]):
    """The model and its tokenizer: from ``--init-model``, or new."""
    if args.init_model:
        folder = Path(args.init_model)
        model = AutoModelForCausalLM.from_pretrained(folder)
        words = folder / "words.json"
        return model, load_tokenizer(str(words) if words.exists() else model.config.text_gym_tokenizer)
    if args.model == "smollm2":
        return load_default_model(), load_tokenizer("default")
    tokenizer = WordTokenizer.from_texts(task_texts) if args.tokenizer == "words" else load_tokenizer(args.tokenizer)
    model = tiny_model(tokenizer, hidden=args.hidden, layers=args.layers, heads=4, kv_heads=2, seed=args.seed)
    return model, tokenizer


def save_policy(folder: Path, model, tokenizer) -> None:
    model.save_pretrained(folder)
    if isinstance(tokenizer, WordTokenizer):
        tokenizer.save(folder / "words.json")


def make_batch(pairs: list[tuple[list[int], list[int]]], pad: int) -> tuple[torch.Tensor, ...]:
    """Right-padded prompt+response sequences; labels only on response tokens."""
    width = max(len(p) + len(r) for p, r in pairs)
    ids = torch.full((len(pairs), width), pad)  # (B, T)
    labels = torch.full((len(pairs), width), -100)  # (B, T)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)  # (B, T)
    for i, (p, r) in enumerate(pairs):
        seq = p + r
        ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, len(p) : len(seq)] = torch.tensor(r)
        mask[i, : len(seq)] = 1
    return ids, labels, mask


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
    was_training = model.training
    model.eval()
    score = RolloutCollector(model, envs, greedy=True).evaluate(samples).mean().item()
    model.train(was_training)
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

    # data: the task's prompts and reference responses, tokenized as the env does
    task = gym.make(args.env_id, tokenizer="byte", **json.loads(args.env_kwargs)).unwrapped.task
    references = [task.reference_response(s) for s in task.samples]
    model, tokenizer = load_policy(args, [s.prompt for s in task.samples] + references)
    model.to(args.device)
    env = gym.make(args.env_id, tokenizer=tokenizer, **json.loads(args.env_kwargs)).unwrapped
    prompts = tokenizer.encode_batch([s.prompt for s in task.samples])
    answers = answer_ids(tokenizer, [s.prompt for s in task.samples], references, prompts)
    pairs = [(p[-env.vector.prompt_tokens :], a + [tokenizer.eos_token_id]) for p, a in zip(prompts, answers)]

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
    order = torch.Generator().manual_seed(args.seed)
    start = 0

    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.exists():  # resume where the last run stopped
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        order.set_state(state["order"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        start = state["update"]

    writer = SummaryWriter(str(run_dir), purge_step=start + 1)
    writer.add_text("hyperparameters", "\n".join(f"|{k}|{v}|" for k, v in asdict(args).items()))
    csv_out = metrics_csv(run_dir / "metrics.csv", start)
    started = time.time()
    loss = torch.tensor(0.0)
    bar = tqdm(range(start + 1, args.total_updates + 1), initial=start, total=args.total_updates, desc="sft")
    for update in bar:
        idx = torch.randint(len(pairs), (args.batch_size,), generator=order).tolist()
        ids, labels, mask = (t.to(args.device) for t in make_batch([pairs[i] for i in idx], tokenizer.pad_token_id))
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()

        sps = (update - start) * int(mask.sum()) / (time.time() - started)
        for key, value in (("losses/sft_loss", loss.item()), ("charts/SPS", sps)):
            writer.add_scalar(key, value, update)
            csv_out.writerow([update, key, value])
        bar.set_postfix(loss=f"{loss.item():.3f}", sps=f"{sps:.0f}")
        if args.checkpoint_every and update % args.checkpoint_every == 0:
            save_checkpoint(checkpoint, model, optimizer, order, update)

    done = max(start, args.total_updates)  # a rerun with a smaller total keeps the step its weights reached
    save_checkpoint(checkpoint, model, optimizer, order, done)
    save_policy(run_dir / "model", model, tokenizer)
    eval_return = evaluate(model, args, tokenizer)
    writer.add_scalar("charts/eval_return", eval_return, done)
    csv_out.writerow([done, "charts/eval_return", eval_return])
    writer.close()
    return {"final_loss": float(loss.item()), "eval_return": eval_return}


def metrics_csv(path: Path, start: int):
    """A CSV writer appending (step, key, value) rows; rows after ``start`` (left by a killed
    run after its last checkpoint) are dropped so that a resumed run does not repeat them."""
    rows = [r for r in csv.reader(path.open())] if path.exists() else []
    kept = [r for r in rows if int(r[0]) <= start and r[1] != "charts/eval_return"]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(kept)
    return csv.writer(path.open("a", newline="", buffering=1))


def answer_ids(tokenizer, prompts: list[str], answers: list[str], prompt_ids: list[list[int]]) -> list[list[int]]:
    """Each answer's tokens as they follow its prompt, which is what the policy emits:
    for some tokenizers (Llama 2's kind) the answer encoded on its own starts with an
    extra space. Where the prompt's tokens change once the answer follows (a merge
    across the boundary), the answer is encoded on its own."""
    whole = tokenizer.encode_batch([p + a for p, a in zip(prompts, answers)])
    alone = tokenizer.encode_batch(answers)
    return [w[len(p) :] if w[: len(p)] == p else a for p, w, a in zip(prompt_ids, whole, alone)]


def save_checkpoint(path: Path, model, optimizer, order: torch.Generator, update: int) -> None:
    """Write atomically: a killed run leaves the previous checkpoint intact."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "order": order.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "update": update,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


if __name__ == "__main__":
    print(main(tyro.cli(Args)))
