"""TRL adapter: a text_gym env's task as a prompt dataset and a reward function.

TRL's trainers (``GRPOTrainer``, ``RLOOTrainer``) generate whole completions and score
them with reward functions ``f(prompts, completions, **columns) -> list[float | None]``.
This module gives them a text_gym env's task:

* :func:`prompt_dataset`: one row per sample of the env's task, with the prompt (plain
  text, or TRL's conversational form) and the columns the reward reads.
* :func:`reward_function`: a callable with TRL's reward signature that scores every
  completion of a call in one batched call of the task's own scorer (generated code runs
  in the sandbox, as in the env), giving the env's final reward for the same text.

Nothing here needs TRL itself: the reward function serves any agent that writes whole
completions (``model.generate``, vLLM). The module needs the ``datasets`` package
(``pip install 'text_gym[trl]'``). See docs/adapters/trl.md.

Example:
    >>> dataset = prompt_dataset("TextTranslate-v0", split="test", max_samples=2)
    >>> reward = reward_function("TextTranslate-v0", split="test", max_samples=2)
    >>> dataset[0]["prompt"].endswith("Actions:"), reward.__name__
    (True, 'TextTranslate-v0')
    >>> reward(completions=[" " + dataset[0]["references"][0], " I_WALK"], sample_index=[0, 0])
    [1.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

try:
    import datasets
except ImportError as err:  # pragma: no cover - depends on the install
    raise ImportError(
        "text_gym.adapters.trl needs the Hugging Face `datasets` package: pip install 'text_gym[trl]'"
    ) from err

from text_gym.prompt_table import chat_messages
from text_gym.tasks.base import MultiTurnTask, Sample, Task
from text_gym.vector_env import TextVectorEnv


def _build_env(env_id: str, env_kwargs: dict[str, Any]) -> TextVectorEnv:
    """The one-slot vector env under ``gym.make(env_id, **env_kwargs)``: its task, data
    split and budget are the ones an agent stepping that env meets."""
    env = gym.make(env_id, disable_env_checker=True, **env_kwargs)
    vector = getattr(env.unwrapped, "vector", None)
    if not isinstance(vector, TextVectorEnv):
        raise ValueError(f"env_id={env_id!r} is not a text_gym env; choose one of text_gym.env_ids()")
    return vector


def prompt_dataset(
    env_id: str, split: str | None = None, chat_template: bool = False, **env_kwargs: Any
) -> datasets.Dataset:
    """One row per sample of an env's task, in TRL's prompt-dataset format.

    The env is built as ``gym.make(env_id, split=split, **env_kwargs)``, so the task, its
    data and split are exactly the env's; pass the same arguments to
    :func:`reward_function`. Prompts are the task's own text, independent of any
    tokenizer.

    Columns:

    * ``prompt``: the prompt text (``chat_template=False``), or TRL's conversational
      form (``True``): a list of ``{"role", "content"}`` messages, the task's
      ``sample.extra["messages"]`` where it has them (a dialogue history), else one user
      message with the prompt text. TRL renders it with the trained model's template.
    * ``sample_index``: the sample's index in the task, the env's
      ``reset(options={"sample_index": ...})``; the reward function scores by it.
    * ``references``: the sample's reference responses (a list of strings).
    * ``env_id``: ``env_id`` as given; a reward function returns None (not applicable)
      for rows of another env, so datasets of several envs can be concatenated and
      trained with one reward function each.

    Args:
        env_id: a registered text_gym id (``text_gym.env_ids()``), bare or namespaced.
        split: the task's data split; ``None`` keeps the env's default (``"train"``, or
            ``"test"`` for HumanEval, which has no other).
        chat_template: prompts as chat messages instead of plain text.
        **env_kwargs: the env's arguments (task arguments such as ``scan_split=``).

    Returns:
        A ``datasets.Dataset`` with ``len(task)`` rows.

    Raises:
        ValueError: ``chat_template`` is not a bool, or the env rejects the arguments
            (an unknown argument or split; the message lists the valid ones).
    """
    if not isinstance(chat_template, (bool, np.bool_)):
        raise ValueError(f"chat_template={chat_template!r} must be True (chat messages) or False (plain text)")
    if split is not None:
        env_kwargs["split"] = split
    samples = _build_env(env_id, env_kwargs).task.samples
    if chat_template:
        prompts: list[Any] = [[dict(m) for m in chat_messages(s)] for s in samples]
    else:
        prompts = [s.prompt for s in samples]
    return datasets.Dataset.from_dict(
        {
            "prompt": prompts,
            "sample_index": list(range(len(samples))),
            "references": [list(s.references) for s in samples],
            "env_id": [env_id] * len(samples),
        }
    )


def reward_function(env_id: str, *, check_rows: bool = True, **env_kwargs: Any) -> EnvReward:
    """A TRL reward function that gives the env's final reward to whole completions.

    The env is built as ``gym.make(env_id, **env_kwargs)``; build the prompts with
    :func:`prompt_dataset` and the same arguments. See :class:`EnvReward` for what it
    scores and how.

    Args:
        env_id: a registered text_gym id (``text_gym.env_ids()``), bare or namespaced.
        check_rows: check each row's prompt and references, where given, against its
            sample's (see :class:`EnvReward`); ``False`` for prompts formatted by other
            code.
        **env_kwargs: the env's arguments, ``split=`` included.

    Returns:
        An :class:`EnvReward`, named (``__name__``) after the bare env id, which TRL
        logs its rewards under (``rewards/TextTranslate-v0/mean``).
    """
    env = _build_env(env_id, env_kwargs)
    return EnvReward(env_id, env.task, max_new_tokens=env.max_new_tokens, check_rows=check_rows)


class EnvReward:
    """Scores whole completions as the env scores the episode that writes them.

    Called as TRL calls reward functions, ``reward(prompts=..., completions=...,
    completion_ids=..., sample_index=..., **other_columns)``, of which it needs only
    ``completions`` and ``sample_index``: ``reward(completions=texts,
    sample_index=indices)`` scores ``model.generate`` or vLLM outputs. It returns one
    float per completion, or None (not applicable) for a row whose ``env_id`` column
    names another env or whose ``sample_index`` is None.

    * A completion is its text: a string, or TRL's conversational form, a list of
      messages holding one assistant message (its content is the text). That text is
      the response the env decodes from the agent's tokens before the stop token (TRL
      drops the EOS when it decodes); for those tokens the env's final reward equals
      this function's value exactly: both are one call of the task's scorer on the same
      strings, in float64. All the rows of a call go to the scorer in one batch (code
      runs in the sandbox, in parallel).
    * Budget: the env stops a response after ``max_new_tokens`` tokens of its
      tokenizer; this function sees text, not the env's tokens, so it scores a longer
      completion whole. To train on the env's rewards, keep completions within the
      budget (TRL's ``max_completion_length`` at most ``reward.max_new_tokens`` when
      the model uses the env's tokenizer).
    * Multi-turn tasks (``TextDialogGoal-v0``): a completion is the agent's first turn,
      valued as the env values a dialogue that ends after it: the task's user answers
      the turn and the task scores the dialogue (given the turn as its response), as
      the env does when that reply ends the dialogue (a correct guess, or
      ``max_turns=1``) or leaves no room for another turn (truncated). So a wrong first
      guess with turns left scores as a lost dialogue, ``-max_turns * turn_cost``;
      ``max_turns=1`` makes it a one-turn game.
    * Checks (``check_rows``): a given prompt must be its sample's (the text, or the
      chat messages :func:`prompt_dataset` writes), and given ``references`` the
      sample's, so a dataset of another split or task fails with a ``ValueError``
      instead of being scored against the wrong samples.
    * Metrics: given TRL's ``log_metric`` keyword, the mean of each of the task's
      metrics over the call is logged as ``<__name__>/<metric>``.

    Args:
        env_id: the env's id, as given to :func:`reward_function`.
        task: the env's task.
        max_new_tokens: the env's response budget, in its tokenizer's tokens.
        check_rows: check prompts and references where given (see above).

    Attributes:
        __name__: the bare env id; TRL logs the rewards under it. Set another name to
            tell two reward functions of one env apart.
    """

    def __init__(self, env_id: str, task: Task, *, max_new_tokens: int, check_rows: bool = True) -> None:
        if not isinstance(check_rows, (bool, np.bool_)):
            raise ValueError(f"check_rows={check_rows!r} must be True or False")
        self.env_id, self.task, self.max_new_tokens, self.check_rows = env_id, task, max_new_tokens, check_rows
        self.__name__ = _bare(env_id)

    def __call__(
        self,
        completions: Sequence[Any],
        sample_index: Sequence[int | None] | None = None,
        prompts: Sequence[Any] | None = None,
        **columns: Any,
    ) -> list[float | None]:
        """The rewards of ``completions`` (see the class docstring); other keywords that
        TRL passes (``completion_ids``, ``trainer_state``, dataset columns) are ignored."""
        rows = self._rows(completions, sample_index, prompts, columns.get("env_id"))
        rewards: list[float | None] = [None] * len(completions)
        if not rows:
            return rewards
        samples = [self.task.samples[sample_index[i]] for i in rows]
        if self.check_rows:
            self._check(rows, sample_index, prompts, columns.get("references"))
        scores = self._score([completion_text(completions[i], i) for i in rows], samples)
        for i, value in zip(rows, np.asarray(scores.rewards, dtype=np.float64).tolist()):
            rewards[i] = value
        log_metric: Callable[[str, float], None] | None = columns.get("log_metric")
        if callable(log_metric):
            for name, values in scores.metrics.items():
                log_metric(f"{self.__name__}/{name}", float(np.mean(values)))
        return rewards

    def _rows(
        self, completions: Sequence[Any], sample_index: Any, prompts: Any, env_ids: Sequence[Any] | None
    ) -> list[int]:
        """The rows to score: those with a sample index and of this env; every index is
        checked to be a sample of the task."""
        n = len(completions)
        if sample_index is None:
            raise ValueError(
                f"{self.__name__} reward needs sample_index= (the task sample of each completion): build "
                f"the prompts with prompt_dataset({self.env_id!r}, ...), whose sample_index column TRL "
                "passes, or pass sample_index=[...] yourself"
            )
        for name, column in (("sample_index", sample_index), ("prompts", prompts), ("env_id", env_ids)):
            if column is not None and len(column) != n:
                raise ValueError(f"{name} has {len(column)} entries for {n} completions; give one per completion")
        mine = _bare(self.env_id)
        rows = [i for i in range(n) if sample_index[i] is not None and (env_ids is None or _bare(env_ids[i]) == mine)]
        for i in rows:
            j = sample_index[i]
            if isinstance(j, bool) or not isinstance(j, (int, np.integer)) or not 0 <= j < len(self.task):
                raise ValueError(
                    f"sample_index[{i}]={j!r} is not a sample of {self.env_id} (ints in [0, {len(self.task)})); "
                    "build the dataset with prompt_dataset() and the reward function's arguments"
                )
        return rows

    def _check(self, rows: list[int], sample_index: Sequence[int], prompts: Any, references: Any) -> None:
        """Raise ``ValueError`` at the first row whose prompt or references are not its sample's."""
        hint = (
            f"build the dataset with prompt_dataset({self.env_id!r}, ...) and the arguments given to "
            "reward_function (the same split and task arguments), or pass check_rows=False for "
            "prompts formatted by other code"
        )
        for i in rows:
            sample = self.task.samples[sample_index[i]]
            if prompts is not None and not _prompt_matches(prompts[i], sample):
                raise ValueError(
                    f"row {i}: prompt {prompts[i]!r:.100} is not the prompt of sample {sample_index[i]} "
                    f"of {self.env_id} ({sample.prompt!r:.100}); {hint}"
                )
            if references is not None and list(references[i]) != list(sample.references):
                raise ValueError(
                    f"row {i}: references {list(references[i])!r:.100} are not those of sample "
                    f"{sample_index[i]} of {self.env_id} ({list(sample.references)!r:.100}); {hint}"
                )

    def _score(self, texts: list[str], samples: list[Sample]) -> Any:
        """One call of the task's scorer; a multi-turn task's dialogues end after one turn."""
        if isinstance(self.task, MultiTurnTask):
            dialogues = [self.task.new_dialogue(s) for s in samples]
            self.task.user_replies(dialogues, texts)
            return self.task.score(texts, samples, dialogues)
        return self.task.score(texts, samples)

    def __repr__(self) -> str:
        return f"EnvReward({self.env_id!r}, task={self.task.name!r}, samples={len(self.task)})"


def completion_text(completion: Any, row: int = 0) -> str:
    """The text of one completion: a string, or the content of the one assistant message
    of TRL's conversational form (``[{"role": "assistant", "content": "..."}]``).

    Raises:
        ValueError: anything else (``row`` is named in the message).
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and all(isinstance(m, Mapping) for m in completion):
        contents = [m.get("content") for m in completion if m.get("role") == "assistant"]
        if len(contents) == 1 and isinstance(contents[0], str):
            return contents[0]
    raise ValueError(
        f"completion {row} ({completion!r:.100}) is neither a string nor a list of messages with one "
        "assistant message of text content; pass the generated text"
    )


def _prompt_matches(prompt: Any, sample: Sample) -> bool:
    """Whether ``prompt`` is ``sample``'s prompt text or its chat messages."""
    if isinstance(prompt, str):
        return prompt == sample.prompt
    messages = chat_messages(sample)
    return (
        isinstance(prompt, (list, tuple))
        and len(prompt) == len(messages)
        and all(
            isinstance(m, Mapping) and m.get("role") == e["role"] and m.get("content") == e["content"]
            for m, e in zip(prompt, messages)
        )
    )


def _bare(env_id: Any) -> str:
    """An env id without the ``text_gym/`` namespace."""
    return str(env_id).removeprefix("text_gym/")
