"""TextDialogGoal-v0: the multi-turn guessing game and the env's multi-turn mechanics."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from text_gym import TextVectorEnv, WordTokenizer
from text_gym.tasks import GuessNumberTask
from text_gym.tasks.base import MultiTurnTask
from text_gym.tasks.goal_dialogue import REPLY


def binary_search_turns(task: GuessNumberTask, secret: int) -> tuple[bool, int]:
    state, lo, hi = task.new_dialogue(task.samples[0].__class__("", (str(secret),))), task.low, task.high
    while True:
        guess = (lo + hi) // 2
        reply, over = task.user_replies([state], [f" {guess}"])[0]
        if over:
            return state.success, state.turns
        lo, hi = (guess + 1, hi) if "Higher" in reply else (lo, guess - 1)


def test_binary_search_wins_within_the_documented_turns():
    for split in ("train", "test"):
        task = GuessNumberTask(split=split)
        limit = math.ceil(math.log2(task.high - task.low + 1))
        for sample in task.samples:
            success, turns = binary_search_turns(task, int(sample.references[0]))
            assert success and turns <= limit == 7


def test_splits_partition_the_numbers():
    train, test = GuessNumberTask(split="train"), GuessNumberTask(split="test")
    numbers = {int(s.references[0]) for s in train.samples} | {int(s.references[0]) for s in test.samples}
    assert numbers == set(range(1, 101)) and len(train) + len(test) == 100 and 10 < len(test) < 30


def scripted_episode(env, tok):
    """Play binary search through the env, reading the user's replies from observations."""
    obs, _ = env.reset()
    lo, hi, agent_tokens = 1, 100, 0
    while True:
        guess = (lo + hi) // 2
        for t in tok.encode(f" {guess}") + [tok.eos_token_id]:
            obs, reward, terminated, truncated, info = env.step(t)
            agent_tokens += 1
        start, end = obs["new_span"]
        if terminated or truncated:
            return reward, terminated, info, obs, agent_tokens
        assert obs["agent_mask"][start] == 1 and obs["agent_mask"][start + 1 : end].sum() == 0
        reply = tok.decode_batch([obs["input_ids"][start + 1 : end].tolist()])[0]
        lo, hi = (guess + 1, hi) if "Higher" in reply else (lo, guess - 1)


@pytest.mark.parametrize("tokenizer", ["default", "byte"])
def test_scripted_agent_succeeds_through_the_env(tokenizer):
    env = gym.make("TextDialogGoal-v0", tokenizer=tokenizer)
    env.reset(seed=0)
    tok = env.unwrapped.tokenizer
    for _ in range(5):
        reward, terminated, info, obs, agent_tokens = scripted_episode(env, tok)
        assert terminated and info["metrics"]["success"] == 1.0 and info["metrics"]["turns"] <= 7
        assert reward == pytest.approx(1.0 - 0.05 * info["metrics"]["turns"])
        # user replies never count as agent actions
        assert obs["agent_mask"].sum() == agent_tokens
        assert "User: Correct!" in info["response"]


def test_random_agent_rarely_succeeds():
    env = TextVectorEnv(32, task="goal_dialogue", tokenizer="default")
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    successes, episodes = 0, 0
    while episodes < 200:
        actions = rng.integers(0, env.vocab_size, 32)
        actions[rng.random(32) < 0.2] = env.tokenizer.eos_token_id
        _, _, term, trunc, info = env.step(actions)
        done = term | trunc
        if done.any():
            successes += int(info["metrics"]["success"][done].sum())
            episodes += int(done.sum())
    assert successes / episodes < 0.05


def test_a_guess_of_thousands_of_digits_gets_a_reply():
    # past Python's 4,300-digit int limit, int() raised inside the env's step
    task = GuessNumberTask()
    state = task.new_dialogue(task.samples[0])
    replies = task.user_replies([state, state], ["9" * 5000, "-" + "9" * 5000])
    assert [text for text, _ in replies] == [REPLY.format(text="Lower."), REPLY.format(text="Higher.")]
    state = task.new_dialogue(task.samples[0])  # leading zeros are not digits that count
    assert task.user_replies([state], ["0" * 40 + str(state.secret)])[0][0] == REPLY.format(text="Correct!")


def test_reply_that_does_not_fit_truncates():
    env = TextVectorEnv(1, task="goal_dialogue", tokenizer="byte", max_new_tokens=10)
    env.reset(seed=0)
    env.step(np.array([ord("5")]))
    _, reward, term, trunc, info = env.step(np.array([env.tokenizer.eos_token_id]))
    assert trunc[0] and not term[0] and info["metrics"]["turns"][0] == 1.0
    assert reward[0] == pytest.approx(-0.5)  # a lost dialogue, however it ends


def test_never_ending_a_turn_scores_as_a_lost_dialogue():
    env = TextVectorEnv(1, task="goal_dialogue", tokenizer="byte", max_new_tokens=12)
    env.reset(seed=0)
    for _ in range(11):
        _, reward, term, trunc, _ = env.step(np.array([ord("0")]))
        assert not (term[0] or trunc[0])
    _, reward, term, trunc, info = env.step(np.array([ord("0")]))
    assert trunc[0] and info["metrics"]["turns"][0] == 0.0 and info["metrics"]["success"][0] == 0.0
    assert reward[0] == pytest.approx(-0.5)  # the same as ten wrong guesses


def test_invalid_turns_are_counted_and_max_turns_ends_the_dialogue():
    env = TextVectorEnv(1, task=GuessNumberTask(max_turns=2), tokenizer="byte")
    env.reset(seed=0)
    eos = env.tokenizer.eos_token_id
    env.step(np.array([ord("x")]))
    _, _, term, _, _ = env.step(np.array([eos]))
    assert not term[0]
    _, reward, term, _, info = env.step(np.array([eos]))
    assert term[0] and info["metrics"]["invalid_turns"][0] == 2.0 and reward[0] == pytest.approx(-0.1)
    assert "Out of turns" in info["response"][0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="low < high"):
        GuessNumberTask(low=5, high=5)
    with pytest.raises(ValueError, match=r"split='dev'"):
        GuessNumberTask(split="dev")


def demonstration_scores(task: GuessNumberTask, sample, segments) -> tuple[float, dict[str, float]]:
    """The demonstration's own scoring: its turns replayed through the task's rules."""
    state = task.new_dialogue(sample)
    for text, agent in segments:
        if agent:
            task.user_replies([state], [text])
    scores = task.score(["".join(text for text, _ in segments[1:])], [sample], [state])
    return float(scores.rewards[0]), {k: float(v[0]) for k, v in scores.metrics.items()}


@pytest.mark.parametrize("teacher", ["bisect", "step1", "step5", "step10", "step2-8"])
@pytest.mark.parametrize("tokenizer", ["byte", "words"])
def test_demonstration_replayed_through_the_env_gives_its_window_reward_and_metrics(teacher, tokenizer):
    kwargs = dict(high=30, max_turns=8, turn_cost=0.05)  # step1 and step5 run out of turns on some secrets
    task = GuessNumberTask(split="test", **kwargs)
    demos = [task.demonstration(sample, teacher) for sample in task.samples]
    if tokenizer == "words":
        tokenizer = WordTokenizer.from_texts(text for segments in demos for text, _ in segments)
    env = gym.make("TextDialogGoal-v0", tokenizer=tokenizer, split="test", **kwargs)
    tok = env.unwrapped.tokenizer
    outcomes = set()
    for index, (sample, segments) in enumerate(zip(task.samples, demos)):
        reward, metrics = demonstration_scores(task, sample, segments)
        obs, _ = env.reset(seed=0, options={"sample_index": index})
        actions = [t for text, agent in segments if agent for t in tok.encode(text) + [tok.eos_token_id]]
        for step, action in enumerate(actions, 1):
            obs, env_reward, terminated, truncated, info = env.step(action)
            assert (terminated or truncated) == (step == len(actions)), (sample.references, step, len(actions))
        window = tok.decode(obs["input_ids"][obs["attention_mask"] == 1].tolist())
        assert terminated and window == "".join(text for text, _ in segments)
        assert info["prompt"] + info["response"] == window
        assert env_reward == pytest.approx(reward) and info["metrics"] == pytest.approx(metrics)
        assert obs["agent_mask"].sum() == len(actions)
        outcomes.add(metrics["success"])
    assert outcomes == ({1.0} if teacher in ("bisect", "step2-8") else {0.0, 1.0})


def test_teachers_play_as_documented():
    task = GuessNumberTask(high=100, max_turns=20)
    sample = next(s for s in task.samples if s.references == ("47",))
    turns = [int(text) for text, agent in task.demonstration(sample, "step10") if agent]
    assert turns == [10, 20, 30, 40, 50, 41, 42, 43, 44, 45, 46, 47]
    turns = [int(text) for text, agent in task.demonstration(sample, "bisect") if agent]
    assert turns == [50, 25, 37, 43, 46, 48, 47]
    for sample in task.samples:  # bisect wins within ceil(log2(100)) turns; step10 within 10 + 9
        assert demonstration_scores(task, sample, task.demonstration(sample, "bisect"))[1]["turns"] <= 7
        assert demonstration_scores(task, sample, task.demonstration(sample, "step10"))[1]["turns"] <= 19
    short = GuessNumberTask(high=100, max_turns=3)
    lost = short.demonstration(next(s for s in short.samples if s.references == ("47",)), "step10")
    assert [text for text, agent in lost if agent] == [" 10", " 20", " 30"] and "Out of turns" in lost[-1][0]
    capped = next(s for s in task.samples if int(s.references[0]) > 90)  # the last coarse guess is high
    assert [text for text, agent in task.demonstration(capped, "step30") if agent][3] == " 100"


def test_unknown_teacher_names_the_known_ones():
    task = GuessNumberTask()
    for teacher in ("step0", "stepx", "greedy", "step-3", "step5-2", "step0-3", "step2-", "step2-3-4", "step 2-3"):
        with pytest.raises(ValueError, match=r"no scripted teacher .*'bisect', 'step<k>', 'step<a>-<b>'"):
            task.demonstration(task.samples[0], teacher)
    dialogue = TextVectorEnv(1, task="goal_dialogue", tokenizer="byte").task
    assert dialogue.demonstration(dialogue.samples[0], "bisect")[0][0] == dialogue.samples[0].prompt


def first_guesses(task: GuessNumberTask, teacher: str) -> list[int]:
    return [int(task.demonstration(sample, teacher)[1][0]) for sample in task.samples]


def test_mixture_teacher_plays_one_step_per_sample_deterministically_spread_over_its_range():
    task = GuessNumberTask(high=100, max_turns=60)
    firsts = first_guesses(task, "step2-8")
    assert firsts == first_guesses(GuessNumberTask(high=100, max_turns=60), "step2-8")  # the same k on every call
    assert set(firsts) == set(range(2, 9))  # the first guess is low + k - 1: every k in 2..8 is drawn
    assert max(np.bincount(firsts)) <= 2 * len(firsts) / 7  # roughly uniform, no k dominates
    shifted = GuessNumberTask(low=11, high=110, max_turns=60)
    assert set(first_guesses(shifted, "step3-5")) == {13, 14, 15}
    assert first_guesses(task, "step4-4") == first_guesses(task, "step4") == [4] * len(task)
    assert firsts != first_guesses(task, "step2-8".replace("8", "9"))  # the name is part of the hash
    for sample, first in zip(task.samples, firsts):  # each sample's dialogue is that of step<k>
        assert task.demonstration(sample, "step2-8") == task.demonstration(sample, f"step{first}")


def test_a_task_without_teachers_says_so():
    class NoTeacher(GuessNumberTask):
        teachers = ()
        demonstration = MultiTurnTask.demonstration

    with pytest.raises(ValueError, match=r"task 'goal_dialogue' has no scripted teacher 'bisect'.*\[\]"):
        NoTeacher().demonstration(NoTeacher().samples[0], "bisect")
