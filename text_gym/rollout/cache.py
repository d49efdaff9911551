"""The window KV cache, and the attention function of a packed call.

:class:`WindowCache` stores keys/values indexed by env window column, so that a slot's
cache row mirrors its window (see :mod:`text_gym.rollout.runner`). It is the ``cache``
argument of a Hugging Face model's forward: every attention layer calls its ``update``.

:func:`packed_attention` is registered with transformers' ``AttentionInterface`` as
``"text_gym_packed"``; the runner selects it for the one call of a packed refill step.

Example:
    >>> import torch
    >>> cache = WindowCache(num_rows=2, window=4)
    >>> cache.select(None, torch.tensor([[0], [1]]))  # row 0 writes column 0, row 1 column 1
    >>> key = torch.ones(2, 1, 1, 3)  # (rows, kv_heads, new tokens, head_dim)
    >>> keys, _ = cache.update(key, key, layer_idx=0)
    >>> tuple(keys.shape), keys[:, 0, :, 0].tolist()  # the window's 4 columns and scratch
    ((2, 1, 5, 3), [[1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0]])
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from transformers import AttentionInterface

KeyValues = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (kv_heads, n, head_dim) each
Prefix = tuple[KeyValues, torch.Tensor, torch.Tensor]  # key/values, cache rows (k,), columns (k, n)
PACKED_ATTENTION = "text_gym_packed"  # the attention implementation of a packed call


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
        self.reach: int | None = None

    def select(
        self, rows: torch.Tensor | None, cols: torch.Tensor, prefix: Prefix | None = None, reach: int | None = None
    ) -> None:
        """Process ``rows`` (None: all rows, in order) with new tokens at ``cols`` (r, q).

        ``prefix``: ``(key_values, at_rows (k,), at_cols (k, n))``, keys/values written
        into cache rows ``at_rows`` at columns ``at_cols`` before the new tokens'.
        ``reach``: with ``rows=None``, ``update`` returns the first ``reach`` columns
        only (the caller's mask covers those), so attention reads no column past them.
        """
        self.rows, self.cols, self.prefix, self.packed, self.reach = rows, cols, prefix, False, reach

    def select_packed(self, rows: torch.Tensor, cols: torch.Tensor, prefix: Prefix | None = None) -> None:
        """A packed call: new token t (of one sequence) goes to row ``rows[t]``, column
        ``cols[t]``; ``update`` then returns every row's whole window."""
        self.rows, self.cols, self.prefix, self.packed, self.reach = rows, cols, prefix, True, None

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, **_: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write one layer's new keys/values (r, kv_heads, q, head_dim) (a packed call:
        (1, kv_heads, T, head_dim)) and return the selected rows' whole windows."""
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
        if self.rows is None:  # every row: write in place, attend over the cache (to `reach`)
            K, V = K.scatter_(2, index, key), V.scatter_(2, index, value)
            return (K, V) if self.reach is None else (K[:, :, : self.reach], V[:, :, : self.reach])
        k_rows = K.index_select(0, self.rows).scatter_(2, index, key)
        v_rows = V.index_select(0, self.rows).scatter_(2, index, value)
        K.index_copy_(0, self.rows, k_rows)
        V.index_copy_(0, self.rows, v_rows)
        return k_rows, v_rows


def model_mask(allowed: torch.Tensor, model: Any) -> torch.Tensor:
    """A boolean attention mask in the form ``model``'s attention takes: the boolean mask
    itself under SDPA (``torch.nn.functional.scaled_dot_product_attention`` takes it, and
    runs faster on it than on a float mask on CPU), else :func:`additive_mask`. Every
    query the runner builds may attend to at least one column, so no row is all False."""
    if getattr(model.config, "_attn_implementation", None) == "sdpa":
        return allowed
    return additive_mask(allowed, model)


def additive_mask(allowed: torch.Tensor, model: Any) -> torch.Tensor:
    """A boolean attention mask as the additive float mask ``model`` takes (its dtype)."""
    dtype = next(model.parameters()).dtype
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, torch.finfo(dtype).min)


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
