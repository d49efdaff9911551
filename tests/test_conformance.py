"""Registry-driven conformance: every registered id passes the same checks."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env, data_equivalence
from gymnasium.vector import AutoresetMode

from tests.conftest import ALL_IDS, ENV_IDS, eos_of, mixed_actions

# Short episodes that end both ways (stop token / length) within a few dozen steps.
SHORT = {"TextDialogGoal-v0": dict(max_new_tokens=24, max_turns=2)}


def short(env_id: str) -> dict:
    return SHORT.get(env_id, dict(max_new_tokens=5))


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_make_and_spaces(env_id):
    env = gym.make(env_id)
    tokenizer = env.unwrapped.tokenizer
    space = env.observation_space
    assert sorted(space.spaces) == ["agent_mask", "attention_mask", "input_ids", "new_span"]
    ids = space["input_ids"]
    assert ids.dtype == np.int64 and ids.high.max() == len(tokenizer) - 1 and ids.low.min() == 0
    for key in ("attention_mask", "agent_mask"):
        assert np.issubdtype(space[key].dtype, np.integer) and space[key].high.max() == 1
    assert env.action_space == gym.spaces.Discrete(len(tokenizer))
    obs, _ = env.reset(seed=0)
    assert obs in space


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_check_env_no_warnings(env_id):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make(env_id).unwrapped)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_check_env_no_warnings(env_id):
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_checker.check_env(gym.make(env_id).unwrapped, warn=True)
    assert [str(w.message) for w in caught] == []


def test_sb3_builds_envs_from_ids():
    # Stable-Baselines3 asks gym.make for render_mode="rgb_array" first and retries
    # without it on a TypeError, which UnsupportedRenderMode also is
    env_util = pytest.importorskip("stable_baselines3.common.env_util")
    from stable_baselines3.common.base_class import maybe_make_env

    vec = env_util.make_vec_env("TextTranslate-v0", n_envs=2, env_kwargs={"tokenizer": "byte"})
    assert vec.num_envs == 2 and vec.reset()["input_ids"].shape[0] == 2
    assert maybe_make_env("TextTranslate-v0", verbose=0).render_mode is None
    with pytest.raises(ValueError, match=r"render_mode='rgb_array' is not valid; choose one of \[None, 'ansi'\]"):
        gym.make("TextTranslate-v0", render_mode="rgb_array")


def _rollout(env, seed: int, steps: int):
    rng = np.random.default_rng(seed)
    trace = [env.reset(seed=seed)]
    vocab, eos = env.action_space.n, eos_of(env)
    for _ in range(steps):
        action = int(mixed_actions(rng, 1, vocab, eos, p_eos=0.2)[0])
        step = env.step(action)
        trace.append(step)
        if step[2] or step[3]:
            trace.append(env.reset())
    return trace


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seeded_determinism(env_id):
    kwargs = short(env_id)
    first = _rollout(gym.make(env_id, **kwargs), seed=3, steps=40)
    second = _rollout(gym.make(env_id, **kwargs), seed=3, steps=40)
    assert data_equivalence(first, second, exact=True)
    other = _rollout(gym.make(env_id, **kwargs), seed=4, steps=40)
    assert not data_equivalence(first, other, exact=True)  # the seed matters


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_native_vector_equals_sync(env_id, mode):
    n, kwargs = 4, short(env_id)
    native = gym.make_vec(env_id, num_envs=n, autoreset_mode=mode, **kwargs)
    sync = gym.vector.SyncVectorEnv([lambda: gym.make(env_id, **kwargs) for _ in range(n)], autoreset_mode=mode)
    assert type(native.unwrapped).__name__ == "TextVectorEnv"
    assert native.observation_space == sync.observation_space
    assert data_equivalence(native.reset(seed=11), sync.reset(seed=11), exact=True)
    rng = np.random.default_rng(0)
    vocab, eos = native.single_action_space.n, native.unwrapped.tokenizer.eos_token_id
    ends = {"terminated": 0, "truncated": 0, "reward": 0}
    for step in range(60):
        actions = mixed_actions(rng, n, vocab, eos, p_eos=0.2)
        a, b = native.step(actions), sync.step(actions)
        for name, x, y in zip(("obs", "reward", "terminated", "truncated", "info"), a, b):
            assert data_equivalence(x, y, exact=True), f"step {step}: {name} differs"
        ends["terminated"] += int(a[2].sum())
        ends["truncated"] += int(a[3].sum())
    assert ends["terminated"] > 0 and ends["truncated"] > 0  # both kinds of episode end


SINGLE_TURN = [i for i in ENV_IDS if not gym.make(i).unwrapped.vector.multi_turn]


@pytest.mark.parametrize("env_id", SINGLE_TURN)
def test_native_vector_equals_sync_with_rewards(env_id):
    """Slots that write their reference get reward 1 in both vector envs."""
    n = 3
    native = gym.make_vec(env_id, num_envs=n)
    sync = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(n)])
    obs_n, info_n = native.reset(seed=5)
    obs_s, info_s = sync.reset(seed=5)
    env = native.unwrapped
    tok, task = env.tokenizer, env.task
    answers = [
        tok.encode(task.reference_response(task.samples[j])) + [tok.eos_token_id] for j in info_n["sample_index"]
    ]
    total = np.zeros(n)
    for t in range(max(len(a) for a in answers)):
        actions = np.array([a[min(t, len(a) - 1)] for a in answers])
        a, b = native.step(actions), sync.step(actions)
        assert data_equivalence(a, b, exact=True)
        total += np.where(np.array([t < len(x) for x in answers]), a[1], 0)
    assert total.tolist() == [1.0] * n


def test_make_works_offline_in_a_fresh_process():
    """The acceptance one-liner, with the hub switched off, in a clean interpreter."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    code = "import gymnasium as gym, text_gym; env = gym.make('TextTranslate-v0'); env.reset(seed=0)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_scoring_is_batched(env_id):
    """Slots that finish in the same step are scored by one task call."""
    n = 8
    envs = gym.make_vec(env_id, num_envs=n, max_new_tokens=3)
    task = envs.unwrapped.task
    calls: list[int] = []
    original = task.score

    def counting_score(responses, *args):
        calls.append(len(responses))
        return original(responses, *args)

    task.score = counting_score  # tasks are shared between envs: undo this below
    try:
        envs.reset(seed=0)
        for _ in range(3):  # no stop token: every slot truncates on the third step
            envs.step(np.full(n, 7, dtype=np.int64))
    finally:
        del task.score
    assert calls == [n]
