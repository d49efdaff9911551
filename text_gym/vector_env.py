"""TextVectorEnv: many token-level text episodes stepped together with tensor ops.

Every slot's token window and masks live in torch tensors on one device; ``step``
writes one token into every slot with three batched device ops. The host keeps each
slot's position (a few ints per slot), so it decides which slots finished from the
actions alone: no device sync when the actions come from the host, one copy of the
actions when they are a device tensor. Only finished episodes touch Python: their
responses are decoded and scored by the task in one batched call.
:class:`~text_gym.env.TextEnv` is a one-slot shell over this class.

On a CPU device the same buffers are read and written through numpy views of their
memory: a numpy op on a small array skips torch's per-op dispatch, which would
dominate a step of a dozen such ops. The state is still the torch tensors.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from text_gym.env_checks import (
    UnsupportedRenderMode,
    check_actions,
    is_int,
    parse_autoreset_mode,
    per_slot_seeds,
    reset_options,
    stop_ids,
    usable_device,
)
from text_gym.prompt_table import EncodedPrompts, PromptTable, encoded_prompts
from text_gym.sample_streams import SampleStreams
from text_gym.tasks import Sample, Task, make_task
from text_gym.tasks.base import MultiTurnTask, check_choice
from text_gym.tokenizers import Tokenizer, decode_rows, load_tokenizer
from text_gym.vector_info import put_info, slot_mask

OUTPUTS = ("numpy", "torch")
TRUNCATIONS = ("left", "right", "error")
_MASK_DTYPE = torch.int8


class TextVectorEnv(VectorEnv):
    """A batch of token-level text-generation episodes over one task.

    An episode is one generation. It starts from a task prompt; each action is the next
    token id; it ends when the agent emits a stop token (``terminated``) or after
    ``max_new_tokens`` tokens (``truncated``), and the final step's reward is the task
    metric of the decoded response. All other rewards are 0.

    Observation (a ``Dict``; the same keys for every env id), per slot:

    * ``input_ids``: int64 ``(L,)`` with ``L = max_prompt_tokens + max_new_tokens``:
      the prompt left-padded into the first ``max_prompt_tokens`` columns, then the
      response, then padding. Every slot's first response token is in column
      ``max_prompt_tokens``.
    * ``attention_mask``: int8 ``(L,)``, 1 on real tokens.
    * ``agent_mask``: int8 ``(L,)``, 1 on tokens that were the agent's actions.
    * ``new_span``: int64 ``(2,)``, ``(start, end)``: ``input_ids[start:end]`` are the
      tokens appended since this slot's previous observation (after a reset, the whole
      prompt; after a step, the agent's token; for a slot that a partial ``reset``
      leaves running, nothing: ``start == end``), and ``end`` is where the next token
      goes. An agent with a KV cache feeds exactly these tokens, and restarts the slot's
      cache when ``start < max_prompt_tokens``.

    Action: ``Discrete(len(tokenizer))`` per slot; integer arrays (numpy, torch or
    lists) of shape ``(num_envs,)``. Anything else raises ``ValueError``.

    Prompts longer than ``max_prompt_tokens`` follow ``prompt_truncation``: ``"left"``
    (default) drops their first tokens, keeping the end, where the instruction to answer
    is; ``"right"`` keeps the beginning; ``"error"`` raises at construction.
    ``info["prompt_truncated"]`` says when it happened.

    Seeding: ``reset(seed=s)`` gives slot ``i`` the seed ``s + i``; slot ``i``'s ``k``-th
    episode then uses the sample ``hash(s + i, k) mod len(task)``, so a run is
    reproducible and equals ``SyncVectorEnv`` of single :class:`TextEnv` seeded alike
    (except ``new_span`` of the slots a partial reset keeps running: ``SyncVectorEnv``
    returns their last observation again, this env an empty span).

    ``calls`` counts the ``reset`` and ``step`` calls so far: a client that keeps state
    derived from the observations (a rollout's KV cache) can tell whether other code
    moved the env since its own last call.

    Infos: the final step of an episode carries ``prompt`` (the task's whole prompt text,
    even where the window kept part of it), ``response``, ``references``,
    ``sample_index``, ``prompt_truncated`` and ``metrics`` (every component of the
    reward); a reset carries ``sample_index``. Gymnasium's vector info
    layout is used (arrays plus ``_key`` masks; ``final_obs``/``final_info`` in
    ``SAME_STEP`` mode).

    Args:
        num_envs: number of slots.
        task: a task name from ``text_gym.tasks.TASKS`` or a built ``Task``.
        tokenizer: anything :func:`text_gym.tokenizers.load_tokenizer` takes.
        max_prompt_tokens: width of the prompt region; default: the longest prompt.
        max_new_tokens: episode length limit; default: the longest reference + 1.
        prompt_truncation: ``"left"``, ``"right"`` or ``"error"`` (see above).
        stop_token_ids: ids that end an episode; default: the tokenizer's EOS.
        device: torch device of the slot state.
        autoreset_mode: ``NEXT_STEP`` (default), ``SAME_STEP`` or ``DISABLED``
            (an ``AutoresetMode`` or its name).
        output: ``"numpy"`` (default) or ``"torch"`` (tensors on ``device``; rewards
            float32; the spaces stay numpy, so ``gym.make``'s passive checker warns on
            the first reset and step: pass ``disable_env_checker=True`` there).
        copy: return fresh observation arrays each step (default). ``False`` returns
            views of the env's buffers, valid until the next ``step`` or ``reset``
            (so not for wrappers that keep a final observation past the autoreset, as
            Stable-Baselines3's ``DummyVecEnv`` does), for agents that
            consume each observation at once: numpy views are read-only; torch tensors
            cannot be made so, and writing to them changes the env.
        render_mode: ``None`` or ``"ansi"``; another mode raises
            :class:`UnsupportedRenderMode`.
        chat_template: format each prompt with the tokenizer's chat template (one user
            message, or the task's ``sample.extra["messages"]``) and a generation
            prompt; an error if the tokenizer has none. Multi-turn replies keep the
            task's own format. A task built here by name takes its chat defaults
            (``TextCode-v0``: ``answer_format="markdown"``) unless given otherwise.
        env_id: name used in error messages.
        **task_kwargs: passed to the task (e.g. ``split="test"``).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        task: str | Task = "translation",
        tokenizer: Any = "default",
        *,
        max_prompt_tokens: int | None = None,
        max_new_tokens: int | None = None,
        prompt_truncation: str = "left",
        stop_token_ids: Sequence[int] | None = None,
        device: str | torch.device = "cpu",
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        output: str = "numpy",
        copy: bool = True,
        render_mode: str | None = None,
        chat_template: bool = False,
        env_id: str = "TextVectorEnv",
        **task_kwargs: Any,
    ) -> None:
        self._check_settings(num_envs, output, prompt_truncation, render_mode, autoreset_mode, copy)
        self.render_mode, self.env_id = render_mode, env_id
        self.device = usable_device(device)
        self.tokenizer: Tokenizer = load_tokenizer(tokenizer)
        self.task = make_task(task, env_id, env_args=_env_arguments(), chat=bool(chat_template), **task_kwargs)
        if len(self.task) == 0:
            raise ValueError(f"task {self.task.name!r} has no samples; check its split/data")
        self.vocab_size = len(self.tokenizer)
        self.multi_turn = isinstance(self.task, MultiTurnTask)
        self._encoded = self._encode_prompts(chat_template)
        self._size_window(max_prompt_tokens, max_new_tokens, prompt_truncation)
        self.stop_token_ids = stop_ids(stop_token_ids, self.tokenizer.eos_token_id, self.vocab_size)
        self._make_spaces()
        self._make_device_buffers()
        self._make_host_bookkeeping()
        self._prompts = PromptTable(self._encoded, self.prompt_tokens, prompt_truncation, self.tokenizer.pad_token_id)

    # ------------------------------------------------------------------ construction

    def _check_settings(
        self, num_envs: Any, output: str, truncation: str, render_mode: Any, autoreset_mode: Any, copy: Any
    ) -> None:
        """Check the arguments that need no data, and keep them."""
        if not is_int(num_envs) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} must be a positive integer")
        check_choice("output", output, OUTPUTS)
        check_choice("prompt_truncation", truncation, TRUNCATIONS)
        check_choice("render_mode", render_mode, [None, *self.metadata["render_modes"]], UnsupportedRenderMode)
        self.autoreset_mode = parse_autoreset_mode(autoreset_mode)
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.calls = 0  # reset() and step() calls so far (see the class docstring)
        if not isinstance(copy, (bool, np.bool_)):
            raise ValueError(f"copy={copy!r} must be True or False")
        self.num_envs, self.output, self.copy = int(num_envs), output, bool(copy)

    def _encode_prompts(self, chat_template: Any) -> EncodedPrompts:
        """The task's prompts for this tokenizer and prompt format (shared between envs)."""
        if chat_template and self.tokenizer.apply_chat_template([{"role": "user", "content": ""}]) is None:
            raise ValueError(
                f"chat_template=True, but tokenizer {self.tokenizer.name!r} has no chat "
                "template; pass chat_template=False or a tokenizer with one"
            )
        return encoded_prompts(self.tokenizer, self.task, bool(chat_template))

    def _size_window(self, max_prompt_tokens: Any, max_new_tokens: Any, truncation: str) -> None:
        """Set the prompt region's width and the episode length limit (defaults from the
        data), and refuse long prompts under ``prompt_truncation="error"``."""
        for name, value in (("max_prompt_tokens", max_prompt_tokens), ("max_new_tokens", max_new_tokens)):
            if value is not None and (not is_int(value) or value < 1):
                raise ValueError(f"{name}={value!r} must be an int >= 1, or None for the default")
        if max_prompt_tokens is None:
            max_prompt_tokens = max(1, int(self._encoded.lengths().max()))
        self.prompt_tokens = P = int(max_prompt_tokens)
        self.prompt_truncation = truncation
        if truncation == "error":
            lengths = self._encoded.lengths()
            if (lengths > P).any():
                i = int(np.argmax(lengths > P))
                raise ValueError(
                    f"{int((lengths > P).sum())} prompt(s) are longer than "
                    f"max_prompt_tokens={P} (sample {i} has {lengths[i]} "
                    "tokens); raise max_prompt_tokens, or pass prompt_truncation='left' "
                    "(keep the end) or 'right' (keep the start)"
                )
        if max_new_tokens is None and self.multi_turn:
            max_new_tokens = self.task.response_budget(self.tokenizer.encode_batch)
        self.max_new_tokens = int(max_new_tokens or self._encoded.longest_reference + 1)
        self.window = P + self.max_new_tokens

    def _make_spaces(self) -> None:
        """The observation and action spaces, single and batched (see the class docstring)."""
        L, vocab = self.window, self.vocab_size
        self.single_observation_space = gym.spaces.Dict(
            {
                "input_ids": gym.spaces.Box(0, vocab - 1, (L,), np.int64),
                "attention_mask": gym.spaces.Box(0, 1, (L,), np.int8),
                "agent_mask": gym.spaces.Box(0, 1, (L,), np.int8),
                "new_span": gym.spaces.Box(0, L, (2,), np.int64),
            }
        )
        self.single_action_space = gym.spaces.Discrete(vocab)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def _make_device_buffers(self) -> None:
        """Every slot's window (token ids and the two masks) and ``new_span``, on the device."""
        dev, N, P, L = self.device, self.num_envs, self.prompt_tokens, self.window
        self._ids = torch.full((N, L), self.tokenizer.pad_token_id, dtype=torch.int64, device=dev)
        self._attn = torch.zeros((N, L), dtype=_MASK_DTYPE, device=dev)
        self._agent = torch.zeros((N, L), dtype=_MASK_DTYPE, device=dev)
        # CPU: numpy views of the three buffers (same memory), used for every host-side
        # read and write; None elsewhere, where the writes are torch ops on the device.
        self._views = (self._ids.numpy(), self._attn.numpy(), self._agent.numpy()) if dev.type == "cpu" else None
        self._row_starts = np.arange(N, dtype=np.int64) * L  # flat index of each row's column 0
        # (start, end) of the tokens new since the last observation; `end` is where the
        # next action goes, so a slot's response length is `end - P`. The host copy is
        # the truth (the host decides what happens next); on a CPU device the tensor
        # shares its memory, elsewhere it is copied over once per step.
        self._span_np = np.full((N, 2), P, dtype=np.int64)
        self._span = torch.from_numpy(self._span_np).to(dev)
        self._zero_rewards = torch.zeros(N, dtype=torch.float32, device=dev)

    def _make_host_bookkeeping(self) -> None:
        """Per-slot state on the host, touched only when episodes start or end."""
        N, P, L = self.num_envs, self.prompt_tokens, self.window
        self._stop_array = np.asarray(self.stop_token_ids, dtype=np.int64)
        self._streams = SampleStreams(N)  # which sample each slot's next episode starts from
        self._sample = np.zeros(N, dtype=np.int64)
        self._pending = np.zeros(N, dtype=bool)  # finished, waiting for a reset
        self._prompt_len_np = np.zeros(N, dtype=np.int64)  # each slot's prompt, in tokens
        self._prompt_truncated = np.zeros(N, dtype=bool)
        # row n: the attention mask of a prompt of n tokens (left-padded into [0, P))
        self._prompt_masks = ((np.arange(L) >= P - np.arange(P + 1)[:, None]) & (np.arange(L) < P)).astype(np.int8)
        self._dialogues: list[Any] = [None] * N  # multi-turn tasks: each slot's state
        self._turn_start = np.full(N, P, dtype=np.int64)  # where the agent's turn began
        self._started = False
        self._read_only: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------------ reset / step

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start new episodes in every slot, or in ``options["reset_mask"]``'s slots.

        Args:
            seed: ``None`` (continue each slot's sample stream), an int ``s`` (slot ``i``
                gets ``s + i``), or a list of per-slot seeds (``None`` entries continue).
            options: ``{"reset_mask": bool array (num_envs,)}`` to reset only some slots
                (used with ``autoreset_mode=DISABLED``); ``{"sample_index": int array
                (num_envs,)}`` to start the reset slots on those task samples instead of
                seeded draws (evaluation on a fixed set, or several slots on one prompt);
                later autoresets draw from the seeded streams as usual.
        """
        N = self.num_envs
        mask, pinned = reset_options(options, N, len(self.task))
        slots = np.flatnonzero(mask)
        seeds = per_slot_seeds(seed, N)
        self._streams.seed(mask, seeds)
        if is_int(seed):
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(int(seed))
        kept = ~mask  # nothing is appended to these: an empty new_span at their end
        self._span_np[kept, 0] = self._span_np[kept, 1]
        infos: dict[str, Any] = {}
        self._refill(slots, infos, pinned)
        self._pending[slots] = False
        self._started = True
        self.calls += 1
        self._push_span()
        return self._observe(), infos

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Append one token to every slot; score and (auto)reset the slots that finish."""
        if not self._started:
            raise RuntimeError("call reset() before step()")
        self.calls += 1
        reset_now = self._pending.nonzero()[0]  # (the method: np.flatnonzero adds a ravel and a wrapper)
        if self.autoreset_mode is AutoresetMode.DISABLED and reset_now.size:
            raise ValueError(
                f"slots {reset_now.tolist()} have finished and autoreset_mode is DISABLED: "
                "call reset(options={'reset_mask': mask}) for them before stepping"
            )
        host_actions, device_actions = check_actions(
            actions, self.num_envs, self.vocab_size, self.device, self._views is not None, self.tokenizer
        )
        L = self.window

        # Hot path: one token per slot, all slots at once. The host knows every slot's
        # position and now its action, so it decides who finished with no device sync;
        # the buffers get three writes at flat (row * L + column) indices.
        span = self._span_np
        pos = np.minimum(span[:, 1], L - 1)  # L only in slots about to reset
        self._put_tokens(self._row_starts + pos, host_actions, agent=True, device_tokens=device_actions)
        span[:, 0], span[:, 1] = pos, pos + 1  # in place: the CPU tensor shares it
        flags = np.empty((2, self.num_envs), dtype=bool)  # terminated, truncated
        if len(self._stop_array) == 1:
            np.equal(host_actions, self._stop_array[0], out=flags[0])
        else:
            flags[0] = np.isin(host_actions, self._stop_array)
        np.greater_equal(span[:, 1], L, out=flags[1])
        flags[1] &= ~flags[0]
        if reset_now.size:  # NEXT_STEP: these slots reset now; their action is ignored
            flags[:, reset_now] = False
        if self.multi_turn:  # a stop token ends the agent's turn, not the episode
            turn_ended = flags[0].nonzero()[0]
            flags[0] = False
            if turn_ended.size:
                self._user_turns(turn_ended, flags)
        done = flags[0] | flags[1]
        finished = done.nonzero()[0]

        rewards = np.zeros(self.num_envs, dtype=np.float64)
        infos: dict[str, Any] = {}
        final_info: dict[str, Any] = {}
        if finished.size:
            rewards[finished] = self._score(finished, final_info, flags[0][finished])
        if self.autoreset_mode is AutoresetMode.NEXT_STEP:
            infos.update(final_info)
            if reset_now.size:
                self._refill(reset_now, infos)
            self._pending = done
        elif self.autoreset_mode is AutoresetMode.SAME_STEP:
            if finished.size:
                infos["final_obs"], infos["_final_obs"] = self._final_obs(finished)
                infos["final_info"], infos["_final_info"] = final_info, slot_mask(finished, self.num_envs)
                self._refill(finished, infos)
        else:
            infos.update(final_info)
            self._pending = done
        self._push_span()
        return (self._observe(), *self._step_outputs(rewards, flags), infos)

    # ------------------------------------------------------------------ internals

    def _refill(self, slots: np.ndarray, infos: dict[str, Any], samples: np.ndarray | None = None) -> None:
        """Start a new episode in ``slots``: draw samples (unless given), write their prompts."""
        samples = self._streams.next(slots, len(self.task), samples)
        self._sample[slots] = samples
        if self.multi_turn:
            self._turn_start[slots] = self.prompt_tokens
            for slot, j in zip(slots, samples):
                self._dialogues[slot] = self.task.new_dialogue(self.task.samples[j])
        P, dev = self.prompt_tokens, self.device
        # Gather the new rows' prompts and their masks (by prompt length) from tables on
        # the host, then send each buffer's rows in one copy.
        table = self._prompts
        table_rows = table.rows(samples)
        lengths = table.lengths[table_rows]
        self._prompt_len_np[slots], self._prompt_truncated[slots] = lengths, table.truncated[table_rows]
        self._span_np[slots, 0], self._span_np[slots, 1] = P - lengths, P
        masks = self._prompt_masks[lengths]
        if self._views is not None:
            ids, attn, agent = self._views
            ids[slots, :P], ids[slots, P:] = table.tokens[table_rows], self.tokenizer.pad_token_id
            attn[slots], agent[slots] = masks, 0
        else:
            rows = np.full((len(slots), self.window), self.tokenizer.pad_token_id, dtype=np.int64)
            rows[:, :P] = table.tokens[table_rows]
            s = torch.as_tensor(slots, device=dev)
            self._ids.index_copy_(0, s, torch.from_numpy(rows).to(dev))
            self._attn.index_copy_(0, s, torch.from_numpy(masks).to(dev))
            self._agent.index_fill_(0, s, 0)
        put_info(infos, "sample_index", slots, samples, slot_mask(slots, self.num_envs))

    def _score(self, slots: np.ndarray, infos: dict[str, Any], terminated: np.ndarray) -> np.ndarray:
        """Decode and score the responses of finished ``slots`` in one task call."""
        P = self.prompt_tokens
        lengths = self._span_np[slots, 1] - P
        # A stop token is the episode's end marker, not part of the response text.
        keep = lengths if self.multi_turn else lengths - terminated
        rows = self._host_rows(slots, P, P + int(keep.max()))
        responses = decode_rows(self.tokenizer, rows, keep)
        sample_ids = self._sample[slots]
        ids_list = sample_ids.tolist()
        samples: list[Sample] = [self.task.samples[j] for j in ids_list]
        if self.multi_turn:
            scores = self.task.score(responses, samples, [self._dialogues[i] for i in slots])
        else:
            scores = self.task.score(responses, samples)
        rewards = np.asarray(scores.rewards, dtype=np.float64)
        if rewards.shape != (len(slots),) or not np.isfinite(rewards).all():
            raise ValueError(
                f"task {self.task.name!r} returned rewards {rewards!r} for {len(slots)} "
                "responses; a task must return one finite float per response"
            )
        mask = slot_mask(slots, self.num_envs)
        put_info(infos, "prompt", slots, self._encoded.texts(ids_list), mask)
        put_info(infos, "response", slots, responses, mask)
        put_info(infos, "references", slots, [x.references for x in samples], mask)
        put_info(infos, "sample_index", slots, sample_ids, mask)
        put_info(infos, "prompt_truncated", slots, self._prompt_truncated[slots], mask)
        metrics: dict[str, Any] = {}
        for name, values in scores.metrics.items():
            put_info(metrics, name, slots, np.asarray(values, dtype=np.float64), mask)
        infos["metrics"], infos["_metrics"] = metrics, mask.copy()
        return rewards

    def _user_turns(self, slots: np.ndarray, flags: np.ndarray) -> None:
        """Let the simulated user answer every turn that ended in this step, in one call.

        Each reply's tokens go after the agent's stop token (``agent_mask`` 0) and extend
        ``new_span``. A dialogue the user declares over is terminated; one whose reply
        would leave no room for the agent's next token is truncated.
        """
        L = self.window
        ends = self._span_np[slots, 1].copy()  # one past each agent's stop token
        rows = self._host_rows(slots, 0, L)
        turns = self.tokenizer.decode_batch(
            [row[start : end - 1].tolist() for row, start, end in zip(rows, self._turn_start[slots], ends)]
        )
        replies = self.task.user_replies([self._dialogues[i] for i in slots], turns)
        reply_ids = self.tokenizer.encode_batch([text for text, _ in replies])
        over = np.array([o for _, o in replies], dtype=bool)
        lengths = np.array([len(ids) for ids in reply_ids], dtype=np.int64)
        stops = ends + lengths
        fits = stops <= L
        flags[0, slots[over]] = True
        flags[1, slots[~over & (stops >= L)]] = True
        if fits.any():  # write every reply that fits with one scatter per buffer
            width = int(lengths[fits].max())
            padded = np.zeros((len(slots), width), dtype=np.int64)
            for row, ids in enumerate(reply_ids):
                padded[row, : min(len(ids), width)] = ids[:width]
            cols = ends[:, None] + np.arange(width)  # (k, width)
            keep = (np.arange(width) < lengths[:, None]) & fits[:, None]
            self._put_tokens((slots[:, None] * L + cols)[keep], padded[keep], agent=False)
            self._span_np[slots[fits], 1] = stops[fits]
            self._turn_start[slots[fits]] = stops[fits]

    def _put_tokens(
        self, flat: np.ndarray, tokens: np.ndarray, *, agent: bool, device_tokens: torch.Tensor | None = None
    ) -> None:
        """Write ``tokens`` at the flat (row * L + column) indices ``flat`` of the window
        and mark them attended, and (``agent``) as the agent's. ``device_tokens``: the
        same tokens already on the device, saving their copy there."""
        if self._views is not None:
            ids, attn, agent_mask = self._views
            ids.reshape(-1)[flat] = tokens
            attn.reshape(-1)[flat] = 1
            if agent:
                agent_mask.reshape(-1)[flat] = 1
            return
        index = torch.from_numpy(flat).to(self.device)
        if device_tokens is None:
            device_tokens = torch.from_numpy(tokens).to(self.device)
        self._ids.view(-1).index_copy_(0, index, device_tokens)
        self._attn.view(-1).index_fill_(0, index, 1)
        if agent:
            self._agent.view(-1).index_fill_(0, index, 1)

    def _host_rows(self, slots: np.ndarray, start: int, stop: int) -> np.ndarray:
        """``input_ids[slots, start:stop]`` as a numpy array (a copy)."""
        if self._views is not None:
            return self._views[0][slots, start:stop]
        return self._ids[torch.as_tensor(slots, device=self.device), start:stop].cpu().numpy()

    def _state(self) -> dict[str, torch.Tensor]:
        """The observation of every slot, as the env's own tensors (not copies)."""
        return {
            "input_ids": self._ids,
            "attention_mask": self._attn,
            "agent_mask": self._agent,
            "new_span": self._span,
        }

    def _observe(self) -> dict[str, Any]:
        if self.output == "numpy" and self.device.type == "cpu":
            if self._read_only is None:  # numpy views of the buffers, made once
                self._read_only = {k: v.numpy() for k, v in self._state().items()}
                for view in self._read_only.values():
                    view.flags.writeable = False
            if self.copy:
                return {k: v.copy() for k, v in self._read_only.items()}
            return dict(self._read_only)
        return {k: self._out(v) for k, v in self._state().items()}

    def _out(self, tensor: torch.Tensor) -> Any:
        if self.output == "torch":
            return tensor.clone() if self.copy else tensor
        return tensor.cpu().numpy()

    def _final_obs(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-slot observations of the finished ``slots``, before they reset."""
        self._push_span()
        s = torch.as_tensor(slots, device=self.device)
        rows = {k: v[s] for k, v in self._state().items()}
        if self.output == "numpy":
            rows = {k: v.cpu().numpy() for k, v in rows.items()}
        final = np.full(self.num_envs, None, dtype=object)
        for j, slot in enumerate(slots):
            final[slot] = {k: v[j] for k, v in rows.items()}
        return final, slot_mask(slots, self.num_envs)

    def _step_outputs(self, rewards: np.ndarray, flags: np.ndarray) -> tuple[Any, Any, Any]:
        if self.output == "torch":
            r = (
                self._zero_rewards.clone()
                if not rewards.any()
                else torch.as_tensor(rewards, dtype=torch.float32, device=self.device)
            )
            done = torch.from_numpy(flags).to(self.device)
            return r, done[0], done[1]
        return rewards, flags[0], flags[1]  # views of this step's own array

    def _push_span(self) -> None:
        """Bring the device copy of ``new_span`` up to date (a no-op on CPU: shared memory)."""
        if self._views is None:
            self._span.copy_(torch.from_numpy(self._span_np), non_blocking=True)

    @property
    def num_truncated_prompts(self) -> int:
        """How many of the task's prompts are longer than the window (encodes them all)."""
        return int((self._encoded.lengths() > self.prompt_tokens).sum())

    def set_sample_pool(self, samples: Sequence[int] | None) -> None:
        """Draw later episodes only from the task samples ``samples`` (distinct indices; e.g.
        a training split without its validation part), by the same seeded streams; ``None``
        draws from all again. Pinned ``sample_index`` resets may still name any sample."""
        pool = None if samples is None else np.asarray(samples)
        n = len(self.task)
        if pool is not None and not (
            pool.ndim == 1
            and len(pool)
            and np.issubdtype(pool.dtype, np.integer)
            and pool.min() >= 0
            and pool.max() < n
            and len(np.unique(pool)) == len(pool)
        ):
            raise ValueError(f"sample pool {samples!r} must be distinct int indices in [0, {n}), at least one")
        self._streams.pool = None if pool is None else pool.astype(np.int64)

    # ------------------------------------------------------------------ rendering

    def render(self) -> tuple[str, ...] | None:
        """With ``render_mode="ansi"``: each slot's prompt and response so far, as text."""
        if self.render_mode is None:
            gym.logger.warn(f"render() called on {self.env_id} without render_mode='ansi'")
            return None
        return tuple(self.render_slot(i) for i in range(self.num_envs))

    def render_slot(self, slot: int) -> str:
        """Slot ``slot``'s prompt and response so far, as text."""
        P = self.prompt_tokens
        start, rlen = P - int(self._prompt_len_np[slot]), int(self._span_np[slot, 1]) - P
        ids = self._ids[slot].tolist()
        prompt, response = self.tokenizer.decode_batch([ids[start:P], ids[P : P + rlen]])
        return f"{prompt}\n--- response ({rlen}/{self.max_new_tokens} tokens) ---\n{response}\n"

    def __repr__(self) -> str:
        return (
            f"TextVectorEnv({self.env_id}, num_envs={self.num_envs}, task={self.task.name!r}, "
            f"tokenizer={self.tokenizer.name!r}, window={self.prompt_tokens}+{self.max_new_tokens}, "
            f"device={self.device}, autoreset_mode={self.autoreset_mode.name})"
        )


# ---------------------------------------------------------------------- helpers


@functools.cache
def _env_arguments() -> tuple[str, ...]:
    """The names ``TextVectorEnv`` takes itself, for the task's unknown-argument message."""
    params = inspect.signature(TextVectorEnv.__init__).parameters
    return tuple(sorted(n for n, p in params.items() if n != "self" and p.kind is not p.VAR_KEYWORD))
