"""text_gym's own tokenizers as Hugging Face tokenizer files.

:class:`~text_gym.tokenizers.WordTokenizer` and :class:`~text_gym.tokenizers.ByteTokenizer`
are exported as ``transformers.PreTrainedTokenizerFast`` objects assembled from the
``tokenizers`` library's parts, so that ``AutoTokenizer.from_pretrained`` (and TRL, a
pipeline, vLLM) reads a text_gym checkpoint with the same ids and the same decoding as
the env:

* words: a ``WordLevel`` model over the chunks, a ``Split`` pre-tokenizer with
  :data:`CHUNK_PATTERN` (the pattern ``WordTokenizer`` itself splits with), and a decoder
  that concatenates the chunks;
* bytes: a byte-level BPE with no merges (GPT-2's byte-to-character map), so that every
  byte is one token and ids 0-255 are the byte values.

Both set ``split_special_tokens=True``: a literal ``"<eos>"`` in a text is encoded as
text, as text_gym's tokenizers do, not as the special token.

A saved folder records which text_gym tokenizer it holds in ``tokenizer_config.json``
(``"text_gym_tokenizer": <name>``, :func:`write_name`), which
:func:`text_gym.tokenizers.load_tokenizer` reads back. This module imports nothing else of
text_gym; ``text_gym.tokenizers`` builds its objects with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Every character Python's ``re`` matches with ``\s`` in a str pattern (``str.isspace``),
# spelled out so that the Rust regex engine of ``tokenizers`` (Oniguruma, whose ``\s`` is
# Unicode's White_Space, without U+001C-U+001F) splits exactly where ``re`` does.
WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
CHUNK_PATTERN = f"[{WHITESPACE}]*[^{WHITESPACE}]+|[{WHITESPACE}]+"
"""A chunk: a whitespace run and the non-whitespace run after it, or trailing whitespace."""

CONFIG_KEY = "text_gym_tokenizer"
"""The ``tokenizer_config.json`` key that names the text_gym tokenizer a folder holds."""


def word_level(specials: Sequence[str], chunks: Sequence[str], unk_id: int, unk_text: str, name: str) -> Any:
    """A ``PreTrainedTokenizerFast`` over ``specials`` (ids ``0..k-1``; the first is EOS,
    the second padding) and ``chunks`` (ids ``k..``), splitting texts into chunks with
    :data:`CHUNK_PATTERN`; a chunk outside the vocabulary encodes to ``unk_id``, which
    decodes to ``unk_text`` whether or not special tokens are skipped.

    ``unk_id`` is a plain vocabulary token, not transformers' ``unk_token``: transformers
    drops every special token when it decodes with ``skip_special_tokens=True`` (what a
    pipeline and TRL do), and the env decodes it as ``unk_text``, which is what a reward
    scores.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {token: i for i, token in enumerate([*specials, *chunks])}
    if len(vocab) != len(specials) + len(chunks):
        raise ValueError(
            f"a chunk is the text of a special token {list(specials)}: a text that starts with one cannot be "
            "exported; build the vocabulary from texts without it"
        )
    rust = Tokenizer(models.WordLevel(vocab, unk_token=specials[unk_id]))
    rust.pre_tokenizer = pre_tokenizers.Split(Regex(CHUNK_PATTERN), behavior="isolated")
    exact = Regex(r"\A" + _escape(specials[unk_id]) + r"\z")  # that token only, not a chunk containing its text
    rust.decoder = decoders.Sequence([decoders.Replace(exact, unk_text), decoders.Fuse()])
    rust.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials[:2]])
    return _fast(rust, specials[0], specials[1], name)


def byte_level(eos: str, pad: str, name: str) -> Any:
    """A ``PreTrainedTokenizerFast`` whose ids 0-255 are the UTF-8 bytes of the text and
    256, 257 are ``eos`` and ``pad``; invalid UTF-8 decodes to U+FFFD."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {_gpt2_char(b): b for b in range(256)}  # GPT-2's printable stand-ins for the 256 bytes
    if set(vocab) != set(pre_tokenizers.ByteLevel.alphabet()):
        raise RuntimeError("the tokenizers library's byte alphabet differs from GPT-2's")
    vocab.update({eos: 256, pad: 257})
    rust = Tokenizer(models.BPE(vocab, [], fuse_unk=False))
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    rust.decoder = decoders.ByteLevel()
    rust.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (eos, pad)])
    return _fast(rust, eos, pad, name)


def _gpt2_char(byte: int) -> str:
    """The printable character GPT-2's byte-level BPE writes for ``byte``."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    if byte in printable:
        return chr(byte)
    return chr(256 + sum(1 for b in range(byte) if b not in printable))


def _escape(text: str) -> str:
    """``text`` with the regex metacharacters escaped (Oniguruma's syntax)."""
    return "".join("\\" + c if c in r"\^$.|?*+()[]{}" else c for c in text)


def _fast(rust: Any, eos: str, pad: str, name: str) -> Any:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=rust,
        eos_token=eos,
        pad_token=pad,
        clean_up_tokenization_spaces=False,
        split_special_tokens=True,
        name_or_path=name,
        model_max_length=1 << 31,
    )


def write_name(folder: str | Path, name: str) -> None:
    """Record ``name`` as the text_gym tokenizer of the tokenizer saved in ``folder``."""
    path = Path(folder) / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config[CONFIG_KEY] = name
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_name(folder: str | Path) -> str | None:
    """The text_gym tokenizer recorded in ``folder``'s ``tokenizer_config.json``, or None."""
    path = Path(folder) / "tokenizer_config.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get(CONFIG_KEY)


def read_word_chunks(folder: str | Path, specials: Sequence[str]) -> list[str]:
    """The chunks (ids ``len(specials)..``) of the word-level tokenizer saved in ``folder``.

    Raises:
        ValueError: the folder's ``tokenizer.json`` is not a word-level vocabulary that
            starts with ``specials``.
    """
    path = Path(folder) / "tokenizer.json"
    model = json.loads(path.read_text(encoding="utf-8")).get("model", {}) if path.is_file() else {}
    tokens = sorted(model.get("vocab", {}).items(), key=lambda item: item[1])
    if model.get("type") != "WordLevel" or [t for t, _ in tokens[: len(specials)]] != list(specials):
        raise ValueError(f"{path} is not a text_gym word vocabulary (a WordLevel model starting with {specials})")
    if [i for _, i in tokens] != list(range(len(tokens))):
        raise ValueError(f"{path}: the word vocabulary's ids are not 0..{len(tokens) - 1}")
    return [t for t, _ in tokens[len(specials) :]]
