"""Batched reward functions: plain functions of text, importing nothing else of text_gym."""

from text_gym.rewards.rouge import ROUGE_TYPES, rouge
from text_gym.rewards.text_metrics import chrf, exact_match, normalize_text

__all__ = ["ROUGE_TYPES", "chrf", "exact_match", "normalize_text", "rouge"]
