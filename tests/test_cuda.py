"""The env and the rollout on a CUDA device: the same greedy tokens, rewards and metrics as
on CPU with a tiny model, state kept on the device. Marked ``cuda`` and skipped without a
CUDA device; ``benchmarks/gpu_check.sh`` runs them on a GPU machine.

``TEXT_GYM_TEST_DEVICE`` names another device to run them on (``cpu`` checks the tests
themselves on a machine without a GPU: every comparison is then CPU against CPU)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from text_gym import TextVectorEnv
from text_gym.rollout import RolloutCollector, tiny_model
from text_gym.tokenizers import load_tokenizer

DEVICE = os.environ.get("TEXT_GYM_TEST_DEVICE", "cuda")


def _available(device: str) -> bool:
    kind = torch.device(device).type
    return kind == "cpu" or (kind == "cuda" and torch.cuda.is_available())


pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not _available(DEVICE), reason=f"needs a CUDA device ({DEVICE}); benchmarks/gpu_check.sh runs these on a GPU"
    ),
]


def make_env(n: int, device: str, **kwargs) -> TextVectorEnv:
    kwargs.setdefault("max_new_tokens", 8)
    kwargs.setdefault("tokenizer", "byte")
    return TextVectorEnv(n, output="torch", device=device, **kwargs)


def models(seed: int = 3):
    """The same tiny model on CPU and on the device under test."""
    cpu = tiny_model(load_tokenizer("byte"), seed=seed)
    return cpu, tiny_model(load_tokenizer("byte"), seed=seed).to(DEVICE)


def stop_by_prompt(prompt_width: int, eos: int):
    """Force EOS once a response reaches a length set by its prompt, so slots finish and
    refill at different steps (the runner's refill paths run mid-rollout)."""

    def process(logits: torch.Tensor, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        prompt_len = obs["attention_mask"][:, :prompt_width].sum(1)
        length = obs["new_span"][:, 1] - prompt_width
        stop = length >= prompt_len % 5 + 1
        columns = torch.arange(logits.shape[1], device=logits.device)
        return torch.where(stop[:, None] & (columns == eos), 1e4, logits)

    return process


def test_env_steps_equal_cpu_and_state_stays_on_the_device():
    cpu_env, dev_env = make_env(4, "cpu"), make_env(4, DEVICE)
    obs_cpu, _ = cpu_env.reset(seed=0)
    obs_dev, _ = dev_env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        actions = rng.integers(0, cpu_env.vocab_size, size=4)
        actions[rng.random(4) < 0.2] = cpu_env.tokenizer.eos_token_id
        obs_cpu, r_cpu, term_cpu, trunc_cpu, info_cpu = cpu_env.step(actions)
        obs_dev, r_dev, term_dev, trunc_dev, info_dev = dev_env.step(torch.as_tensor(actions, device=DEVICE))
        for key in obs_cpu:
            assert obs_dev[key].device.type == torch.device(DEVICE).type
            assert torch.equal(obs_dev[key].cpu(), obs_cpu[key]), key
        assert torch.equal(r_dev.cpu(), r_cpu) and torch.equal(term_dev.cpu(), term_cpu)
        assert torch.equal(trunc_dev.cpu(), trunc_cpu)
        assert sorted(info_dev) == sorted(info_cpu)


def test_greedy_rollout_equals_cpu():
    """Tokens, rewards and dones equal; log-probs to float tolerance; refills mid-rollout."""
    cpu_model, dev_model = models()
    runs = []
    for model, device in ((cpu_model, "cpu"), (dev_model, DEVICE)):
        env = make_env(4, device)
        process = stop_by_prompt(env.prompt_tokens, env.tokenizer.eos_token_id)
        collector = RolloutCollector(model, env, greedy=True, logits_processor=process)
        runs.append(collector.collect(24, seed=0))
        assert collector.cache.keys[0].device.type == torch.device(device).type  # the KV cache
    cpu, dev = runs
    assert dev.actions.device.type == torch.device(DEVICE).type
    assert torch.equal(dev.actions.cpu(), cpu.actions) and torch.equal(dev.dones.cpu(), cpu.dones)
    assert torch.equal(dev.rewards.cpu(), cpu.rewards) and cpu.dones.any()
    assert torch.allclose(dev.logprobs.cpu(), cpu.logprobs, atol=1e-3)


def test_episodes_and_metrics_equal_cpu_single_and_multi_turn():
    cpu_model, dev_model = models()
    for kwargs in ({}, {"task": "goal_dialogue", "max_new_tokens": None, "low": 1, "high": 4, "max_turns": 3}):
        out = []
        for model, device in ((cpu_model, "cpu"), (dev_model, DEVICE)):
            env = make_env(4, device, **kwargs)
            process = stop_by_prompt(env.prompt_tokens, env.tokenizer.eos_token_id)
            episodes = RolloutCollector(model, env, greedy=True, logits_processor=process).collect_episodes(seed=1)
            assert all(v.device.type == torch.device(device).type for v in episodes.metrics.values())
            out.append(episodes)
        cpu, dev = out
        assert torch.equal(dev.input_ids.cpu(), cpu.input_ids) and torch.equal(dev.rewards.cpu(), cpu.rewards)
        assert {k: v.cpu().tolist() for k, v in dev.metrics.items()} == {k: v.tolist() for k, v in cpu.metrics.items()}


def test_sampled_rollout_is_reproducible_on_the_device():
    _, model = models()
    first, second = (RolloutCollector(model, make_env(4, DEVICE)).collect(12, seed=5) for _ in range(2))
    assert torch.equal(first.actions, second.actions) and torch.equal(first.logprobs, second.logprobs)
    assert torch.isfinite(first.logprobs).all() and (first.logprobs <= 0).all()
