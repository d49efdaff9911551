"""Batched LM rollouts through a TextVectorEnv: one forward pass per token, with KV cache.

The cache is laid out like the env's window: slot ``i``'s key/value for the token in
window column ``c`` lives at cache column ``c``. Each step the policy reads only the
tokens the env reports as new (``new_span``), writes their keys/values into their own
columns, and attends over the window under the env's attention mask. A slot that
autoresets simply gets its new prompt written over columns ``[0, P)``; its stale
response columns are masked until overwritten. So slots refill independently
(continuous batching) and no slot waits for another's episode to end.

Prompts usually share an instruction prefix. The collector keeps the longest token
prefix common to every prompt it has prefilled, with its keys/values from one forward
pass at positions ``0..n-1``; a left-padded prompt starting at column ``first`` has
position ids ``column - first``, so those keys/values are valid wherever the prompt
lands. A refill copies them into columns ``[first, first + n)`` and runs the model only
on the rest of the prompt. The prefix only shrinks (a slice, no recompute). Its
keys/values are recomputed at the first refill of each ``collect`` or
``collect_episodes`` call, since the weights may have changed between calls in ways no
tensor records (a fused optimizer step, a write through ``param.data``), and within a
call when a parameter's version changes.

A step where some slots prefill (a fresh prompt's suffix, or an agent token plus a
user's reply: up to ``q`` tokens) while the rest decode one token runs, for a model whose
logits are plain ``lm_head(last hidden state)`` (:func:`plain_head`: Llama, Mistral,
Qwen2/3), as one *packed* call (``pack_refills``): every row's new tokens side by side
in one sequence (batch 1, no padding), so the weights are read once and each token
costs its own FLOP and no more. Only attention needs the rows apart: a custom attention
function (:func:`packed_attention`, selected for that call) attends every row's last
token over its cached window, as a decode step does, and lays out the tokens of each row
with several as a grid of ``q`` queries over that row's window; the LM head runs on each
row's last token. On CPU, SmolLM2-135M's body ran 8 rows plus an 11-token suffix
in 1.2x the time of 8 decode rows, where two calls took 1.9x and a merged call 2.2x.

Other models (or ``pack_refills=False``) run such a step as two calls (decode rows,
then prefill rows) or as one merged call of width ``q``: each row runs its own tokens in
its last positions and is left-padded with positions that write their keys/values into
a scratch column ``L`` of the cache, which no mask ever allows; the LM head runs on the
last position only (``logits_to_keep=1``). Merging saves a read of all the weights and
pays ``2 * body_params`` FLOP per padded position; :func:`merge_budget` weighs the two
with the device's arithmetic intensity. A model whose LM head outweighs its body (a
small model over a 49,152-token vocabulary) merges at small batches; a large body on CPU
(SmolLM2-135M) keeps two calls. Where the logits are plain, every call runs the body
and the collector applies the LM head itself (:func:`head_logits`, a faster product on
CPU), so two calls run only the body in each and the LM head once over all rows' last
hidden states.

Example:
    >>> from text_gym import TextVectorEnv
    >>> from text_gym.rollout import RolloutCollector, tiny_model
    >>> env = TextVectorEnv(4, tokenizer="byte", output="torch", max_new_tokens=6)
    >>> collector = RolloutCollector(tiny_model(env.tokenizer), env, greedy=True)
    >>> batch = collector.collect(num_steps=10, seed=0)
    >>> tuple(batch.actions.shape), tuple(batch.logprobs.shape)
    ((10, 4), (10, 4))
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from gymnasium.vector import AutoresetMode
from transformers import AttentionInterface

LogitsProcessor = Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]
KeyValues = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (kv_heads, n, head_dim) each
Prefix = tuple[KeyValues, torch.Tensor, torch.Tensor]  # key/values, cache rows (k,), columns (k, n)
MIN_PREFIX = 4  # a shorter shared prefix is not worth the copy: prefill whole prompts
# FLOP/s the body reaches on padded tokens over the bytes/s of weights a small call reads:
# the exchange rate of :func:`merge_budget`. CPU: 9.5-13 measured on one x86_64 core
# (torch 2.13, float32) for a 16.5M-parameter model (3.9M body) and for SmolLM2-135M.
# GPUs: an H100's ~1,000 TFLOP/s of bfloat16 over ~3.3 TB/s is ~300; 200 leaves room for
# the small shapes of a decode step (an assumption, not a measurement).
ARITHMETIC_INTENSITY = {"cpu": 12.0}
ACCELERATOR_INTENSITY = 200.0
PACKED_ATTENTION = "text_gym_packed"  # the attention implementation of a packed call
# :func:`head_logits` swaps the product for up to this many rows of a head this large
SWAPPED_HEAD_ROWS = 16
SWAPPED_HEAD_MIN_WEIGHTS = 1 << 22  # 16 MB of float32
SAMPLE_BLOCK = 256  # columns per block of :func:`sample_categorical` (~sqrt of a 49k vocabulary)


class Packed(NamedTuple):
    """Where the T tokens of a packed call sit (see :func:`packed_attention`)."""

    rows: torch.Tensor  # (T,) each token's cache row
    last: torch.Tensor  # (N,) each row's last token in the sequence
    last_mask: torch.Tensor  # (N, 1, 1, L + 1) additive: the columns a row's last token attends
    grid_rows: torch.Tensor  # (m,) the rows with several new tokens, laid out as grids
    slot: torch.Tensor  # (T,) each token's grid (m for tokens of other rows: a dump slot)
    cell: torch.Tensor  # (T,) each token's cell in its grid of q (right-aligned)


def packed_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor,
    packed: Packed,
    scaling: float | None = None,
    **_: Any,
) -> tuple[torch.Tensor, None]:
    """Attention of a packed call: ``query`` (1, Hq, T, D) holds the new tokens of every
    cache row in one sequence; ``key``/``value`` are the cache's rows (N, Hkv, L + 1, D).

    Two batched attentions: every row's last token over its row's window (all a decode
    row has; the call of a decode step), and the rows with several new tokens
    (``packed.grid_rows``) each as a grid of ``q`` queries over its own window, under
    ``attention_mask`` (m, 1, Hq / Hkv * q, L + 1). The Hq / Hkv query heads that share
    a key/value head are stacked along the query axis, so the cache is never copied per
    head. Returns (1, T, Hq, D)."""
    p, sdpa = packed, torch.nn.functional.scaled_dot_product_attention
    n, kv_heads, heads, dim = key.shape[0], key.shape[1], query.shape[1], query.shape[3]
    tokens = query[0].transpose(0, 1)  # (T, Hq, D)
    last = sdpa(tokens[p.last].view(n, kv_heads, -1, dim), key, value, attn_mask=p.last_mask, scale=scaling)
    m, q = len(p.grid_rows), attention_mask.shape[2] * kv_heads // heads
    grid = query.new_zeros((m + 1, heads, q, dim))
    grid[p.slot, :, p.cell] = tokens  # other rows' tokens land in the dump slot m
    rows_k, rows_v = key.index_select(0, p.grid_rows), value.index_select(0, p.grid_rows)
    out = sdpa(grid[:m].view(m, kv_heads, -1, dim), rows_k, rows_v, attn_mask=attention_mask, scale=scaling)
    from_grid = out.view(m, heads, q, dim)[p.slot.clamp(max=m - 1), :, p.cell]  # (T, Hq, D)
    return torch.where((p.slot < m)[:, None, None], from_grid, last.view(n, heads, dim)[p.rows])[None], None


AttentionInterface.register(PACKED_ATTENTION, packed_attention)


class WindowCache:
    """Key/value storage indexed by env window column, (N, kv_heads, L + 1, head_dim) per layer.

    Before each forward call, :meth:`select` names the batch rows being processed and
    the window columns their new tokens occupy, and optionally cached keys/values to
    copy in first (a shared prompt prefix); ``update`` (called by every attention layer)
    writes them there and returns the rows' whole windows. Column ``L`` (``scratch``) is
    where padding positions of a call write: no attention mask ever allows it.
    """

    def __init__(self, num_rows: int, window: int) -> None:
        self.num_rows, self.window, self.scratch = num_rows, window, window
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.rows: torch.Tensor | None = None
        self.cols: torch.Tensor | None = None
        self.prefix: Prefix | None = None
        self.packed = False

    def select(self, rows: torch.Tensor | None, cols: torch.Tensor, prefix: Prefix | None = None) -> None:
        """Process ``rows`` (None: all rows, in order) with new tokens at ``cols`` (r, q).

        ``prefix``: ``(key_values, at_rows (k,), at_cols (k, n))``, keys/values written
        into cache rows ``at_rows`` at columns ``at_cols`` before the new tokens'.
        """
        self.rows, self.cols, self.prefix, self.packed = rows, cols, prefix, False

    def select_packed(self, rows: torch.Tensor, cols: torch.Tensor, prefix: Prefix | None = None) -> None:
        """A packed call: new token t (of one sequence) goes to row ``rows[t]``, column
        ``cols[t]``; ``update`` then returns every row's whole window."""
        self.rows, self.cols, self.prefix, self.packed = rows, cols, prefix, True

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, **_: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # key, value: (r, kv_heads, q, head_dim) for the selected rows' new tokens
        if layer_idx == len(self.keys):
            shape = (self.num_rows, key.shape[1], self.window + 1, key.shape[3])
            self.keys.append(key.new_zeros(shape))
            self.values.append(value.new_zeros(shape))
        K, V = self.keys[layer_idx], self.values[layer_idx]
        if self.prefix is not None:
            key_values, at_rows, at_cols = self.prefix
            prefix_k, prefix_v = key_values[layer_idx]  # (H, n, D)
            K[at_rows[:, None], :, at_cols] = prefix_k.transpose(0, 1)  # (k, n, H, D) <- (n, H, D)
            V[at_rows[:, None], :, at_cols] = prefix_v.transpose(0, 1)
        if self.packed:  # key: (1, H, T, D), token t to (rows[t], cols[t])
            K[self.rows, :, self.cols] = key[0].transpose(0, 1)
            V[self.rows, :, self.cols] = value[0].transpose(0, 1)
            return K, V
        index = self.cols[:, None, :, None].expand_as(key)  # (r, H, q, D): each token's column
        if self.rows is None:  # every row: write in place, attend over the whole cache
            return K.scatter_(2, index, key), V.scatter_(2, index, value)
        k_rows = K.index_select(0, self.rows).scatter_(2, index, key)
        v_rows = V.index_select(0, self.rows).scatter_(2, index, value)
        K.index_copy_(0, self.rows, k_rows)
        V.index_copy_(0, self.rows, v_rows)
        return k_rows, v_rows


@dataclass
class Rollout:
    """Tensors of shape (steps, num_envs) on the env's device.

    ``mask`` is 1 where the step's action was a real agent action (0 on the steps where a
    slot was being reset and its action was ignored, NEXT_STEP autoreset).
    """

    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor | None
    rewards: torch.Tensor
    dones: torch.Tensor
    mask: torch.Tensor


@dataclass
class Episodes:
    """Whole finished episodes, one row each, on the env's device.

    The rows are the env's final windows: ``input_ids``, ``attention_mask`` and
    ``agent_mask`` (E, L) as in the observation (left-padded prompt, then the response
    region; ``agent_mask`` is 1 on the agent's own tokens). ``rewards`` (E,) is the
    episode's reward, ``terminated`` (E,) is True where the stop token ended it (False:
    truncated), ``sample_index`` (E,) names the task sample it answered.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    agent_mask: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    sample_index: torch.Tensor

    def trimmed(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The windows cut to the columns any row uses: ids and attention mask (E, T), and
        the agent mask of each next-token target (E, T-1), lined up with
        :func:`token_logprobs`."""
        used = self.attention_mask.bool().any(0)  # (L,)
        first, last = int(used.int().argmax()), len(used) - int(used.flip(0).int().argmax())
        ids, attn = self.input_ids[:, first:last], self.attention_mask[:, first:last].long()
        return ids, attn, self.agent_mask[:, first + 1 : last].float()


class RolloutCollector:
    """Drive a Hugging Face causal LM through a TextVectorEnv with its KV cache.

    Args:
        model: a causal LM (``model(input_ids, attention_mask=4D, position_ids, cache)``
            returning ``.logits``), e.g. :func:`~text_gym.rollout.tiny_model`. The types
            in :data:`UNSUPPORTED_MODELS` are refused, and so is a model whose
            sliding-window attention (:func:`attention_span`) is shorter than the env's
            window: the rollout attends over the whole window.
        env: a :class:`~text_gym.vector_env.TextVectorEnv` built with ``output="torch"``
            and the default ``NEXT_STEP`` autoreset, not wrapped (the collector steps the
            env itself, so a wrapper's changes would be skipped: shape the rewards of
            the :class:`Rollout` or :class:`Episodes` instead). Other code may use the
            same env between calls (an evaluation, another collector): the collector
            sees it (``env.calls``) and starts its next ``collect`` with a reset.
        temperature, top_k, top_p, greedy: sampling controls.
        logits_processor: ``fn(logits (N, V), obs) -> logits`` applied before sampling
            (NLPO-style action masking, for example).
        value_head: ``fn(hidden (N, d)) -> (N,)`` for a value estimate per step.
        prefix_cache: reuse the keys/values of the token prefix shared by every prompt
            prefilled so far (see the module docstring) instead of recomputing it on each
            refill. Results equal ``prefix_cache=False`` up to float rounding. The
            prefix's keys/values are recomputed once per ``collect`` or
            ``collect_episodes`` call (at its first refill), so any change to the weights
            between calls is seen; within a call (or between your own ``feed`` calls),
            a parameter replaced or changed in place with a version bump is seen, but a
            fused optimizer step or a write through ``param.data`` is not.
        pack_refills: run a step where some slots prefill as one packed call (see the
            module docstring). None (default): where the model allows it (a Llama-family
            model, :func:`plain_head`); False: never, choose by ``merge_refills``; True:
            require it. Results are the same as two calls' up to float rounding.
        merge_refills: without packing, on a step where some slots prefill (q tokens)
            and the others decode, run them in one call of width q, the decode rows
            padded, instead of two calls. None: whenever the padding costs less than a
            second read of the weights (:func:`merge_budget`); True/False: always/never.
            Results are the same either way up to float rounding.
        compile: run the decode step (every slot, one new token: most steps) through
            ``torch.compile(model, dynamic=False, **compile)`` (``True``: default
            options; a dict: ``torch.compile`` keyword arguments such as ``mode``); for a
            model with a plain head (:func:`plain_head`), of its body, the LM head
            running outside the graph as in every other call (:func:`head_logits`). Its
            shapes never change (the cache is the fixed window), so it compiles once per
            batch shape and dtype; refill steps stay eager. The first decode step pays
            the compile (seconds to minutes on a CPU). Results equal eager decoding up to
            float rounding. On a 2-core CPU it paid little and not always
            (``benchmarks/rollout_throughput.py --compile``: the tiny model 1.18x eager
            at batch 8 and 1.16x at 32, SmolLM2-135M 1.23x and 0.91x; an earlier A/B
            gave 0.94x, 0.98x, 1.09x, 0.91x; both with the head in the graph), and
            SmolLM2 took ~100 s to compile, so it is off by default. Accelerators, where
            a decode step is hundreds of small kernel launches, are where it should pay
            most (not measured here).

    Sampling draws from the collector's own ``torch.Generator`` once a ``seed`` has been
    given to :meth:`collect` or :meth:`collect_episodes` (which seed the env and it), so
    that the same seed, model and env give the same actions; before that, from torch's
    global generator.

    Raises:
        ValueError: the model and env disagree on tokenizer, vocabulary or device; the env
            is wrapped, or does not use the NEXT_STEP autoreset.
    """

    def __init__(
        self,
        model: Any,
        env: Any,
        *,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        greedy: bool = False,
        logits_processor: LogitsProcessor | None = None,
        value_head: Callable[[torch.Tensor], torch.Tensor] | None = None,
        prefix_cache: bool = True,
        pack_refills: bool | None = None,
        merge_refills: bool | None = None,
        compile: bool | dict[str, Any] = False,
    ) -> None:
        inner = getattr(env, "unwrapped", env)
        if inner is not env:
            raise ValueError(
                f"RolloutCollector steps the TextVectorEnv itself, so the wrappers around it "
                f"would be skipped (got {env}): pass env.unwrapped, and shape rewards on "
                "the Rollout's or Episodes' rewards instead"
            )
        if getattr(env, "autoreset_mode", None) is not AutoresetMode.NEXT_STEP:
            raise ValueError(
                f"RolloutCollector needs autoreset_mode=NEXT_STEP (a finished slot's next "
                f"step is its reset); the env has {getattr(env, 'autoreset_mode', None)}: "
                "build it with the default autoreset_mode"
            )
        if env.output != "torch":
            raise ValueError("the rollout needs TextVectorEnv(output='torch') so observations stay on device")
        model_tok = getattr(model.config, "text_gym_tokenizer", None)
        if model_tok is not None and model_tok != env.tokenizer.name:
            raise ValueError(
                f"model was built for tokenizer {model_tok!r} but the env uses "
                f"{env.tokenizer.name!r}: pass tokenizer={model_tok!r} to the env"
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
                f"({UNSUPPORTED_MODELS[model_type]}); see text_gym.rollout.collector."
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
        if model_device != env.device:
            raise ValueError(f"model is on {model_device} but the env is on {env.device}: move one")
        if not (temperature > 0 and math.isfinite(temperature)) or not 0 < top_p <= 1:
            raise ValueError(
                f"need a finite temperature > 0 and 0 < top_p <= 1; got temperature={temperature}, top_p={top_p}"
            )
        if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or not 0 <= top_k <= env.vocab_size:
            raise ValueError(
                f"top_k={top_k!r} must be an int in [0, {env.vocab_size}] (0: no top-k cut; at most the action space)"
            )
        self.model, self.env = model, env
        self.temperature, self.top_k, self.top_p, self.greedy = temperature, int(top_k), top_p, greedy
        self.logits_processor, self.value_head = logits_processor, value_head
        self.cache = WindowCache(env.num_envs, env.window)
        self._cols = torch.arange(env.window + 1, device=env.device)  # the window and scratch
        self._obs: dict[str, torch.Tensor] | None = None
        self._last: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._calls = -1  # env.calls after this collector's last reset or step
        self.generator: torch.Generator | None = None  # seeded by the first seed given
        self.prefix_cache = prefix_cache
        self.merge_refills = merge_refills
        self.merge_budget = merge_budget(model)  # padded positions a merged call may add
        # a prefill needs the logits of its last token only: skip the LM head elsewhere
        # (a 49,152-wide matmul per prompt token for SmolLM2) where the model allows it
        takes_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._last_logits_only = {"logits_to_keep": 1} if takes_keep else {}
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
        # the decode step's model call (the body, for a plain head); compiled, a graph over
        # fixed shapes
        options = compile if isinstance(compile, dict) else {}
        decode_model = model if self._body is None else self._body
        self._decode_model = torch.compile(decode_model, dynamic=False, **options) if compile else decode_model
        self._prefix: torch.Tensor | None = None  # (n,) token ids common to every prompt so far
        self._prefix_kv: KeyValues | None = None
        self._prefix_weights: tuple[tuple[int, int], ...] | None = None  # the parameters they came from

    @torch.no_grad()
    def collect(self, num_steps: int, seed: int | None = None) -> Rollout:
        """Run ``num_steps`` env steps. The first call, a ``seed``, or other code having
        stepped or reset the env since this collector's last step resets it first."""
        self._prefix_weights = None  # recompute the prefix's keys/values (see prefix_cache)
        if self._obs is None or seed is not None or self.env.calls != self._calls:
            self._reset(seed)
        out = {k: [] for k in ("actions", "logprobs", "values", "rewards", "dones", "mask")}
        for _ in range(num_steps):
            hidden = self._last[1]  # (N, d): the state each action is taken in
            acting = ~self._done  # a slot that just finished resets now, ignoring its action
            actions, logprobs, rewards, terminated, truncated = self._step()
            out["actions"].append(actions)
            out["logprobs"].append(logprobs)
            out["values"].append(self.value_head(hidden) if self.value_head is not None else None)
            out["rewards"].append(rewards)
            out["dones"].append(self._done)
            out["mask"].append(acting)
        values = torch.stack(out.pop("values")) if self.value_head is not None else None
        out.pop("values", None)
        return Rollout(values=values, **{k: torch.stack(v) for k, v in out.items()})

    @torch.no_grad()
    def collect_episodes(self, seed: int | None = None, sample_index: Any = None) -> Episodes:
        """Reset every slot and step until each has finished one episode; return those.

        The generate-a-batch pattern of on-policy agents: row ``i`` is slot ``i``'s
        episode. ``sample_index`` (num_envs,) pins the prompts (the same index in several
        slots gives a group of answers to one prompt, as GRPO wants); otherwise the
        seeded streams draw them. Slots that finish early keep stepping until the last
        one does; what they do meanwhile is discarded: they sample uniformly among the
        non-stop tokens (the model's own distribution may allow nothing else, as under an
        NLPO mask), so that their next episode cannot end (and cost a scoring call, a
        sandbox run for code) before the batch is complete. Those episodes are not the
        policy's, so the next ``collect`` starts with a reset.
        """
        return self._episodes(seed, sample_index, seed_env=True)

    def _episodes(self, seed: int | None, sample_index: Any, seed_env: bool) -> Episodes:
        """``collect_episodes``; ``seed_env=False`` seeds only this collector's sampler."""
        env, N = self.env, self.env.num_envs
        self._prefix_weights = None  # recompute the prefix's keys/values (see prefix_cache)
        options = None if sample_index is None else {"sample_index": sample_index}
        infos = self._reset(seed, options, seed_env=seed_env)
        obs = self._obs
        ids, attn, agent = obs["input_ids"].clone(), obs["attention_mask"].clone(), obs["agent_mask"].clone()
        rewards = torch.zeros(N, dtype=torch.float32, device=env.device)
        terminated_at_end = torch.zeros(N, dtype=torch.bool, device=env.device)
        finished = torch.zeros(N, dtype=torch.bool, device=env.device)
        waiting = torch.zeros(env.vocab_size, device=env.device)  # uniform over non-stop tokens
        waiting[list(env.stop_token_ids)] = float("-inf")
        while not bool(finished.all()):
            _, _, reward, terminated, truncated = self._step(replace=(finished, waiting))
            new = self._done & ~finished  # (N,): episodes ending now, for the first time
            keep = new[:, None]
            ids = torch.where(keep, self._obs["input_ids"], ids)
            attn = torch.where(keep, self._obs["attention_mask"], attn)
            agent = torch.where(keep, self._obs["agent_mask"], agent)
            rewards = torch.where(new, reward.float(), rewards)
            terminated_at_end = torch.where(new, terminated, terminated_at_end)
            finished |= self._done
        index = torch.as_tensor(infos["sample_index"], device=env.device)
        self._obs = None  # the waiting slots' episodes are not the policy's: collect resets
        return Episodes(ids, attn, agent, rewards, terminated_at_end, index)

    @torch.no_grad()
    def evaluate(self, samples: Any) -> torch.Tensor:
        """One episode on each task sample index in ``samples``; their rewards, in order.

        With ``greedy=True`` this is the usual held-out score: ``samples`` may be
        ``range(len(env.task))`` for a whole split. Runs ``collect_episodes`` on chunks of
        ``num_envs`` samples (the last chunk padded by repeating its last sample). The
        sampler is seeded per chunk; the env's sample streams are not reseeded (they
        advance by the evaluation's episodes), so a training collector on the same env
        does not start its prompts over after each evaluation.
        """
        samples = [int(j) for j in samples]
        N, out = self.env.num_envs, []
        for start in range(0, len(samples), N):
            chunk = samples[start : start + N]
            episodes = self._episodes(start, chunk + chunk[-1:] * (N - len(chunk)), seed_env=False)
            out.append(episodes.rewards[: len(chunk)])
        return torch.cat(out) if out else torch.zeros(0, device=self.env.device)

    def _reset(self, seed: Any, options: dict[str, Any] | None = None, seed_env: bool = True) -> dict[str, Any]:
        if seed is not None:
            self.generator = torch.Generator(self.env.device).manual_seed(int(seed))
        self._obs, infos = self.env.reset(seed=seed if seed_env else None, options=options)
        self._calls = self.env.calls
        self._last = self.feed(self._obs)
        self._done = torch.zeros(self.env.num_envs, dtype=torch.bool, device=self.env.device)
        return infos

    def _step(self, replace: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, ...]:
        """Sample every slot's action from the cached logits, step the env, feed what is new.
        ``replace=(rows (N,) bool, logits (V,))`` samples those rows from the given logits."""
        logits = self._last[0][:, : self.env.vocab_size].float()  # (N, V)
        if self.logits_processor is not None:
            logits = self.logits_processor(logits, self._obs)
        if replace is not None:
            logits = torch.where(replace[0][:, None], replace[1], logits)
        actions, logprobs = self._sample(logits)
        self._obs, rewards, terminated, truncated, _ = self.env.step(actions)
        self._calls = self.env.calls
        self._done = terminated | truncated
        self._last = self.feed(self._obs)
        return actions, logprobs, rewards, terminated, truncated

    def _sample(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions for every row of ``logits`` (N, V) and their log-probabilities. The
        log-probability is log_softmax's formula at the chosen column only: no (N, V)
        tensor of log-probabilities is made."""
        if self.greedy:
            actions = logits.argmax(-1)
            return actions, logits.gather(1, actions[:, None])[:, 0] - logits.logsumexp(-1)
        if self.temperature != 1:
            logits = logits / self.temperature
        if self.top_k:
            kth = logits.topk(self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1:
            logits = logits.masked_fill(~top_p_keep(logits, self.top_p), float("-inf"))
        top = logits.amax(-1, keepdim=True)
        weights = (logits - top).exp_()  # unnormalised probabilities
        actions, total = _categorical(weights, self.generator)  # total: its float64 sum of weights
        logprobs = logits.gather(1, actions[:, None]) - top - total.log().float()
        return actions, logprobs[:, 0]

    @torch.no_grad()
    def feed(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the model on every slot's new tokens; return next-token logits and hidden states.

        ``collect`` calls this once per observation. Calling it yourself, with every
        observation in order, keeps a second model in step with the env (NLPO's mask
        model, for example): each call advances this collector's own cache.

        Slots with one new token (the usual decode step) go in one call; slots with more
        (a fresh prompt, or an agent token plus a user reply) in a second call over those
        rows only, or in the same call with the decode rows padded (``merge_refills``),
        or packed into one sequence (``pack_refills``; see the module docstring). One
        host sync per step decides the split.
        """
        span = obs["new_span"]
        many = (span[:, 1] - span[:, 0]) > 1  # (N,)
        if not bool(many.any()):
            return self._forward(obs, None, 1)
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
        out = out_p.new_empty((self.env.num_envs, out_p.shape[-1]))
        out[prefill], out[decode] = out_p, out_d
        logits = head_logits(self._head, out) if shared_head else out
        hidden = None
        if hidden_p is not None:
            hidden = hidden_p.new_empty((self.env.num_envs, hidden_p.shape[-1]))
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
        if not self.prefix_cache or (self._prefix is not None and len(self._prefix) < MIN_PREFIX):
            longest, total = torch.stack((lengths.max(), lengths.sum())).tolist()
            return longest, lengths, total, None
        P, L = self.env.prompt_tokens, self.env.window
        fresh = start < P  # (r,)
        j = torch.arange(P if self._prefix is None else len(self._prefix), device=start.device)
        aligned = obs["input_ids"][rows].gather(1, (start[:, None] + j).clamp_(max=L - 1))  # (r, n)
        ref = aligned[fresh.int().argmax()] if self._prefix is None else self._prefix  # (n,)
        match = (aligned == ref) & (j < lengths[:, None] - 1)  # (r, n)
        shared = match.long().cumprod(1).sum(1).masked_fill_(~fresh, len(j))  # (r,)
        stats = torch.stack(
            (lengths.max(), lengths.masked_fill(fresh, 0).max(), shared.min(), fresh.sum(), lengths.sum())
        )
        longest, others, n, count, total = stats.tolist()  # the one host sync
        if count == 0:
            return longest, lengths, total, None
        weights = tuple((p.data_ptr(), p._version) for p in self.model.parameters())
        if self._prefix_kv is not None and weights != self._prefix_weights and n >= MIN_PREFIX:
            # stale: recomputed as it stands, before a shrink (which only slices)
            self._prefix_kv, self._prefix_weights = self._prefix_key_values(self._prefix), weights
        if self._prefix is None or n < len(self._prefix):
            self._prefix = ref[:n].clone()
            self._prefix_kv = None if self._prefix_kv is None else [(k[:, :n], v[:, :n]) for k, v in self._prefix_kv]
        if n < MIN_PREFIX:
            self._prefix_kv = None
            return longest, lengths, total, None
        if self._prefix_kv is None:
            self._prefix_kv, self._prefix_weights = self._prefix_key_values(self._prefix), weights
        # the fresh rows (listed first by a stable sort) get the prefix at [first, first + n)
        at_rows = rows[torch.argsort((~fresh).int(), stable=True)[:count]]  # (k,)
        at_cols = obs["new_span"][at_rows, :1] + j[:n]  # (k, n)
        return max(others, longest - n), lengths - n * fresh, total - n * count, (self._prefix_kv, at_rows, at_cols)

    def _prefix_key_values(self, ids: torch.Tensor) -> KeyValues:
        """Keys/values of ``ids`` (n,) at positions 0..n-1, from one forward pass."""
        n = len(ids)
        cache = WindowCache(1, n)
        cols = torch.arange(n, device=ids.device)[None]  # (1, n)
        cache.select(None, cols)
        keys = torch.arange(n + 1, device=ids.device)  # the n columns and scratch
        causal = (cols[:, None, :, None] >= keys) & (keys < n)  # (1, 1, n, n + 1)
        self.model(
            input_ids=ids[None], attention_mask=self._additive(causal), position_ids=cols, cache=cache, use_cache=True
        )
        return [(k[0, :, :n], v[0, :, :n]) for k, v in zip(cache.keys, cache.values)]

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        """A boolean attention mask as the additive float mask the model takes."""
        dtype = next(self.model.parameters()).dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
            ~allowed, torch.finfo(dtype).min
        )

    def _forward(
        self,
        obs: dict[str, torch.Tensor],
        rows: torch.Tensor | None,
        width: int,
        counts: torch.Tensor | None = None,
        prefix: Prefix | None = None,
        head: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One call over ``rows`` (None: all), ``width`` positions each: row i's last
        ``counts[i]`` new tokens (None: ``width``), left-padded with positions that write
        to the scratch column and that no real token attends to. Returns the last
        position's logits (``head=False``: its final hidden state, for :func:`head_logits`)
        and the value head's input."""
        pick = (lambda t: t) if rows is None else (lambda t: t[rows])
        cols = self._grid_columns(pick(obs["new_span"])[:, 1], width, counts)  # (r, q)
        ids = pick(obs["input_ids"]).gather(1, cols.clamp(max=self.env.window - 1))
        attn = pick(obs["attention_mask"]).bool()  # (r, L)
        positions = (cols - self._first_columns(attn)[:, None]).clamp_(min=0)
        allowed = self._allowed(attn, cols)
        self.cache.select(rows, cols, prefix)
        inputs = {
            "input_ids": ids,
            "attention_mask": self._additive(allowed),
            "position_ids": positions,
            "cache": self.cache,
            "use_cache": True,
            "output_hidden_states": self.value_head is not None,
        }
        decode = rows is None and width == 1
        if self._head is not None:  # the body, then the LM head on the last position only
            output = (self._decode_model if decode else self._body)(**inputs)
            out = output.last_hidden_state[:, -1]
            out = head_logits(self._head, out) if head else out
        else:
            output = (self._decode_model if decode else self.model)(**inputs, **self._last_logits_only)
            out = output.logits[:, -1]
        hidden = output.hidden_states[-1][:, -1] if self.value_head is not None else None
        return out, hidden

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
        P = self.env.prompt_tokens
        return P - attn[:, :P].sum(1)

    def _allowed(self, attn: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """(r, 1, q, L + 1): the token in column ``cols[i, j]`` attends to row i's valid
        columns (``attn`` (r, L) bool) up to its own, never to the scratch column."""
        attn = torch.cat((attn, attn.new_zeros((len(attn), 1))), 1)
        return attn[:, None, None, :] & (self._cols <= cols[:, None, :, None])

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
        next-token logits and the value head's input."""
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
        packed = Packed(rows, last, self._additive(last_mask), grid_rows, slot[rows], width - counts[rows] + k)
        self.cache.select_packed(rows, cols, prefix)
        before, config._attn_implementation = config._attn_implementation, PACKED_ATTENTION
        try:
            output = self._body(
                input_ids=obs["input_ids"][rows, cols][None],
                attention_mask=self._additive(allowed),
                position_ids=positions[None],
                cache=self.cache,
                use_cache=True,
                output_hidden_states=self.value_head is not None,
                packed=packed,
            )
        finally:
            config._attn_implementation = before
        hidden = output.hidden_states[-1][0, last] if self.value_head is not None else None
        return head_logits(self._head, output.last_hidden_state[0, last]), hidden


PLAIN_HEAD_MODELS = ("llama", "mistral", "qwen2", "qwen3")  # logits = lm_head(last hidden state)
# Model types whose forward needs more of a cache than WindowCache offers, refused at
# construction (they failed in the first collect with errors from inside the model).
# Tested to run: llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3_text, phi, phi3,
# gpt2, gpt_neox, gptj, gpt_bigcode, olmo2.
UNSUPPORTED_MODELS = {
    "opt": "it asks the cache for get_seq_length()",
    "bloom": "it asks the cache for get_seq_length()",
    "falcon": "it asks the cache for get_seq_length()",
    "stablelm": "its attention does not take the window cache's 4-D mask",
}


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
    the BLAS call. Measured with MKL on one x86_64 CPU (2 threads), ``F.linear`` took
    1.1-1.8x as long at 8-16 rows and 2-6x at 2-4 rows, for heads of 16 MB to 0.5 GB
    (d = 128 to 2,048, V = 16,384 to 151,936); at 32-64 rows it went either way
    (0.66-1.43x), for small heads the swap lost (0.4-0.9x), and in bfloat16 too. In
    A/B rounds of ``collect(64)`` at batch 8, tokens/s rose 1.15-1.6x for the rollout
    benchmark's tiny model (d = 256) and ~1.1x for SmolLM2-135M. Elsewhere
    (accelerators, where either is one library call) it is ``head(hidden)``, as it is
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
    written: a running sum over every column, in float64 so that rare tokens keep their
    odds, took 2.4-7.6x longer on CPU at V = 49,152 and 8-32 rows (``torch.multinomial``
    ~35x). A token of weight 0 is never drawn: each search returns the first entry whose
    running sum exceeds the draw, and each draw is kept below its total.
    """
    return _categorical(weights, generator)[0]


def _categorical(weights: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sample_categorical`'s draws (N,), and each row's total weight (N, 1) as the
    float64 sum of its block totals (so a caller normalising needs no second pass)."""
    N, V = weights.shape
    B = SAMPLE_BLOCK
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
