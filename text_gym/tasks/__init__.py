"""Task families: each module holds one family's data loading, prompt format and scorer.

``TASKS`` maps a task name to its class; :func:`make_task` builds one from a name.
"""

from __future__ import annotations

from typing import Any

from text_gym.tasks.base import MultiTurnTask, Sample, Scores, Task
from text_gym.tasks.goal_dialogue import GuessNumberTask
from text_gym.tasks.translation import TranslationTask

TASKS: dict[str, type[Task]] = {
    "translation": TranslationTask,
    "goal_dialogue": GuessNumberTask,
}


def make_task(task: str | Task, env_id: str = "TextVectorEnv", **kwargs: Any) -> Task:
    """Build a task from its name (``TASKS``) and arguments, or pass a ``Task`` through.

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
    cls.check_kwargs(env_id, kwargs)
    return cls(**kwargs)


__all__ = [
    "TASKS",
    "GuessNumberTask",
    "MultiTurnTask",
    "Sample",
    "Scores",
    "Task",
    "TranslationTask",
    "make_task",
]
