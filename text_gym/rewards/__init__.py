"""Batched reward functions: plain functions of text, importing nothing else of text_gym.

``text_metrics`` (exact match, chrF) and ``rouge`` (ROUGE with rouge-score's exact
numbers) each take ``(completions, references)`` and return float64 arrays.
"""

from text_gym.rewards.text_metrics import chrf, exact_match, normalize_text

__all__ = ["chrf", "exact_match", "normalize_text"]
