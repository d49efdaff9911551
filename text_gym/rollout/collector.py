"""Batched LM rollouts through a TextVectorEnv: the env loop over a :class:`WindowRunner`.

:class:`RolloutCollector` samples every slot's action from the runner's next-token
logits, steps the env, and feeds the runner what is new, so each generated token costs
one forward pass with the KV cache (see :mod:`text_gym.rollout.runner` for the cache and
the forward strategies, :mod:`text_gym.rollout.sampling` for the sampler). It returns
fixed-length streams (:meth:`~RolloutCollector.collect`, a :class:`Rollout`), whole
episodes (:meth:`~RolloutCollector.collect_episodes`, :class:`Episodes`), or held-out
scores (:meth:`~RolloutCollector.evaluate`).

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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from text_gym.rollout.cache import WindowCache
from text_gym.rollout.runner import WindowRunner
from text_gym.rollout.sampling import check_sampling, sample_actions

LogitsProcessor = Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]


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
    truncated), ``sample_index`` (E,) names the task sample it answered. ``metrics``
    maps each of the task's per-episode metrics (the final step's ``info["metrics"]``:
    the reward's components, or a multi-turn task's ``success`` and ``turns``) to its
    values (E,), float32.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    agent_mask: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    sample_index: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)

    def trimmed(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The windows cut to the columns any row uses: ids and attention mask (E, T), and
        the agent mask of each next-token target (E, T-1), lined up with
        :func:`~text_gym.rollout.token_logprobs`."""
        used = self.attention_mask.bool().any(0)  # (L,)
        first, last = int(used.int().argmax()), len(used) - int(used.flip(0).int().argmax())
        ids, attn = self.input_ids[:, first:last], self.attention_mask[:, first:last].long()
        return ids, attn, self.agent_mask[:, first + 1 : last].float()


class RolloutCollector:
    """Drive a Hugging Face causal LM through a TextVectorEnv with its KV cache.

    Args:
        model: a causal LM, e.g. :func:`~text_gym.rollout.tiny_model`; the model families
            :class:`~text_gym.rollout.WindowRunner` supports.
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
        prefix_cache, pack_refills, merge_refills, compile: how the
            :class:`~text_gym.rollout.WindowRunner` runs the model (see there). The
            shared prefix's keys/values are recomputed at the first refill of each
            ``collect`` or ``collect_episodes`` call, so any change to the weights
            between calls is seen; within a call, a parameter replaced or changed in
            place with a version bump is seen, but a fused optimizer step or a write
            through ``param.data`` is not. ``compile`` pays the compile at the first
            decode step (seconds to minutes on a CPU), so it is off by default.

    Sampling draws from the collector's own ``torch.Generator`` once a ``seed`` has been
    given to :meth:`collect` or :meth:`collect_episodes` (which seed the env and it), so
    that the same seed, model and env give the same actions; before that, from torch's
    global generator.

    Raises:
        ValueError: the env is wrapped, does not use the NEXT_STEP autoreset, or gives
            numpy observations; the model does not fit the env (see
            :class:`~text_gym.rollout.WindowRunner`); invalid sampling controls.
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
        check_env(env)
        runner = WindowRunner(
            model,
            env,
            hidden=value_head is not None,
            prefix_cache=prefix_cache,
            pack_refills=pack_refills,
            merge_refills=merge_refills,
            compile=compile,
        )
        check_sampling(temperature, top_k, top_p, env.vocab_size)
        self.model, self.env, self.runner = model, env, runner
        self.temperature, self.top_k, self.top_p, self.greedy = temperature, int(top_k), top_p, greedy
        self.logits_processor, self.value_head = logits_processor, value_head
        self.generator: torch.Generator | None = None  # seeded by the first seed given
        self._obs: dict[str, torch.Tensor] | None = None  # the env's last observation
        self._last: tuple[torch.Tensor, torch.Tensor | None] | None = None  # its logits and hidden states
        self._calls = -1  # env.calls after this collector's last reset or step

    # The runner's settings, read and set through the collector as before the runner existed.
    @property
    def cache(self) -> WindowCache:
        return self.runner.cache

    @property
    def prefix_cache(self) -> bool:
        return self.runner.prefix is not None

    @property
    def merge_budget(self) -> float:
        return self.runner.merge_budget

    @property
    def pack_refills(self) -> bool:
        return self.runner.pack_refills

    @property
    def merge_refills(self) -> bool | None:
        return self.runner.merge_refills

    @merge_refills.setter
    def merge_refills(self, value: bool | None) -> None:
        self.runner.merge_refills = value

    @torch.no_grad()
    def collect(self, num_steps: int, seed: int | None = None) -> Rollout:
        """Run ``num_steps`` env steps. The first call, a ``seed``, or other code having
        stepped or reset the env since this collector's last step resets it first."""
        self.runner.refresh_prefix()  # the weights may have changed since the last call
        if self._obs is None or seed is not None or self.env.calls != self._calls:
            self._reset(seed)
        out = {k: [] for k in ("actions", "logprobs", "values", "rewards", "dones", "mask")}
        for _ in range(num_steps):
            hidden = self._last[1]  # (N, d): the state each action is taken in
            acting = ~self._done  # a slot that just finished resets now, ignoring its action
            actions, logprobs, rewards, terminated, truncated, _ = self._step()
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

    @torch.no_grad()
    def evaluate(
        self, samples: Any, metrics: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One episode on each task sample index in ``samples``; their rewards, in order.

        With ``greedy=True`` this is the usual held-out score: ``samples`` may be
        ``range(len(env.task))`` for a whole split. Runs ``collect_episodes`` on chunks of
        ``num_envs`` samples (the last chunk padded by repeating its last sample). The
        sampler is seeded per chunk; the env's sample streams are not reseeded (they
        advance by the evaluation's episodes), so a training collector on the same env
        does not start its prompts over after each evaluation.

        Args:
            samples: task sample indices.
            metrics: also return the episodes' task metrics (:attr:`Episodes.metrics`).

        Returns:
            The rewards (len(samples),); with ``metrics=True``, ``(rewards, metrics)``,
            ``metrics`` mapping each metric name to its values (len(samples),) in order.
        """
        samples = [int(j) for j in samples]
        N, dev = self.env.num_envs, self.env.device
        rewards: list[torch.Tensor] = []
        values: dict[str, list[torch.Tensor]] = {}
        for start in range(0, len(samples), N):
            chunk = samples[start : start + N]
            episodes = self._episodes(start, chunk + chunk[-1:] * (N - len(chunk)), seed_env=False)
            rewards.append(episodes.rewards[: len(chunk)])
            for name, column in episodes.metrics.items():
                values.setdefault(name, []).append(column[: len(chunk)])
        out = torch.cat(rewards) if rewards else torch.zeros(0, device=dev)
        if not metrics:
            return out
        return out, {name: torch.cat(columns) for name, columns in values.items()}

    def feed(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`WindowRunner.feed` of this collector's runner (its cache advances). A second
        model that follows the env's observations needs a runner of its own."""
        return self.runner.feed(obs)

    def _episodes(self, seed: int | None, sample_index: Any, seed_env: bool) -> Episodes:
        """``collect_episodes``; ``seed_env=False`` seeds only this collector's sampler."""
        env, N = self.env, self.env.num_envs
        self.runner.refresh_prefix()  # the weights may have changed since the last call
        options = None if sample_index is None else {"sample_index": sample_index}
        infos = self._reset(seed, options, seed_env=seed_env)
        obs = self._obs
        ids, attn, agent = obs["input_ids"].clone(), obs["attention_mask"].clone(), obs["agent_mask"].clone()
        rewards = torch.zeros(N, dtype=torch.float32, device=env.device)
        terminated_at_end = torch.zeros(N, dtype=torch.bool, device=env.device)
        finished = torch.zeros(N, dtype=torch.bool, device=env.device)
        waiting = torch.zeros(env.vocab_size, device=env.device)  # uniform over non-stop tokens
        waiting[list(env.stop_token_ids)] = float("-inf")
        # The host knows which slots finished from each step's info (the env scores every
        # finished episode and marks its slots in ``_metrics``), so the loop needs no device
        # sync, and a step where no episode ends copies nothing.
        finished_host = np.zeros(N, dtype=bool)
        metrics: dict[str, np.ndarray] = {}
        while not finished_host.all():
            _, _, reward, terminated, _, info = self._step(replace=(finished, waiting))
            scored = info.get("_metrics")
            new_host = None if scored is None else scored & ~finished_host  # episodes ending now, first time
            if new_host is None or not new_host.any():
                continue
            for name, column in info["metrics"].items():
                if not name.startswith("_"):
                    metrics.setdefault(name, np.full(N, np.nan))[new_host] = column[new_host]
            finished_host |= new_host
            new = torch.from_numpy(new_host).to(env.device)  # (N,)
            keep = new[:, None]
            ids = torch.where(keep, self._obs["input_ids"], ids)
            attn = torch.where(keep, self._obs["attention_mask"], attn)
            agent = torch.where(keep, self._obs["agent_mask"], agent)
            rewards = torch.where(new, reward.float(), rewards)
            terminated_at_end = torch.where(new, terminated, terminated_at_end)
            finished = torch.from_numpy(finished_host.copy()).to(env.device)
        index = torch.as_tensor(infos["sample_index"], device=env.device)
        self._obs = None  # the waiting slots' episodes are not the policy's: collect resets
        columns = {k: torch.as_tensor(v, dtype=torch.float32, device=env.device) for k, v in metrics.items()}
        return Episodes(ids, attn, agent, rewards, terminated_at_end, index, columns)

    def _reset(self, seed: Any, options: dict[str, Any] | None = None, seed_env: bool = True) -> dict[str, Any]:
        if seed is not None:
            self.generator = torch.Generator(self.env.device).manual_seed(int(seed))
        self._obs, infos = self.env.reset(seed=seed if seed_env else None, options=options)
        self._calls = self.env.calls
        self._last = self.runner.feed(self._obs)
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
        actions, logprobs = sample_actions(
            logits,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            greedy=self.greedy,
            generator=self.generator,
        )
        self._obs, rewards, terminated, truncated, info = self.env.step(actions)
        self._calls = self.env.calls
        self._done = terminated | truncated
        self._last = self.runner.feed(self._obs)
        return actions, logprobs, rewards, terminated, truncated, info


def check_env(env: Any) -> None:
    """Raise ``ValueError`` unless the collector can step ``env`` itself: an unwrapped
    TextVectorEnv with the NEXT_STEP autoreset and torch observations."""
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
