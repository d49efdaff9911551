"""Run a causal LM over a TextVectorEnv's observations with a KV cache laid out like its window.

:class:`WindowRunner` keeps one cache row per env slot
(:class:`~text_gym.rollout.cache.WindowCache`): slot ``i``'s key/value for the token in
window column ``c`` lives at cache column ``c``. Each :meth:`~WindowRunner.feed` reads only
the tokens the observation reports as new (``new_span``), writes their keys/values into
their own columns, and attends over the window under the env's attention mask. A slot
that autoresets gets its new prompt written over columns ``[0, P)``, and its stale
response columns stay masked until overwritten, so slots refill independently
(continuous batching) and no slot waits for another.

Prompts usually share an instruction prefix. The runner keeps the longest token prefix
common to every prompt it has prefilled (:class:`SharedPrefix`), with its keys/values from
one forward pass at positions ``0..n-1``; a left-padded prompt starting at column
``first`` has position ids ``column - first``, so those keys/values are valid wherever the
prompt lands. A refill copies them into columns ``[first, first + n)`` and runs the model
only on the rest of the prompt. The prefix only shrinks (a slice, no recompute). Its
keys/values are recomputed when a parameter's version changes, and after
:meth:`~WindowRunner.refresh_prefix`, for changes to the weights that no version records
(a fused optimizer step, a write through ``param.data``).

A step where some slots prefill (a fresh prompt's suffix, or an agent token plus a user's
reply: up to ``q`` tokens) while the rest decode one token runs in one of three ways:

* *packed* (``pack_refills``), for a model whose logits are plain
  ``lm_head(last hidden state)`` (:func:`plain_head`: Llama, Mistral, Qwen2/3): every
  row's new tokens side by side in one sequence (batch 1, no padding), so the weights are
  read once and each token costs its own FLOP and no more. Only attention needs the rows
  apart: :func:`packed_attention` attends every row's last token over its cached window,
  as a decode step does, and lays out the tokens of each row with several as a grid of
  ``q`` queries over that row's window; the LM head runs on each row's last token.
* *merged* (``merge_refills``): one call of width ``q``; each row runs its own tokens in
  its last positions, left-padded with positions that write their keys/values into the
  scratch column ``L`` of the cache, which no mask ever allows. Merging saves a read of
  all the weights and pays ``2 * body_params`` FLOP per padded position;
  :func:`merge_budget` weighs the two.
* *split*: two calls, prefill rows then decode rows.

Where the logits are plain, every call runs the body and the runner applies the LM head
itself (:func:`head_logits`) on the last position only, so a split step runs the LM head
once over all rows. Other models are asked for the last position's logits only, where
their forward takes ``logits_to_keep``.

Example:
    >>> from text_gym import TextVectorEnv
    >>> from text_gym.rollout import WindowRunner, tiny_model
    >>> env = TextVectorEnv(2, tokenizer="byte", output="torch", max_new_tokens=4)
    >>> runner = WindowRunner(tiny_model(env.tokenizer), env)
    >>> obs, _ = env.reset(seed=0)
    >>> logits, _ = runner.feed(obs)  # prefill both prompts
    >>> obs, *_ = env.step(logits[:, : env.vocab_size].argmax(-1))
    >>> logits, hidden = runner.feed(obs)  # decode: one new token per slot
    >>> tuple(logits.shape), hidden is None
    ((2, 258), True)
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from text_gym.rollout.cache import PACKED_ATTENTION, KeyValues, Packed, Prefix, WindowCache, model_mask

PLAIN_HEAD_MODELS = ("llama", "mistral", "qwen2", "qwen3")  # logits = lm_head(last hidden state)
# Model types whose forward needs more of a cache than WindowCache offers, refused at
# construction rather than failing inside the model's forward. Known to run (each tested
# against a full forward in tests/test_rollout_runner.py): llama, mistral, qwen2, qwen3,
# gemma, gemma2, gemma3_text, phi, phi3, gpt2, gpt_neox, gptj, gpt_bigcode, olmo2.
UNSUPPORTED_MODELS = {
    "opt": "it asks the cache for get_seq_length()",
    "bloom": "it asks the cache for get_seq_length()",
    "falcon": "it asks the cache for get_seq_length()",
    "stablelm": "its attention does not take the window cache's 4-D mask",
}
MIN_PREFIX = 4  # a shorter shared prefix is not worth the copy: prefill whole prompts
# FLOP/s the body reaches on padded tokens over the bytes/s of weights a small call reads,
# per device type: the exchange rate of :func:`merge_budget` (docs/rollout.md tells how
# the CPU figure was measured). Accelerators: an H100's bfloat16 FLOP/s over its memory
# bandwidth is ~300; 200 leaves room for the small shapes of a decode step.
ARITHMETIC_INTENSITY = {"cpu": 12.0}
ACCELERATOR_INTENSITY = 200.0
# :func:`head_logits` swaps the product for up to this many rows of a head this large
SWAPPED_HEAD_ROWS = 16
SWAPPED_HEAD_MIN_WEIGHTS = 1 << 22  # 16 MB of float32


class WindowRunner:
    """A causal LM that follows a TextVectorEnv's observations with its own KV cache.

    Each :meth:`feed` advances the cache by one observation and returns every slot's
    next-token logits: the whole of what a policy needs to act, for any consumer that
    sees the env's observations in order (:class:`~text_gym.rollout.RolloutCollector`, a
    second model such as NLPO's mask model, a per-slot policy in another framework, a
    remote worker). A slot needs no reset of its own: an observation whose new span
    starts a prompt overwrites that slot's columns.

    Args:
        model: a Hugging Face causal LM (``model(input_ids, attention_mask=4D,
            position_ids, cache)`` returning ``.logits``), e.g.
            :func:`~text_gym.rollout.tiny_model`. The types in
            :data:`UNSUPPORTED_MODELS` are refused, and so is a model whose
            sliding-window attention (:func:`attention_span`) is shorter than the env's
            window: the runner attends over the whole window.
        env: the env whose observations will be fed, a
            :class:`~text_gym.vector_env.TextVectorEnv`. The runner reads only its shape
            facts, so any object with the same attributes does (a worker that holds no
            env can pass a ``types.SimpleNamespace``): ``num_envs``, ``prompt_tokens``
            (P), ``window`` (L), ``vocab_size``, ``device``, and optionally ``tokenizer``
            (whose ``name`` must match the model's ``config.text_gym_tokenizer``).
        hidden: also return each slot's last hidden state (for a value head).
        prefix_cache: reuse the keys/values of the token prefix shared by every prompt
            prefilled so far (see the module docstring). Results equal
            ``prefix_cache=False`` up to float rounding.
        pack_refills: run a step where some slots prefill as one packed call. None
            (default): where the model allows it (:func:`plain_head`); False: never,
            choose by ``merge_refills``; True: require it.
        merge_refills: without packing, run a step where some slots prefill (q tokens)
            and the others decode as one call of width q, the decode rows padded. None:
            whenever the padding costs less than a second read of the weights
            (:func:`merge_budget`); True/False: always/never.
        compile: run the decode step (every slot, one new token) through
            ``torch.compile(model, dynamic=False, **compile)`` (``True``: default
            options; a dict: ``torch.compile`` keyword arguments); for a model with a
            plain head, of its body. The cache is the fixed window, so it compiles once
            per batch shape and dtype; refill steps stay eager.

    All strategies give the same results up to float rounding.

    Raises:
        ValueError: the model and env disagree on tokenizer, vocabulary or device; the
            model type is unsupported or its sliding window is shorter than the env's
            window; ``pack_refills=True`` for a model without a plain head.
    """

    def __init__(
        self,
        model: Any,
        env: Any,
        *,
        hidden: bool = False,
        prefix_cache: bool = True,
        pack_refills: bool | None = None,
        merge_refills: bool | None = None,
        compile: bool | dict[str, Any] = False,
    ) -> None:
        if getattr(env, "output", "torch") != "torch":
            raise ValueError(
                f"WindowRunner reads torch observations, and the env gives output={env.output!r}: "
                "build it with TextVectorEnv(output='torch') so observations stay on device"
            )
        check_model(model, env)
        self.model, self.hidden = model, hidden
        self.num_rows, self.prompt_tokens, self.window = env.num_envs, env.prompt_tokens, env.window
        self.cache = WindowCache(env.num_envs, env.window)
        self._cols = torch.arange(env.window + 1, device=env.device)  # the window and scratch
        self.prefix = SharedPrefix(model) if prefix_cache else None
        self.merge_refills = merge_refills
        self.merge_budget = merge_budget(model)  # padded positions a merged call may add
        # where the logits are just head(last hidden state), a refill step runs the body
        # once, packed, or in each of two calls, and the LM head once over all rows
        self._body, self._head = plain_head(model)
        if pack_refills and self._body is None:
            raise ValueError(
                f"pack_refills=True needs a model whose logits are lm_head(last hidden state) "
                f"(model types {PLAIN_HEAD_MODELS}); {type(model).__name__} is not one: pass "
                "pack_refills=None or False"
            )
        self.pack_refills = self._body is not None and pack_refills is not False
        # otherwise a prefill asks for the last position's logits only, where the model allows it
        takes_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._last_logits_only = {"logits_to_keep": 1} if takes_keep else {}
        options = compile if isinstance(compile, dict) else {}
        decode_model = model if self._body is None else self._body
        self._eager_decode = decode_model
        self._decode_model = torch.compile(decode_model, dynamic=False, **options) if compile else decode_model

    def refresh_prefix(self) -> None:
        """Recompute the shared prefix's keys/values at the next refill, from the weights as
        they are then: call it after changing the weights in a way that bumps no parameter
        version (a fused optimizer step, a write through ``param.data``)."""
        if self.prefix is not None:
            self.prefix.refresh()

    @torch.no_grad()
    def feed(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the model on every slot's new tokens; return next-token logits and hidden states.

        Args:
            obs: the env's next observation (``input_ids``, ``attention_mask``,
                ``new_span``) as tensors on the model's device. A slot's logits are
                right once the runner has seen the observation that started the slot's
                episode and every one since, in order.

        Returns:
            The next-token logits (N, model vocabulary) and, with ``hidden=True``, the last
            hidden states (N, d) (else None).

        Slots with one new token (the usual decode step) go in one call; slots with more
        (a fresh prompt, or an agent token plus a user reply) are packed into the same
        call, merged into it with padding, or run in a second call (see the module
        docstring). One host sync per step decides the split.
        """
        span = obs["new_span"]
        many = (span[:, 1] - span[:, 0]) > 1  # (N,)
        if self._decode_model is self._eager_decode:
            # the step's one sync also reads how far the windows reach: a decode step
            # attends over columns [0, that) only, not the whole window
            any_many, reach = torch.stack((many.any().long(), span[:, 1].max())).tolist()
        else:  # a compiled decode step keeps one shape: the whole window
            any_many, reach = bool(many.any()), None
        if not any_many:
            return self._forward(obs, None, 1, reach=reach)
        decode = torch.nonzero(~many)[:, 0]
        prefill = torch.nonzero(many)[:, 0]
        width, counts, tokens, prefix = self._plan_prefill(obs, prefill)
        if self.pack_refills or (len(decode) and self._merges(len(decode), width)):  # one call
            all_counts = torch.ones_like(span[:, 0]).index_copy_(0, prefill, counts)  # (N,)
            if self.pack_refills:
                return self._forward_packed(obs, all_counts, prefill, width, len(decode) + tokens, prefix)
            return self._forward(obs, None, width, all_counts, prefix)
        if len(decode) == 0:
            return self._forward(obs, prefill, width, counts, prefix)
        # two calls; with a shared head they return last hidden states, not logits, and the
        # LM head runs once over all rows (one read of its weights)
        shared_head = self._head is not None
        out_p, hidden_p = self._forward(obs, prefill, width, counts, prefix, head=not shared_head)
        out_d, hidden_d = self._forward(obs, decode, 1, head=not shared_head)
        out = out_p.new_empty((self.num_rows, out_p.shape[-1]))
        out[prefill], out[decode] = out_p, out_d
        logits = head_logits(self._head, out) if shared_head else out
        hidden = None
        if hidden_p is not None:
            hidden = hidden_p.new_empty((self.num_rows, hidden_p.shape[-1]))
            hidden[prefill], hidden[decode] = hidden_p, hidden_d
        return logits, hidden

    def _merges(self, decode_rows: int, width: int) -> bool:
        """Whether ``decode_rows`` one-token rows join a prefill call of ``width``."""
        if self.merge_refills is not None:
            return self.merge_refills
        return decode_rows * (width - 1) <= self.merge_budget

    def _plan_prefill(
        self, obs: dict[str, torch.Tensor], rows: torch.Tensor
    ) -> tuple[int, torch.Tensor, int, Prefix | None]:
        """Width of the prefill call over ``rows``, the tokens each row runs (r,), their
        sum, and the shared prefix to copy in first.

        Rows whose new span starts in the prompt region are fresh prompts; the rest (an
        agent token plus a user reply) neither use nor change the prefix. The prefix
        shrinks first to what every fresh prompt shares (keeping one token of each to
        feed), so all of them use it. One host sync reads the widths and that length.
        """
        span = obs["new_span"][rows]
        start, lengths = span[:, 0], span[:, 1] - span[:, 0]  # (r,)
        prefix = self.prefix
        if prefix is None or (prefix.tokens is not None and len(prefix.tokens) < MIN_PREFIX):
            longest, total = torch.stack((lengths.max(), lengths.sum())).tolist()
            return longest, lengths, total, None
        P, L = self.prompt_tokens, self.window
        fresh = start < P  # (r,)
        j = torch.arange(P if prefix.tokens is None else len(prefix.tokens), device=start.device)
        aligned = obs["input_ids"][rows].gather(1, (start[:, None] + j).clamp_(max=L - 1))  # (r, n)
        ref = aligned[fresh.int().argmax()] if prefix.tokens is None else prefix.tokens  # (n,)
        match = (aligned == ref) & (j < lengths[:, None] - 1)  # (r, n)
        shared = match.long().cumprod(1).sum(1).masked_fill_(~fresh, len(j))  # (r,)
        stats = torch.stack(
            (lengths.max(), lengths.masked_fill(fresh, 0).max(), shared.min(), fresh.sum(), lengths.sum())
        )
        longest, others, n, count, total = stats.tolist()  # the one host sync
        if count == 0:
            return longest, lengths, total, None
        key_values = prefix.take(ref, n)
        if key_values is None:
            return longest, lengths, total, None
        # the fresh rows (listed first by a stable sort) get the prefix at [first, first + n)
        at_rows = rows[torch.argsort((~fresh).int(), stable=True)[:count]]  # (k,)
        at_cols = obs["new_span"][at_rows, :1] + j[:n]  # (k, n)
        return max(others, longest - n), lengths - n * fresh, total - n * count, (key_values, at_rows, at_cols)

    def _forward(
        self,
        obs: dict[str, torch.Tensor],
        rows: torch.Tensor | None,
        width: int,
        counts: torch.Tensor | None = None,
        prefix: Prefix | None = None,
        head: bool = True,
        reach: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One call over ``rows`` (None: all), ``width`` positions each: row i's last
        ``counts[i]`` new tokens (None: ``width``), left-padded with positions that write
        to the scratch column and that no real token attends to. ``reach``: attend over
        the cache's first ``reach`` columns only (every token sits before it). Returns the
        last position's logits (``head=False``: its final hidden state, for
        :func:`head_logits`) and the hidden state for the caller (with ``hidden=True``)."""
        pick = (lambda t: t) if rows is None else (lambda t: t[rows])
        cols = self._grid_columns(pick(obs["new_span"])[:, 1], width, counts)  # (r, q)
        ids = pick(obs["input_ids"]).gather(1, cols.clamp(max=self.window - 1))
        attn = pick(obs["attention_mask"]).bool()  # (r, L)
        positions = (cols - self._first_columns(attn)[:, None]).clamp_(min=0)
        allowed = self._allowed(attn, cols, reach)
        self.cache.select(rows, cols, prefix, reach)
        inputs = {
            "input_ids": ids,
            "attention_mask": model_mask(allowed, self.model),
            "position_ids": positions,
            "cache": self.cache,
            "use_cache": True,
            "output_hidden_states": self.hidden,
        }
        decode = rows is None and width == 1
        if self._head is not None:  # the body, then the LM head on the last position only
            output = (self._decode_model if decode else self._body)(**inputs)
            out = output.last_hidden_state[:, -1]
            out = head_logits(self._head, out) if head else out
        else:
            output = (self._decode_model if decode else self.model)(**inputs, **self._last_logits_only)
            out = output.logits[:, -1]
        hidden = output.hidden_states[-1][:, -1] if self.hidden else None
        return out, hidden

    def _forward_packed(
        self,
        obs: dict[str, torch.Tensor],
        counts: torch.Tensor,
        grid_rows: torch.Tensor,
        width: int,
        total: int,
        prefix: Prefix | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One call over every row's last ``counts[i]`` new tokens, packed into one
        sequence of ``total`` tokens (see :func:`packed_attention`); ``grid_rows``: the
        rows with several tokens, ``width`` the largest count. Returns each row's
        next-token logits and hidden state (with ``hidden=True``)."""
        end = obs["new_span"][:, 1]
        dev, n, m = end.device, len(end), len(grid_rows)
        rows = torch.repeat_interleave(torch.arange(n, device=dev), counts, output_size=total)  # (T,)
        starts = counts.cumsum(0) - counts  # each row's first token in the sequence
        last = starts + counts - 1  # each row's last token
        k = torch.arange(total, device=dev) - starts[rows]  # token's index within its row
        cols = end[rows] - counts[rows] + k
        attn = obs["attention_mask"].bool()
        positions = (cols - self._first_columns(attn)[rows]).clamp_(min=0)
        last_mask = self._allowed(attn, end[:, None] - 1)  # (n, 1, 1, L + 1): each row's last token
        slot = torch.full((n,), m, device=dev).index_copy_(0, grid_rows, torch.arange(m, device=dev))
        grid = self._grid_columns(end[grid_rows], width, counts[grid_rows])
        allowed = self._allowed(attn[grid_rows], grid)  # (m, 1, width, L + 1)
        config = self._body.config
        shared = config.num_attention_heads // (
            getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        )
        allowed = allowed.repeat(1, 1, shared, 1)  # per query head sharing a key/value head
        last_mask, grid_mask = model_mask(last_mask, self.model), model_mask(allowed, self.model)
        packed = Packed(rows, last, last_mask, grid_rows, slot[rows], width - counts[rows] + k)
        self.cache.select_packed(rows, cols, prefix)
        before, config._attn_implementation = config._attn_implementation, PACKED_ATTENTION
        try:
            output = self._body(
                input_ids=obs["input_ids"][rows, cols][None],
                attention_mask=grid_mask,
                position_ids=positions[None],
                cache=self.cache,
                use_cache=True,
                output_hidden_states=self.hidden,
                packed=packed,
            )
        finally:
            config._attn_implementation = before
        hidden = output.hidden_states[-1][0, last] if self.hidden else None
        return head_logits(self._head, output.last_hidden_state[0, last]), hidden

    def _grid_columns(self, end: torch.Tensor, width: int, counts: torch.Tensor | None) -> torch.Tensor:
        """Window columns (r, width) of the last ``width`` positions before each row's
        ``end``; with ``counts``, those before a row's last ``counts[i]`` are the scratch
        column instead (padding)."""
        j = torch.arange(width, device=end.device)
        cols = end[:, None] - width + j
        if counts is not None:
            cols = cols.masked_fill_(j < width - counts[:, None], self.cache.scratch)
        return cols

    def _first_columns(self, attn: torch.Tensor) -> torch.Tensor:
        """Column of each row's first prompt token, from its attention mask (r, L) bool."""
        P = self.prompt_tokens
        return P - attn[:, :P].sum(1)

    def _allowed(self, attn: torch.Tensor, cols: torch.Tensor, reach: int | None = None) -> torch.Tensor:
        """(r, 1, q, L + 1): the token in column ``cols[i, j]`` attends to row i's valid
        columns (``attn`` (r, L) bool) up to its own, never to the scratch column.
        ``reach`` (at most L): only the first ``reach`` columns, (r, 1, q, reach)."""
        if reach is not None:
            return attn[:, None, None, :reach] & (self._cols[:reach] <= cols[:, None, :, None])
        attn = torch.cat((attn, attn.new_zeros((len(attn), 1))), 1)
        return attn[:, None, None, :] & (self._cols <= cols[:, None, :, None])


class SharedPrefix:
    """The longest token prefix common to every prompt prefilled so far, and its keys/values.

    ``tokens`` (n,) and ``key_values`` (per layer, (kv_heads, n, head_dim) each, at
    positions ``0..n-1``) start empty; :meth:`take` sets them from the first prompts and
    shrinks them (a slice) as later prompts share less.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.tokens: torch.Tensor | None = None
        self.key_values: KeyValues | None = None
        self._weights: tuple[tuple[int, int], ...] | None = None  # the parameters they came from

    def refresh(self) -> None:
        """Recompute the keys/values at the next :meth:`take`, whatever the versions say."""
        self._weights = None

    def take(self, ref: torch.Tensor, n: int) -> KeyValues | None:
        """The keys/values of the first ``n`` tokens of the prefix (``ref`` (>= n,): the
        prefix, or the first fresh prompt's tokens when there is none yet), shrinking to
        them; None when ``n`` is under :data:`MIN_PREFIX`. Stale keys/values (the weights'
        data pointers or versions changed, or :meth:`refresh`) are recomputed."""
        weights = tuple((p.data_ptr(), p._version) for p in self.model.parameters())
        if self.key_values is not None and weights != self._weights and n >= MIN_PREFIX:
            # stale: recomputed as it stands, before a shrink (which only slices)
            self.key_values, self._weights = self._key_values(self.tokens), weights
        if self.tokens is None or n < len(self.tokens):
            self.tokens = ref[:n].clone()
            self.key_values = None if self.key_values is None else [(k[:, :n], v[:, :n]) for k, v in self.key_values]
        if n < MIN_PREFIX:
            self.key_values = None
            return None
        if self.key_values is None:
            self.key_values, self._weights = self._key_values(self.tokens), weights
        return self.key_values

    def _key_values(self, ids: torch.Tensor) -> KeyValues:
        """Keys/values of ``ids`` (n,) at positions 0..n-1, from one forward pass."""
        n = len(ids)
        cache = WindowCache(1, n)
        cols = torch.arange(n, device=ids.device)[None]  # (1, n)
        cache.select(None, cols)
        keys = torch.arange(n + 1, device=ids.device)  # the n columns and scratch
        causal = (cols[:, None, :, None] >= keys) & (keys < n)  # (1, 1, n, n + 1)
        self.model(
            input_ids=ids[None],
            attention_mask=model_mask(causal, self.model),
            position_ids=cols,
            cache=cache,
            use_cache=True,
        )
        return [(k[0, :, :n], v[0, :, :n]) for k, v in zip(cache.keys, cache.values)]


def check_model(model: Any, env: Any) -> None:
    """Raise ``ValueError`` unless ``model`` can run on ``env``'s window cache: the same
    tokenizer, logits for every action, a supported model type, attention over the whole
    window, and the env's device."""
    model_tok = getattr(model.config, "text_gym_tokenizer", None)
    env_tok = getattr(getattr(env, "tokenizer", None), "name", None)
    if model_tok is not None and env_tok is not None and model_tok != env_tok:
        raise ValueError(
            f"model was built for tokenizer {model_tok!r} but the env uses "
            f"{env_tok!r}: pass tokenizer={model_tok!r} to the env"
        )
    if model.config.vocab_size < env.vocab_size:
        raise ValueError(
            f"model vocabulary ({model.config.vocab_size}) is smaller than the action "
            f"space Discrete({env.vocab_size}): some actions have no logits"
        )
    model_type = getattr(model.config, "model_type", None)
    if model_type in UNSUPPORTED_MODELS:
        raise ValueError(
            f"model type {model_type!r} does not run on the rollout's window cache "
            f"({UNSUPPORTED_MODELS[model_type]}); see text_gym.rollout.runner."
            "UNSUPPORTED_MODELS, and use a Llama, Mistral, Qwen2/3, Gemma, Phi, GPT-2 "
            "or GPT-NeoX family model"
        )
    span = attention_span(model.config)
    if span is not None and span < env.window:
        raise ValueError(
            f"the model ({model_type}) attends over a sliding window of {span} "
            f"tokens, but the rollout attends over the env's whole window ({env.window} "
            f"tokens): build the env with max_prompt_tokens + max_new_tokens <= {span}, or "
            "use a model with full attention"
        )
    model_device = next(model.parameters()).device
    if model_device != torch.device(env.device):
        raise ValueError(f"model is on {model_device} but the env is on {env.device}: move one")


def attention_span(config: Any) -> int | None:
    """How many tokens back a model's sliding-window layers attend (counting the token
    itself), or None when every layer attends to the whole sequence.

    Example:
        >>> from transformers import MistralConfig, Qwen2Config
        >>> attention_span(MistralConfig(sliding_window=32)), attention_span(Qwen2Config())
        (32, None)
    """
    if "local" in (getattr(config, "attention_layers", None) or ()):  # GPT-Neo's local layers
        return int(config.window_size) - 1  # a band of window_size cache columns, scratch included
    window = getattr(config, "sliding_window", None)
    if not window or getattr(config, "use_sliding_window", True) is False:
        return None
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and "sliding_attention" not in layer_types:
        return None
    return int(window)


def plain_head(model: Any) -> tuple[Any, torch.nn.Linear] | tuple[None, None]:
    """The body (decoder) and LM head of a model whose logits are exactly
    ``head(body(...).last_hidden_state)``, else ``(None, None)``. Only model types known to
    have no logit scaling or soft-capping qualify."""
    config = model.config
    if getattr(config, "model_type", None) not in PLAIN_HEAD_MODELS:
        return None, None
    if any(getattr(config, name, None) for name in ("final_logit_softcapping", "logit_scale")):
        return None, None
    get_decoder, head = getattr(model, "get_decoder", None), model.get_output_embeddings()
    body = get_decoder() if callable(get_decoder) else None
    if body is None or body is model or not isinstance(head, torch.nn.Linear):
        return None, None
    return body, head


def head_logits(head: torch.nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    """``head(hidden)``: the LM head's logits (r, V) of hidden states (r, d).

    On CPU in float32, a large head (``SWAPPED_HEAD_MIN_WEIGHTS`` weights or more) over
    up to ``SWAPPED_HEAD_ROWS`` rows is computed as ``(weight @ hidden.T).T``: the same
    products with the operands swapped, so that the few rows sit on the short side of
    the BLAS call, which is faster there than ``F.linear`` (docs/rollout.md). Elsewhere
    (accelerators, other dtypes, small heads, many rows) it is ``head(hidden)``, as it is
    for a head whose call does more than ``F.linear`` (a subclass, hooks, a patched
    ``forward``), so that nothing attached to it is skipped.
    """
    weight, bias = head.weight, head.bias
    plain = type(head) is torch.nn.Linear and not (
        head._forward_hooks or head._forward_pre_hooks or "forward" in vars(head)
    )
    on_cpu = weight.device.type == hidden.device.type == "cpu"
    shape = len(hidden) <= SWAPPED_HEAD_ROWS and weight.numel() >= SWAPPED_HEAD_MIN_WEIGHTS
    if not (plain and on_cpu and shape and weight.dtype == torch.float32):
        return head(hidden)
    logits = (weight @ hidden.T).T.contiguous()
    return logits if bias is None else logits + bias


def merge_budget(model: Any, device_type: str | None = None) -> float:
    """Padded token positions a merged call may add and still cost less than a second call.

    A call reads every weight except the embedding table (it only looks rows up): ``W``
    parameters, ``b`` bytes each. ``B`` of them are the body (W less the LM head), which
    costs ``2 B`` FLOP per token, padded or not; the LM head runs on the last position
    only. Padding costs ``2 B p`` FLOP; a second call costs a read of ``W b`` bytes, worth
    ``I W b`` FLOP at the device's arithmetic intensity ``I`` (:data:`ARITHMETIC_INTENSITY`).
    So merge while ``p <= I W b / (2 B)``. Attention over the window and the per-call
    overhead of Python are left out (the measured ``I`` absorbs them).

    Example:
        >>> from text_gym.rollout import tiny_model
        >>> from text_gym.tokenizers import load_tokenizer
        >>> round(merge_budget(tiny_model(load_tokenizer("byte"))))  # head small, body large
        27
    """
    params = list(model.parameters())  # tied weights once
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    embed = None if embed is None else embed.weight
    head = None if head is None else head.weight
    read = sum(p.numel() for p in params if p is not embed or p is head)  # the table counts if tied
    body = read - (0 if head is None else head.numel())
    device_type = device_type or params[0].device.type
    intensity = ARITHMETIC_INTENSITY.get(device_type, ACCELERATOR_INTENSITY)
    return intensity * read * params[0].element_size() / (2 * max(body, 1))
