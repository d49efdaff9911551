"""TextDialogGoal-v0: a multi-turn, goal-oriented dialogue with a rule-based user.

The user has a hidden goal, a whole number in ``[low, high]``, and tells the agent so in
the prompt. Each agent turn is a guess that ends with a stop token (the tokenizer's
EOS); the user parses the first integer in it and replies ``Higher.``, ``Lower.``,
``Correct!`` or asks for a number, and the env appends that reply to the window. The
dialogue is over at the correct guess or after ``max_turns`` turns.

* Spaces: those of every text_gym env. ``agent_mask`` is 1 exactly on the agent's own
  tokens (its guesses and their stop tokens), 0 on the prompt and the user's replies:
  the mask to put on a policy-gradient loss. ``new_span`` after a turn covers the
  agent's stop token and the user's reply, which a KV-caching agent prefills.
* Reward, given at the dialogue's end: ``1 - turn_cost * turns`` for a won dialogue; no
  partial credit. A binary search wins within ``ceil(log2(high - low + 1))`` turns (7
  for the default 1..100), so its reward is at least ``1 - 7 * turn_cost`` (0.65). A
  dialogue that is not won scores ``-max_turns * turn_cost``, however it ended: out of
  turns, or truncated with turns left (so never ending a turn earns nothing over
  guessing). ``info["metrics"]`` holds ``success``, ``turns`` and ``invalid_turns``
  (turns with no number in them).
* Episode end: terminated when the dialogue is over; truncated when the window
  (``max_new_tokens``, by default room for ``max_turns`` turns) cannot hold the next
  reply.
* Data: generated; ``split="train"`` holds the numbers whose stable hash is not 0 mod 5,
  ``"test"`` the others. Deterministic given the seed.
* Teachers: :meth:`GuessNumberTask.demonstration` plays a scripted strategy on a sample by
  the task's own rules and returns the dialogue as the window shows it (prompt, turns,
  replies), the transcripts a supervised warm start imitates. ``"bisect"`` guesses the
  middle of the numbers still possible (the best strategy); ``"step<k>"`` guesses upward in
  steps of ``k`` until the user says lower, then upward by one (``"step10"`` on 1..100 wins
  in 10.0 turns on average over the 100 numbers and at most 19, against bisect's 5.8 and 7);
  ``"step<a>-<b>"`` plays ``"step<k>"`` with ``k`` drawn per sample from ``a..b`` by a stable
  hash, a mixture of weak strategies whose warm start holds a choice that RL can sharpen.
* Version history: v0, initial version.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from text_gym.tasks.base import MultiTurnTask, Sample, Scores, check_choice

PROMPT = (
    "Let's play a game. I am thinking of a whole number from {low} to {high}. Guess it, "
    "one number per turn; after each guess I will say higher or lower.\nAgent:"
)
REPLY = "\nUser: {text}\nAgent:"
_NUMBER = re.compile(r"-?\d+")


@dataclass
class GuessState:
    """One dialogue: the hidden number and what has happened so far."""

    secret: int
    turns: int = 0
    invalid_turns: int = 0
    success: bool = False


class GuessNumberTask(MultiTurnTask):
    """Guess the user's hidden number in as few turns as possible.

    Args:
        split: ``"train"`` or ``"test"`` (disjoint sets of hidden numbers).
        low, high: the range of hidden numbers (inclusive).
        max_turns: the dialogue ends unsuccessfully after this many agent turns.
        turn_cost: reward subtracted per agent turn.
    """

    name = "goal_dialogue"

    def __init__(
        self,
        *,
        split: str = "train",
        low: int = 1,
        high: int = 100,
        max_turns: int = 10,
        turn_cost: float = 0.05,
    ) -> None:
        check_choice("split", split, ("train", "test"))
        if not (isinstance(low, int) and isinstance(high, int) and low < high):
            raise ValueError(f"need integers low < high, got low={low!r}, high={high!r}")
        if not (
            isinstance(max_turns, int) and max_turns >= 1 and isinstance(turn_cost, (int, float)) and turn_cost >= 0
        ):
            raise ValueError(
                f"need an int max_turns >= 1 and a number turn_cost >= 0, got {max_turns!r}, {turn_cost!r}"
            )
        self._config = dict(split=split, low=low, high=high, max_turns=max_turns, turn_cost=turn_cost)
        self.low, self.high, self.max_turns, self.turn_cost = low, high, max_turns, turn_cost
        prompt = PROMPT.format(low=low, high=high)
        numbers = [n for n in range(low, high + 1) if (_stable_hash(n) % 5 == 0) == (split == "test")]
        self.samples = [Sample(prompt, (str(n),), source=str(n)) for n in numbers]

    def new_dialogue(self, sample: Sample) -> GuessState:
        return GuessState(secret=int(sample.references[0]))

    def user_replies(self, dialogues: Sequence[GuessState], turns: Sequence[str]) -> list[tuple[str, bool]]:
        replies = []
        for state, turn in zip(dialogues, turns):
            state.turns += 1
            found = _NUMBER.search(turn)
            if found is None:
                state.invalid_turns += 1
                text = "Please answer with a whole number."
            elif (guess := _number(found.group())) == state.secret:
                state.success = True
                text = "Correct!"
            else:
                text = "Higher." if guess < state.secret else "Lower."
            over = state.success or state.turns >= self.max_turns
            if over and not state.success:
                text += f" Out of turns: it was {state.secret}."
            replies.append((REPLY.format(text=text), over))
        return replies

    def score(self, responses: Sequence[str], samples: Sequence[Sample], dialogues: Sequence[GuessState]) -> Scores:
        success = np.array([d.success for d in dialogues], dtype=np.float64)
        turns = np.array([d.turns for d in dialogues], dtype=np.float64)
        invalid = np.array([d.invalid_turns for d in dialogues], dtype=np.float64)
        rewards = np.where(success > 0, 1.0 - self.turn_cost * turns, -self.turn_cost * self.max_turns)
        return Scores(rewards, {"success": success, "turns": turns, "invalid_turns": invalid})

    teachers = ("bisect", "step<k>", "step<a>-<b>")

    def demonstration(self, sample: Sample, teacher: str) -> list[tuple[str, bool]]:
        """A scripted ``teacher``'s dialogue on ``sample``, played by this task's own rules.

        ``"bisect"`` guesses the middle of the numbers still possible. ``"step<k>"`` (a
        whole ``k >= 1``, e.g. ``"step10"``) guesses upward in steps of ``k`` from
        ``low + k - 1`` (capped at ``high``) until the user says lower, then upward by one
        from the last guess the user called too low (``"step1"``: every number in order).
        ``"step<a>-<b>"`` (whole ``1 <= a <= b``, e.g. ``"step2-8"``) plays ``"step<k>"``
        with ``k`` drawn uniformly from ``a..b`` by a stable hash of the sample's secret and
        the teacher's name: the same ``k`` for a sample on every call and machine, spread
        over ``a..b`` across samples. Its prompts are all the same, so a model imitating it
        learns the first guess (``low + k - 1``, which fixes ``k``) as a mixture over ``k``.
        Each turn is the guess with a space before it, as in ``" 50"``.

        Returns:
            ``(text, is_agent)`` segments: the prompt, then each turn (``True``) and the
            user's reply as the env appends it (``False``); their concatenation is the
            window's text at the dialogue's end, given room for it.

        Raises:
            ValueError: an unknown ``teacher``, naming the teachers this task knows.

        Example:
            >>> task = GuessNumberTask(high=30)
            >>> sample = next(s for s in task.samples if s.references == ("17",))
            >>> [text for text, agent in task.demonstration(sample, "step5") if agent]
            [' 5', ' 10', ' 15', ' 20', ' 16', ' 17']
        """
        step = _teacher_step(teacher, self.teachers, sample.references[0])
        state = self.new_dialogue(sample)
        segments, over = [(sample.prompt, False)], False
        below, above = self.low - 1, self.high + 1  # the closest guesses called too low, too high
        while not over:
            if step is None:
                guess = (below + above) // 2
            else:
                guess = min(below + (step if above > self.high else 1), self.high)
            (reply, over) = self.user_replies([state], [f" {guess}"])[0]
            segments += [(f" {guess}", True), (reply, False)]
            if reply.startswith(REPLY.format(text="Higher.")):
                below = guess
            elif reply.startswith(REPLY.format(text="Lower.")):
                above = guess
        return segments

    def response_budget(self, encode: Any) -> int:
        """Room for ``max_turns`` turns: the longest reply plus 16 agent tokens each."""
        longest = max(
            len(ids)
            for ids in encode(
                [
                    REPLY.format(text=f"Lower. Out of turns: it was {-abs(self.high)}."),
                    REPLY.format(text="Please answer with a whole number."),
                ]
            )
        )
        return self.max_turns * (longest + 16)


def _teacher_step(teacher: str, known: Sequence[str], secret: str) -> int | None:
    """The step a ``"step<k>"`` or ``"step<a>-<b>"`` teacher plays on ``secret``, ``None`` for
    ``"bisect"``; a ``ValueError`` for any other name."""
    if teacher == "bisect":
        return None
    found = re.fullmatch(r"step(\d+)(?:-(\d+))?", teacher) if isinstance(teacher, str) else None
    if found is not None:
        first = int(found.group(1))
        last = first if found.group(2) is None else int(found.group(2))
        if 1 <= first <= last:
            return first + _stable_hash(f"{teacher}:{secret}") % (last - first + 1)
    raise ValueError(
        f"task 'goal_dialogue' has no scripted teacher {teacher!r}; the teachers it knows: {list(known)} "
        "(step<k> with a whole k >= 1, e.g. 'step10'; step<a>-<b> with whole 1 <= a <= b, e.g. 'step2-8')"
    )


def _number(digits: str) -> int:
    """The integer ``digits`` spell; past 30 significant digits (beyond any secret, and
    beyond the 4,300 digits Python converts to an int) only its sign counts: ``±10**30``."""
    if len(digits.lstrip("-").lstrip("0")) > 30:
        return -(10**30) if digits.startswith("-") else 10**30
    return int(digits)


def _stable_hash(value: Any) -> int:
    return int.from_bytes(hashlib.sha256(str(value).encode()).digest()[:8], "little")
