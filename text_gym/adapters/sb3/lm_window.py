"""A causal LM's outputs at the last real token of each observation's window, two ways.

:func:`window_outputs` runs the whole window of every row in one forward pass (with
gradients when they are on): what a policy needs to score a minibatch of stored
observations, and the reference the cached path is tested against.
:class:`CachedWindow` follows a stream of batched observations with a
:class:`~text_gym.rollout.WindowRunner` (one KV cache row per batch row), so that each
step costs one forward per new token; it checks that every batch continues the stream
it has cached, and recomputes a row from its whole window where it does not.

Observations are text_gym's (``input_ids``, ``attention_mask``, ``new_span``,
``agent_mask``; see docs/concepts.md) as torch tensors of any dtype:
:func:`token_observations` casts them back to integers (Stable-Baselines3's
preprocessing turns them into floats, exact below 2**24).

Example:
    >>> import gymnasium as gym
    >>> import text_gym
    >>> from text_gym.rollout import tiny_model
    >>> envs = gym.make_vec("TextTranslate-v0", num_envs=2, tokenizer="byte", max_new_tokens=4)
    >>> model = tiny_model(envs.unwrapped.tokenizer, hidden=32, layers=1)
    >>> obs = token_observations({k: torch.as_tensor(v) for k, v in envs.reset(seed=0)[0].items()})
    >>> cached = CachedWindow(model, 2, prompt_tokens_of(obs), envs.unwrapped.window, 258)
    >>> logits, hidden = cached.feed(obs)
    >>> full_logits, full_hidden = window_outputs(model, obs)
    >>> torch.allclose(logits[:, :258], full_logits[:, :258], atol=1e-4), tuple(hidden.shape)
    (True, (2, 32))
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import torch

from text_gym.rollout import WindowRunner
from text_gym.rollout.cache import additive_mask

EXACT_FLOAT_IDS = 1 << 24  # float32 holds every integer below this exactly


def token_observations(obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The observation tensors as the LM reads them: ids and spans as int64, masks as bool
    (float observations, as Stable-Baselines3's preprocessing makes them, are rounded)."""
    as_long = (lambda t: t.long()) if not obs["input_ids"].is_floating_point() else (lambda t: t.round().long())
    return {
        "input_ids": as_long(obs["input_ids"]),
        "attention_mask": obs["attention_mask"].bool(),
        "new_span": as_long(obs["new_span"]),
        "agent_mask": obs["agent_mask"].bool(),
    }


def prompt_tokens_of(obs: dict[str, torch.Tensor]) -> int:
    """The env's ``max_prompt_tokens`` (P), read from a batch of observations: every
    response starts in column P, so a row's first agent token is there, and a row with no
    agent token yet has just been reset, its prompt ending at P.

    Raises:
        ValueError: the rows disagree (these are not one text_gym env's observations).
    """
    agent, end = obs["agent_mask"], obs["new_span"][:, 1]
    per_row = torch.where(agent.any(1), agent.int().argmax(1), end)  # (N,)
    low, high = torch.stack((per_row.min(), per_row.max())).tolist()
    if low != high:
        raise ValueError(
            f"the observations' rows start their responses in different columns ({low} to {high}): "
            "they do not follow text_gym's window layout (the prompt left-padded into the first "
            "max_prompt_tokens columns); pass observations of one text_gym env"
        )
    return int(low)


def window_outputs(model: Any, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token logits (N, V) and last hidden states (N, d) at each row's last real token
    (column ``new_span[:, 1] - 1``), from one forward pass over every row's window.

    Rows are right-aligned on their last real token and cut to the longest row's real
    span, so the pass is ``N x (longest prompt + response)`` tokens, padding on the left
    only; positions count from each row's first prompt token, as the rollout runner's do.
    Runs with gradients unless the caller disabled them.
    """
    ids, attn, end = obs["input_ids"], obs["attention_mask"], obs["new_span"][:, 1]
    first = attn.int().argmax(1)  # (N,) the first prompt token's column
    width = int((end - first).max())
    cols = end[:, None] - width + torch.arange(width, device=ids.device)  # (N, T)
    safe = cols.clamp(min=0)
    real = attn.gather(1, safe) & (cols >= 0)  # (N, T)
    causal = torch.ones((width, width), dtype=torch.bool, device=ids.device).tril()
    allowed = real[:, None, None, :] & causal  # (N, 1, T, T)
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    output = model(
        input_ids=ids.gather(1, safe),
        attention_mask=additive_mask(allowed, model),
        position_ids=(cols - first[:, None]).clamp(min=0),
        output_hidden_states=True,
        use_cache=False,
        **keep,
    )
    return output.logits[:, -1], output.hidden_states[-1][:, -1]


def weight_versions(model: Any) -> tuple[tuple[int, int], ...]:
    """Each parameter's storage and version counter: any in-place update (an optimizer
    step, ``load_state_dict``) or a swap of tensors changes it."""
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


class CachedWindow:
    """A KV cache per batch row that follows a stream of observations, checked at every step.

    :meth:`feed` gives the same logits and hidden states as :func:`window_outputs`, up
    to float rounding, for any batch of ``num_rows`` observations; it is cheap (one
    forward per new token) where the batch continues what was fed before. A row
    continues when its new span starts a prompt (the runner overwrites the row), or
    when it starts at or before the end of the row's last fed span and every column
    before it holds the same token and mask as then. A row that does not, and every row
    after the model's weights changed (:func:`weight_versions`, or :meth:`invalidate`
    for changes no version records), is rebuilt from its whole window in the same call:
    its new span is widened to start at its first prompt token.

    Args:
        model: a Hugging Face causal LM the rollout runner supports.
        num_rows: the batch size of every :meth:`feed`.
        prompt_tokens: the env's ``max_prompt_tokens`` (:func:`prompt_tokens_of`).
        window: the env's window, ``max_prompt_tokens + max_new_tokens``.
        vocab_size: the action space's size (the runner checks the model covers it).
        tokenizer: optional object whose ``name`` the runner checks against the model's
            ``config.text_gym_tokenizer``.
        runner_options: keyword arguments of :class:`~text_gym.rollout.WindowRunner`
            (``prefix_cache``, ``pack_refills``, ``merge_refills``, ``compile``).
    """

    def __init__(
        self,
        model: Any,
        num_rows: int,
        prompt_tokens: int,
        window: int,
        vocab_size: int,
        tokenizer: Any = None,
        **runner_options: Any,
    ) -> None:
        device = next(model.parameters()).device
        shape = SimpleNamespace(
            num_envs=num_rows,
            prompt_tokens=prompt_tokens,
            window=window,
            vocab_size=vocab_size,
            device=device,
            tokenizer=tokenizer,
        )
        self.model, self.num_rows, self.prompt_tokens, self.device = model, num_rows, prompt_tokens, device
        self.runner = WindowRunner(model, shape, hidden=True, **runner_options)
        self.ids = torch.zeros((num_rows, window), dtype=torch.long, device=device)  # what each row last fed
        self.attn = torch.zeros((num_rows, window), dtype=torch.bool, device=device)
        self.end = torch.full((num_rows,), -1, dtype=torch.long, device=device)
        self._columns = torch.arange(window, device=device)
        self._weights: tuple[tuple[int, int], ...] | None = None  # what the cached keys/values came from

    def invalidate(self) -> None:
        """Rebuild every row at the next :meth:`feed`: call it when the weights may change
        in a way no parameter version records (a fused optimizer step, ``param.data``)."""
        self._weights = None

    def continues(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N,) bool: which rows of ``obs`` continue the cached stream (see the class
        docstring); all False once the weights changed. ``obs`` as
        :func:`token_observations` gives it."""
        if len(obs["input_ids"]) != self.num_rows or weight_versions(self.model) != self._weights:
            return torch.zeros(len(obs["input_ids"]), dtype=torch.bool, device=self.end.device)
        return self._continues(obs)

    def _continues(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """:meth:`continues` for a batch of the right size, with the weights unchanged."""
        start = obs["new_span"][:, 0]  # (N,)
        before = self._columns < start[:, None]  # (N, L): the columns the cache supplies
        same = (obs["input_ids"] == self.ids) & (obs["attention_mask"] == self.attn)
        return (start < self.prompt_tokens) | ((start <= self.end) & (same | ~before).all(1))

    @torch.no_grad()
    def feed(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance the cache to ``obs`` (from :func:`token_observations`; ``num_rows``
        rows); return the logits (N, model vocabulary) and last hidden states (N, d) at
        each row's last real token."""
        if len(obs["input_ids"]) != self.num_rows:
            raise ValueError(f"a batch of {len(obs['input_ids'])} rows fed to a cache of {self.num_rows}")
        weights = weight_versions(self.model)
        if weights != self._weights:  # every cached key/value is stale
            keep = torch.zeros(self.num_rows, dtype=torch.bool, device=self.end.device)
            self.runner.refresh_prefix()
            self._weights = weights
        else:
            keep = self._continues(obs)
        span, attn = obs["new_span"], obs["attention_mask"]
        first = self.prompt_tokens - attn[:, : self.prompt_tokens].sum(1)  # (N,) as the runner counts
        start = torch.where(keep, span[:, 0], first)  # a rebuilt row feeds its whole window
        logits, hidden = self.runner.feed({**obs, "new_span": torch.stack((start, span[:, 1]), 1)})
        self.ids.copy_(obs["input_ids"])
        self.attn.copy_(attn)
        self.end.copy_(span[:, 1])
        return logits, hidden
