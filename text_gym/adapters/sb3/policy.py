"""A Stable-Baselines3 actor-critic policy whose actor is a Hugging Face causal language model.

:class:`LMActorCriticPolicy` plugs into SB3's own, unmodified ``PPO`` and ``A2C``:

    PPO(LMActorCriticPolicy, venv, policy_kwargs={"model": "tiny"})

The action logits are the LM's next-token logits at each observation's last real token,
cut to the action space; the value is a linear head on the LM's last hidden state there.
The observations are text_gym's token windows (see docs/concepts.md); the policy reads the
ids as integers and has no MLP extractor. Rollout and ``predict`` actions are drawn from
the same distribution as SB3's ``Categorical`` over these logits, by inverse CDF
(:func:`~text_gym.rollout.sample_categorical`), which is much faster over a vocabulary of
tens of thousands of tokens; training uses SB3's distribution (log-probs, entropy).

Three paths compute the LM's outputs (see :mod:`text_gym.adapters.sb3.lm_window`):

* rollouts (``forward``, which SB3 calls once per step, in order, without gradients) keep
  a KV cache per env slot fed from each observation's ``new_span``, so collecting costs
  one forward per token. The cache checks every batch: a slot whose observation does
  not continue what the cache holds is recomputed from its whole window, and so is
  every slot after the weights changed (``train()`` between rollouts);
* ``predict``/``get_distribution`` keep a second cache of their own, so an evaluation in
  the middle of training leaves the rollout's alone;
* ``evaluate_actions`` (training) runs each minibatch's windows in one forward pass, with
  gradients; so does every call made with gradients on, and ``predict_values`` for a
  batch that does not continue the rollout's cache (the bootstrap value of a truncated
  episode).

``cache=False`` recomputes the whole window at every step instead (the baseline of
``benchmarks/sb3_rollout.py``). The docs page is docs/adapters/sb3_policy.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from gymnasium import spaces
from torch import nn

from text_gym.adapters.sb3.lm_window import (
    EXACT_FLOAT_IDS,
    CachedWindow,
    prompt_tokens_of,
    token_observations,
    window_outputs,
)
from text_gym.rollout import sample_categorical, tiny_model
from text_gym.rollout.runner import check_model
from text_gym.tokenizers import load_tokenizer

try:
    from stable_baselines3.common.distributions import Distribution
    from stable_baselines3.common.policies import ActorCriticPolicy
except ImportError as error:  # the adapter's one dependency beyond text_gym's own
    raise ImportError("text_gym.adapters.sb3 needs Stable-Baselines3: pip install 'text_gym[sb3]'") from error

OBSERVATION_KEYS = ("input_ids", "attention_mask", "new_span", "agent_mask")


class LMPolicyMixin:
    """The language-model parts of :class:`LMActorCriticPolicy`, shared with
    :class:`~text_gym.adapters.sb3.maskable_policy.MaskableLMActorCriticPolicy`: it goes
    before an SB3 actor-critic policy class in the bases, and replaces its networks
    (``_build``) with the LM and a value head. See :class:`LMActorCriticPolicy` for the
    arguments."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Any,
        *,
        model: Any = None,
        init_from: str | os.PathLike | None = None,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer: Any = None,
        cache: bool = True,
        runner_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        check_spaces(observation_space, action_space)
        # read by _build, which the SB3 base class calls from its __init__ (a plain dict:
        # nn.Module takes no submodule before its own __init__)
        self._lm_spec = {
            "model": model,
            "init_from": init_from,
            "model_kwargs": model_kwargs,
            "tokenizer": tokenizer,
            "cache": cache,
            "runner_options": runner_options,
        }
        kwargs.setdefault("net_arch", [])  # no MLP extractor is built
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        """The LM, the value head and the optimizer over both (SB3 calls this from __init__)."""
        spec = self._lm_spec
        self.cache, self.runner_options = spec["cache"], dict(spec["runner_options"] or {})
        self.tokenizer = None if spec["tokenizer"] is None else load_tokenizer(spec["tokenizer"])
        self.lm = load_language_model(
            spec["model"], spec["init_from"], self.action_space.n, self.tokenizer, spec["model_kwargs"]
        )
        if self.cache:  # the rollout runner's checks (model type, sliding window), at construction
            check_model(self.lm, SimpleNamespace(**self._shape(1), device=next(self.lm.parameters()).device))
        width = getattr(self.lm.config, "hidden_size", None) or self.lm.get_input_embeddings().embedding_dim
        self.value_net = nn.Linear(width, 1)
        nn.init.zeros_(self.value_net.weight)  # values start at 0; the LM's own logits start the policy
        nn.init.zeros_(self.value_net.bias)
        self._windows: dict[str, CachedWindow] = {}
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _shape(self, rows: int, prompt_tokens: int = 0) -> dict[str, Any]:
        """The shape facts the rollout runner reads from an env, from the spaces."""
        return {
            "num_envs": rows,
            "prompt_tokens": prompt_tokens,
            "window": self.observation_space["input_ids"].shape[-1],
            "vocab_size": self.action_space.n,
        }

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self._lm_spec)
        return data

    def set_training_mode(self, mode: bool) -> None:
        """Eval or train mode; entering train mode (SB3's ``train()``) marks every cache
        stale, for weight updates that no parameter version records (fused optimizers).

        The LM itself stays in eval mode (dropout off): the log-probabilities a rollout
        stores and those ``evaluate_actions`` recomputes in training must come from the
        same function, or PPO's ratio is not 1 at its first epoch."""
        super().set_training_mode(mode)
        self.lm.eval()
        if mode:
            for window in self._windows.values():
                window.invalidate()

    def _lm_outputs(self, obs: dict[str, torch.Tensor], stream: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Action logits (N, actions) and last hidden states (N, d), float32.

        ``stream``: ``"rollout"`` or ``"predict"`` (that cache, rebuilt where the batch
        does not continue it), ``"values"`` (the rollout cache only where every row
        continues it), None (the whole window). With gradients on, or ``cache=False``,
        always the whole window.
        """
        obs = token_observations(obs)
        if stream is None or not self.cache or torch.is_grad_enabled():
            logits, hidden = window_outputs(self.lm, obs)
        elif stream == "values":
            window = self._windows.get("rollout")
            rows = len(obs["input_ids"])
            if window is not None and window.num_rows == rows and bool(window.continues(obs).all()):
                logits, hidden = window.feed(obs)
            else:
                logits, hidden = window_outputs(self.lm, obs)
        else:
            logits, hidden = self._window(stream, obs).feed(obs)
        return logits[:, : self.action_space.n].float(), hidden.float()

    def _window(self, stream: str, obs: dict[str, torch.Tensor]) -> CachedWindow:
        """The cache of ``stream``, new where there is none yet for this batch size and device."""
        window, rows = self._windows.get(stream), len(obs["input_ids"])
        device = next(self.lm.parameters()).device
        if window is None or window.num_rows != rows or window.device != device:
            facts = self._shape(rows, prompt_tokens_of(obs))
            window = CachedWindow(
                self.lm,
                rows,
                facts["prompt_tokens"],
                facts["window"],
                facts["vocab_size"],
                tokenizer=self.tokenizer,
                **self.runner_options,
            )
            self._windows[stream] = window
        return window

    def _action_distribution(self, logits: torch.Tensor, action_masks: Any = None) -> Distribution:
        distribution = self.action_dist.proba_distribution(action_logits=logits)
        if action_masks is not None:
            distribution.apply_masking(action_masks)
        return distribution

    def _act(
        self, obs: dict[str, torch.Tensor], deterministic: bool, action_masks: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Actions (N,), values (N, 1) and the actions' log-probabilities (N,) of a rollout step."""
        logits, hidden = self._lm_outputs(obs, "rollout")
        if action_masks is not None:
            distribution = self._action_distribution(logits, action_masks)
            actions = distribution.get_actions(deterministic=deterministic)
            return actions, self.value_net(hidden), distribution.log_prob(actions)
        log_probs = logits.log_softmax(-1)  # (N, A)
        actions = self._draw(log_probs, deterministic)
        return actions, self.value_net(hidden), log_probs.gather(1, actions[:, None])[:, 0]

    @staticmethod
    def _draw(log_probs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """One action per row of ``log_probs`` (N, A): the argmax, or a draw by inverse CDF
        (:func:`~text_gym.rollout.sample_categorical`): the same distribution as SB3's
        ``Categorical``, several times faster over a vocabulary of tens of thousands."""
        return log_probs.argmax(-1) if deterministic else sample_categorical(log_probs.exp())

    def _evaluate(
        self, obs: dict[str, torch.Tensor], actions: torch.Tensor, action_masks: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Values (B, 1), log-probabilities (B,) of ``actions`` and entropies (B,) of a
        minibatch of stored observations: one forward pass over their windows."""
        logits, hidden = self._lm_outputs(obs, None)
        distribution = self._action_distribution(logits, action_masks)
        return self.value_net(hidden), distribution.log_prob(actions.reshape(-1).long()), distribution.entropy()

    def predict_values(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Values (N, 1) of ``obs``: from the rollout's cache where every row continues it
        (the bootstrap value at the end of a rollout), else from the whole windows."""
        _, hidden = self._lm_outputs(obs, "values")
        return self.value_net(hidden)


class LMActorCriticPolicy(LMPolicyMixin, ActorCriticPolicy):
    """An SB3 ``ActorCriticPolicy`` whose actor is a causal LM and whose critic is a value
    head on the LM's last hidden state (see the module docstring for the cache).

    Build it through SB3, with the arguments below in ``policy_kwargs``:
    ``PPO(LMActorCriticPolicy, venv, policy_kwargs={"model": "tiny"})``. SB3's own
    arguments (``optimizer_class``, ``optimizer_kwargs``, ...) pass through; ``net_arch``
    and ``activation_fn`` are unused (there is no MLP).

    Args:
        observation_space: a text_gym env's observation space (a Dict with
            ``input_ids``, ``attention_mask``, ``new_span``, ``agent_mask``).
        action_space: its ``Discrete(len(tokenizer))``.
        lr_schedule: SB3's learning-rate schedule.
        model: the LM: a Hugging Face causal LM object; a hub name or model folder
            (``AutoModelForCausalLM.from_pretrained``; a run folder with a ``model/``
            subfolder is accepted); ``"tiny"`` for a small Llama sized to the action
            space (:func:`~text_gym.rollout.tiny_model`; ``model_kwargs`` such as
            ``hidden``, ``layers`` go to it). Default: the ``init_from`` checkpoint's own
            architecture, or ``"tiny"`` without one.
        init_from: a checkpoint whose weights start the policy: the model folder an
            agent writes (``runs/<run>/model``, e.g. ``agents/sft.py``), or its run
            folder. With ``model`` also given, its weights are loaded into that model.
        model_kwargs: keyword arguments of ``from_pretrained`` or ``tiny_model``.
        tokenizer: the env's tokenizer (object or name), optional: checked against the
            model's ``config.text_gym_tokenizer``, and the vocabulary of ``"tiny"``.
        cache: keep KV caches for rollouts and ``predict`` (True), or run the whole
            window at every step (False).
        runner_options: keyword arguments of :class:`~text_gym.rollout.WindowRunner`
            (``prefix_cache``, ``pack_refills``, ``merge_refills``, ``compile``).
        kwargs: SB3's ``ActorCriticPolicy`` arguments.

    Raises:
        ValueError: the spaces are not a text_gym env's; the model's vocabulary does not
            cover the action space, or it was built for another tokenizer; the rollout
            cache cannot run the model (with ``cache=True``); ``init_from`` is not a
            model folder, or its weights do not fit ``model``.
        TypeError: ``model`` is none of the accepted kinds.
    """

    def forward(self, obs: dict[str, torch.Tensor], deterministic: bool = False) -> tuple[torch.Tensor, ...]:
        """Actions (N,), values (N, 1) and log-probabilities (N,) of a rollout step."""
        return self._act(obs, deterministic)

    def evaluate_actions(
        self, obs: dict[str, torch.Tensor], actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Values (B, 1), log-probabilities (B,) and entropies (B,), with gradients."""
        return self._evaluate(obs, actions)

    def get_distribution(self, obs: dict[str, torch.Tensor]) -> Distribution:
        """The action distribution at ``obs``, through ``predict``'s own cache."""
        return self._action_distribution(self._lm_outputs(obs, "predict")[0])

    def _predict(self, observation: dict[str, torch.Tensor], deterministic: bool = False) -> torch.Tensor:
        """``predict``'s actions (N,), through its own cache."""
        return self._draw(self._lm_outputs(observation, "predict")[0].log_softmax(-1), deterministic)


# ------------------------------------------------------------------ spaces and models


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """Raise ``ValueError`` unless the spaces are a text_gym env's."""
    if not isinstance(observation_space, spaces.Dict) or not set(OBSERVATION_KEYS) <= set(observation_space.spaces):
        raise ValueError(
            f"a language-model policy reads text_gym observations (a Dict space with keys "
            f"{list(OBSERVATION_KEYS)}), not {observation_space}: train on a text_gym env "
            "(text_gym.adapters.sb3.to_vec_env, or DummyVecEnv over gym.make of a text_gym id)"
        )
    if not isinstance(action_space, spaces.Discrete):
        raise ValueError(f"a language-model policy acts with token ids, a Discrete space, not {action_space}")
    if action_space.n > EXACT_FLOAT_IDS:
        raise ValueError(
            f"the action space Discrete({action_space.n}) has token ids above 2**24, which SB3's float "
            "preprocessing of observations cannot hold exactly: use a tokenizer with fewer tokens"
        )


class _Vocabulary:
    """What :func:`~text_gym.rollout.tiny_model` reads of a tokenizer, for a vocabulary
    known only by its size (the action space)."""

    eos_token_id = pad_token_id = name = None

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


def model_folder(path: str | os.PathLike) -> Path:
    """``path`` if it holds a model (``config.json``), else its ``model/`` subfolder (a run
    folder of the agents).

    Raises:
        ValueError: neither holds a ``config.json``.
    """
    folder = Path(path)
    for candidate in (folder, folder / "model"):
        if (candidate / "config.json").is_file():
            return candidate
    raise ValueError(
        f"{str(path)!r} is not a model folder: no config.json in it or in its model/ subfolder "
        "(pass the folder an agent saved, runs/<run>/model, or its run folder)"
    )


def load_language_model(
    model: Any,
    init_from: str | os.PathLike | None,
    actions: int,
    tokenizer: Any = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Any:
    """The policy's LM from :class:`LMActorCriticPolicy`'s ``model``/``init_from``
    arguments, checked to give a logit for each of ``actions`` token ids.

    Raises:
        ValueError, TypeError: as :class:`LMActorCriticPolicy` documents.
    """
    from transformers import AutoModelForCausalLM

    kwargs = dict(model_kwargs or {})
    checkpoint = None if init_from is None else model_folder(init_from)
    if model is None and checkpoint is not None:
        lm = AutoModelForCausalLM.from_pretrained(checkpoint, **kwargs)
    else:
        lm = build_model("tiny" if model is None else model, actions, tokenizer, kwargs)
        if checkpoint is not None:
            source = AutoModelForCausalLM.from_pretrained(checkpoint)
            try:
                lm.load_state_dict(source.state_dict())
            except RuntimeError as error:
                raise ValueError(
                    f"the weights in {str(checkpoint)!r} do not fit the model given ({type(lm).__name__}): "
                    f"{error}. Leave model unset to use the checkpoint's own architecture"
                ) from error
            lm.config.text_gym_tokenizer = getattr(source.config, "text_gym_tokenizer", None)
    built_for = getattr(lm.config, "text_gym_tokenizer", None)
    if tokenizer is not None and built_for is not None and built_for != tokenizer.name:
        raise ValueError(
            f"the model was built for tokenizer {built_for!r} but the env's is {tokenizer.name!r}: "
            f"build the env with the model's tokenizer"
        )
    size = lm.config.vocab_size
    if size < actions:
        raise ValueError(
            f"the model's vocabulary ({size} tokens) is smaller than the action space Discrete({actions}): "
            "some actions would have no logit. Use a model built for the env's tokenizer ('tiny' sizes "
            "one to the action space), or build the env with the model's tokenizer (tokenizer=...)"
        )
    return lm


def build_model(model: Any, actions: int, tokenizer: Any, kwargs: dict[str, Any]) -> Any:
    """A model object as is, ``"tiny"`` sized to ``actions`` (or to ``tokenizer``), or a hub
    name or folder through ``AutoModelForCausalLM``."""
    if isinstance(model, nn.Module):
        if kwargs:
            raise ValueError(f"model_kwargs {sorted(kwargs)} apply to a model built here, not to a model object")
        return model
    if model == "tiny":
        if tokenizer is not None and len(tokenizer) != actions:
            raise ValueError(
                f"tokenizer {tokenizer.name!r} has {len(tokenizer)} tokens but the action space is "
                f"Discrete({actions}): pass the env's own tokenizer"
            )
        return tiny_model(tokenizer if tokenizer is not None else _Vocabulary(actions), **kwargs)
    if isinstance(model, (str, os.PathLike)):
        from transformers import AutoModelForCausalLM

        source = model_folder(model) if Path(model).is_dir() else model
        try:
            return AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except OSError as error:
            raise ValueError(
                f"could not load model {str(model)!r} ({error}); pass a model object, 'tiny', a model "
                "folder, or a Hugging Face hub name that is cached or reachable"
            ) from error
    raise TypeError(
        f"model={model!r} ({type(model).__name__}) is not a model: pass a Hugging Face causal LM object, "
        "a hub name or model folder, or 'tiny'"
    )
