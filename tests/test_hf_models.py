"""Hugging Face models and tokenizers with the agents: a plain transformers folder (or a hub
name) trains with every agent's --init-model and with sft.py --model, and a text_gym
checkpoint loads in transformers (AutoTokenizer, AutoModelForCausalLM, a pipeline) with the
env's ids, decoding and greedy answers."""

from __future__ import annotations

import json
import random
from pathlib import Path

import gymnasium as gym
import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from tests.test_agents import load_agent, metric, register_say_env, rl_args, tiny_args
from text_gym import ByteTokenizer, WordTokenizer, load_tokenizer
from text_gym.rollout import RolloutCollector
from text_gym.tasks import scan
from text_gym.tasks.translation import TranslationTask


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory) -> Path:
    """A transformers model folder as a user has one: a tiny Llama and its tokenizer, each
    saved with ``save_pretrained``, nothing of text_gym's in its config. Its embedding has
    more rows (264) than the tokenizer has tokens (258), as hub models often do."""
    folder = tmp_path_factory.mktemp("plain")
    config = LlamaConfig(
        vocab_size=264,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        bos_token_id=None,
        eos_token_id=256,
        pad_token_id=257,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    ByteTokenizer().to_hf().save_pretrained(folder)  # a byte-level BPE, with no text_gym record
    assert "text_gym_tokenizer" not in json.loads((folder / "config.json").read_text())
    assert "text_gym_tokenizer" not in json.loads((folder / "tokenizer_config.json").read_text())
    return folder


@pytest.fixture(scope="module")
def words_checkpoint(tmp_path_factory) -> Path:
    """The model folder of an SFT run on SCAN with ``--tokenizer words``."""
    runs = tmp_path_factory.mktemp("sft_words")
    sft = load_agent("sft")
    sft.main(tiny_args(sft, runs, tokenizer="words", total_updates=20, batch_size=16, checkpoint_every=0))
    return next(runs.iterdir()) / "model"


def test_grpo_starts_from_a_plain_transformers_folder(plain_folder, tmp_path):
    grpo = load_agent("grpo")
    args = rl_args(grpo, tmp_path, "byte", init_model=str(plain_folder), total_iterations=2, num_envs=8)
    result = grpo.main(args)
    run = next(tmp_path.iterdir())
    assert len(metric(run, "charts/episodic_return")) == 2 and 0.0 <= result["eval_return"] <= 1.0
    # the checkpoint records the tokenizer it trained with, and brings it along
    model, tokenizer = grpo.load_policy(grpo.Args(init_model=str(run / "model")))
    assert tokenizer.name == model.config.text_gym_tokenizer == str(plain_folder)
    assert tokenizer.encode("yes é") == ByteTokenizer().encode("yes é")
    assert AutoTokenizer.from_pretrained(run / "model").encode("yes", add_special_tokens=False) == [121, 101, 115]


def test_sft_trains_a_plain_transformers_folder(plain_folder, tmp_path):
    sft = load_agent("sft")
    args = tiny_args(sft, tmp_path, env_id=register_say_env(), model=str(plain_folder), total_updates=6)
    result = sft.main(args)
    run = next(tmp_path.iterdir())
    losses = metric(run, "losses/sft_loss")
    assert len(losses) == 6 and losses[-1] < losses[0]  # it trains the user's model
    assert 0.0 <= result["eval_return"] <= 1.0
    trained = AutoModelForCausalLM.from_pretrained(run / "model")
    start = AutoModelForCausalLM.from_pretrained(plain_folder)
    assert trained.config.vocab_size == 264 and trained.config.text_gym_tokenizer == str(plain_folder)
    assert not torch.equal(trained.model.embed_tokens.weight, start.model.embed_tokens.weight)


def test_a_hub_name_loads_model_and_tokenizer_from_the_hub(plain_folder, monkeypatch):
    """Hub loading is the same code as a folder's; offline, the hub is the plain folder."""
    load_agent("grpo")  # puts agents/ on sys.path
    from common import load_pretrained

    asked = []
    for cls in (transformers.AutoModelForCausalLM, transformers.AutoTokenizer):
        real = cls.from_pretrained

        def fake(name, *args, _real=real, **kwargs):
            asked.append(name)
            return _real(plain_folder if name == "someone/tiny-llama" else name, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", fake)
    model, tokenizer = load_pretrained("someone/tiny-llama")
    assert asked == ["someone/tiny-llama", "someone/tiny-llama"]
    assert tokenizer.name == model.config.text_gym_tokenizer == "someone/tiny-llama"
    assert len(tokenizer) == 258 and model.training


def test_a_model_without_a_tokenizer_fails_clearly(plain_folder, tmp_path):
    AutoModelForCausalLM.from_pretrained(plain_folder).save_pretrained(tmp_path)  # the weights alone
    grpo = load_agent("grpo")
    with pytest.raises(ValueError, match="no tokenizer for the model .*holds no tokenizer.*save_pretrained"):
        grpo.load_policy(grpo.Args(init_model=str(tmp_path)))
    with pytest.raises(ValueError, match="no causal LM at .*hub name"):
        grpo.load_policy(grpo.Args(init_model=str(tmp_path / "missing")))


def scan_texts() -> list[str]:
    """Every distinct prompt and reference of every SCAN split, train and test."""
    texts = []
    for scan_split in scan.SCAN_SPLITS:
        for split in ("train", "test"):
            task = TranslationTask(scan_split=scan_split, split=split)
            texts += [s.prompt for s in task.samples] + [task.reference_response(s) for s in task.samples]
    return sorted(set(texts))


def test_autotokenizer_reads_a_words_checkpoint_exactly_as_the_env(words_checkpoint):
    env_tok = gym.make("TextTranslate-v0", tokenizer=str(words_checkpoint)).unwrapped.tokenizer
    model = AutoModelForCausalLM.from_pretrained(words_checkpoint)
    assert isinstance(env_tok, WordTokenizer) and env_tok.name == model.config.text_gym_tokenizer
    hf = AutoTokenizer.from_pretrained(words_checkpoint)
    texts = scan_texts()
    assert len(texts) > 30_000
    ids = hf(texts, add_special_tokens=False)["input_ids"]
    assert ids == env_tok.encode_batch(texts)
    assert hf.batch_decode(ids, skip_special_tokens=True) == env_tok.decode_batch(ids) == texts
    assert (hf.eos_token_id, hf.pad_token_id) == (env_tok.eos_token_id, env_tok.pad_token_id)
    rng = random.Random(0)  # any id sequence, specials and <unk> included, decodes alike
    seqs = [[rng.randrange(len(env_tok)) for _ in range(rng.randrange(12))] for _ in range(500)]
    assert hf.batch_decode(seqs, skip_special_tokens=True) == env_tok.decode_batch(seqs)


def test_autotokenizer_reads_a_byte_checkpoint_exactly_as_the_env(tmp_path):
    sft = load_agent("sft")
    sft.main(tiny_args(sft, tmp_path, env_id=register_say_env(), tokenizer="byte", total_updates=1))
    folder = next(tmp_path.iterdir()) / "model"
    env_tok = gym.make(register_say_env(), tokenizer=str(folder)).unwrapped.tokenizer
    assert isinstance(env_tok, ByteTokenizer)
    hf = AutoTokenizer.from_pretrained(folder)
    texts = ["jump twice", " I_JUMP", "héllo ✓ 日本語 🙂", "<eos> <pad> literally", "\t\x00\x7f\n", ""]
    ids = hf(texts, add_special_tokens=False)["input_ids"]
    assert ids == env_tok.encode_batch(texts)
    assert hf.batch_decode(ids, skip_special_tokens=True) == env_tok.decode_batch(ids) == texts
    rng = random.Random(0)  # invalid UTF-8 too: U+FFFD alike
    seqs = [[rng.randrange(258) for _ in range(rng.randrange(12))] for _ in range(2000)]
    assert hf.batch_decode(seqs, skip_special_tokens=True) == env_tok.decode_batch(seqs)


def test_transformers_generates_the_rollouts_greedy_answers(words_checkpoint):
    tokenizer = load_tokenizer(str(words_checkpoint))
    model = AutoModelForCausalLM.from_pretrained(words_checkpoint).eval()
    envs = gym.make_vec("TextTranslate-v0", num_envs=4, tokenizer=tokenizer, output="torch", max_new_tokens=12)
    episodes = RolloutCollector(model, envs, greedy=True).collect_episodes(seed=0, sample_index=[0, 5, 9, 13])
    prompt_tokens = envs.unwrapped.prompt_tokens
    hf = AutoTokenizer.from_pretrained(words_checkpoint)
    generator = transformers.pipeline("text-generation", model=model, tokenizer=hf)
    task = envs.unwrapped.task
    for row, index in enumerate([0, 5, 9, 13]):
        window, agent = episodes.input_ids[row], episodes.agent_mask[row].bool()
        prompt = window[:prompt_tokens][episodes.attention_mask[row, :prompt_tokens].bool()]
        encoded = hf(task.samples[index].prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        assert encoded[0].tolist() == prompt[-prompt_tokens:].tolist()
        out = model.generate(encoded, attention_mask=torch.ones_like(encoded), max_new_tokens=12, do_sample=False)
        generated = out[0, encoded.shape[1] :].tolist()
        assert generated[: int(agent.sum())] == window[agent].tolist()  # the rollout's answer, token for token
        text = generator(task.samples[index].prompt, max_new_tokens=12, do_sample=False, return_full_text=False)
        assert text[0]["generated_text"] == tokenizer.decode(window[agent].tolist())


def test_envs_take_a_checkpoint_folder_or_a_saved_vocabulary(words_checkpoint, tmp_path):
    words = load_tokenizer(str(words_checkpoint))
    words.save(tmp_path / "words.json")
    for spec in (str(words_checkpoint), str(tmp_path / "words.json")):
        env = gym.make("TextTranslate-v0", tokenizer=spec)
        obs, _ = env.reset(seed=0)
        assert env.unwrapped.tokenizer.name == words.name and obs["input_ids"].max() < len(words)
    with pytest.raises(ValueError, match="'words' names no vocabulary.*'byte'.*local folder"):
        gym.make("TextTranslate-v0", tokenizer="words")
