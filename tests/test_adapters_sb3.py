"""The Stable-Baselines3 adapter: to_vec_env against what SB3 expects (DummyVecEnv over single
envs is the reference), SB3's algorithms on every env id, TokenEmbedding, MaskablePPO's masks."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import data_equivalence
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecCheckNan, VecMonitor

from text_gym import TextVectorEnv
from text_gym.adapters.sb3 import SB3VecEnv, TokenEmbedding, TopPMasks, to_vec_env
from text_gym.registration import env_ids
from text_gym.rollout import tiny_model, top_p_keep
from text_gym.tasks import Sample, Scores, Task
from text_gym.tokenizers import WordTokenizer

ROOT = Path(__file__).resolve().parents[1]
BYTE = {"tokenizer": "byte", "max_new_tokens": 6}


@pytest.fixture
def one_thread():
    """Torch on one thread: SB3's small networks gain nothing from more, and on a shared
    machine idle threads waiting for each other multiply a training test's time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_actions(rng, n, eos, vocab=258, p_eos=0.3):
    actions = rng.integers(0, vocab, n)
    actions[rng.random(n) < p_eos] = eos
    return actions


# ---------------------------------------------------------------------- to_vec_env


def test_a_rollout_equals_dummy_vec_env_of_single_envs():
    """Observations, float32 rewards, dones, every info (terminal_observation,
    TimeLimit.truncated, the final info) and reset_infos equal DummyVecEnv's, step by step."""
    ours = to_vec_env("TextTranslate-v0", num_envs=4, bootstrap_truncated=True, **BYTE)
    reference = DummyVecEnv([lambda: gym.make("TextTranslate-v0", **BYTE) for _ in range(4)])
    assert ours.seed(3) == reference.seed(3) == [3, 4, 5, 6]
    assert data_equivalence(ours.reset(), dict(reference.reset()), exact=True)
    assert data_equivalence(ours.reset_infos, reference.reset_infos, exact=True)
    rng = np.random.default_rng(0)
    finished = truncated = 0
    for _ in range(40):
        actions = random_actions(rng, 4, ours.get_attr("tokenizer")[0].eos_token_id)
        obs, rewards, dones, infos = ours.step(actions)
        ref_obs, ref_rewards, ref_dones, ref_infos = reference.step(actions)
        assert data_equivalence(obs, dict(ref_obs), exact=True)
        assert rewards.dtype == ref_rewards.dtype == np.float32 and (rewards == ref_rewards).all()
        assert dones.dtype == np.bool_ and (dones == ref_dones).all()
        assert data_equivalence(infos, ref_infos, exact=True)
        assert data_equivalence(ours.reset_infos, reference.reset_infos, exact=True)
        finished += int(dones.sum())
        truncated += sum(info["TimeLimit.truncated"] for info in infos)
    assert finished > 10 and 0 < truncated < finished  # both ways of ending were compared


@pytest.mark.parametrize("bootstrap", [True, False])
def test_terminal_observation_is_the_final_obs_and_time_limit_truncated(bootstrap):
    venv = to_vec_env("TextTranslate-v0", num_envs=3, bootstrap_truncated=bootstrap, **BYTE)
    venv.seed(0)
    obs = venv.reset()
    P, eos = venv.get_attr("prompt_tokens")[0], venv.get_attr("tokenizer")[0].eos_token_id
    before = obs["input_ids"].copy()
    for step in range(6):  # slot 0 stops at once, slot 1 at its 3rd token, slot 2 runs out
        actions = np.array([eos if step == 0 else 65, eos if step == 2 else 66, 67])
        obs, rewards, dones, infos = venv.step(actions)
        for slot in np.flatnonzero(dones):
            last = infos[slot]["terminal_observation"]
            assert last["input_ids"][P + step] == actions[slot] and last["new_span"].tolist() == [
                P + step,
                P + step + 1,
            ]
            assert (last["input_ids"][:P] == before[slot, :P]).all()  # the finished episode's prompt
            assert obs["new_span"][slot, 1] == P  # the slot restarted on a fresh prompt
            assert infos[slot]["TimeLimit.truncated"] == (bootstrap and slot == 2)
            assert "response" in infos[slot] and "metrics" in infos[slot]
        for slot in np.flatnonzero(~dones):
            assert set(infos[slot]) == {"TimeLimit.truncated"} and not infos[slot]["TimeLimit.truncated"]
    assert infos[2]["response"] == "CCCCCC"


def test_seeding_is_reproducible_and_seeds_are_used_once():
    def run(seed):
        venv = to_vec_env("TextTranslate-v0", num_envs=2, **BYTE)
        venv.seed(seed)
        first = venv.reset()
        second = venv.reset()  # the seeds were cleared: the streams go on
        return first, second, venv.reset_infos

    a, b, c = run(5), run(5), run(6)
    assert data_equivalence(a, b, exact=True)
    assert not data_equivalence(a[0], a[1], exact=True)
    assert not data_equivalence(a[0], c[0], exact=True)
    venv = to_vec_env("TextTranslate-v0", num_envs=2, **BYTE)
    venv.set_options({"sample_index": 7})
    venv.reset()
    assert [info["sample_index"] for info in venv.reset_infos] == [7, 7]


def test_attributes_and_methods_read_the_one_env():
    venv = to_vec_env("TextTranslate-v0", num_envs=3, render_mode="ansi", **BYTE)
    env = venv.env
    assert venv.get_attr("vocab_size") == [258] * 3 and venv.get_attr("tokenizer", indices=[1])[0] is env.tokenizer
    assert venv.has_attr("task") and not venv.has_attr("no_such_attribute")
    venv.reset()
    assert venv.env_method("render_slot", 1, indices=[0, 2]) == [env.render_slot(1)] * 2
    assert venv.env_is_wrapped(gym.Wrapper) == [False] * 3
    venv.set_attr("max_new_tokens", 6)
    with pytest.raises(ValueError, match=r"share one TextVectorEnv.*indices=None"):
        venv.set_attr("max_new_tokens", 6, indices=[0])
    frames = venv.render()
    assert len(frames) == 3 and "--- response (0/6 tokens) ---" in frames[0]
    assert venv.render_mode == "ansi"


def test_built_envs_are_accepted_and_bad_ones_refused_with_the_fix():
    good = TextVectorEnv(2, tokenizer="byte", autoreset_mode="SAME_STEP")
    assert isinstance(to_vec_env(good), SB3VecEnv) and to_vec_env(good).env is good
    with pytest.raises(ValueError, match="autoreset_mode='SAME_STEP'"):
        to_vec_env(TextVectorEnv(2, tokenizer="byte"))
    with pytest.raises(ValueError, match="output='numpy'"):
        to_vec_env(TextVectorEnv(2, tokenizer="byte", autoreset_mode="SAME_STEP", output="torch"))
    with pytest.raises(ValueError, match="copy=True"):
        to_vec_env(TextVectorEnv(2, tokenizer="byte", autoreset_mode="SAME_STEP", copy=False))
    with pytest.raises(ValueError, match="leave autoreset_mode out"):
        to_vec_env("TextTranslate-v0", num_envs=2, tokenizer="byte", autoreset_mode="NEXT_STEP")
    with pytest.raises(ValueError, match=r"\['num_envs'\] with an already built env"):
        to_vec_env(good, num_envs=4)
    with pytest.raises(TypeError, match=r"env\.unwrapped"):
        to_vec_env(gym.wrappers.vector.RecordEpisodeStatistics(good))
    with pytest.raises(TypeError, match="not TextEnv"):
        to_vec_env(gym.make("TextTranslate-v0", tokenizer="byte").unwrapped)


def test_vec_monitor_logs_episodes_and_vec_check_nan_passes():
    venv = VecCheckNan(VecMonitor(to_vec_env("TextTranslate-v0", num_envs=4, **BYTE)), raise_exception=True)
    venv.seed(0)
    venv.reset()
    episodes = []
    for _ in range(8):
        _, rewards, dones, infos = venv.step(np.full(4, 70))
        episodes += [(info["episode"], reward) for info, reward, done in zip(infos, rewards, dones) if done]
    assert len(episodes) == 4 and all(e["l"] == 6 and e["r"] == pytest.approx(r) for e, r in episodes)


# ---------------------------------------------------------------------- SB3's algorithms


# Every env id runs 2,048 PPO steps (8 slots x 256). The cost is SB3's default policy: an
# MLP over the whole window and an action head over the vocabulary. With the default
# tokenizer (49,152 actions) and the default windows (up to 256 + 64 tokens for dialogue,
# 24 + 265 for translation, whose episodes then outlast 256 steps) one id takes ~15 s, so
# the ids run here with the byte tokenizer and a 64 + 16 window: episodes end within the
# budget and the whole test stays near a minute.
SMALL = {"tokenizer": "byte", "max_prompt_tokens": 64, "max_new_tokens": 16}


@pytest.mark.parametrize("env_id", env_ids())
def test_ppo_multi_input_policy_runs_2048_steps_on_every_env_id(env_id, one_thread):
    venv = VecMonitor(to_vec_env(env_id, num_envs=8, **SMALL))
    model = PPO("MultiInputPolicy", venv, n_steps=256, batch_size=512, n_epochs=1, seed=0, device="cpu")
    start = time.perf_counter()
    model.learn(2048)
    print(f"{env_id}: 2,048 steps in {time.perf_counter() - start:.1f} s")
    assert model.num_timesteps == 2048
    assert len(model.ep_info_buffer) > 0  # episodes finished and VecMonitor logged them


# ---------------------------------------------------------------------- TokenEmbedding


class Pairs(Task):
    """Answer each letter with its own word: a 4-context bandit (a blind policy gets 1/4)."""

    name = "pairs"

    def __init__(self):
        self.samples = [Sample(p, (r,)) for p, r in [("a", "w"), ("b", "x"), ("c", "y"), ("d", "z")]]

    def score(self, responses, samples):
        hits = np.array([r.strip() == s.references[0] for r, s in zip(responses, samples)], float)
        return Scores(hits, {"hit": hits})


def pairs_venv():
    task = Pairs()
    tokenizer = WordTokenizer.from_texts(
        [s.prompt for s in task.samples] + [" " + s.references[0] for s in task.samples]
    )
    env = TextVectorEnv(8, task=task, tokenizer=tokenizer, max_new_tokens=1, autoreset_mode="SAME_STEP")
    return to_vec_env(env)  # 11 actions: 3 specials, 4 letters, 4 answers


def greedy_reward(model, seed=100, steps=8):
    venv = pairs_venv()
    venv.seed(seed)
    obs, rewards = venv.reset(), []
    for _ in range(steps):
        obs, reward, _, _ = venv.step(model.predict(obs, deterministic=True)[0])
        rewards.append(reward)
    return float(np.mean(rewards))


def test_token_embedding_features_read_ids_as_integers_and_ignore_padding():
    venv = to_vec_env("TextTranslate-v0", num_envs=2, **BYTE)
    extractor = TokenEmbedding(venv.observation_space, embed_dim=4)
    assert extractor.features_dim == 13
    venv.seed(0)
    obs = venv.reset()
    floats = {k: torch.from_numpy(v).float() for k, v in obs.items()}  # as SB3's preprocessing gives them
    features = extractor(floats)
    table, P, start = extractor.embedding.weight, venv.env.prompt_tokens, obs["new_span"][0, 0]
    prompt = torch.from_numpy(obs["input_ids"][0, start:P])
    assert torch.allclose(features[0, :4], table[prompt[-1]])  # the last real token
    assert torch.allclose(features[0, 4:8], table[prompt].mean(0))  # the context, padding left out
    assert (features[0, 8:12] == 0).all() and features[0, 12] == P / venv.env.window  # no response yet
    floats["input_ids"][0, :start] = 7  # padding columns do not count
    assert torch.equal(extractor(floats), features)
    with pytest.raises(ValueError, match="keys"):
        TokenEmbedding(gym.spaces.Dict({"input_ids": venv.observation_space["input_ids"]}))


def test_ppo_with_token_embedding_learns_a_tiny_task(one_thread):
    # One-token episodes (max_new_tokens=1): with gamma=0 the return is the task's reward,
    # as a bandit's is.
    torch.manual_seed(0)
    model = PPO(
        "MultiInputPolicy",
        pairs_venv(),
        n_steps=32,
        batch_size=64,
        learning_rate=1e-3,
        ent_coef=0.01,
        gamma=0.0,
        seed=0,
        device="cpu",
        policy_kwargs={"features_extractor_class": TokenEmbedding},
    )
    before = greedy_reward(model)
    model.learn(2048)
    after = greedy_reward(model)
    print(f"greedy reward before {before:.2f}, after {after:.2f}")
    assert before < 0.3 and after >= 0.9  # above the 1/4 that a policy blind to the letter gets


# ---------------------------------------------------------------------- MaskablePPO


def full_forward_logits(model, obs, vocab):
    """Next-token logits of every slot from one forward over its whole window (no cache)."""
    ids, attn = torch.from_numpy(obs["input_ids"]), torch.from_numpy(obs["attention_mask"]).long()
    positions = (attn.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn, position_ids=positions).logits  # (N, L, V')
    last = torch.from_numpy(obs["new_span"][:, 1]) - 1
    return logits[torch.arange(len(ids)), last, :vocab]


def test_top_p_masks_are_the_reference_nucleus_and_keep_the_argmax():
    venv = to_vec_env("TextTranslate-v0", num_envs=4, **BYTE)
    reference = tiny_model(venv.env.tokenizer, hidden=32, layers=2).eval()
    masked = TopPMasks(venv, reference, top_p=0.5)
    assert masked.has_attr("action_masks") and VecMonitor(masked).has_attr("action_masks")
    masked.seed(0)
    obs = masked.reset()
    rng = np.random.default_rng(0)
    sizes = []
    for _ in range(10):  # across autoresets (max_new_tokens=6, stop tokens drawn)
        masks = np.stack(VecMonitor(masked).env_method("action_masks"))  # how MaskablePPO reads them
        logits = full_forward_logits(reference, obs, 258)
        assert np.array_equal(masks, top_p_keep(logits, 0.5).numpy())
        assert masks[np.arange(4), logits.argmax(-1).numpy()].all()
        assert masked.env_method("action_masks", indices=[2])[0].tolist() == masks[2].tolist()
        sizes.append(masks.sum(1))
        obs, *_ = masked.step(random_actions(rng, 4, venv.env.tokenizer.eos_token_id))
    assert 1 < np.mean(sizes) < 258  # a real cut, not everything nor only the argmax
    one = TopPMasks(to_vec_env("TextTranslate-v0", num_envs=2, **BYTE), reference, top_p=1e-6)
    one.reset()
    assert (one.action_masks().sum(1) == 1).all()  # a tiny nucleus is still the argmax
    # top_p=1 is every token, even where a sharp distribution's float32 cumsum reaches 1 early
    sharp = tiny_model(venv.env.tokenizer, hidden=32, layers=2)
    with torch.no_grad():
        sharp.lm_head.weight.mul_(200.0)  # tied to the embeddings: logits scale with it
    every = TopPMasks(to_vec_env("TextTranslate-v0", num_envs=2, **BYTE), sharp, top_p=1.0)
    every.reset()
    assert every.action_masks().all()


def test_maskable_ppo_acts_inside_the_masks(one_thread):
    venv = to_vec_env("TextTranslate-v0", num_envs=4, **BYTE)
    masked = VecMonitor(TopPMasks(venv, tiny_model(venv.env.tokenizer, hidden=32, layers=2), top_p=0.3))
    model = MaskablePPO("MultiInputPolicy", masked, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    assert model.num_timesteps == 64
    rollout = model.rollout_buffer
    taken = rollout.actions.reshape(-1).astype(int)
    assert rollout.action_masks.reshape(len(taken), -1)[np.arange(len(taken)), taken].all()
    assert rollout.action_masks.reshape(len(taken), -1).sum(1).max() < 258


def test_top_p_masks_refuse_what_they_cannot_follow():
    venv = to_vec_env("TextTranslate-v0", num_envs=2, **BYTE)
    reference = tiny_model(venv.env.tokenizer, hidden=32, layers=2)
    with pytest.raises(ValueError, match=r"top_p=0 must be in \(0, 1\]"):
        TopPMasks(venv, reference, top_p=0)
    with pytest.raises(TypeError, match="to_vec_env"):
        TopPMasks(DummyVecEnv([lambda: gym.make("TextTranslate-v0", **BYTE)]), reference)
    masked = TopPMasks(venv, reference)
    masked.reset()
    venv.step(np.zeros(2, dtype=np.int64))  # behind the wrapper's back
    with pytest.raises(RuntimeError, match="stale"):
        masked.step(np.zeros(2, dtype=np.int64))


def test_without_stable_baselines3_the_import_error_names_the_extra():
    code = (
        "import sys; sys.modules['stable_baselines3'] = None\n"
        "import text_gym.adapters\n"  # the package itself needs no framework
        "try:\n"
        "    import text_gym.adapters.sb3\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pip install 'text_gym[sb3]'" in done.stdout
