"""Batched reward functions: plain functions of text, importing nothing else of text_gym."""

from text_gym.rewards.text_metrics import chrf, exact_match, normalize_text

__all__ = ["chrf", "exact_match", "normalize_text"]
