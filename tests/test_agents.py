"""Reference agents run end to end on a tiny budget: they learn, repeat, and resume."""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from text_gym import TextEnv, TextVectorEnv, WordTokenizer, load_tokenizer
from text_gym.rollout import RolloutCollector
from text_gym.tasks import MultiTurnTask, Sample, Scores, Task

ROOT = Path(__file__).resolve().parents[1]
RL_AGENTS = ["reinforce", "ppo", "grpo", "nlpo", "q_learning"]


def load_agent(name: str):
    if str(ROOT / "agents") not in sys.path:  # the agents import common.py (NLPO ppo.py) as their scripts do
        sys.path.insert(0, str(ROOT / "agents"))
    spec = importlib.util.spec_from_file_location(f"agent_{name}", ROOT / "agents" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


def metric(run_dir: Path, key: str) -> list[float]:
    rows = list(csv.reader((run_dir / "metrics.csv").open()))
    return [float(v) for _, k, v in rows if k == key]


def training_rows(run_dir: Path) -> list[list[str]]:
    """Every logged row but the wall-clock ones."""
    return [r for r in csv.reader((run_dir / "metrics.csv").open()) if r[1] != "charts/SPS"]


# ------------------------------------------------------------------------------- SFT


def tiny_args(sft, runs: Path, **overrides):
    base = {
        "tokenizer": "byte",
        "hidden": 32,
        "layers": 1,
        "batch_size": 8,
        "total_updates": 30,
        "learning_rate": 3e-3,
        "lr_schedule": "constant",  # a run stopped at 20 of 30 updates follows the same rates as the unbroken one
        "warmup_updates": 0,
        "val_every": 0,
        "eval_episodes": 4,
        "eval_envs": 4,
        "checkpoint_every": 10,
        "runs_dir": str(runs),
    }
    return sft.Args(**{**base, **overrides})


def test_sft_learns_repeats_and_resumes(tmp_path):
    sft = load_agent("sft")
    result = sft.main(tiny_args(sft, tmp_path / "a"))
    run_a = next((tmp_path / "a").iterdir())
    first = metric(run_a, "losses/sft_loss")
    assert len(first) == 30 and sum(first[-5:]) / 5 < 0.7 * sum(first[:5]) / 5  # it learns
    assert 0.0 <= result["eval_return"] <= 1.0
    assert (run_a / "model" / "config.json").exists()  # what the RL agents start from

    sft.main(tiny_args(sft, tmp_path / "b"))  # same seed, another folder: same numbers
    assert metric(next((tmp_path / "b").iterdir()), "losses/sft_loss") == first

    # a run stopped after 20 updates, then started again, continues from its checkpoint
    sft.main(tiny_args(sft, tmp_path / "c", total_updates=20))
    resumed = sft.main(tiny_args(sft, tmp_path / "c"))
    assert metric(next((tmp_path / "c").iterdir()), "losses/sft_loss") == first
    assert resumed["final_loss"] == result["final_loss"]

    # started again with a smaller total, it trains nothing and keeps its step count
    run_c = next((tmp_path / "c").iterdir())
    sft.main(tiny_args(sft, tmp_path / "c", total_updates=10))
    assert torch.load(run_c / "checkpoint.pt", weights_only=False)["update"] == 30
    assert metric(run_c, "losses/sft_loss") == first


def test_sft_targets_are_the_answers_tokens_after_their_prompts(sentencepiece_hf):
    # encoded alone, a Llama 2 style answer gains the space its normalizer prepends, and
    # a policy that learned it writes a code body whose first line is indented one more
    from text_gym import HFTokenizer

    sft, tok = load_agent("sft"), HFTokenizer(sentencepiece_hf)
    prompts, answers = ["def f(n):\n"], ["    return n + 5\n"]
    ids = sft.answer_ids(tok, prompts, answers, tok.encode_batch(prompts))
    assert tok.decode_batch(ids) == answers
    assert tok.decode_batch(tok.encode_batch(answers)) == [" " + answers[0]]


def test_agents_take_a_split_in_env_kwargs(tmp_path):
    # the held-out evaluation replaces it with eval_split instead of passing it twice
    sft = load_agent("sft")
    result = sft.main(
        tiny_args(sft, tmp_path, total_updates=1, env_kwargs='{"split": "train", "scan_split": "length"}')
    )
    assert 0.0 <= result["eval_return"] <= 1.0


def test_sft_saves_a_word_tokenizer_with_the_model(tmp_path):
    sft = load_agent("sft")
    sft.main(tiny_args(sft, tmp_path, tokenizer="words", total_updates=2, checkpoint_every=0))
    model_dir = next(tmp_path.iterdir()) / "model"
    words = load_tokenizer(str(model_dir))  # from the model folder's tokenizer.json
    assert isinstance(words, WordTokenizer) and (model_dir / "tokenizer.json").exists()
    assert len(words) < 40
    rl = load_agent("reinforce")
    model, tokenizer = rl.load_policy(rl.Args(init_model=str(model_dir)))
    assert tokenizer.name == words.name == model.config.text_gym_tokenizer


# -------------------------------------------------------------------------------- RL


class SayTask(Task):
    """A test task with dense reward: the fraction of response words equal to the word the
    prompt asks for (0 for an empty response)."""

    name = "say"
    WORDS = ("yes", "no", "maybe")

    def __init__(self, split: str = "train") -> None:
        self.samples = [Sample(f"Say {w}:", (f" {w}",)) for w in self.WORDS]

    def score(self, responses, samples) -> Scores:
        rewards = np.array(
            [np.mean([w == s.references[0].strip() for w in r.split()] or [0.0]) for r, s in zip(responses, samples)]
        )
        return Scores(rewards, {})


def say_tokenizer(folder: Path) -> str:
    texts = [s.prompt for s in SayTask().samples] + [f" {w}" for w in SayTask.WORDS]
    path = folder / "say_words.json"
    WordTokenizer.from_texts(texts).save(path)
    return str(path)


def register_task_env(env_id: str, task_class: type[Task], max_new_tokens: int = 3) -> str:
    """Register ``env_id`` (once) as the single and vector env of ``task_class(split)``."""
    if env_id not in gym.registry:
        gym.register(
            env_id,
            entry_point=lambda split="train", **kw: TextEnv(
                task=task_class(split), max_new_tokens=max_new_tokens, **kw
            ),
            vector_entry_point=lambda num_envs, split="train", **kw: TextVectorEnv(
                num_envs, task=task_class(split), max_new_tokens=max_new_tokens, **kw
            ),
        )
    return env_id


def register_say_env() -> str:
    return register_task_env("TextGymTestSay-v0", SayTask)


class CountTask(MultiTurnTask):
    """A test dialogue: the prompt names n; the agent counts 1, 2, ..., n, one number a turn; the
    user answers "next" to each right number and ends the dialogue after n or a wrong one.
    Reward 1 for a whole count. The "counter" teacher counts."""

    name = "count"

    def __init__(self, split: str = "train") -> None:
        self.samples = [Sample(f"Count to {n}:\nAgent:", (str(n),)) for n in (2, 3, 4)]

    def new_dialogue(self, sample):
        return {"n": int(sample.references[0]), "said": []}

    def user_replies(self, dialogues, turns):
        replies = []
        for state, turn in zip(dialogues, turns):
            state["said"].append(turn.strip())
            right = state["said"] == [str(i) for i in range(1, len(state["said"]) + 1)]
            over = not right or len(state["said"]) == state["n"]
            replies.append(("\nUser: done" if over else "\nUser: next\nAgent:", over))
        return replies

    def score(self, responses, samples, dialogues) -> Scores:
        won = [float(d["said"] == [str(i) for i in range(1, d["n"] + 1)]) for d in dialogues]
        return Scores(np.array(won), {})

    def response_budget(self, encode) -> int:
        return 24

    def demonstration(self, sample, teacher):
        if teacher != "counter":
            raise ValueError(f"unknown teacher {teacher!r}: the count task knows ['counter']")
        state, segments = self.new_dialogue(sample), [(sample.prompt, False)]
        for i in range(1, state["n"] + 1):
            reply, over = self.user_replies([state], [f" {i}"])[0]
            segments += [(f" {i}", True), (reply, False)]
            if over:
                return segments
        return segments


def test_sft_teacher_labels_the_agent_turns_and_their_eos():
    sft, task = load_agent("sft"), CountTask()
    dialogues = sft.training_dialogues(task, task.samples[:1], "counter")
    assert dialogues == [
        [
            ("Count to 2:\nAgent:", False),
            (" 1", True),
            ("\nUser: next\nAgent:", False),
            (" 2", True),
            ("\nUser: done", False),
        ]
    ]
    tok = WordTokenizer.from_texts(text for text, _ in dialogues[0])
    [(tokens, labels)] = sft.tokenize_dialogues(tok, dialogues, prompt_tokens=100)
    prompt, one, reply, two, done = (tok.encode(text) for text, _ in dialogues[0])
    eos = [tok.eos_token_id]
    assert tokens == prompt + one + eos + reply + two + eos + done  # each segment on its own, EOS after a turn
    no = [-100]
    assert labels == no * len(prompt) + one + eos + no * len(reply) + two + eos + no * len(done)
    assert tok.decode_batch([tokens])[0] == "".join(text for text, _ in dialogues[0])  # EOS decodes to ""
    # the prompt keeps its last prompt_tokens tokens, as the env's window does
    [(cut, cut_labels)] = sft.tokenize_dialogues(tok, dialogues, prompt_tokens=2)
    assert cut == prompt[-2:] + tokens[len(prompt) :] and cut_labels == labels[len(prompt) - 2 :]


def test_sft_teacher_needs_a_task_with_demonstrations():
    sft = load_agent("sft")
    with pytest.raises(ValueError, match="no demonstration"):
        sft.training_dialogues(SayTask(), SayTask().samples, "counter")
    with pytest.raises(ValueError, match="unknown teacher"):
        sft.training_dialogues(CountTask(), CountTask().samples, "bisect")


def test_sft_learns_a_multi_turn_teacher(tmp_path):
    sft = load_agent("sft")
    env_id = register_task_env("TextGymTestCount-v0", CountTask, max_new_tokens=24)
    result = sft.main(
        tiny_args(
            sft,
            tmp_path,
            env_id=env_id,
            teacher="counter",
            tokenizer="words",
            val_fraction=0.0,
            total_updates=80,
            eval_envs=3,
        )
    )
    assert result["eval_return"] == 1.0  # greedy, through the env: it counts to n, turn by turn


def rl_args(agent, runs: Path, tokenizer: str, **overrides):
    base = {
        "env_id": register_say_env(),
        "tokenizer": tokenizer,
        "total_iterations": 20,
        "num_envs": 16,
        "learning_rate": 1e-3,
        "eval_episodes": 3,
        "eval_envs": 3,
        "checkpoint_every": 5,
        "runs_dir": str(runs),
        "val_fraction": 0.0,  # all three prompts (the leak test below holds some out)
    }
    if agent.__name__.endswith("grpo"):
        base["group_size"] = 4
    if agent.__name__.endswith("q_learning"):  # the slowest learner: more data per iteration
        base.update(alpha=0.1, num_envs=32, batch_size=64, updates_per_iteration=8)
    return agent.Args(**{**base, **overrides})


def test_nlpo_masks_keep_the_tokens_taken():
    from text_gym.rollout import tiny_model
    from text_gym.tokenizers import load_tokenizer

    nlpo = load_agent("nlpo")
    model = tiny_model(load_tokenizer("byte"), hidden=32, layers=1, heads=2, kv_heads=1)
    ids = torch.randint(258, (3, 12), generator=torch.Generator().manual_seed(0))
    keep = nlpo.mask_of(model, ids, torch.ones_like(ids), 258, top_p=1e-6)  # argmax only
    assert keep.gather(2, ids[:, 1:, None]).all()  # the token taken is always allowed
    assert (keep.sum(-1) <= 2).all() and (keep.sum(-1) == 2).any()  # beside the nucleus


@pytest.mark.parametrize("name", RL_AGENTS)
def test_rl_agent_learns_repeats_and_resumes(name, tmp_path, monkeypatch):
    agent = load_agent(name)
    tokenizer = say_tokenizer(tmp_path)
    result = agent.main(rl_args(agent, tmp_path / "a", tokenizer))
    run_a = next((tmp_path / "a").iterdir())
    returns = metric(run_a, "charts/episodic_return")
    assert len(returns) == 20
    early, late = np.mean(returns[:5]), np.mean(returns[-5:])
    assert late > early + 0.1, f"{name}: mean reward {early:.3f} -> {late:.3f}"  # it learns
    assert 0.0 <= result["eval_return"] <= 1.0

    agent.main(rl_args(agent, tmp_path / "b", tokenizer))  # same seed: the same numbers
    assert training_rows(next((tmp_path / "b").iterdir())) == training_rows(run_a)

    # killed during iteration 13 (the last checkpoint is from iteration 10, rows 11-12 are
    # logged), started again: it resumes from the checkpoint and ends as the unbroken run
    calls, collect = [], RolloutCollector.collect_episodes

    def killed_at_13(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 13:
            raise KeyboardInterrupt
        return collect(self, *args, **kwargs)

    monkeypatch.setattr(RolloutCollector, "collect_episodes", killed_at_13)
    with pytest.raises(KeyboardInterrupt):
        agent.main(rl_args(agent, tmp_path / "c", tokenizer))
    monkeypatch.undo()
    assert len(metric(next((tmp_path / "c").iterdir()), "charts/episodic_return")) == 12
    resumed = agent.main(rl_args(agent, tmp_path / "c", tokenizer))
    assert training_rows(next((tmp_path / "c").iterdir())) == training_rows(run_a)
    assert resumed["eval_return"] == result["eval_return"]


# ------------------------------------------------------- SFT: schedule, validation, best weights


def load_common():
    load_agent("sft")  # puts agents/ on sys.path, where the agents find common.py
    return importlib.import_module("common")


def test_validation_samples_are_fixed_and_apart_from_training():
    common = load_common()
    np.random.seed(123)
    torch.manual_seed(123)
    v = common.validation_samples(100, 0.1)
    np.random.seed(7)  # the global generators play no part: one set for every seed and agent
    torch.manual_seed(7)
    assert v.tolist() == common.validation_samples(100, 0.1).tolist()
    assert len(v) == 10 and v.tolist() == sorted(set(v.tolist())) and 0 <= v.min() and v.max() < 100
    assert v.tolist() != list(range(10))  # drawn over the whole split, not its first rows
    t = common.training_samples(100, 0.1)
    assert set(t.tolist()) | set(v.tolist()) == set(range(100)) and not set(t.tolist()) & set(v.tolist())
    assert len(common.validation_samples(5, 0.1)) == 1 and len(common.validation_samples(5, 0.0)) == 0
    for n, fraction in ((10, 1.0), (10, -0.1), (1, 0.5)):
        with pytest.raises(ValueError, match="val_fraction"):
            common.validation_samples(n, fraction)


def test_sft_learning_rate_schedules():
    sft = load_agent("sft")
    args = sft.Args(learning_rate=1.0, total_updates=100, warmup_updates=10, min_lr_ratio=0.1)
    at = {
        name: [sft.learning_rate_at(u, replace(args, lr_schedule=name)) for u in (5, 10, 28, 55, 100)]
        for name in ("cosine", "linear", "constant")
    }
    cosine_28 = 0.1 + 0.9 * 0.5 * (1 + math.cos(0.2 * math.pi))  # 18 of the 90 decay updates done
    assert at["cosine"] == pytest.approx([0.5, 1.0, cosine_28, 0.55, 0.1])
    assert at["linear"] == pytest.approx([0.5, 1.0, 0.82, 0.55, 0.1])
    assert at["constant"] == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0])
    assert sft.learning_rate_at(5, replace(args, warmup_updates=0.1)) == pytest.approx(0.5)  # 10% of 100 updates
    no_warmup = replace(args, warmup_updates=0, lr_schedule="linear")
    assert sft.learning_rate_at(1, no_warmup) == pytest.approx(1 - 0.9 / 100)  # decays from the first update
    with pytest.raises(ValueError, match="lr-schedule"):
        sft.check_args(replace(args, lr_schedule="step"))
    with pytest.raises(ValueError, match="val-fraction"):
        sft.check_args(replace(args, val_fraction=0.0))


class YesTask(SayTask):
    """SayTask with 20 prompts that all ask for "yes": what is learned on the training prompts
    carries over to the validation ones."""

    def __init__(self, split: str = "train") -> None:
        self.samples = [Sample(f"Item {k}: say yes", (" yes",)) for k in range(20)]


def yes_args(sft, runs: Path, **overrides):
    env_id = register_task_env("TextGymTestYes-v0", YesTask)
    base = {"env_id": env_id, "tokenizer": "words", "val_fraction": 0.2, "val_every": 5, "val_episodes": 4}
    base.update(lr_schedule="cosine", warmup_updates=0.1, learning_rate=1e-3)
    return tiny_args(sft, runs, **{**base, **overrides})


def test_sft_does_not_train_on_the_validation_samples(tmp_path, monkeypatch):
    sft, common = load_agent("sft"), load_common()
    seen, make_batch = [], sft.make_batch
    monkeypatch.setattr(sft, "make_batch", lambda examples, pad: seen.extend(examples) or make_batch(examples, pad))
    sft.main(yes_args(sft, tmp_path, total_updates=10, val_every=0))
    words = WordTokenizer.from_folder(next(tmp_path.iterdir()) / "model")
    width = len(words.encode(YesTask().samples[0].prompt))  # every prompt is 4 words
    prompts = {tuple(tokens[:width]) for tokens, _ in seen}
    held_out = {tuple(words.encode(YesTask().samples[i].prompt)) for i in common.validation_samples(20, 0.2)}
    trained = {tuple(words.encode(YesTask().samples[i].prompt)) for i in common.training_samples(20, 0.2)}
    assert len(seen) == 80 and prompts <= trained and not prompts & held_out and len(held_out) == 4


@pytest.mark.parametrize("name", RL_AGENTS)
def test_rl_agents_never_train_on_the_validation_samples(name, tmp_path, monkeypatch):
    common = load_common()
    agent, seen, collect = load_agent(name), [], RolloutCollector.collect_episodes

    def recorded(self, *args, **kwargs):
        episodes = collect(self, *args, **kwargs)
        seen.extend(episodes.sample_index.tolist())
        return episodes

    monkeypatch.setattr(RolloutCollector, "collect_episodes", recorded)
    env_id = register_task_env("TextGymTestYes-v0", YesTask)
    args = rl_args(agent, tmp_path, "byte", env_id=env_id, val_fraction=0.2, total_iterations=4, checkpoint_every=0)
    agent.main(args)
    validation = set(common.validation_samples(20, 0.2).tolist())
    assert len(seen) == 4 * args.num_envs and len(set(seen)) > 8 and not set(seen) & validation


def test_sft_stops_early_and_keeps_the_best_weights(tmp_path, monkeypatch):
    sft, common = load_agent("sft"), load_common()
    script, weights, rewards = iter([0.2, 0.5, 0.4, 0.3, 0.9]), [], common.Evaluation.rewards

    def scripted(self, model, metrics=False):  # validation scores from a script; the held-out evaluation is real
        if self.split != "validation":
            return rewards(self, model, metrics)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        return torch.full((len(self.samples),), next(script))

    monkeypatch.setattr(common.Evaluation, "rewards", scripted)
    result = sft.main(yes_args(sft, tmp_path, total_updates=40, patience=2))
    run = next(tmp_path.iterdir())
    assert metric(run, "charts/val_return") == pytest.approx([0.2, 0.5, 0.4, 0.3])  # 2 without a new best: stop
    assert len(metric(run, "losses/sft_loss")) == 20 and result["updates"] == 20
    assert (result["best_update"], result["best_val_return"]) == (10, pytest.approx(0.5))
    saved, _ = common.load_pretrained(str(run / "model"))
    best, last = weights[1], weights[3]  # the weights at update 10 and at update 20
    assert all(torch.equal(v, best[k]) for k, v in saved.state_dict().items())
    assert not all(torch.equal(v, last[k]) for k, v in saved.state_dict().items())
    assert torch.load(run / "checkpoint.pt", weights_only=False)["update"] == 20

    again = sft.main(yes_args(sft, tmp_path, total_updates=40, patience=2))  # a stopped run trains no more
    assert len(metric(run, "losses/sft_loss")) == 20 and again["eval_return"] == result["eval_return"]


def test_sft_model_scores_its_best_validation_and_writes_eval_rewards(tmp_path):
    sft, common = load_agent("sft"), load_common()
    args = yes_args(sft, tmp_path, total_updates=30)
    result = sft.main(args)
    run = next(tmp_path.iterdir())
    logged = metric(run, "charts/val_return")
    assert len(logged) == 6 and max(logged) > 0  # validations at 5, 10, ..., 30
    model, tokenizer = common.load_pretrained(str(run / "model"))
    validation = common.Evaluation(args, tokenizer, "validation", args.val_episodes)
    assert validation.samples.tolist() == common.validation_samples(20, 0.2).tolist()
    assert validation.rewards(model).mean().item() == pytest.approx(max(logged)) == result["best_val_return"]

    record = json.loads((run / "eval_rewards.json").read_text())
    assert record["split"] == "test" and record["samples"] == [0, 6, 13, 19]  # 4 evenly spaced of 20
    assert len(record["rewards"]) == 4 and np.mean(record["rewards"]) == pytest.approx(result["eval_return"])
    # the task's metrics, averaged over the same samples: the env's own, scored again here
    env = gym.make(args.env_id, split="test", tokenizer=tokenizer).unwrapped
    responses = [env.task.reference_response(env.task.samples[j]) for j in record["samples"]]
    assert set(record["metrics"]) == set(
        env.task.score(responses, [env.task.samples[j] for j in record["samples"]]).metrics
    )


def test_agents_evaluate_on_the_validation_split(tmp_path):
    sft, common = load_agent("sft"), load_common()
    sft.main(yes_args(sft, tmp_path, total_updates=5, val_every=0, eval_split="validation", eval_episodes=100))
    record = json.loads((next(tmp_path.iterdir()) / "eval_rewards.json").read_text())
    assert record["split"] == "validation" and record["samples"] == common.validation_samples(20, 0.2).tolist()


def test_sft_resumes_with_its_schedule_and_best_so_far(tmp_path, monkeypatch):
    sft = load_agent("sft")
    unbroken = sft.main(yes_args(sft, tmp_path / "a", total_updates=30))
    calls, make_batch = [], sft.make_batch

    def killed_at_23(examples, pad):  # the last checkpoint is from update 20, rows 21-22 are logged
        calls.append(1)
        if len(calls) == 23:
            raise KeyboardInterrupt
        return make_batch(examples, pad)

    monkeypatch.setattr(sft, "make_batch", killed_at_23)
    with pytest.raises(KeyboardInterrupt):
        sft.main(yes_args(sft, tmp_path / "c", total_updates=30))
    monkeypatch.undo()
    resumed = sft.main(yes_args(sft, tmp_path / "c", total_updates=30))
    rows = [training_rows(next((tmp_path / d).iterdir())) for d in ("a", "c")]
    assert rows[0] == rows[1] and any(r[1] == "charts/learning_rate" for r in rows[0])
    assert resumed == unbroken  # the same best validation, update and held-out score
