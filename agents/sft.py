"""Supervised warm start: teach a causal LM a task's reference responses.

The "Supervised" row of the learning tables, and the starting point of every RL agent.
One file, top to bottom, in the style of cleanrl; the run plumbing (checkpoints, logging,
evaluation) is ``common.py``'s. It uses text_gym's public API only:
the env gives the task (prompts and reference responses) and the tokenizer; evaluation
runs the model greedily through the env with the rollout backend. The trained model is
saved with its tokenizer as a Hugging Face folder, ``runs/<run>/model``, which the RL
agents start from (``--init-model``) and transformers loads (``AutoModelForCausalLM``,
``AutoTokenizer``); ``--init-model`` here continues supervised training from one (the
"SFT continued" baseline). ``--model`` starts from a new tiny model, SmolLM2, or any
transformers causal LM (a hub name or a folder holding the model and its tokenizer).

The learning rate warms up linearly and then decays (``--lr-schedule``) to
``--min-lr-ratio`` times itself at ``--total-updates``. A fixed ``--val-fraction`` of the
train split (``common.validation_samples``, the same for every seed) is not trained on:
every ``--val-every`` updates the model is scored greedily on it (``charts/val_return``),
training stops after ``--patience`` validations without a new best, and ``model/`` holds
the weights of the best validation score, not the last.

    python agents/sft.py --env-id TextTranslate-v0 --tokenizer words --total-updates 500
    python agents/sft.py --model path/to/my_model --total-updates 100
    python agents/sft.py --help
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import gymnasium as gym
import torch
import tyro
from common import (
    VALIDATION,
    BaseArgs,
    Evaluation,
    Run,
    load_policy,
    load_pretrained,
    seed_everything,
    training_samples,
)

from text_gym import WordTokenizer, load_tokenizer
from text_gym.rollout import load_default_model

Example = tuple[list[int], list[int]]  # a training sequence's token ids and labels (-100: no loss)


@dataclass
class Args(BaseArgs):
    exp_name: str = "sft"
    env_id: str = "TextTranslate-v0"
    """the env whose task references are the targets"""
    init_model: str = ""
    """a model to continue from (runs/<run>/model, a transformers folder or a hub name, as --model); empty: --model"""
    tokenizer: str = "default"
    """--model tiny only (other models bring their own): 'default' (SmolLM2's), 'byte', 'words'
    (a word vocabulary of the task's texts), or a saved word vocabulary"""
    checkpoint_every: int = 100
    """updates between checkpoints (0: only at the end)"""
    model: str = "tiny"
    """the model to train: 'tiny' (a small Llama from scratch, with --tokenizer), 'smollm2'
    (SmolLM2-135M-Instruct), a hub name, or a folder with a transformers model and its tokenizer"""
    hidden: int = 128
    """tiny model: hidden size"""
    layers: int = 2
    """tiny model: number of layers"""
    total_updates: int = 300
    """number of gradient updates"""
    batch_size: int = 32
    """sequences per update"""
    learning_rate: float = 1e-3
    """AdamW peak learning rate"""
    lr_schedule: str = "cosine"
    """the decay after the warm-up: 'cosine', 'linear' (both reach --min-lr-ratio x lr at
    --total-updates) or 'constant'"""
    warmup_updates: float = 0.05
    """updates of linear warm-up from 0 to the learning rate: a count, or below 1 a fraction of --total-updates"""
    min_lr_ratio: float = 0.1
    """the learning rate at --total-updates, as a fraction of --learning-rate"""
    val_every: int = 50
    """updates between greedy validations on the --val-fraction samples (charts/val_return), and at the
    last update; model/ keeps the best-scoring weights (0: no validation, model/ keeps the last)"""
    val_episodes: int = 256
    """validation samples scored (evenly spaced over the validation part)"""
    patience: int = 0
    """stop after this many validations in a row without a new best (0: never stop early)"""
    teacher: str = ""
    """a multi-turn task's scripted teacher: its transcripts (task.demonstration(sample, teacher)) are
    the targets, labels on the agent's turns; empty: the task's reference responses"""


SCHEDULES = ("cosine", "linear", "constant")


def check_args(args: Args) -> None:
    """Raise ``ValueError`` naming a bad schedule or validation argument and the fix."""
    if args.lr_schedule not in SCHEDULES:
        raise ValueError(f"--lr-schedule {args.lr_schedule!r} is not one of {list(SCHEDULES)}")
    if args.warmup_updates < 0 or not 0 <= args.min_lr_ratio <= 1:
        raise ValueError(
            f"--warmup-updates {args.warmup_updates} must be >= 0 and --min-lr-ratio {args.min_lr_ratio} in [0, 1]"
        )
    if args.val_every < 0 or args.patience < 0 or (args.val_every and not args.val_fraction):
        raise ValueError(
            f"--val-every {args.val_every} and --patience {args.patience} must be >= 0, and validation needs "
            f"--val-fraction > 0 (got {args.val_fraction}); pass --val-every 0 to train without validation"
        )


def learning_rate_at(update: int, args: Args) -> float:
    """The learning rate of update ``update`` (counted from 1): a linear warm-up to
    ``--learning-rate`` over the first ``--warmup-updates``, then ``--lr-schedule``'s decay
    to ``--min-lr-ratio`` times it at ``--total-updates``. A function of the update alone, so a
    resumed run follows the schedule of the unbroken one."""
    total = args.total_updates
    warmup = round(args.warmup_updates * total) if args.warmup_updates < 1 else int(args.warmup_updates)
    if update <= warmup:
        return args.learning_rate * update / warmup
    progress = min(1.0, (update - warmup) / max(1, total - warmup))
    decay = {"cosine": 0.5 * (1 + math.cos(math.pi * progress)), "linear": 1 - progress, "constant": 1.0}
    floor = args.min_lr_ratio if args.lr_schedule != "constant" else 1.0
    return args.learning_rate * (floor + (1 - floor) * decay[args.lr_schedule])


def new_policy(args: Args, task_texts: list[str]):
    """The model, on ``--device`` and in train mode, and its tokenizer: from ``--init-model``,
    else ``--model`` (a new tiny model with ``--tokenizer``, SmolLM2, or a pretrained model
    with its own tokenizer)."""
    if args.model == "smollm2" and not args.init_model:
        return load_default_model().to(args.device).train(), load_tokenizer("default")
    if args.model != "tiny" and not args.init_model:
        return load_pretrained(args.model, args.device)
    tokenizer = WordTokenizer.from_texts(task_texts) if args.tokenizer == "words" else None
    return load_policy(args, tokenizer, hidden=args.hidden, layers=args.layers)


def answer_ids(tokenizer, prompts: list[str], answers: list[str], prompt_ids: list[list[int]]) -> list[list[int]]:
    """Each answer's tokens as they follow its prompt, which is what the policy emits:
    for some tokenizers (Llama 2's kind) the answer encoded on its own starts with an
    extra space. Where the prompt's tokens change once the answer follows (a merge
    across the boundary), the answer is encoded on its own."""
    whole = tokenizer.encode_batch([p + a for p, a in zip(prompts, answers)])
    alone = tokenizer.encode_batch(answers)
    return [w[len(p) :] if w[: len(p)] == p else a for p, w, a in zip(prompt_ids, whole, alone)]


def training_dialogues(task, samples, teacher: str) -> list[list[tuple[str, bool]]]:
    """Each sample's training sequence as ``(text, is_agent)`` segments in order: the prompt
    and the reference response, or with ``teacher`` the task's demonstration (the prompt,
    the agent's turn, the user's reply as the env appends it, the next turn, ...).

    Raises:
        ValueError: ``teacher`` is set and the task has no ``demonstration``, or a
            demonstration does not start with the prompt or has no agent turn.
    """
    if not teacher:
        return [[(s.prompt, False), (task.reference_response(s), True)] for s in samples]
    if not hasattr(task, "demonstration"):
        raise ValueError(
            f"--teacher {teacher!r}: the task {task.name!r} has no demonstration(); teachers are for "
            "multi-turn tasks that script them (e.g. TextDialogGoal-v0); leave --teacher empty to "
            "train on the reference responses"
        )
    dialogues = [task.demonstration(s, teacher) for s in samples]
    for i, segments in enumerate(dialogues):
        if not segments or segments[0][1] or not any(agent for _, agent in segments):
            raise ValueError(
                f"the {teacher!r} demonstration of sample {i} must start with the prompt (is_agent False) "
                f"and hold an agent turn; got {[agent for _, agent in segments]}"
            )
    return dialogues


def tokenize_dialogues(tokenizer, dialogues: list[list[tuple[str, bool]]], prompt_tokens: int) -> list[Example]:
    """Each dialogue as (token ids, labels), tokenized as the env does: the prompt (its last
    ``prompt_tokens`` tokens, the env's window) and each user reply encoded on their own,
    each agent turn as it follows the segment before it (``answer_ids``) and then the
    tokenizer's EOS, the env's stop token. Labels are the agent's tokens and their EOS,
    -100 elsewhere."""
    keys = [(d, k) for d, segments in enumerate(dialogues) for k in range(len(segments))]
    ids = dict(zip(keys, tokenizer.encode_batch([dialogues[d][k][0] for d, k in keys])))
    turns = [(d, k) for d, k in keys if dialogues[d][k][1]]
    before = [dialogues[d][k - 1][0] for d, k in turns]
    texts = [dialogues[d][k][0] for d, k in turns]
    ids.update(zip(turns, answer_ids(tokenizer, before, texts, [ids[d, k - 1] for d, k in turns])))
    examples = []
    for d, segments in enumerate(dialogues):
        tokens, labels = ids[d, 0][-prompt_tokens:], [-100] * len(ids[d, 0][-prompt_tokens:])
        for k, (_, agent) in enumerate(segments[1:], start=1):
            segment = ids[d, k] + [tokenizer.eos_token_id] if agent else ids[d, k]
            tokens, labels = tokens + segment, labels + (segment if agent else [-100] * len(segment))
        examples.append((tokens, labels))
    return examples


def make_batch(examples: list[Example], pad: int) -> tuple[torch.Tensor, ...]:
    """Right-padded sequences, their labels (-100 on padding) and attention mask."""
    width = max(len(tokens) for tokens, _ in examples)
    ids = torch.full((len(examples), width), pad)  # (B, T)
    labels = torch.full((len(examples), width), -100)  # (B, T)
    mask = torch.zeros((len(examples), width), dtype=torch.long)  # (B, T)
    for i, (tokens, targets) in enumerate(examples):
        ids[i, : len(tokens)] = torch.tensor(tokens)
        labels[i, : len(tokens)] = torch.tensor(targets)
        mask[i, : len(tokens)] = 1
    return ids, labels, mask


def main(args: Args) -> dict[str, float]:
    check_args(args)
    run = Run(args, total=args.total_updates, step_key="update")

    # seeding
    seed_everything(args.seed)

    # data: the task's prompts and reference responses (or a teacher's dialogues), tokenized as the env does
    task = gym.make(args.env_id, tokenizer="byte", **json.loads(args.env_kwargs)).unwrapped.task
    dialogues = training_dialogues(task, task.samples, args.teacher)
    model, tokenizer = new_policy(args, [text for segments in dialogues for text, _ in segments])
    env = gym.make(args.env_id, tokenizer=tokenizer, **json.loads(args.env_kwargs)).unwrapped
    examples = tokenize_dialogues(tokenizer, dialogues, env.vector.prompt_tokens)
    train = torch.as_tensor(training_samples(len(examples), args.val_fraction))  # the validation part is held out
    validation = Evaluation(args, tokenizer, VALIDATION, args.val_episodes) if args.val_every else None

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
    order = torch.Generator().manual_seed(args.seed)  # the draw of each update's examples
    saved = run.resume(model=model, optimizer=optimizer, order=order)
    # the best validation so far: its score, update and weights, and the validations since it
    best = saved.get("best", {"val_return": -math.inf, "update": 0, "weights": None, "since": 0})

    loss, done = torch.tensor(0.0), run.start
    for update in run.steps():
        if args.patience and best["since"] >= args.patience:
            break  # stopped early (a rerun of a stopped run trains nothing)
        lr = learning_rate_at(update, args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = train[torch.randint(len(train), (args.batch_size,), generator=order)].tolist()
        batch = make_batch([examples[i] for i in idx], tokenizer.pad_token_id)
        ids, labels, mask = (t.to(args.device) for t in batch)  # (B, T) each
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss  # mean over response tokens
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        done = update

        metrics = {"losses/sft_loss": loss.item(), "charts/learning_rate": lr}
        if validation is not None and (update % args.val_every == 0 or update == args.total_updates):
            metrics["charts/val_return"] = val_return = validation.rewards(model).mean().item()
            if val_return > best["val_return"]:
                weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best = {"val_return": val_return, "update": update, "weights": weights, "since": 0}
            else:
                best["since"] += 1
        run.log(update, metrics, int(mask.sum()), show=("loss", "losses/sft_loss"))
        run.checkpoint(update, best=best)

    eval_return = run.finish(model, tokenizer, step=done, weights=best["weights"], best=best)
    return {
        "final_loss": float(loss.item()),
        "eval_return": eval_return,
        "best_val_return": best["val_return"] if best["weights"] is not None else None,  # None: no validation
        "best_update": best["update"],
        "updates": done,
    }


if __name__ == "__main__":
    print(main(tyro.cli(Args)))
