"""The sampler and the sampling controls: draws follow the distribution and never a
zero-probability token, top-p keeps the nucleus, log-probs are the drawn distribution's."""

from __future__ import annotations

import pytest
import torch

from text_gym.rollout import sample_categorical, top_p_keep
from text_gym.rollout.sampling import SAMPLE_BLOCK, sample_actions


def test_sample_categorical_follows_the_distribution_and_never_draws_zero_probability():
    gen = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.2, 0.0]]).repeat(40_000, 1)
    draws = sample_categorical(probs * 7.0, generator=gen)  # any positive total
    freq = torch.bincount(draws, minlength=6).double() / len(draws)
    assert freq[[0, 2, 5]].sum() == 0  # zero-probability tokens, first and last included
    # within 5 binomial standard deviations (~0.013 for p=0.5 at 40k draws)
    assert torch.allclose(freq, probs[0].double(), atol=0.015), freq
    one_hot = torch.zeros(3, 49_152)
    one_hot[0, 0], one_hot[1, -1], one_hot[2, 1234] = 1.0, 1e-30, 3.0
    for _ in range(200):  # a single nonzero entry, even a tiny one, at either end
        assert sample_categorical(one_hot).tolist() == [0, 49_151, 1234]
    a = sample_categorical(probs[:50], generator=torch.Generator().manual_seed(5))
    b = sample_categorical(probs[:50], generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    # several blocks of columns and a partial last one: a block with no weight at all,
    # zeros scattered inside the others, and odds spanning five orders of magnitude
    V = 2 * SAMPLE_BLOCK + 37
    weights = torch.rand(V, generator=torch.Generator().manual_seed(1)) ** 4
    weights[::7] = 0.0
    weights[SAMPLE_BLOCK : 2 * SAMPLE_BLOCK] = 0.0
    counts = torch.zeros(V, dtype=torch.float64)
    for _ in range(10):  # 400k draws, 40k rows at a time
        counts += torch.bincount(sample_categorical(weights.expand(40_000, V), gen), minlength=V)
    p = weights.double() / weights.double().sum()
    assert counts[weights == 0].sum() == 0
    assert ((counts / counts.sum() - p).abs() <= 5 * (p * (1 - p) / counts.sum()).sqrt() + 1e-6).all()


@pytest.mark.parametrize(
    "controls",
    [{"temperature": 0.7}, {"top_k": 5}, {"top_p": 0.6}, {"temperature": 1.3, "top_k": 20, "top_p": 0.9}],
)
def test_sampled_logprobs_are_those_of_the_distribution_drawn_from(controls):
    """Each action is inside the top-k/top-p cut, and its log-prob is log_softmax of the
    tempered, cut logits at its column."""
    logits = torch.randn(64, 300, generator=torch.Generator().manual_seed(0)) * 3
    actions, logprobs = sample_actions(logits, generator=torch.Generator().manual_seed(1), **controls)
    cut = logits / controls.get("temperature", 1.0)
    if "top_k" in controls:
        cut = cut.masked_fill(cut < cut.topk(controls["top_k"], -1).values[:, -1:], float("-inf"))
    if "top_p" in controls:
        cut = cut.masked_fill(~top_p_keep(cut, controls["top_p"]), float("-inf"))
    expected = cut.log_softmax(-1).gather(1, actions[:, None])[:, 0]
    assert torch.isfinite(expected).all() and torch.allclose(logprobs, expected, atol=1e-5)
    again, _ = sample_actions(logits, generator=torch.Generator().manual_seed(1), **controls)
    assert torch.equal(actions, again)
