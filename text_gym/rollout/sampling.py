"""Sampling and log-probabilities: functions of tensors, with no model state.

:func:`sample_actions` turns next-token logits into actions and their log-probabilities
under the sampling controls (temperature, top-k, top-p, greedy); :func:`sample_categorical`
is its sampler. :func:`token_logprobs` and :func:`sequence_logprobs` score whole windows in
one forward pass, for a policy loss or a KL penalty.

Example:
    >>> import torch
    >>> logits = torch.tensor([[0.0, 3.0, -1.0], [2.0, 0.0, 0.0]])
    >>> actions, logprobs = sample_actions(logits, greedy=True)
    >>> actions.tolist(), bool((logprobs < 0).all())
    ([1, 0], True)
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

SAMPLE_BLOCK = 256  # columns per block of :func:`sample_categorical` (~sqrt of a 49k vocabulary)


def check_sampling(temperature: float, top_k: int, top_p: float, vocab_size: int) -> None:
    """Raise ``ValueError`` unless the sampling controls are valid for ``vocab_size`` actions."""
    if not (temperature > 0 and math.isfinite(temperature)) or not 0 < top_p <= 1:
        raise ValueError(
            f"need a finite temperature > 0 and 0 < top_p <= 1; got temperature={temperature}, top_p={top_p}"
        )
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or not 0 <= top_k <= vocab_size:
        raise ValueError(
            f"top_k={top_k!r} must be an int in [0, {vocab_size}] (0: no top-k cut; at most the action space)"
        )


def sample_actions(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Actions (N,) for the rows of ``logits`` (N, V) float, and their log-probabilities (N,)
    under the distribution they were drawn from (tempered and cut by top-k and top-p).

    The log-probability is log_softmax's formula at the chosen column only: no (N, V)
    tensor of log-probabilities is made. ``greedy`` takes the argmax and ignores the other
    controls.
    """
    if greedy:
        actions = logits.argmax(-1)
        return actions, logits.gather(1, actions[:, None])[:, 0] - logits.logsumexp(-1)
    if temperature != 1:
        logits = logits / temperature
    if top_k:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1:
        logits = logits.masked_fill(~top_p_keep(logits, top_p), float("-inf"))
    top = logits.amax(-1, keepdim=True)
    weights = (logits - top).exp_()  # unnormalised probabilities
    actions, total = _categorical(weights, generator)  # total: its float64 sum of weights
    logprobs = logits.gather(1, actions[:, None]) - top - total.log().float()
    return actions, logprobs[:, 0]


def top_p_keep(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """The nucleus of each row of ``logits`` (..., V): the smallest set of most likely
    tokens whose probability reaches ``top_p`` (bool, like ``logits``). The most likely
    token is always in it.

    Example:
        >>> top_p_keep(torch.tensor([[2.0, 0.0, 1.0]]).log(), 0.8).tolist()  # p = 2/3, 0, 1/3
        [[True, False, True]]
    """
    sorted_logits, order = logits.float().sort(-1, descending=True)
    probs = sorted_logits.softmax(-1)
    keep_sorted = probs.cumsum(-1) - probs < top_p  # the mass before each token
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def sample_categorical(weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of ``weights`` (N, V) (non-negative, any positive sum: unnormalised
    probabilities), by inverse CDF in two levels.

    One uniform per row picks a block of ``SAMPLE_BLOCK`` columns by a float64 running
    sum over the blocks' totals, then a column by a running sum over that block alone.
    The full (N, V) tensor is read once (the block totals) and nothing of its size is
    written, while the float64 sums keep the odds of rare tokens. A token of weight 0 is
    never drawn: each search returns the first entry whose running sum exceeds the draw,
    and each draw is kept below its total.

    Example:
        >>> sample_categorical(torch.tensor([[0.0, 1.0, 0.0], [5.0, 0.0, 0.0]])).tolist()
        [1, 0]
    """
    return _categorical(weights, generator)[0]


def _categorical(weights: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sample_categorical`'s draws (N,), and each row's total weight (N, 1) as the
    float64 sum of its block totals (so a caller normalising needs no second pass)."""
    N, V = weights.shape
    B = SAMPLE_BLOCK
    if V <= B:  # one block: a single running sum, a few ops (small vocabularies step often)
        cum = weights.double().cumsum(-1)  # (N, V)
        total = cum[:, -1:]
        u = torch.rand(total.shape, dtype=torch.float64, device=weights.device, generator=generator) * total
        u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))
        return torch.searchsorted(cum, u, right=True)[:, 0], total
    full = V // B
    totals = weights[:, : full * B].reshape(N, full, B).sum(-1)  # (N, blocks)
    if full * B < V:
        totals = torch.cat((totals, weights[:, full * B :].sum(-1, keepdim=True)), 1)
    cum = totals.double().cumsum(-1)
    total = cum[:, -1:]
    u = torch.rand(total.shape, dtype=torch.float64, device=weights.device, generator=generator) * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))
    block = torch.searchsorted(cum, u, right=True)  # (N, 1)
    before = torch.where(block > 0, cum.gather(1, (block - 1).clamp_(min=0)), 0.0)
    cols = block * B + torch.arange(B, device=weights.device)  # (N, B)
    inner = weights.gather(1, cols.clamp(max=V - 1)).masked_fill_(cols >= V, 0).double().cumsum(-1)
    # the block's own running sum may round differently from its total: stay inside it
    rest = torch.minimum((u - before).clamp_(min=0), torch.nextafter(inner[:, -1:], torch.zeros_like(u)))
    return (block * B + torch.searchsorted(inner, rest, right=True))[:, 0], total


def token_logprobs(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    hidden: bool = False,
    keep: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``log p(token t+1 | tokens <= t)`` for every t, (E, T-1), from one forward pass (with
    gradients, for a policy loss over whole episodes, e.g. :meth:`Episodes.trimmed`).

    ``hidden=True`` also returns the last hidden state each token was chosen in, (E, T-1, d),
    for a value head. ``keep`` (E, T-1, V) bool restricts each position's distribution to
    those tokens first (a large finite fill, so padding positions stay finite).

    Example:
        >>> from text_gym.rollout import tiny_model
        >>> from text_gym.tokenizers import load_tokenizer
        >>> ids = torch.tensor([[104, 105, 33]])
        >>> logp, _ = token_logprobs(tiny_model(load_tokenizer("byte")), ids, torch.ones_like(ids))
        >>> tuple(logp.shape), bool((logp < 0).all())
        ((1, 2), True)
    """
    positions = (attention_mask.cumsum(1) - 1).clamp(min=0)
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions,
        use_cache=False,
        output_hidden_states=hidden,
    )
    logits = out.logits[:, :-1].float()
    if keep is not None:
        logits = logits[..., : keep.shape[-1]].masked_fill(~keep, -1e9)
    logp = torch.log_softmax(logits, -1).gather(2, input_ids[:, 1:, None])[:, :, 0]
    return logp, out.hidden_states[-1][:, :-1] if hidden else None


@torch.no_grad()
def sequence_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Log-probability of every window token under ``model``, from one batched forward pass.

    For a KL penalty to a frozen reference: pass finished trajectories' windows (the
    env's ``input_ids`` and ``attention_mask``, (N, L)) and read the result where
    ``agent_mask`` is 1. Entry ``[i, c]`` is ``log p(input_ids[i, c] | tokens before c)``;
    column 0 and padding are 0.
    """
    mask = attention_mask.long()
    logp, _ = token_logprobs(model, input_ids, mask)
    out = torch.zeros(input_ids.shape, dtype=logp.dtype, device=input_ids.device)
    out[:, 1:] = logp * mask[:, 1:]
    return out
