"""The tokenizer protocol every env and model in text_gym speaks.

Three kinds of tokenizer satisfy :class:`Tokenizer`:

* :class:`HFTokenizer`, a read-only adapter over any Hugging Face tokenizer (an object,
  a hub name or a local folder);
* the embedded default, SmolLM2-135M-Instruct's 49,152-token tokenizer, shipped inside
  the package (``text_gym/assets/smollm2``) so that it loads with no network;
* :class:`ByteTokenizer`, 256 byte values plus ``<eos>`` and ``<pad>``, for fast tests;
* :class:`WordTokenizer`, a closed word vocabulary built from a task's texts, so that a
  small model trained from scratch sees SCAN's answers as a few tokens, not 170 bytes.

A tokenizer that is passed in is never mutated: a missing pad token falls back to the
EOS id inside the adapter, not by setting it on the caller's object.

Every one of them exports a ``transformers`` tokenizer (``to_hf()``), and
:func:`save_tokenizer` writes it with ``save_pretrained`` and records its ``name``, so
that ``AutoTokenizer.from_pretrained(folder)`` reads a text_gym checkpoint with the same
ids and decoding as the env, and :func:`load_tokenizer` (``tokenizer=`` on the envs)
gives back the same text_gym tokenizer.

Example:
    >>> tok = load_tokenizer("byte")
    >>> tok.encode("hi")
    [104, 105]
    >>> tok.decode_batch([[104, 105, tok.eos_token_id]])
    ['hi']
    >>> len(load_tokenizer("default"))
    49152
"""

from __future__ import annotations

import functools
import hashlib
import json
import lzma
import random
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from text_gym import tokenizer_files
from text_gym.assets import SMOLLM2_DIR

DEFAULT_TOKENIZER = "default"
_DEFAULT_ALIASES = ("default", "smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct")


@runtime_checkable
class Tokenizer(Protocol):
    """What text_gym needs from a tokenizer.

    ``len(tokenizer)`` is the size of the action space; every id in ``[0, len)`` must be
    decodable. ``name`` identifies the vocabulary, so that a model and an env can check
    that they agree.
    """

    name: str
    eos_token_id: int
    pad_token_id: int

    def __len__(self) -> int: ...

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, with no special tokens added."""
        ...

    def decode_batch(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Texts of each id sequence, special tokens dropped."""
        ...

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str | None:
        """The prompt text for chat ``messages``, or None when there is no template."""
        ...


class ByteTable:
    """Every token's bytes packed into one array, for tokenizers whose text is the UTF-8
    decoding of their tokens' concatenated bytes (byte-level BPE, bytes, words).

    :meth:`decode_rows` decodes a batch of padded id rows with a few numpy gathers over
    this contiguous table, instead of one Python lookup per token into tens of
    thousands of scattered ``bytes`` objects, whose cache misses dominate a decode on a
    large vocabulary. Under 128 tokens in all, the numpy calls' fixed cost is the larger,
    and the lookups are used.

    Example:
        >>> table = ByteTable([b"", b"a", b"bc"])
        >>> table.decode_rows(np.array([[1, 2, 2], [2, 0, 1]]), np.array([2, 3]))
        ['abc', 'bca']
    """

    def __init__(self, pieces: Sequence[bytes]) -> None:
        self.pieces = list(pieces)
        sizes = np.fromiter(map(len, pieces), np.int64, len(pieces))
        self.offsets = np.zeros(len(pieces) + 1, dtype=np.int64)  # token i: data[offsets[i]:offsets[i + 1]]
        np.cumsum(sizes, out=self.offsets[1:])
        self.data = np.frombuffer(b"".join(pieces), dtype=np.uint8)

    def decode_ids(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """The texts of id sequences, one lookup per token."""
        get = self.pieces.__getitem__
        return [b"".join(map(get, x)).decode("utf-8", "replace") for x in ids]

    def decode_rows(self, rows: np.ndarray, lengths: np.ndarray) -> list[str]:
        """The texts of ``rows[i, :lengths[i]]`` (ids of an int array ``(k, w)``); bytes
        that are not valid UTF-8 become U+FFFD, as in the tokenizers' ``decode_batch``."""
        if lengths.sum() < 128:
            return self.decode_ids([row[:n].tolist() for row, n in zip(rows, lengths.tolist())])
        ids = rows[np.arange(rows.shape[1]) < lengths[:, None]]  # row after row
        starts = self.offsets[ids]
        sizes = self.offsets[ids + 1] - starts
        ends = np.cumsum(sizes)  # where each token's bytes end in the output
        # output byte j of token t comes from data[starts[t] + j - (ends[t] - sizes[t])]
        index = np.repeat(starts - (ends - sizes), sizes) + np.arange(int(ends[-1]) if ends.size else 0)
        blob = self.data[index].tobytes()
        token_ends = np.zeros(ids.size + 1, dtype=np.int64)
        token_ends[1:] = ends
        bounds = token_ends[np.concatenate(([0], np.cumsum(lengths)))].tolist()
        return [blob[a:b].decode("utf-8", "replace") for a, b in zip(bounds[:-1], bounds[1:])]


def decode_rows(tokenizer: Tokenizer, rows: np.ndarray, lengths: np.ndarray) -> list[str]:
    """``tokenizer.decode_batch`` of ``rows[i, :lengths[i]]``, through the tokenizer's
    :class:`ByteTable` (its ``byte_table`` attribute) when it has one.

    >>> decode_rows(ByteTokenizer(), np.array([[104, 105, 256], [33, 257, 257]]), np.array([3, 1]))
    ['hi', '!']
    """
    table = getattr(tokenizer, "byte_table", None)
    if table is not None:
        return table.decode_rows(rows, lengths)
    return tokenizer.decode_batch([row[:n].tolist() for row, n in zip(rows, lengths.tolist())])


class _OneTextMixin:
    def encode(self, text: str) -> list[int]:
        """Token ids of one text, with no special tokens added."""
        return self.encode_batch([text])[0]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of one id sequence, special tokens dropped."""
        return self.decode_batch([ids])[0]


class HFTokenizer(_OneTextMixin):
    """Read-only adapter over a Hugging Face tokenizer.

    Decoding gives the text the ids add after other text, which is what a response
    after its prompt is. Under a decoder that strips one leading space (SentencePiece's,
    as Llama 2 and Mistral v0.1 ship it) that differs from the tokenizer's own
    ``decode``: ids of ``" b"`` decode to ``" b"``, not ``"b"``, and ids of a text
    encoded on its own keep the space its normalizer prepended.

    Args:
        tokenizer: a ``transformers`` tokenizer object (not modified).
        name: identifier of the vocabulary; defaults to the tokenizer's ``name_or_path``.

    Raises:
        ValueError: the tokenizer has neither an EOS nor a pad token.
    """

    def __init__(self, tokenizer: Any, name: str | None = None) -> None:
        self.hf = tokenizer
        self.name = name or getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        self._len = len(tokenizer)
        eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
        if eos is None and pad is None:
            raise ValueError(
                f"tokenizer {self.name!r} has no eos_token_id and no pad_token_id; an "
                "episode needs a stop token: pass a tokenizer that defines eos_token"
            )
        self.eos_token_id = int(eos if eos is not None else pad)
        self.pad_token_id = int(pad if pad is not None else eos)
        # The Rust backend encodes and decodes a batch faster than the Python wrapper; use
        # it only when batch_decode would not post-process (clean up spaces) anyway.
        self._backend = None
        if getattr(tokenizer, "is_fast", False) and not getattr(tokenizer, "clean_up_tokenization_spaces", False):
            self._backend = backend = tokenizer.backend_tokenizer
            if backend.padding or backend.truncation:  # saved in some tokenizer.json files
                self._backend = type(backend).from_str(backend.to_str())  # a copy: not modified
                self._backend.no_padding()
                self._backend.no_truncation()
        # Byte-level BPE (GPT-2 style, SmolLM2's kind) decodes to the UTF-8 of its
        # tokens' bytes: a lookup table decodes it with array gathers instead of the decoder's
        # per-call overhead, and is used only after it has been checked against that decoder.
        pieces = _byte_table(tokenizer, self._backend) if self._backend else None
        self.byte_table = ByteTable(pieces) if pieces is not None else None
        self._lead = None if self.byte_table is not None else self._lead_sentinel()

    def __len__(self) -> int:
        return self._len

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        if self._backend is not None:
            encodings = self._backend.encode_batch(list(texts), add_special_tokens=False)
            return [e.ids for e in encodings]
        return self.hf(list(texts), add_special_tokens=False)["input_ids"]

    def decode_batch(self, ids: Sequence[Sequence[int]]) -> list[str]:
        if not ids:
            return []
        if self.byte_table is not None:
            return self.byte_table.decode_ids(ids)
        if self._lead is None:
            return self._decode([list(x) for x in ids])
        lead, cut = self._lead
        return [text[cut:] for text in self._decode([lead + list(x) for x in ids])]

    def _decode(self, ids: list[list[int]]) -> list[str]:
        if self._backend is not None:
            return self._backend.decode_batch(ids, skip_special_tokens=True)
        return self.hf.batch_decode(ids, skip_special_tokens=True)

    def _lead_sentinel(self) -> tuple[list[int], int] | None:
        """For a decoder that drops the leading space of what it decodes (SentencePiece's,
        as Llama 2 and Mistral v0.1 ship it), the ids of a short word (``"a"``) and the
        length of its text: decoded after them, a response that starts with a space keeps
        it (decoded alone, ``" b"`` would come out as ``"b"``, and a code body's first
        line would lose one space of indentation). None for decoders that keep it."""
        for first, second in (("a", "b"), ("x", "y"), ("1", "2")):  # one that does not merge
            a, ab = self.encode_batch([first, f"{first} {second}"])
            if a and ab[: len(a)] == a:
                alone, lead, both = self._decode([ab[len(a) :], a, ab])
                if alone == f" {second}" or both != f"{lead} {second}":
                    return None
                return a, len(lead)
        return None

    def to_hf(self) -> Any:
        """The wrapped ``transformers`` tokenizer (not a copy: do not modify it)."""
        return self.hf

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str | None:
        if not getattr(self.hf, "chat_template", None):
            return None
        return self.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def __repr__(self) -> str:
        return f"HFTokenizer({self.name!r}, len={self._len})"


def _gpt2_byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's byte-to-printable-character map used by byte-level BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


def _byte_table(hf: Any, backend: Any) -> list[bytes] | None:
    """Each token's bytes for a byte-level BPE tokenizer, or None if it is not one.

    The table is trusted only if decoding every single token and a few hundred random
    sequences with it gives exactly the tokenizer's own output.
    """
    spec = json.loads(backend.to_str())
    if (spec.get("decoder") or {}).get("type") != "ByteLevel" or spec.get("normalizer"):
        return None
    decoder = _gpt2_byte_decoder()
    special = {t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
    special |= set(getattr(hf, "all_special_ids", []))
    table = []
    for i in range(len(hf)):
        token = backend.id_to_token(i)
        if i in special or token is None:
            table.append(b"")
            continue
        table.append(b"".join(bytes([decoder[c]]) if c in decoder else c.encode() for c in token))
    rng = random.Random(0)
    probes = [[i] for i in range(len(table))]
    probes += [[rng.randrange(len(table)) for _ in range(rng.randrange(1, 40))] for _ in range(300)]
    expected = backend.decode_batch(probes, skip_special_tokens=True)
    for ids, text in zip(probes, expected):
        if b"".join([table[i] for i in ids]).decode("utf-8", "replace") != text:
            return None
    return table


class ByteTokenizer(_OneTextMixin):
    """UTF-8 bytes as tokens: ids 0-255 are bytes, 256 is ``<eos>``, 257 is ``<pad>``.

    Decoding replaces byte sequences that are not valid UTF-8 with U+FFFD (the
    documented fallback: an agent can emit any byte, a reward never sees an exception).

    Example:
        >>> tok = ByteTokenizer()
        >>> tok.decode_batch([[0xFF, 0x68]])
        ['\\ufffdh']
    """

    name = "byte"
    eos_token_id = 256
    pad_token_id = 257
    byte_table = ByteTable([bytes([i]) for i in range(256)] + [b"", b""])

    def __len__(self) -> int:
        return 258

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(t.encode("utf-8")) for t in texts]

    def decode_batch(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return [bytes(i for i in x if i < 256).decode("utf-8", errors="replace") for x in ids]

    def to_hf(self) -> Any:
        """This tokenizer as a ``transformers.PreTrainedTokenizerFast``: a byte-level BPE
        with no merges, the same ids (``<eos>`` 256, ``<pad>`` 257) and the same decoding
        with ``skip_special_tokens=True``.

        >>> hf = ByteTokenizer().to_hf()
        >>> hf.encode("hé", add_special_tokens=False), hf.eos_token_id, hf.decode([104, 256], skip_special_tokens=True)
        ([104, 195, 169], 256, 'h')
        """
        return tokenizer_files.byte_level("<eos>", "<pad>", self.name)

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str | None:
        return None

    def __repr__(self) -> str:
        return "ByteTokenizer()"


class WordTokenizer(_OneTextMixin):
    """A closed vocabulary of words, each token a word with the whitespace before it.

    Ids 0-2 are ``<eos>``, ``<pad>`` and ``<unk>``; the rest are the chunks (whitespace
    run + non-whitespace run) seen in the texts given to :meth:`from_texts`, sorted, so
    the same texts always give the same ids. Decoding concatenates the chunks, so every
    text made of known chunks round-trips exactly. A chunk outside the vocabulary encodes
    to ``<unk>``, which decodes to ``" <unk>"`` (the documented fallback: it cannot match a
    reference). ``name`` hashes the vocabulary, so a model and an env built from
    different vocabularies are told apart. :meth:`to_hf` exports it to ``transformers``;
    :func:`save_tokenizer` saves that (``tokenizer.json``), :meth:`save` a JSON list of
    the chunks; ``load_tokenizer`` reads either back.

    Example:
        >>> tok = WordTokenizer.from_texts(["jump twice", " I_JUMP I_JUMP"])
        >>> ids = tok.encode(" I_JUMP I_JUMP")
        >>> ids, tok.decode_batch([ids + [tok.eos_token_id]])
        ([3, 3], [' I_JUMP I_JUMP'])
        >>> tok.decode_batch([tok.encode("jump thrice")])
        ['jump <unk>']
    """

    eos_token_id = 0
    pad_token_id = 1
    unk_token_id = 2
    _SPECIAL = ("<eos>", "<pad>", "<unk>")
    _CHUNK = re.compile(tokenizer_files.CHUNK_PATTERN)  # r"\s*\S+|\s+", its \s spelled out

    def __init__(self, chunks: Sequence[str]) -> None:
        if len(set(chunks)) != len(chunks) or any(not c for c in chunks):
            raise ValueError("WordTokenizer chunks must be distinct non-empty strings")
        self.chunks = list(chunks)
        self._ids = {c: i + len(self._SPECIAL) for i, c in enumerate(self.chunks)}
        self._text = ["", "", " <unk>", *self.chunks]
        self.byte_table = ByteTable([t.encode("utf-8") for t in self._text])
        digest = hashlib.sha256("\0".join(self.chunks).encode("utf-8")).hexdigest()[:12]
        self.name = f"words-{digest}"

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> WordTokenizer:
        """The vocabulary of every chunk in ``texts``."""
        return cls(sorted({c for t in texts for c in cls._CHUNK.findall(t)}))

    @classmethod
    def load(cls, path: str | Path) -> WordTokenizer:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("type") != "text_gym.WordTokenizer":
            raise ValueError(f"{path} is not a saved WordTokenizer (no type 'text_gym.WordTokenizer')")
        return cls(data["chunks"])

    @classmethod
    def from_folder(cls, folder: str | Path) -> WordTokenizer:
        """The word vocabulary of a tokenizer that :func:`save_tokenizer` wrote into ``folder``.

        Raises:
            ValueError: the folder's ``tokenizer.json`` is not a word vocabulary.
        """
        return cls(tokenizer_files.read_word_chunks(folder, cls._SPECIAL))

    def to_hf(self) -> Any:
        """This vocabulary as a ``transformers.PreTrainedTokenizerFast`` (a ``WordLevel``
        model, a pre-tokenizer splitting like ``_CHUNK``): the same ids, and the same
        decoding with ``skip_special_tokens=True``. ``<eos>``/``<pad>`` are its EOS and pad
        tokens; ``<unk>`` (id 2) is a plain token that decodes to ``" <unk>"`` as here
        (transformers would drop a special one from the text a reward sees), so its
        ``unk_token`` stays unset.

        >>> hf = WordTokenizer.from_texts(["jump twice"]).to_hf()
        >>> hf.encode("jump thrice", add_special_tokens=False), hf.decode([4, 2, 0], skip_special_tokens=True)
        ([4, 2], 'jump <unk>')
        """
        return tokenizer_files.word_level(self._SPECIAL, self.chunks, self.unk_token_id, self._text[2], self.name)

    def save(self, path: str | Path) -> None:
        payload = {"type": "text_gym.WordTokenizer", "chunks": self.chunks}
        Path(path).write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")

    def __len__(self) -> int:
        return len(self._text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        get, unk = self._ids.get, self.unk_token_id
        return [[get(c, unk) for c in self._CHUNK.findall(t)] for t in texts]

    def decode_batch(self, ids: Sequence[Sequence[int]]) -> list[str]:
        text = self._text
        return ["".join(text[i] for i in x) for x in ids]

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str | None:
        return None

    def __repr__(self) -> str:
        return f"WordTokenizer({self.name!r}, len={len(self)})"


@functools.lru_cache(maxsize=1)
def default_tokenizer() -> HFTokenizer:
    """SmolLM2-135M-Instruct's tokenizer, loaded from the files shipped in text_gym.

    Cached: every env shares one read-only instance.
    """
    from tokenizers import Tokenizer as RustTokenizer
    from transformers import PreTrainedTokenizerFast

    special = json.loads((SMOLLM2_DIR / "special_tokens.json").read_text())
    raw = lzma.decompress((SMOLLM2_DIR / "tokenizer.json.xz").read_bytes()).decode("utf-8")
    hf = PreTrainedTokenizerFast(
        tokenizer_object=RustTokenizer.from_str(raw),
        bos_token=special["bos_token"],
        eos_token=special["eos_token"],
        pad_token=special["pad_token"],
        unk_token=special["unk_token"],
        chat_template=special["chat_template"],
        clean_up_tokenization_spaces=False,
        name_or_path=_DEFAULT_ALIASES[2],
    )
    return HFTokenizer(hf, name=_DEFAULT_ALIASES[2])


def save_tokenizer(tokenizer: Tokenizer, folder: str | Path) -> None:
    """Save ``tokenizer`` into ``folder`` as Hugging Face tokenizer files (``save_pretrained``
    of its ``to_hf()``: ``tokenizer.json``, ``tokenizer_config.json``) and record its ``name``
    there, so that ``AutoTokenizer.from_pretrained(folder)`` reads it with the same ids and
    decoding, and ``load_tokenizer(folder)`` gives back the same text_gym tokenizer.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> save_tokenizer(ByteTokenizer(), folder)
        >>> load_tokenizer(folder)
        ByteTokenizer()

    Raises:
        TypeError: the tokenizer has no ``to_hf()`` (a custom :class:`Tokenizer`).
    """
    if not callable(getattr(tokenizer, "to_hf", None)):
        raise TypeError(
            f"{tokenizer!r} has no to_hf(), so it cannot be saved as Hugging Face tokenizer files: give it a "
            "to_hf() returning a transformers tokenizer, or use HFTokenizer, ByteTokenizer or WordTokenizer"
        )
    tokenizer.to_hf().save_pretrained(str(folder))
    tokenizer_files.write_name(folder, tokenizer.name)


OFFLINE_OPTIONS = (
    "'default' (or 'smollm2': SmolLM2's tokenizer, shipped with text_gym), 'byte', the path of a saved word "
    "vocabulary (WordTokenizer.save's .json, or a checkpoint folder such as runs/<run>/model), or a local "
    "folder with Hugging Face tokenizer files"
)
"""What ``load_tokenizer`` takes with no network, as its errors list it."""

_HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")


def load_tokenizer(spec: Any = DEFAULT_TOKENIZER) -> Tokenizer:
    """Turn a tokenizer specification into a :class:`Tokenizer`.

    Args:
        spec: ``None``/``"default"``/``"smollm2"`` for the embedded SmolLM2 tokenizer;
            ``"byte"`` for :class:`ByteTokenizer`; the path of a saved
            :class:`WordTokenizer` (``.json``); a folder: the text_gym tokenizer that
            :func:`save_tokenizer` recorded there (with the same ``name``, so a checkpoint's
            model and an env built from its folder agree), else its ``words.json``, else its
            Hugging Face tokenizer files, else the tokenizer its ``config.json`` names
            (``text_gym_tokenizer``); any other string is a Hugging Face hub name
            (``AutoTokenizer.from_pretrained``, which needs network or the hub's cache); a
            Hugging Face tokenizer object is wrapped; a :class:`Tokenizer` is returned as is.

    Raises:
        ValueError: a string that names none of these (``"words"``, a typo, a hub name
            that cannot be loaded), or a folder with no tokenizer; the message lists
            :data:`OFFLINE_OPTIONS`.
        TypeError: ``spec`` is none of these.
    """
    if spec is None or (isinstance(spec, str) and spec in _DEFAULT_ALIASES):
        return default_tokenizer()
    if isinstance(spec, Path):
        spec = str(spec)
    if isinstance(spec, str):
        if spec == "byte":
            return ByteTokenizer()
        if Path(spec).is_dir():
            return _from_folder(spec)
        if spec.endswith(".json") and Path(spec).is_file():
            return WordTokenizer.load(spec)
        return _from_hub(spec)
    if isinstance(spec, (HFTokenizer, ByteTokenizer, WordTokenizer)):
        return spec
    if hasattr(spec, "backend_tokenizer") or hasattr(spec, "batch_decode"):
        return HFTokenizer(spec)
    if isinstance(spec, Tokenizer):
        return spec
    raise TypeError(
        f"tokenizer={spec!r} ({type(spec).__name__}) is not a tokenizer: pass 'default', "
        "'byte', a Hugging Face tokenizer name or object, or a text_gym Tokenizer"
    )


def _from_folder(folder: str) -> Tokenizer:
    """The tokenizer of a local folder (see :func:`load_tokenizer`)."""
    from transformers import AutoTokenizer

    path = Path(folder)
    name = tokenizer_files.read_name(path)
    if name == ByteTokenizer.name:
        return ByteTokenizer()
    if name == _DEFAULT_ALIASES[2]:
        return default_tokenizer()
    if name is not None and name.startswith("words-"):
        words = WordTokenizer.from_folder(path)
        if words.name != name:
            raise ValueError(
                f"{folder}: its word vocabulary is {words.name!r}, not the {name!r} recorded in "
                "tokenizer_config.json: the files were edited; save the tokenizer again with save_tokenizer"
            )
        return words
    if name is not None:
        return HFTokenizer(AutoTokenizer.from_pretrained(folder), name=name)
    if (path / "words.json").is_file():
        return WordTokenizer.load(path / "words.json")
    if any((path / f).is_file() for f in _HF_TOKENIZER_FILES):
        return HFTokenizer(AutoTokenizer.from_pretrained(folder), name=folder)
    config = path / "config.json"
    recorded = json.loads(config.read_text(encoding="utf-8")).get("text_gym_tokenizer") if config.is_file() else None
    if recorded:
        return load_tokenizer(recorded)
    raise ValueError(
        f"folder {folder!r} holds no tokenizer (no {' / '.join(_HF_TOKENIZER_FILES[:2])}, no words.json, no "
        "config.json naming a text_gym_tokenizer): save the model's tokenizer into it "
        "(tokenizer.save_pretrained(folder), or text_gym.tokenizers.save_tokenizer(tokenizer, folder))"
    )


def _from_hub(name: str) -> HFTokenizer:
    """``AutoTokenizer.from_pretrained(name)``, wrapped; a name that cannot be loaded
    (unknown, or the hub unreachable) is a ValueError that lists :data:`OFFLINE_OPTIONS`."""
    if name == "words":
        raise ValueError(
            "tokenizer='words' names no vocabulary: a word vocabulary is built from a task's texts "
            "(WordTokenizer.from_texts(texts), or agents/sft.py --tokenizer words); pass the tokenizer, its "
            f"saved path or the checkpoint folder trained with it. Offline, tokenizer= takes {OFFLINE_OPTIONS}"
        )
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as error:
        reason = (str(error).strip().splitlines() or [""])[0]
        raise ValueError(
            f"tokenizer={name!r} is neither a text_gym tokenizer, an existing file or folder, nor a Hugging Face "
            f"hub tokenizer that could be loaded ({type(error).__name__}: {reason}). Offline, tokenizer= takes "
            f"{OFFLINE_OPTIONS}; a hub name needs network (or the hub's local cache)"
        ) from error
    return HFTokenizer(hf, name=name)
