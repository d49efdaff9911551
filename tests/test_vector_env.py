"""TextVectorEnv behaviour: episode mechanics, incremental observations, outputs, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AutoresetMode

from text_gym import TextVectorEnv
from text_gym.tasks import Sample, Scores, Task, TranslationTask
from text_gym.tokenizers import load_tokenizer


class EchoTask(Task):
    """Tiny task for mechanics tests: reward 1 when the response equals the prompt word."""

    name = "echo"

    def __init__(self, words=("ab", "cde", "f"), prompts=None):
        self.samples = [Sample(p, (w,)) for p, w in zip(prompts or words, words)]
        self.calls: list[int] = []

    def score(self, responses, samples):
        self.calls.append(len(responses))
        hits = np.array([r.strip() == s.references[0] for r, s in zip(responses, samples)], float)
        return Scores(hits, {"hit": hits})


def make(num_envs=4, task=None, **kwargs):
    kwargs.setdefault("tokenizer", "byte")
    return TextVectorEnv(num_envs, task=task or EchoTask(), **kwargs)


def test_layout_prompt_left_padded_response_column_fixed():
    env = make(3, max_new_tokens=4)
    obs, info = env.reset(seed=0)
    P = env.prompt_tokens
    assert P == 3 and obs["input_ids"].shape == (3, P + 4)
    for i, j in enumerate(info["sample_index"]):
        word = env.task.samples[j].prompt.encode()
        assert obs["input_ids"][i, P - len(word) : P].tolist() == list(word)
        assert obs["attention_mask"][i].tolist() == [0] * (P - len(word)) + [1] * len(word) + [0] * 4
        assert obs["new_span"][i].tolist() == [P - len(word), P]
    obs, *_ = env.step(np.array([120, 121, 122]))
    assert obs["input_ids"][:, P].tolist() == [120, 121, 122]  # same column for every slot
    assert obs["agent_mask"][:, P].tolist() == [1, 1, 1]
    assert obs["agent_mask"][:, :P].sum() == 0
    assert obs["new_span"].tolist() == [[P, P + 1]] * 3


def test_incremental_observations_rebuild_the_window():
    """Concatenating input_ids[start:end] of every step reproduces the whole sequence."""
    env = make(2, max_new_tokens=5)
    obs, _ = env.reset(seed=1)
    rng = np.random.default_rng(0)
    seen = [list(obs["input_ids"][i, slice(*obs["new_span"][i])]) for i in range(2)]
    for _ in range(12):
        obs, _, term, trunc, _ = env.step(rng.integers(0, 256, 2))
        for i in range(2):
            start, end = obs["new_span"][i]
            if start < env.prompt_tokens:  # a reset: the slot starts over
                seen[i] = []
            seen[i] += list(obs["input_ids"][i, start:end])
            assert seen[i] == list(obs["input_ids"][i][obs["attention_mask"][i] == 1])


def test_truncation_and_termination_rewards_and_info():
    env = make(2, max_new_tokens=3)
    _, info = env.reset(seed=0)
    eos = env.tokenizer.eos_token_id
    refs = [env.task.samples[j].references[0].encode() for j in info["sample_index"]]
    # slot 0 writes its reference then EOS; slot 1 writes garbage until truncated
    script = [[refs[0][k] if k < len(refs[0]) else eos, 88] for k in range(len(refs[0]) + 1)]
    for t, actions in enumerate(script):
        obs, rew, term, trunc, info = env.step(np.array(actions))
        if t == len(refs[0]):
            break
    assert term[0] and not trunc[0] and rew[0] == 1.0
    assert info["response"][0] == refs[0].decode() and info["metrics"]["hit"][0] == 1.0
    assert info["references"][0] == (refs[0].decode(),)
    env2 = make(1, max_new_tokens=3)
    env2.reset(seed=0)
    for _ in range(2):
        assert not env2.step(np.array([88]))[3][0]
    _, rew, term, trunc, info = env2.step(np.array([88]))
    assert trunc[0] and not term[0] and rew[0] == 0.0 and info["response"][0] == "XXX"


def test_scoring_is_one_call_per_step():
    task = EchoTask()
    env = make(16, task=task, max_new_tokens=2)
    env.reset(seed=0)
    env.step(np.zeros(16, dtype=np.int64))
    assert task.calls == []
    env.step(np.zeros(16, dtype=np.int64))  # every slot truncates now
    assert task.calls == [16]


@pytest.mark.parametrize("mode", ["NEXT_STEP", "SAME_STEP", "DISABLED"])
def test_autoreset_modes(mode):
    env = make(2, max_new_tokens=1, autoreset_mode=mode)
    env.reset(seed=0)
    obs, rew, term, trunc, info = env.step(np.array([65, 65]))
    assert trunc.all()
    if mode == "SAME_STEP":
        assert info["_final_obs"].all() and info["final_obs"][0]["input_ids"][env.prompt_tokens] == 65
        assert (obs["new_span"][:, 0] < env.prompt_tokens).all()  # already reset
    elif mode == "NEXT_STEP":
        obs, rew, term, trunc, info = env.step(np.array([66, 66]))  # ignored: this step resets
        assert not (term | trunc).any() and (rew == 0).all() and info["_sample_index"].all()
        assert obs["agent_mask"].sum() == 0
    else:
        with pytest.raises(ValueError, match="reset_mask"):
            env.step(np.array([66, 66]))
        env.reset(options={"reset_mask": np.array([True, True])})
        env.step(np.array([66, 66]))


def test_reset_mask_resets_only_masked_slots():
    env = make(3, max_new_tokens=4, autoreset_mode="DISABLED")
    env.reset(seed=0)
    env.step(np.array([70, 71, 72]))
    obs, info = env.reset(options={"reset_mask": np.array([False, True, False])})
    assert info["_sample_index"].tolist() == [False, True, False]
    assert obs["input_ids"][[0, 2], env.prompt_tokens].tolist() == [70, 72]
    assert obs["agent_mask"][1].sum() == 0


@pytest.mark.parametrize("mode", ["DISABLED", "NEXT_STEP"])
def test_partial_reset_appends_nothing_to_the_slots_it_keeps(mode):
    # new_span is what was appended since the slot's last observation: for a kept slot,
    # nothing; a KV-caching agent feeding it must not see the last step's token again
    env = make(2, max_new_tokens=6, autoreset_mode=mode)
    env.reset(seed=0)
    obs = env.step(np.array([env.tokenizer.eos_token_id, 70]))[0]
    P = env.prompt_tokens
    assert obs["new_span"][1].tolist() == [P, P + 1]
    obs, _ = env.reset(options={"reset_mask": np.array([True, False])})
    assert obs["new_span"][1].tolist() == [P + 1, P + 1]
    assert obs["new_span"][0].tolist() == [P - obs["attention_mask"][0, :P].sum(), P]
    obs = env.step(np.array([71, 72]))[0]
    assert obs["new_span"][1].tolist() == [P + 1, P + 2]
    assert obs["input_ids"][1, P : P + 2].tolist() == [70, 72]


def test_a_rejected_reset_changes_nothing():
    def next_draws(bad_reset: dict | None):
        env = make(3, task=EchoTask(words=[f"w{i}" for i in range(100)]), max_new_tokens=2)
        env.reset(seed=0)
        if bad_reset is not None:
            with pytest.raises(ValueError):
                env.reset(**bad_reset)
        return env.reset()[1]["sample_index"].tolist()

    clean = next_draws(None)
    for bad in (
        {"seed": 123, "options": {"sample_index": np.array([-1, 0, 0])}},
        {"seed": 123, "options": {"reset_mask": np.array([1, 0, 1])}},
        {"seed": 123, "options": {"unknown": 1}},
    ):
        assert next_draws(bad) == clean, bad


def test_reset_sample_index_pins_prompts():
    env = make(3, max_new_tokens=2)
    obs, info = env.reset(seed=0, options={"sample_index": np.array([2, 2, 1])})
    assert info["sample_index"].tolist() == [2, 2, 1]
    assert (obs["input_ids"][0] == obs["input_ids"][1]).all()
    assert env.render_slot(2).startswith(env.task.samples[1].prompt)
    single = gym.make("TextTranslate-v0", tokenizer="byte").unwrapped
    assert single.reset(options={"sample_index": 9})[1]["sample_index"] == 9
    for bad in (np.array([0, 1]), np.array([0.0, 1.0, 2.0]), np.array([0, 1, len(env.task)])):
        with pytest.raises(ValueError, match="sample_index"):
            env.reset(options={"sample_index": bad})


def test_sample_pool_limits_the_seeded_draws():
    env = make(4, task=EchoTask(), max_new_tokens=1)  # three samples
    env.set_sample_pool([0, 2])
    drawn = [env.reset(seed=s)[1]["sample_index"] for s in range(10)]
    obs, *_, info = env.step(np.zeros(4, dtype=np.int64))  # every episode ends: autoreset draws from the pool
    _, _, _, _, info = env.step(np.zeros(4, dtype=np.int64))
    drawn.append(info["sample_index"])
    assert set(np.concatenate(drawn).tolist()) == {0, 2}
    assert env.reset(options={"sample_index": np.array([1, 1, 1, 1])})[1]["sample_index"].tolist() == [1] * 4
    env.set_sample_pool(None)
    assert 1 in np.concatenate([env.reset(seed=s)[1]["sample_index"] for s in range(10)])
    for bad in ([], [0, 0], [0, 3], [-1], [0.5], [[0, 1]]):
        with pytest.raises(ValueError, match="sample pool"):
            env.set_sample_pool(bad)


def test_seed_streams_and_reset_without_seed_continues():
    a, b = make(3), make(1)
    _, info_a = a.reset(seed=7)
    first = info_a["sample_index"].copy()
    for k in range(3):
        _, info_b = b.reset(seed=7 + k)
        assert info_b["sample_index"][0] == first[k]  # slot k uses seed 7 + k
    _, again = a.reset()
    _, fresh = make(3).reset(seed=7)
    assert (fresh["sample_index"] == first).all()
    draws = [make(1).reset(seed=s)[1]["sample_index"][0] for s in range(60)]
    assert len(set(draws)) == 3  # all three samples come up


def test_sample_draws_agree_between_the_python_and_numpy_paths():
    """A refill of a few slots hashes in Python ints, a large one on uint64 arrays: the
    same draws, wrapping at 2**64 alike."""
    from text_gym.sample_streams import draws

    rng = np.random.default_rng(0)
    top = np.iinfo(np.uint64).max
    streams = np.concatenate(
        [rng.integers(0, top, 200, dtype=np.uint64, endpoint=True), np.array([0, 1, top, top - 1], dtype=np.uint64)]
    )
    episodes = np.concatenate(
        [rng.integers(0, top, 200, dtype=np.uint64, endpoint=True), np.array([top, 0, top, 1], dtype=np.uint64)]
    )
    for n in (1, 3, 16728, 2**40 + 7):
        together = draws(streams, episodes, n)  # > 8: numpy
        apart = np.concatenate([draws(streams[i : i + 4], episodes[i : i + 4], n) for i in range(0, len(streams), 4)])
        assert together.dtype == apart.dtype == np.int64 and (together == apart).all()
        assert together.min() >= 0 and together.max() < n


@pytest.mark.parametrize("device_out", ["numpy", "torch"])
def test_outputs_and_copy(device_out):
    env = make(2, max_new_tokens=4, output=device_out)
    obs, _ = env.reset(seed=0)
    before = obs["input_ids"].clone() if device_out == "torch" else obs["input_ids"].copy()
    out = env.step(torch.tensor([1, 2]) if device_out == "torch" else np.array([1, 2]))
    kinds = torch.Tensor if device_out == "torch" else np.ndarray
    assert all(isinstance(x, kinds) for x in (*out[0].values(), *out[1:4]))
    assert (obs["input_ids"] == before).all()  # copy=True: old observations do not change
    view = make(2, max_new_tokens=4, copy=False)
    obs, _ = view.reset(seed=0)
    with pytest.raises(ValueError):
        obs["input_ids"][0, 0] = 5  # read-only view of the env's buffer


@pytest.mark.parametrize(
    "actions, pattern",
    [
        (np.array([0, 300]), r"action 300 \(slot 1.*0\.\.257"),
        (np.array([-1, 3]), r"action -1 \(slot 0.*0\.\.257"),
        (np.array([1.0, 2.0]), r"integer token ids.*float64"),
        (np.array([1, 2, 3]), r"shape \(2,\)"),
        (np.array([[1, 2]]), r"shape \(2,\)"),
        (torch.tensor([1.5, 2.0]), r"integer token ids.*float32"),
        (torch.tensor([1, 999]), r"action 999"),
        ([1, "a"], r"integer token ids"),
    ],
)
def test_bad_actions_raise_value_error(actions, pattern):
    env = make(2, max_new_tokens=4)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=pattern):
        env.step(actions)
    env.step(np.array([1, 2]))  # the env is unharmed


@pytest.mark.parametrize("action", [3.0, 1e9, -2, np.array([1, 2]), torch.tensor([5, 6]), "x", True])
def test_bad_single_env_actions(byte_env, action):
    byte_env.reset(seed=0)
    with pytest.raises(ValueError):
        byte_env.step(action)


def test_single_env_step_after_the_end_says_reset(byte_env):
    byte_env.reset(seed=0)
    assert byte_env.step(byte_env.unwrapped.eos_token_id)[2]
    with pytest.raises(RuntimeError, match=r"episode has ended: call reset\(\)"):
        byte_env.step(1)
    byte_env.reset()
    byte_env.step(1)


def test_unknown_arguments_are_matched_against_the_task_and_the_env():
    """The env hands the task its own argument names: a misspelt env argument gets a
    suggestion, and the message lists both sets; a task checked alone lists its own."""
    with pytest.raises(ValueError) as err:
        TextVectorEnv(1, task="translation", tokenizer="byte", prompt_truncaton="left", env_id="X-v0")
    message = str(err.value)
    assert "unknown argument(s) ['prompt_truncaton'] for X-v0 (task 'translation')" in message
    assert "did you mean 'prompt_truncation' for 'prompt_truncaton'?" in message
    assert "Task arguments: [" in message and "'scan_split'" in message
    assert "env arguments: ['autoreset_mode', 'chat_template', 'copy', 'device', 'env_id', " in message
    with pytest.raises(ValueError) as err:
        TranslationTask.check_kwargs("X-v0", {"prompt_truncaton": "left"})
    assert "did you mean" not in str(err.value) and "env arguments" not in str(err.value)


def test_construction_errors_list_choices():
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['colour'\].*split"):
        gym.make("TextTranslate-v0", colour="red")
    with pytest.raises(ValueError, match=r"scan_split='lengthy'.*'addprim_jump'"):
        gym.make("TextTranslate-v0", scan_split="lengthy")
    with pytest.raises(ValueError, match=r"split='dev'.*\['train', 'test'\]"):
        gym.make("TextTranslate-v0", split="dev")
    with pytest.raises(ValueError, match=r"autoreset_mode='sometimes'.*NEXT_STEP"):
        make(autoreset_mode="sometimes")
    with pytest.raises(ValueError, match=r"output='jax'"):
        make(output="jax")
    for stops in ([999], "12", [2.7], [True], []):
        with pytest.raises(
            ValueError, match=r"stop_token_ids=.*must be an int id or a non-empty list of int ids in \[0, 258\)"
        ):
            make(stop_token_ids=stops)
    assert make(stop_token_ids=5).stop_token_ids == (5,) and make(stop_token_ids=np.array([3, 4])).stop_token_ids == (
        3,
        4,
    )
    with pytest.raises(ValueError, match=r"copy='no' must be True or False"):
        make(copy="no")
    with pytest.raises(ValueError, match=r"device='meta' holds no data"):
        make(device="meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device='cuda' is not usable here"):
            make(device="cuda")
    with pytest.raises(ValueError, match=r"seed 2361183241434822606848 must be an int in \[0, 2\*\*64\)"):
        make().reset(seed=2**71)
    with pytest.raises(
        ValueError, match=r"did you mean 'max_new_tokens' for 'max_new_token'.*env arguments: \[.*'max_new_tokens'"
    ):
        gym.make("TextTranslate-v0", max_new_token=5)
    with pytest.raises(ValueError, match=r"need an int max_turns >= 1.*'5'"):
        gym.make("TextDialogGoal-v0", max_turns="5")
    with pytest.raises(ValueError, match=r"vector_kwargs=\{'autoreset_mode'"):
        gym.make_vec("TextTranslate-v0", num_envs=2, vectorization_mode="sync", autoreset_mode="same_step")
    with pytest.raises(ValueError, match=r"num_envs=0"):
        make(0)
    with pytest.raises(ValueError, match=r"render_mode='human'"):
        make(render_mode="human")
    with pytest.raises(ValueError, match=r"max_new_tokens=0 must be an int >= 1"):
        make(max_new_tokens=0)
    with pytest.raises(ValueError, match=r"max_prompt_tokens=2.5"):
        make(max_prompt_tokens=2.5)
    for name, value in (("num_envs", True), ("max_new_tokens", True), ("max_prompt_tokens", True)):
        with pytest.raises(ValueError, match=f"{name}={value}"):
            TextVectorEnv(**{"num_envs": 1, "task": EchoTask(), "tokenizer": "byte", name: value})


def test_prompt_longer_than_window():
    task = EchoTask(words=("a", "b"), prompts=("0123456789", "xy"))
    left = make(2, task=task, max_prompt_tokens=4)
    assert left.num_truncated_prompts == 1
    seed = next(s for s in range(100) if make(1, task=task).reset(seed=s)[1]["sample_index"][0] == 0)
    obs, _ = left.reset(seed=seed)
    assert bytes(obs["input_ids"][0, :4].tolist()) == b"6789"  # "left" keeps the end
    assert obs["new_span"][0].tolist() == [0, 4]
    right = make(1, task=task, max_prompt_tokens=4, prompt_truncation="right")
    obs, _ = right.reset(seed=seed)
    assert bytes(obs["input_ids"][0, :4].tolist()) == b"0123"  # "right" keeps the start
    with pytest.raises(ValueError, match=r"1 prompt\(s\) are longer than max_prompt_tokens=4.*10 tokens"):
        make(1, task=task, max_prompt_tokens=4, prompt_truncation="error")
    env = make(1, task=task, max_prompt_tokens=4, max_new_tokens=1, autoreset_mode="DISABLED")
    for seed in range(10):
        _, info = env.reset(seed=seed)
        *_, info = env.step(np.array([65]))
        assert info["prompt_truncated"][0] == (info["sample_index"][0] == 0)


@pytest.mark.parametrize("truncation", ["left", "right"])
def test_prompt_table_filled_up_front_equals_filled_on_first_draw(monkeypatch, truncation):
    """All prompts encoded (the default window needs their lengths): the table is
    filled at construction; otherwise as samples are drawn. Same episodes either way."""
    words = tuple("abcdefghij")
    prompts = tuple(w + "0123456789"[:k] for k, w in enumerate(words))  # 1..10 bytes
    kwargs = {
        "max_prompt_tokens": 6,
        "prompt_truncation": truncation,
        "max_new_tokens": 3,
        "tokenizer": load_tokenizer("byte"),
    }
    task = EchoTask(words, prompts)
    task._config = {"words": words, "prompts": prompts}  # envs of this task and tokenizer share its encoding
    make(5, task=task, **kwargs)._encoded.lengths()  # now every prompt is encoded
    eager = make(5, task=task, **kwargs)
    monkeypatch.setattr("text_gym.prompt_table.EAGER_TABLE_BYTES", 0)
    lazy = make(5, task=task, **kwargs)
    assert eager._prompts.size == len(words) and lazy._prompts.size == 0
    actions = np.random.default_rng(0).integers(0, 256, size=(40, 5))
    outs = [env.reset(seed=3) for env in (eager, lazy)]
    assert data_equivalence(*outs, exact=True)
    for row in actions:
        outs = [env.step(row) for env in (eager, lazy)]
        assert data_equivalence(*outs, exact=True)
    assert 0 < lazy._prompts.size <= len(words)
    cut = [p[-6:] if truncation == "left" else p[:6] for p in prompts]
    table = {bytes(r[r != eager.tokenizer.pad_token_id].tolist()).decode() for r in eager._prompts.tokens[:10]}
    assert table == set(cut)


def test_undecodable_bytes_fall_back_to_replacement_character():
    env = make(1, max_new_tokens=2)
    env.reset(seed=0)
    env.step(np.array([0xFF]))
    *_, info = env.step(np.array([0xFE]))
    assert info["response"][0] == "\ufffd\ufffd"


def test_render_ansi():
    env = make(2, max_new_tokens=3, render_mode="ansi")
    env.reset(seed=0)
    env.step(np.array([72, 73]))
    frames = env.render()
    assert len(frames) == 2 and "response (1/3 tokens)" in frames[0]
    single = gym.make("TextTranslate-v0", tokenizer="byte", render_mode="ansi")
    single.reset(seed=0)
    assert "Command:" in single.render()


def test_task_returning_bad_rewards_is_a_clear_error():
    class Broken(EchoTask):
        def score(self, responses, samples):
            return Scores(np.full(len(responses), np.nan), {})

    env = make(1, task=Broken(), max_new_tokens=1)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="one finite float per response"):
        env.step(np.array([1]))


def test_torch_actions_on_device_and_step_before_reset():
    env = make(2, max_new_tokens=2, output="torch")
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.tensor([1, 2]))
    env.reset(seed=0)
    obs, rew, term, trunc, _ = env.step(torch.tensor([1, 2], dtype=torch.int32))
    assert rew.dtype == torch.float32 and term.dtype == torch.bool
    assert obs["input_ids"].dtype == torch.int64


def test_autoreset_mode_metadata():
    env = make(2, autoreset_mode=AutoresetMode.SAME_STEP)
    assert env.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    assert make(2).metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP


@pytest.mark.parametrize("env_id", ["TextTranslate-v0", "TextDialog-v0"])
@pytest.mark.parametrize("mode", ["NEXT_STEP", "SAME_STEP"])
def test_cpu_numpy_views_equal_the_device_path(env_id, mode):
    """On a CPU device the buffers are read and written through numpy views; the torch
    ops every other device uses must give the same episodes (tokens, rewards, infos)."""
    kwargs = dict(num_envs=3, max_new_tokens=6, autoreset_mode=mode)
    host, device = gym.make_vec(env_id, **kwargs).unwrapped, gym.make_vec(env_id, **kwargs).unwrapped
    device._views = None  # force the torch path
    eos = host.tokenizer.eos_token_id
    rng = np.random.default_rng(0)
    outs = [env.reset(seed=3) for env in (host, device)]
    assert data_equivalence(*outs, exact=True)
    for t in range(40):
        actions = rng.integers(0, 500, size=3)
        actions[rng.random(3) < 0.3] = eos
        as_given = [actions, torch.from_numpy(actions).to(torch.int32)][t % 2]
        outs = [env.step(as_given) for env in (host, device)]
        assert data_equivalence(*outs, exact=True), t


@pytest.mark.parametrize(
    "actions", [np.array([1, 2**63], dtype=np.uint64), np.array([-1, 2], dtype=np.int8), torch.tensor([2, -5])]
)
def test_out_of_range_actions_of_every_integer_dtype(actions):
    env = make(2, max_new_tokens=4)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"out of range: valid token ids are 0\.\.257"):
        env.step(actions)
