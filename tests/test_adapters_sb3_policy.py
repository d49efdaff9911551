"""LMActorCriticPolicy: SB3's own PPO and A2C drive a language model through text_gym envs.

The cached rollout is checked against a whole-window forward at every step of rollouts
that cross episode ends and weight updates; predict() against it for batches out of
order; construction errors name the value and the fix; PPO from an SFT warm start
raises the held-out reward.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnvWrapper, VecMonitor

from tests.test_agents import load_agent, register_task_env, tiny_args
from text_gym import WordTokenizer
from text_gym.adapters.sb3 import policy as policy_module
from text_gym.adapters.sb3 import to_vec_env
from text_gym.adapters.sb3.lm_window import CachedWindow, prompt_tokens_of, token_observations, window_outputs
from text_gym.adapters.sb3.policy import LMActorCriticPolicy
from text_gym.rollout import RolloutCollector, tiny_model
from text_gym.tasks import Sample, Scores, Task
from text_gym.tokenizers import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model_kwargs": {"hidden": 32, "layers": 2, "heads": 2, "kv_heads": 1}}
ATOL = 1e-4  # float32 rounding between the cached and the whole-window forward


class StepReward(VecEnvWrapper):
    """Adds ``reward`` to every step's reward: a random policy's task rewards are all 0,
    and this gives it returns to learn values from."""

    def __init__(self, venv, reward: float) -> None:
        super().__init__(venv)
        self.reward = reward

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        return obs, rewards + self.reward, dones, infos


def byte_venv(num_envs: int, max_new_tokens: int = 5, step_reward: float = 0.0):
    """SCAN with the byte tokenizer, as SB3's VecEnv over the native vector env."""
    venv = to_vec_env("TextTranslate-v0", num_envs, tokenizer="byte", max_new_tokens=max_new_tokens)
    return StepReward(venv, step_reward) if step_reward else venv


def as_tensors(obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {key: torch.as_tensor(np.asarray(value)) for key, value in obs.items()}


def full_window(policy, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: action logits and values from one forward over every whole window."""
    with torch.no_grad():
        logits, hidden = window_outputs(policy.lm, token_observations(obs))
        return logits[:, : policy.action_space.n].log_softmax(-1), policy.value_net(hidden)[:, 0]


class CompareToFullWindow(BaseCallback):
    """At each rollout's end (weights as they were during it), checks every stored
    log-probability and value against a whole-window forward, and counts what happened."""

    def __init__(self) -> None:
        super().__init__()
        self.checked, self.dones, self.crossing = 0, 0, 0
        self.weights: list[torch.Tensor] = []

    def _on_step(self) -> bool:
        self.dones += int(self.locals["dones"].sum())
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        obs = {k: torch.as_tensor(v.reshape(-1, *v.shape[2:])) for k, v in buffer.observations.items()}
        log_probs, values = full_window(self.model.policy, obs)
        taken = log_probs.gather(1, torch.as_tensor(buffer.actions.reshape(-1, 1)).long())[:, 0]
        np.testing.assert_allclose(buffer.log_probs.reshape(-1), taken.numpy(), atol=ATOL)
        np.testing.assert_allclose(buffer.values.reshape(-1), values.numpy(), atol=ATOL)
        self.checked += len(taken)
        # slots whose first step here continues an episode begun in the previous rollout
        prompt_tokens = prompt_tokens_of(token_observations(obs))
        self.crossing += int((buffer.observations["new_span"][0, :, 0] >= prompt_tokens).sum())
        self.weights.append(torch.cat([p.detach().flatten() for p in self.model.policy.lm.parameters()]).clone())


def test_cached_rollouts_equal_a_whole_window_forward_across_episodes_and_updates(monkeypatch):
    calls = []
    original = policy_module.window_outputs

    def counted(model, obs):
        calls.append((torch.is_grad_enabled(), len(obs["input_ids"])))
        return original(model, obs)

    monkeypatch.setattr(policy_module, "window_outputs", counted)
    check = CompareToFullWindow()
    model = PPO(
        LMActorCriticPolicy,
        byte_venv(3, step_reward=-0.1),
        n_steps=7,
        batch_size=21,
        n_epochs=2,
        seed=0,
        policy_kwargs=TINY,
    )
    model.learn(3 * 7 * 3, callback=check)
    assert check.checked == 63 and check.dones >= 9  # episodes of 5 steps end inside rollouts
    assert check.crossing > 0  # and run across the weight updates between rollouts
    assert not torch.equal(check.weights[0], check.weights[1])  # train() changed the weights
    assert model.rollout_buffer.values.std() > 0  # the value head learned: values are compared, not zeros
    # no step of a rollout ran the whole window: without gradients, only the one-row
    # bootstrap values of truncated episodes did (batches that do not continue the cache)
    assert all(rows == 1 for grad, rows in calls if not grad) and sum(grad for grad, _ in calls) == 2 * 3


def test_cache_follows_multi_token_spans_and_rebuilds_after_weight_changes():
    """A multi-turn env (a guess, then the user's reply in the same span), a weight update
    in the middle of episodes, and a batch fed twice: the cache equals the whole window."""
    envs = gym.make_vec("TextDialogGoal-v0", num_envs=2, tokenizer="byte", max_turns=3)
    tok = envs.unwrapped.tokenizer
    model = tiny_model(tok, hidden=32, layers=2, heads=2, kv_heads=1)
    obs = token_observations(as_tensors(envs.reset(seed=0)[0]))
    cached = CachedWindow(model, 2, prompt_tokens_of(obs), envs.unwrapped.window, len(tok))
    script = [tok.encode(" 50") + [tok.eos_token_id], tok.encode(" 7") + [tok.eos_token_id]] * 3
    actions = [token for turn in script for token in turn]
    spans = []
    for step, token in enumerate(actions):
        logits, hidden = cached.feed(obs)
        with torch.no_grad():
            full_logits, full_hidden = window_outputs(model, obs)
        torch.testing.assert_close(logits, full_logits, atol=ATOL, rtol=0)
        torch.testing.assert_close(hidden, full_hidden, atol=ATOL, rtol=0)
        if step == 4:  # an optimizer-like in-place update between two steps
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(1.01)
        if step == 6:  # the same observation again: a re-feed changes nothing
            torch.testing.assert_close(cached.feed(obs)[0], full_logits, atol=ATOL, rtol=0)
        obs = token_observations(as_tensors(envs.step(np.full(2, token))[0]))
        spans.append(int((obs["new_span"][:, 1] - obs["new_span"][:, 0]).max()))
    assert max(spans) > 1  # a user's reply came in with the stop token


def test_predict_takes_any_batch_in_any_order():
    policy = PPO(LMActorCriticPolicy, byte_venv(4), n_steps=4, batch_size=16, seed=0, policy_kwargs=TINY).policy
    envs = byte_venv(3)  # another batch size than the training env's
    obs, seen = envs.reset(), []
    for _ in range(6):  # in order: predict's own cache
        seen.append(obs)
        dist = policy.get_distribution(policy.obs_to_tensor(obs)[0])
        torch.testing.assert_close(dist.distribution.logits, full_window(policy, as_tensors(obs))[0], atol=ATOL, rtol=0)
        actions, _ = policy.predict(obs)
        obs = envs.step(actions)[0]
    for old in (seen[2], seen[1], {k: v[1] for k, v in seen[3].items()}):  # out of order, one unbatched
        batch = policy.obs_to_tensor(old)[0]
        torch.testing.assert_close(
            policy.get_distribution(batch).distribution.logits, full_window(policy, batch)[0], atol=ATOL, rtol=0
        )
        with torch.no_grad():
            values = policy.predict_values(batch)[:, 0]
        torch.testing.assert_close(values, full_window(policy, batch)[1], atol=ATOL, rtol=0)
    greedy, _ = policy.predict(seen[2], deterministic=True)
    expected = full_window(policy, as_tensors(seen[2]))[0].argmax(-1).numpy()
    np.testing.assert_array_equal(greedy, expected)


def test_predict_follows_an_env_whose_prompt_region_has_another_width():
    """Two envs with windows of one length (50) and prompt regions of 40 and 30 columns:
    predict's cache, built on the first, gives the whole window's logits on the second."""
    wide, narrow = (
        to_vec_env("TextTranslate-v0", 3, tokenizer="byte", max_prompt_tokens=p, max_new_tokens=50 - p)
        for p in (40, 30)
    )
    policy = PPO(LMActorCriticPolicy, wide, n_steps=4, batch_size=12, seed=0, policy_kwargs=TINY).policy
    for venv in (wide, narrow):
        obs = venv.reset()
        for _ in range(3):
            batch = policy.obs_to_tensor(obs)[0]
            logits = policy.get_distribution(batch).distribution.logits
            torch.testing.assert_close(logits, full_window(policy, batch)[0], atol=ATOL, rtol=0)
            obs = venv.step(policy.predict(obs)[0])[0]


def test_float_observations_are_read_back_as_token_ids():
    envs = byte_venv(2)
    obs = as_tensors(envs.reset())
    floats = {k: v.float() for k, v in obs.items()}  # as SB3's preprocessing makes them
    read = token_observations(floats)
    assert read["input_ids"].dtype == torch.long and torch.equal(read["input_ids"], obs["input_ids"])
    assert torch.equal(read["new_span"], obs["new_span"])


def test_a2c_runs_and_its_numbers_are_finite():
    model = A2C(LMActorCriticPolicy, byte_venv(4, step_reward=-0.1), n_steps=5, seed=0, policy_kwargs=TINY)
    before = [p.detach().clone() for p in model.policy.lm.parameters()]
    model.learn(4 * 5 * 3)
    logged = model.logger.name_to_value
    for key in ("train/policy_loss", "train/value_loss", "train/entropy_loss"):
        assert np.isfinite(logged[key]), (key, logged[key])
    assert logged["train/entropy_loss"] < -1.0  # a 258-way distribution, not a collapsed one
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.lm.parameters()))


def test_cache_false_recomputes_and_matches():
    runs = []
    for cache in (True, False):  # each seeded at construction, then run: the same draws
        runs.append(
            PPO(
                LMActorCriticPolicy,
                byte_venv(2),
                n_steps=6,
                batch_size=12,
                seed=3,
                policy_kwargs={**TINY, "cache": cache},
            )
        )
        runs[-1].learn(12)  # one rollout, then one train()
    cached, plain = runs
    assert plain.policy._windows == {}  # never built a cache
    np.testing.assert_allclose(cached.rollout_buffer.log_probs, plain.rollout_buffer.log_probs, atol=ATOL)
    np.testing.assert_array_equal(cached.rollout_buffer.actions, plain.rollout_buffer.actions)


class CheckMaskedRollout(BaseCallback):
    """At each rollout's end: every action lies in its step's mask, and the stored
    log-probabilities are the masked distribution's, equal to a whole-window forward."""

    def __init__(self) -> None:
        super().__init__()
        self.largest_mask, self.checked = 0, 0

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer, vocab = self.model.rollout_buffer, self.model.action_space.n
        masks = torch.as_tensor(buffer.action_masks.reshape(-1, vocab)).bool()
        actions = torch.as_tensor(buffer.actions.reshape(-1, 1)).long()
        assert masks.gather(1, actions).all()
        obs = {k: torch.as_tensor(v.reshape(-1, *v.shape[2:])) for k, v in buffer.observations.items()}
        with torch.no_grad():
            logits, _ = window_outputs(self.model.policy.lm, token_observations(obs))
        expected = logits[:, :vocab].masked_fill(~masks, -1e8).log_softmax(-1).gather(1, actions)[:, 0]
        np.testing.assert_allclose(buffer.log_probs.reshape(-1), expected.numpy(), atol=ATOL)
        self.largest_mask = max(self.largest_mask, int(masks.sum(1).max()))
        self.checked += len(actions)


def test_maskable_ppo_acts_inside_the_masks():
    """MaskablePPO with a reference model's top-p masks (the sb3env helper's TopPMasks)."""
    from sb3_contrib import MaskablePPO

    from text_gym.adapters.sb3 import TopPMasks
    from text_gym.adapters.sb3.maskable_policy import MaskableLMActorCriticPolicy

    reference = tiny_model(load_tokenizer("byte"), hidden=32, layers=1, seed=7).eval()
    masked = TopPMasks(byte_venv(3, step_reward=-0.1), reference, top_p=0.05)
    model = MaskablePPO(MaskableLMActorCriticPolicy, masked, n_steps=6, batch_size=18, seed=0, policy_kwargs=TINY)
    check = CheckMaskedRollout()
    before = [p.detach().clone() for p in model.policy.lm.parameters()]
    model.learn(2 * 6 * 3, callback=check)  # two rollouts, train() after each
    assert check.checked == 36 and 0 < check.largest_mask < 258 // 4  # small nuclei
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.lm.parameters()))
    np.testing.assert_array_equal(np.isfinite(list(model.logger.name_to_value.values())), True)


# ------------------------------------------------------------------ learning


class EpisodeRewards(BaseCallback):
    """The mean reward of the episodes that finished in each rollout (from VecMonitor)."""

    def __init__(self) -> None:
        super().__init__()
        self.means: list[float] = []
        self._finished: list[float] = []

    def _on_step(self) -> bool:
        self._finished += [info["episode"]["r"] for info in self.locals["infos"] if "episode" in info]
        return True

    def _on_rollout_end(self) -> None:
        self.means.append(float(np.mean(self._finished)))
        self._finished = []


class SayAfterFillerTask(Task):
    """Say the word the prompt asks for, after filler words: ``"ok now say yes:"`` wants
    ``" yes"``. The reward is SayTask's, the fraction of response words equal to the word.

    The test split's fillers differ from the train split's, so no test prompt is a train
    prompt; each word's token (``" yes:"``) is shared, so the skill transfers."""

    name = "say_after_filler"
    WORDS = ("yes", "no", "maybe")
    FILLERS = {"train": ("please", "ok now", "now please"), "test": ("kindly", "just ok")}

    def __init__(self, split: str = "train") -> None:
        self.samples = [Sample(f"{filler} say {w}:", (w,)) for filler in self.FILLERS[split] for w in self.WORDS]

    def score(self, responses, samples) -> Scores:
        rewards = [np.mean([w == s.references[0] for w in r.split()] or [0.0]) for r, s in zip(responses, samples)]
        return Scores(np.array(rewards), {})


def register_filler_env() -> str:
    return register_task_env("TextGymTestSayAfterFiller-v0", SayAfterFillerTask)


def test_ppo_from_an_sft_warm_start_raises_the_held_out_reward(tmp_path):
    """SB3's own PPO, the policy started from what agents/sft.py writes after two updates
    on the train split, raises the greedy reward on held-out prompts.

    The task is SayAfterFillerTask: its test prompts ("kindly say yes:", "just ok say no:")
    appear in no training data, SFT's or PPO's; the word vocabulary is built from every
    split's texts, so the test fillers' tokens ("kindly", "just", " ok": a token carries
    its leading space) are in the vocabulary but unseen in training. At seed 2 the held-out
    reward goes from 1/6 to 2/3 (to 1 with one torch thread: the figures depend on the
    thread count); seeds 1-6 each gained 1/3 to 1 from starts of 0 to 1/3. Not SCAN: SB3's
    PPO scores every stored step's whole window again in training, so a step costs ~window
    tokens of forward and backward, and on SCAN a test-sized budget moved the held-out
    reward by less than its noise (see the docs page)."""
    env_id, sft, seed = register_filler_env(), load_agent("sft"), 2
    texts = [s.prompt for split in ("train", "test") for s in SayAfterFillerTask(split).samples]
    words = tmp_path / "words.json"
    WordTokenizer.from_texts(texts + [f" {w}" for w in SayAfterFillerTask.WORDS]).save(words)
    tokenizer = load_tokenizer(str(words))
    sft.main(
        tiny_args(
            sft, tmp_path / "runs", env_id=env_id, tokenizer=str(words), total_updates=2, seed=seed, checkpoint_every=0
        )
    )
    run = next((tmp_path / "runs").iterdir())  # runs/<run>: its model/ folder holds the model and its words
    held_out_prompts = len(SayAfterFillerTask("test").samples)

    def held_out(lm) -> float:
        envs = gym.make_vec(env_id, num_envs=held_out_prompts, tokenizer=tokenizer, output="torch", split="test")
        lm.eval()
        return RolloutCollector(lm, envs, greedy=True).evaluate(np.arange(held_out_prompts)).mean().item()

    venv = VecMonitor(to_vec_env(env_id, 16, tokenizer=tokenizer))  # the train split
    model = PPO(
        LMActorCriticPolicy,
        venv,
        n_steps=8,
        batch_size=32,
        learning_rate=1e-3,
        gamma=1.0,
        seed=seed,
        policy_kwargs={"init_from": str(run), "tokenizer": tokenizer},
    )
    before = held_out(model.policy.lm)
    rewards = EpisodeRewards()
    model.learn(16 * 8 * 16, callback=rewards)
    after = held_out(model.policy.lm)
    print(f"held-out greedy reward {before:.3f} -> {after:.3f}; sampled episodes {rewards.means}")
    assert before < 0.5 and after >= before + 0.3, (before, after)
    assert np.mean(rewards.means[-3:]) > np.mean(rewards.means[:3]) + 0.15, rewards.means  # sampled episodes too


def test_dropout_stays_off_so_training_recomputes_the_rollout_log_probs():
    """A model with dropout (GPT-2's 0.1): in SB3's train() the policy is in training mode,
    and evaluate_actions must still give the log-probabilities and values the rollout
    stored (PPO's ratio 1 at the first epoch)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    venv = byte_venv(4)
    config = GPT2Config(vocab_size=258, n_positions=256, n_embd=32, n_layer=1, n_head=2, resid_pdrop=0.5)
    policy = LMActorCriticPolicy(
        venv.observation_space, venv.action_space, lambda _: 1e-3, model=GPT2LMHeadModel(config)
    )
    policy.set_training_mode(False)
    obs = as_tensors(venv.reset())
    with torch.no_grad():
        actions, values, log_probs = policy(obs)
    policy.set_training_mode(True)  # as SB3's train() does
    assert policy.training and not policy.lm.training
    new_values, new_log_probs, _ = policy.evaluate_actions(obs, actions)
    torch.testing.assert_close(new_log_probs.detach(), log_probs, atol=ATOL, rtol=0)
    torch.testing.assert_close(new_values.detach().flatten(), values.flatten(), atol=ATOL, rtol=0)


def test_ppo_save_and_load_keep_the_policy(tmp_path):
    venv = byte_venv(2)
    model = PPO(LMActorCriticPolicy, venv, n_steps=4, batch_size=8, seed=0, policy_kwargs=TINY)
    model.learn(8)
    model.save(tmp_path / "ppo")
    loaded = PPO.load(tmp_path / "ppo", env=venv)
    for a, b in zip(model.policy.state_dict().values(), loaded.policy.state_dict().values()):
        assert torch.equal(a, b)
    obs = venv.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


# ------------------------------------------------------------------ construction


def test_model_sources(tmp_path):
    venv = byte_venv(1)
    space = (venv.observation_space, venv.action_space, lambda _: 1e-3)
    given = tiny_model(load_tokenizer("byte"), hidden=32, layers=1)
    assert LMActorCriticPolicy(*space, model=given).lm is given
    tiny = LMActorCriticPolicy(*space, model_kwargs={"hidden": 48, "layers": 1})
    assert tiny.lm.config.vocab_size == 258 and tiny.lm.config.hidden_size == 48
    # an agent's run folder (runs/<run>/model) starts the policy, as the folder or the run
    given.save_pretrained(tmp_path / "run" / "model")
    for init_from in (tmp_path / "run", tmp_path / "run" / "model"):
        loaded = LMActorCriticPolicy(*space, init_from=str(init_from), tokenizer="byte")
        for a, b in zip(loaded.lm.parameters(), given.parameters()):
            assert torch.equal(a, b)
    # a model and a checkpoint: the checkpoint's weights in that model
    into = tiny_model(load_tokenizer("byte"), hidden=32, layers=1, seed=5)
    LMActorCriticPolicy(*space, model=into, init_from=tmp_path / "run")
    assert torch.equal(into.lm_head.weight, given.lm_head.weight)
    folder = LMActorCriticPolicy(*space, model=str(tmp_path / "run"))  # a model folder by name
    assert torch.equal(folder.lm.lm_head.weight, given.lm_head.weight)


def small_vocabulary_model():
    model = tiny_model(load_tokenizer("byte"), hidden=32, layers=1)
    model.resize_token_embeddings(100)
    return model


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"model": small_vocabulary_model()},
            ValueError,
            "vocabulary (100 tokens) is smaller than the action space Discrete(258)",
        ),
        ({"model": 3}, TypeError, "model=3 (int) is not a model"),
        ({"init_from": "/nonexistent/run"}, ValueError, "'/nonexistent/run' is not a model folder"),
        (
            {"model": "tiny", "tokenizer": "default"},
            ValueError,
            "has 49152 tokens but the action space is Discrete(258)",
        ),
        (
            {"model": tiny_model(load_tokenizer("byte"), hidden=32, layers=1), "model_kwargs": {"hidden": 8}},
            ValueError,
            "model_kwargs ['hidden'] apply to a model built here",
        ),
    ],
)
def test_construction_errors_name_the_value_and_the_fix(kwargs, error, message):
    venv = byte_venv(1)
    with pytest.raises(error) as info:
        PPO(LMActorCriticPolicy, venv, policy_kwargs=kwargs)
    assert message in str(info.value)


def test_a_model_for_another_tokenizer_is_refused():
    model = tiny_model(load_tokenizer("byte"), hidden=32, layers=1)
    model.config.text_gym_tokenizer = "words-0123456789ab"
    with pytest.raises(ValueError, match="built for tokenizer 'words-0123456789ab' but the env's is 'byte'"):
        PPO(LMActorCriticPolicy, byte_venv(1), policy_kwargs={"model": model, "tokenizer": "byte"})


def test_non_text_gym_spaces_are_refused():
    venv = DummyVecEnv([lambda: gym.make("CartPole-v1")])
    with pytest.raises(ValueError, match="reads text_gym observations"):
        PPO(LMActorCriticPolicy, venv)


def test_benchmark_quick():
    """benchmarks/sb3_rollout.py end to end in its --quick mode (which writes nothing)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sb3_rollout.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| quick | 0.0M | 258 | TextTranslate-v0 | 96 | 4 | 2 | 6 |" in result.stdout


def test_published_table_matches_its_results(monkeypatch):
    """The table on docs/adapters/sb3_policy.md and in benchmarks/results is what the
    script renders from its saved results. The figures themselves are the benchmark's to
    measure, not this test's to assert."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import doc_tables
    import sb3_rollout

    saved = json.loads((doc_tables.RESULTS / "sb3_rollout.json").read_text())
    table = sb3_rollout.to_markdown(saved["rows"], saved["meta"])
    assert (doc_tables.RESULTS / "sb3_rollout.md").read_text() == table
    assert doc_tables.block(sb3_rollout.PAGE, "sb3_rollout") == table
