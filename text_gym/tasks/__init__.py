"""Task families: each module holds one family's data loading, prompt format and scorer.

``TASKS`` maps a task name to its class; :func:`make_task` builds one from a name.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from text_gym.tasks.base import MultiTurnTask, Sample, Scores, Task
from text_gym.tasks.code import CodeTask
from text_gym.tasks.dialogue import DialogueTask
from text_gym.tasks.goal_dialogue import GuessNumberTask
from text_gym.tasks.summarization import SummarizationTask
from text_gym.tasks.translation import TranslationTask

TASKS: dict[str, type[Task]] = {
    "translation": TranslationTask,
    "summarization": SummarizationTask,
    "dialogue": DialogueTask,
    "goal_dialogue": GuessNumberTask,
    "code": CodeTask,
}
_BUILT: OrderedDict[str, Task] = OrderedDict()  # the last few tasks built by name
_KEEP = 8


def make_task(
    task: str | Task, env_id: str = "TextVectorEnv", *, env_args: Sequence[str] = (), chat: bool = False, **kwargs: Any
) -> Task:
    """Build a task from its name (``TASKS``) and arguments, or pass a ``Task`` through.

    ``env_id`` and ``env_args`` (the names the calling env takes itself) only serve the
    message about unknown arguments (:meth:`Task.check_kwargs`). ``chat``: the env shows
    the prompts through a chat template, so the task class's ``chat_defaults`` (where it
    has them, e.g. ``CodeTask``'s ``answer_format="markdown"``) fill the arguments not
    given; a built ``Task`` keeps its own.

    Raises:
        ValueError: unknown task name, or unknown arguments (the valid ones are listed).
    """
    if isinstance(task, Task):
        if kwargs:
            raise ValueError(
                f"task arguments {sorted(kwargs)} were given with an already built task "
                f"{task!r}; pass them to the task's constructor instead"
            )
        return task
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not known; choose one of {sorted(TASKS)}")
    cls = TASKS[task]
    if chat:
        kwargs = {**getattr(cls, "chat_defaults", {}), **kwargs}
    cls.check_kwargs(env_id, kwargs, env_args)
    # Tasks are read-only once built, so envs with the same arguments share one: a
    # vector of single envs (or a test suite) loads and tokenizes the data once.
    key = f"{task}:{sorted(kwargs.items())!r}"
    if key not in _BUILT:
        _BUILT[key] = cls(**kwargs)
        while len(_BUILT) > _KEEP:
            _BUILT.popitem(last=False)
    _BUILT.move_to_end(key)
    return _BUILT[key]


__all__ = [
    "TASKS",
    "CodeTask",
    "DialogueTask",
    "GuessNumberTask",
    "MultiTurnTask",
    "Sample",
    "Scores",
    "SummarizationTask",
    "Task",
    "TranslationTask",
    "make_task",
]
