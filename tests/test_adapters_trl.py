"""The TRL adapter: prompt datasets, and reward functions that equal the env's rewards."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import text_gym
from text_gym.adapters.trl import completion_text, prompt_dataset, reward_function
from text_gym.prompt_table import chat_messages

# Env arguments of the equality test, per id. TextDialogGoal-v0's small budget ends a
# dialogue after its first turn (the reply to a wrong guess does not fit), which is the
# episode the reward function values a completion as.
EQUALITY_KWARGS = {"TextDialogGoal-v0": {"max_new_tokens": 8}}


def env_final_reward(env: gym.Env, sample_index: int, text: str) -> tuple[float, str]:
    """Step ``env`` on sample ``sample_index`` with the tokens of ``text`` and a stop
    token; return the final reward and the response the env decoded. The episode must
    end exactly at the stop token."""
    tokenizer = env.unwrapped.tokenizer
    tokens = tokenizer.encode(text) + [tokenizer.eos_token_id]
    assert len(tokens) <= env.unwrapped.vector.max_new_tokens, (text, len(tokens))
    env.reset(seed=0, options={"sample_index": sample_index})
    for k, token in enumerate(tokens):
        _, reward, terminated, truncated, info = env.step(token)
        assert (terminated or truncated) == (k == len(tokens) - 1), (text, k, terminated, truncated)
    return reward, info["response"]


def completions_for(env: gym.Env) -> list[tuple[int, str]]:
    """(sample index, completion text) pairs: for three samples whose reference fits the
    env's budget, the reference, another sample's reference (a wrong answer), a
    free-text answer and an empty one. For code, the other sample's body fails."""
    vector = env.unwrapped.vector
    task, tokenizer = vector.task, vector.tokenizer
    if vector.multi_turn:  # the guessing game: the secret, a wrong number, text, nothing
        return [
            (j, text)
            for j in (0, 1, len(task) - 1)
            for text in (task.samples[j].references[0], f" {int(task.samples[j].references[0]) % 97 + 2}", " hi", "")
        ]
    fits = [
        j
        for j in range(min(len(task), 200))
        if len(tokenizer.encode(task.reference_response(task.samples[j]))) < vector.max_new_tokens
    ][:3]
    pairs = []
    for a, j in enumerate(fits):
        other = task.reference_response(task.samples[fits[a - 1]])
        pairs += [(j, task.reference_response(task.samples[j])), (j, other), (j, " I do not know."), (j, "")]
    return pairs


@pytest.mark.parametrize("env_id", text_gym.env_ids())
def test_reward_equals_the_env_final_reward(env_id):
    """Exact equality (both sides are the task's float64 scores of the same strings) on
    every registered id, for plain and conversational completions in one batch."""
    kwargs = EQUALITY_KWARGS.get(env_id, {})
    env = gym.make(env_id, **kwargs)
    reward = reward_function(env_id, **kwargs)
    pairs = completions_for(env)
    expected = []
    for j, text in pairs:
        value, response = env_final_reward(env, j, text)
        assert response == text  # the env's tokens decode to the completion text
        expected.append(value)
    indices, texts = [j for j, _ in pairs], [t for _, t in pairs]
    got = reward(
        prompts=[env.unwrapped.task.samples[j].prompt for j in indices], completions=texts, sample_index=indices
    )
    assert got == expected
    assert len(set(expected)) >= 2, expected  # the cases tell right from wrong
    chat = [[{"role": "assistant", "content": t}] for t in texts]
    assert reward(completions=chat, sample_index=indices, completion_ids=None, trainer_state=None) == expected


def test_multi_turn_completion_is_the_first_turn():
    """TextDialogGoal-v0: a correct first guess wins in one turn whatever the budget; with
    max_turns=1 a wrong one ends the dialogue as lost, as in the env."""
    task = gym.make("TextDialogGoal-v0").unwrapped.task
    secret = task.samples[0].references[0]
    default = reward_function("TextDialogGoal-v0")
    assert default(completions=[f"I guess {secret}", " 0"], sample_index=[0, 0]) == [0.95, -0.5]
    env = gym.make("TextDialogGoal-v0", max_turns=1)
    one_turn = reward_function("TextDialogGoal-v0", max_turns=1)
    assert (
        one_turn(completions=[" 0", secret], sample_index=[0, 0])
        == [
            env_final_reward(env, 0, " 0")[0],
            env_final_reward(env, 0, secret)[0],
        ]
        == [-0.05, 0.95]
    )


def test_prompt_dataset_rows_are_the_env_samples():
    dataset = prompt_dataset("TextTranslate-v0", split="test", scan_split="length")
    task = gym.make("TextTranslate-v0", split="test", scan_split="length").unwrapped.task
    assert len(dataset) == len(task) and dataset["sample_index"] == list(range(len(task)))
    for j in (0, len(task) - 1):
        row = dataset[j]
        assert row["prompt"] == task.samples[j].prompt and row["references"] == list(task.samples[j].references)
        assert row["env_id"] == "TextTranslate-v0"
    goal = gym.make("TextDialogGoal-v0", split="test").unwrapped.task
    assert len(prompt_dataset("TextDialogGoal-v0", split="test")) == len(goal)
    assert len(prompt_dataset("TextDialogGoal-v0")) == 100 - len(goal)  # split=None: the env's default, "train"
    assert len(prompt_dataset("TextCode-v0")) == 164  # HumanEval's only split


def test_chat_prompts_use_the_task_messages():
    dialog = prompt_dataset("TextDialog-v0", split="test", chat_template=True)
    task = gym.make("TextDialog-v0", split="test").unwrapped.task
    j = next(j for j, s in enumerate(task.samples) if len(s.extra["messages"]) > 1)
    assert dialog[j]["prompt"] == task.samples[j].extra["messages"] == chat_messages(task.samples[j])
    translate = prompt_dataset("TextTranslate-v0", split="test", chat_template=True, max_samples=3)
    prompt = gym.make("TextTranslate-v0", split="test", max_samples=3).unwrapped.task.samples[0].prompt
    assert translate[0]["prompt"] == [{"role": "user", "content": prompt}]
    reward = reward_function("TextTranslate-v0", split="test", max_samples=3)
    assert reward(prompts=translate["prompt"], completions=["", "", ""], sample_index=[0, 1, 2]) == [0.0] * 3


def test_rows_of_another_env_or_without_a_sample_are_not_applicable():
    reward = reward_function("TextTranslate-v0", split="test", max_samples=3)
    ref = " " + reward.task.samples[1].references[0]
    got = reward(
        completions=[ref, ref, ref, ref],
        sample_index=[1, 1, None, 1],
        env_id=["TextTranslate-v0", "text_gym/TextTranslate-v0", "TextTranslate-v0", "TextSumm-v0"],
    )
    assert got == [1.0, 1.0, None, None]


def test_a_call_scores_its_rows_in_one_task_call(monkeypatch):
    reward = reward_function("TextCode-v0", dataset="easy", level=1, max_samples=4)
    calls, score = [], reward.task.score
    monkeypatch.setattr(reward.task, "score", lambda texts, samples: calls.append(len(texts)) or score(texts, samples))
    bodies = [reward.task.reference_response(s) for s in reward.task.samples]
    assert reward(completions=bodies + [""] * 4, sample_index=[0, 1, 2, 3] * 2) == [1.0] * 4 + [0.0] * 4
    assert calls == [8]


def test_metrics_are_logged_through_trl_log_metric():
    reward = reward_function("TextTranslate-v0", split="test", max_samples=3)
    logged = {}
    ref = " " + reward.task.samples[0].references[0]
    reward(completions=[ref, ""], sample_index=[0, 0], log_metric=logged.__setitem__)
    assert logged["TextTranslate-v0/exact_match"] == 0.5 and 0 < logged["TextTranslate-v0/chrf"] < 100


def test_bad_input_fails_with_the_fix():
    reward = reward_function("TextTranslate-v0", split="test", max_samples=3)
    test_prompt = reward.task.samples[0].prompt
    with pytest.raises(ValueError, match="needs sample_index"):
        reward(completions=["x"])
    with pytest.raises(ValueError, match=r"sample_index\[0\]=3 is not a sample"):
        reward(completions=["x"], sample_index=[3])
    with pytest.raises(ValueError, match="2 entries for 1 completions"):
        reward(completions=["x"], sample_index=[0, 1])
    train_prompt = prompt_dataset("TextTranslate-v0", max_samples=1)[0]["prompt"]
    assert train_prompt != test_prompt
    with pytest.raises(ValueError, match="is not the prompt of sample 0.*check_rows=False"):
        reward(prompts=[train_prompt], completions=["x"], sample_index=[0])
    with pytest.raises(ValueError, match="references"):
        reward(completions=["x"], sample_index=[0], references=[["I_WALK I_WALK I_WALK I_WALK I_WALK"]])
    lenient = reward_function("TextTranslate-v0", split="test", max_samples=3, check_rows=False)
    assert lenient(prompts=[train_prompt], completions=["x"], sample_index=[0]) == [0.0]
    with pytest.raises(ValueError, match="one assistant message"):
        completion_text([{"role": "user", "content": "x"}], 4)
    with pytest.raises(ValueError, match="chat_template=1"):
        prompt_dataset("TextTranslate-v0", chat_template=1)
    with pytest.raises(ValueError, match="check_rows='no'"):
        reward_function("TextTranslate-v0", check_rows="no")
    with pytest.raises(ValueError, match="unknown argument"):
        reward_function("TextTranslate-v0", scan_splt="length")


def test_grpo_trainer_trains_on_the_env_reward(tmp_path):
    """GRPOTrainer, offline on CPU with a tiny model: two steps, rewards logged under the
    function's name and equal to its chrF metric / 100 (the reward it computed), and
    the weights move."""
    from trl import GRPOConfig, GRPOTrainer

    from text_gym.rollout import tiny_model
    from text_gym.tokenizers import default_tokenizer

    kwargs = dict(split="train", reward="chrf", max_samples=16)  # chrF: a graded reward
    tokenizer = default_tokenizer()
    model = tiny_model(tokenizer, hidden=32, layers=1)
    before = [p.detach().clone() for p in model.parameters()]
    args = GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        learning_rate=1e-2,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        seed=0,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_function("TextTranslate-v0", **kwargs),
        args=args,
        train_dataset=prompt_dataset("TextTranslate-v0", **kwargs),
        processing_class=tokenizer.hf,
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/TextTranslate-v0/mean" in h]
    assert trainer.state.global_step == 2 and len(logs) == 2
    for log in logs:
        assert log["rewards/TextTranslate-v0/mean"] == pytest.approx(log["TextTranslate-v0/chrf"] / 100, abs=1e-6)
        assert log["reward"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("env_kwargs", [{"chat_template": True}, {"dataset": "easy", "answer_format": "markdown"}])
def test_code_chat_completions_score_as_in_the_chat_env(env_kwargs):
    """A chat model's completions on TextCode-v0: the reward function, built with the env's
    arguments, reads the fenced block as the env does (the task's one scorer), so a whole
    fenced function or a fenced body earns 1.0, prose 0, and every value is the env's."""
    env_kwargs = {**env_kwargs, "max_new_tokens": 400}
    env = gym.make("TextCode-v0", **env_kwargs)
    reward = reward_function("TextCode-v0", **env_kwargs)
    assert env.unwrapped.task.answer_format == reward.task.answer_format == "markdown"
    sample = env.unwrapped.task.samples[1]
    stub = sample.prompt.rsplit('    """', 1)[0].split('"""', 1)[0].rstrip() + "\n"  # the def line(s)
    body = sample.references[0]
    texts = [
        f"Here you go:\n\n```python\n{sample.prompt}{body}```\n\nDone.",
        f"```\n{body}```",
        f"```python\n{stub}{body}```",
        "I am not sure how to write this function.",
        f"```python\n{stub}    return None\n```",
    ]
    expected = [env_final_reward(env, 1, text)[0] for text in texts]
    assert expected[:4] == [1.0, 1.0, 1.0, 0.0] and expected[4] < 1.0
    chat = [[{"role": "assistant", "content": t}] for t in texts]
    assert reward(completions=chat, sample_index=[1] * len(texts)) == expected
    assert reward(completions=texts, sample_index=[1] * len(texts), prompts=[sample.prompt] * len(texts)) == expected
