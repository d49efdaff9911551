"""The window runner: the shared-prefix cache equals full prefills, packed and merged
refill calls equal split ones, the LM head's fast path, the merge cost model, compiled
decoding, and a WindowRunner on its own following a collector's observations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_rollout import assert_same_rollout, make_env, stop_at_varied_lengths
from text_gym import TextVectorEnv
from text_gym.rollout import RolloutCollector, WindowRunner, merge_budget, tiny_model
from text_gym.rollout import runner as runner_module
from text_gym.rollout.runner import SWAPPED_HEAD_MIN_WEIGHTS, SWAPPED_HEAD_ROWS, head_logits, plain_head
from text_gym.tasks.base import Sample, Scores, Task
from text_gym.tokenizers import load_tokenizer


@pytest.fixture(scope="module")
def model():
    return tiny_model(load_tokenizer("byte"), seed=3)


def test_prefix_cache_equals_full_prefill_over_many_refills(model):
    stop = stop_at_varied_lengths(make_env(1).prompt_tokens)
    fed = []  # tokens the model ran on, per forward call
    hook = model.model.embed_tokens.register_forward_hook(lambda module, args, out: fed.append(args[0].numel()))
    runs, tokens = {}, {}
    try:
        for prefix_cache in (True, False):
            fed.clear()
            collector = RolloutCollector(
                model, make_env(4), greedy=True, logits_processor=stop, prefix_cache=prefix_cache
            )
            runs[prefix_cache], tokens[prefix_cache] = collector.collect(60, seed=7), sum(fed)
            if prefix_cache:
                prefix = collector.env.tokenizer.decode_batch([collector.runner.prefix.tokens.tolist()])[0]
    finally:
        hook.remove()
    assert runs[True].dones.sum() > 30  # many refills
    assert_same_rollout(runs[True], runs[False])
    assert prefix == "Translate the command into actions.\nCommand: "
    assert tokens[True] < tokens[False] - 30 * len(prefix)  # each refill skipped the prefix


class TwoFamilies(Task):
    """Prompts of two families: each family shares a longer prefix than the two together."""

    name = "two_families"

    def __init__(self):
        words = ("ab", "cd", "ef", "gh")
        self.samples = [
            Sample(f"Spell the {kind} please: {w}\nAnswer:", (w,)) for kind in ("word", "name") for w in words
        ]

    def score(self, responses, samples):
        hits = np.array([r.strip() == s.references[0] for r, s in zip(responses, samples)], float)
        return Scores(hits, {"hit": hits})


def test_prefix_shrinks_to_what_later_prompts_share(model):
    """The first prompts share "Spell the word please: "; later refills bring "name"
    prompts, and the prefix becomes a slice of the cached one (no recompute beyond the
    one at a call's first refill)."""
    stop = stop_at_varied_lengths(make_env(1, task=TwoFamilies()).prompt_tokens)
    cached = RolloutCollector(model, make_env(3, task=TwoFamilies()), greedy=True, logits_processor=stop)
    plain = RolloutCollector(
        model, make_env(3, task=TwoFamilies()), greedy=True, logits_processor=stop, prefix_cache=False
    )

    def decode(ids):
        return cached.env.tokenizer.decode_batch([ids.tolist()])[0]

    computed = []  # the prefixes whose keys/values were computed, with layer 0's keys
    compute = cached.runner.prefix._key_values

    def recording(ids):
        kv = compute(ids)
        computed.append((decode(ids), kv))
        return kv

    cached.runner.prefix._key_values = recording
    # samples 0-2 are "word" prompts
    first = [c.collect_episodes(seed=0, sample_index=[0, 1, 2]) for c in (cached, plain)]
    assert decode(cached.runner.prefix.tokens) == "Spell the word please: "
    later = [c.collect(40) for c in (cached, plain)]  # refills draw both families
    assert later[0].dones.sum() > 10
    assert decode(cached.runner.prefix.tokens) == "Spell the "
    assert [c[0] for c in computed] == ["Spell the word please: "] * 2  # once per call
    assert torch.equal(
        cached.runner.prefix.key_values[0][0], computed[-1][1][0][0][:, : len(cached.runner.prefix.tokens)]
    )
    assert torch.equal(first[0].input_ids, first[1].input_ids)
    assert_same_rollout(*later)


def test_prefix_cache_leaves_multi_turn_replies_alone(model):
    """User replies are prefilled mid-episode (new span past the prompt region): they
    neither use nor shrink the prefix, and the dialogue equals the uncached one."""
    import gymnasium as gym

    eos = torch.arange(258) == 256
    # turns of 1-3 tokens, out of step across slots: fresh prompts and replies share calls

    def end_turns(logits, obs):
        return torch.where(((obs["new_span"][:, 1:] + torch.arange(3)[:, None]) % 3 == 0) & eos, 1e4, logits)

    runs, collectors = [], []
    for prefix_cache in (True, False):
        env = gym.make_vec("TextDialogGoal-v0", num_envs=3, output="torch", tokenizer="byte", max_turns=3)
        collectors.append(
            RolloutCollector(model, env, greedy=True, logits_processor=end_turns, prefix_cache=prefix_cache)
        )
        runs.append(collectors[-1].collect(60, seed=0))
    window = collectors[0]._obs
    assert (window["attention_mask"].sum(1) > window["agent_mask"].sum(1) + env.unwrapped.prompt_tokens // 2).all()
    assert runs[0].dones.sum() > 6  # several whole dialogues, so refills too
    prompt = env.unwrapped.task.samples[0].prompt  # every goal-dialogue prompt is this one
    assert len(collectors[0].runner.prefix.tokens) == len(prompt.encode()) - 1  # all of it but the token fed
    assert_same_rollout(*runs)


def test_prefix_is_recomputed_when_the_weights_change():
    model = tiny_model(load_tokenizer("byte"), seed=5)
    stop = stop_at_varied_lengths(make_env(1).prompt_tokens)
    cached = RolloutCollector(model, make_env(3), greedy=True, logits_processor=stop)
    plain = RolloutCollector(model, make_env(3), greedy=True, logits_processor=stop, prefix_cache=False)
    assert_same_rollout(cached.collect(20, seed=0), plain.collect(20, seed=0))
    with torch.no_grad():  # in place, as an optimizer step or load_state_dict does
        for p in model.parameters():
            p.mul_(1.5)
    assert_same_rollout(cached.collect(20, seed=1), plain.collect(20, seed=1))
    for p in model.parameters():  # writes no version counter records
        p.data.mul_(0.8)
    assert_same_rollout(cached.collect(20), plain.collect(20))
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    versions = [p._version for p in model.parameters()]
    torch.optim.Adam(model.parameters(), lr=0.05, fused=True).step()
    assert [p._version for p in model.parameters()] == versions  # unseen by the versions
    assert_same_rollout(cached.collect(20), plain.collect(20))


REFILL_MODES = {
    "packed": {"pack_refills": True},
    "merged": {"pack_refills": False, "merge_refills": True},
    "split": {"pack_refills": False, "merge_refills": False},
}


def count_calls(model):
    """Forward calls of ``model``, counted at its embedding; ``.remove()`` when done."""
    calls = []
    hook = model.model.embed_tokens.register_forward_hook(lambda module, args, out: calls.append(args[0].shape))
    return calls, hook


@pytest.mark.parametrize(
    ("dtype", "prefix_cache"),
    [(torch.float32, True), (torch.float32, False), (torch.bfloat16, True)],
    ids=["float32", "float32-no-prefix-cache", "bfloat16"],
)
def test_packed_and_merged_refills_equal_split_calls(dtype, prefix_cache):
    """Decode and prefill rows in one packed call, or in one padded call, give the
    rollout of two calls: actions, log-probs and values (from the hidden states), over
    many refills of varied lengths."""
    model = tiny_model(load_tokenizer("byte"), seed=3, dtype=dtype)
    head = torch.nn.Linear(64, 1).to(dtype)
    stop = stop_at_varied_lengths(make_env(1).prompt_tokens)
    runs, calls, shapes = {}, {}, {}
    for mode, knobs in REFILL_MODES.items():
        fed, hook = count_calls(model)
        collector = RolloutCollector(
            model,
            make_env(5),
            greedy=True,
            logits_processor=stop,
            value_head=lambda h: head(h)[:, 0],
            prefix_cache=prefix_cache,
            **knobs,
        )
        runs[mode], calls[mode], shapes[mode] = collector.collect(40, seed=7), len(fed), fed
        hook.remove()
    assert runs["split"].dones.sum() > 30  # many refills
    assert calls["packed"] == calls["merged"] < calls["split"] - 15  # one call where the split path made two
    assert any(shape[0] == 1 and shape[1] > 5 for shape in shapes["packed"])  # rows packed into one sequence
    for mode in ("packed", "merged"):
        assert_same_rollout(runs[mode], runs["split"])
        assert torch.allclose(runs[mode].values.float(), runs["split"].values.float(), atol=1e-4)


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 4), (6, 2)])
def test_packed_refills_with_any_number_of_shared_key_value_heads(heads, kv_heads):
    """The packed attention stacks the query heads that share a key/value head; with
    none shared (4/4) and three sharing each (6/2), it equals two calls."""
    model = tiny_model(load_tokenizer("byte"), seed=5, hidden=48, heads=heads, kv_heads=kv_heads)
    stop = stop_at_varied_lengths(make_env(1).prompt_tokens)
    runs = [
        RolloutCollector(model, make_env(4), greedy=True, logits_processor=stop, **REFILL_MODES[mode]).collect(
            30, seed=2
        )
        for mode in ("packed", "split")
    ]
    assert runs[1].dones.sum() > 15
    assert_same_rollout(*runs)


def test_split_steps_share_one_lm_head_call(monkeypatch):
    """Where logits are head(last hidden state), a step with two calls runs the body in
    each and the LM head once over all rows; the rollout equals two full calls'."""
    model = tiny_model(load_tokenizer("byte"), seed=3)
    assert plain_head(model)[1] is model.get_output_embeddings()
    stop = stop_at_varied_lengths(make_env(1).prompt_tokens)
    value = torch.nn.Linear(64, 1)
    # every application of the head through the module, so that the hook counts them
    monkeypatch.setattr(runner_module, "head_logits", lambda head, hidden: head(hidden))

    def run():
        heads = []
        hook = model.get_output_embeddings().register_forward_hook(lambda m, args, out: heads.append(args[0].shape))
        collector = RolloutCollector(
            model,
            make_env(5),
            greedy=True,
            logits_processor=stop,
            value_head=lambda h: value(h)[:, 0],
            pack_refills=False,
            merge_refills=False,
        )
        batch = collector.collect(40, seed=7)
        hook.remove()
        return batch, len(heads)

    shared, shared_heads = run()
    monkeypatch.setattr(runner_module, "plain_head", lambda model: (None, None))
    per_call, per_call_heads = run()
    assert shared.dones.sum() > 30 and shared_heads < per_call_heads - 15
    assert_same_rollout(shared, per_call)
    assert torch.allclose(shared.values, per_call.values, atol=1e-5)
    model.config.final_logit_softcapping = 30.0  # logits are not head(hidden) alone
    assert plain_head(model) == (None, None)


@pytest.mark.parametrize("bias", [False, True])
def test_head_logits_equal_the_head_module(bias, monkeypatch):
    """The swapped product (few float32 rows of a large head, on CPU) and the module call
    it falls back to elsewhere give the head's logits; each is taken where it should be."""
    linear_calls = []
    linear = torch.nn.functional.linear
    monkeypatch.setattr(torch.nn.functional, "linear", lambda *a: linear_calls.append(1) or linear(*a))
    torch.manual_seed(0)
    head = torch.nn.Linear(64, SWAPPED_HEAD_MIN_WEIGHTS // 64, bias=bias)
    for rows in (1, 8, SWAPPED_HEAD_ROWS, SWAPPED_HEAD_ROWS + 1):
        hidden = torch.randn(rows, 64)
        logits = head_logits(head, hidden)
        assert logits.shape == (rows, head.out_features) and logits.is_contiguous()
        torch.testing.assert_close(logits, head(hidden), rtol=1e-5, atol=1e-5)
    assert len(linear_calls) == 4 + 1  # each reference, and the module for 17 rows only
    linear_calls.clear()
    small = torch.nn.Linear(64, 1000, bias=bias)  # a small head: the module
    half = torch.nn.Linear(64, SWAPPED_HEAD_MIN_WEIGHTS // 64, bias=bias).to(torch.bfloat16)
    assert torch.equal(head_logits(small, hidden[:8]), small(hidden[:8]))
    assert torch.equal(head_logits(half, hidden[:8].bfloat16()), half(hidden[:8].bfloat16()))
    assert len(linear_calls) == 4
    # a hook on the head (an adapter's, a user's) still sees every call
    seen = []
    head.register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    assert torch.equal(head_logits(head, hidden[:8]), head(hidden[:8])) and seen == [(8, 64)] * 2


def test_packed_and_merged_refills_equal_split_calls_with_user_replies(model):
    """Multi-turn: an agent token plus the user's reply (a prefill mid-episode) shares a
    packed or merged call with decode rows and fresh prompts."""
    import gymnasium as gym

    eos = torch.arange(258) == 256

    def end_turns(logits, obs):
        return torch.where(((obs["new_span"][:, 1:] + torch.arange(3)[:, None]) % 3 == 0) & eos, 1e4, logits)

    runs, calls = {}, {}
    for mode, knobs in REFILL_MODES.items():
        env = gym.make_vec("TextDialogGoal-v0", num_envs=3, output="torch", tokenizer="byte", max_turns=3)
        fed, hook = count_calls(model)
        collector = RolloutCollector(model, env, greedy=True, logits_processor=end_turns, **knobs)
        runs[mode] = collector.collect(60, seed=0)
        calls[mode] = len(fed)
        hook.remove()
    assert runs["split"].dones.sum() > 6 and calls["packed"] == calls["merged"] < calls["split"] - 10
    assert_same_rollout(runs["packed"], runs["split"])
    assert_same_rollout(runs["merged"], runs["split"])


def test_pack_refills_needs_a_plain_head_model(monkeypatch):
    monkeypatch.setattr(runner_module, "plain_head", lambda model: (None, None))
    model = tiny_model(load_tokenizer("byte"))
    with pytest.raises(ValueError, match="pack_refills=True needs a model whose logits are lm_head"):
        RolloutCollector(model, make_env(2), pack_refills=True)
    assert not RolloutCollector(model, make_env(2)).runner.pack_refills  # the default falls back


def test_cost_model_merges_for_a_small_body_and_splits_for_a_large_one_on_cpu():
    """With 8 slots, one refilling with an 11-token suffix (q = 11): 70 padded positions.
    A 4-layer, 256-wide body under a 49,152-token LM head merges; SmolLM2-135M's
    30 layers (106M parameters of 135M) split on CPU and merge on a GPU."""
    from transformers import LlamaConfig, LlamaForCausalLM

    def budget(device_type, **shape):
        config = LlamaConfig(vocab_size=49_152, tie_word_embeddings=True, **shape)
        with torch.device("meta"):  # shapes only, no weights
            return merge_budget(LlamaForCausalLM(config), device_type)

    padded = 7 * (11 - 1)
    tiny = {
        "hidden_size": 256,
        "intermediate_size": 1024,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
    }
    smollm2 = {
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
    }
    assert budget("cpu", **tiny) > padded > budget("cpu", **smollm2)
    assert budget("cuda", **smollm2) > padded
    # the collector follows the budget unless told
    collector = RolloutCollector(tiny_model(load_tokenizer("byte")), make_env(2), pack_refills=False)
    rows = int(collector.runner.merge_budget // 10)
    assert collector.runner._merges(rows, 11) and not collector.runner._merges(rows + 1, 11)
    collector.merge_refills = False  # the collector's settings are its runner's
    assert collector.runner.merge_refills is False and not collector.runner._merges(1, 2)
    collector.merge_refills = True
    assert collector.runner._merges(100, 100)
    assert collector.merge_budget == collector.runner.merge_budget and collector.cache is collector.runner.cache
    assert collector.prefix_cache and not collector.pack_refills


def test_compiled_decode_step_equals_eager_and_compiles_once():
    """``compile=True``: the decode step runs as a compiled graph (refills stay eager);
    actions, log-probs and values equal the eager rollout's, and a second collector with
    the same shapes reuses the graph."""
    from torch._dynamo.utils import counters

    model = tiny_model(load_tokenizer("byte"), seed=3, layers=1)
    head = torch.nn.Linear(64, 1)
    stop = stop_at_varied_lengths(make_env(1).prompt_tokens)

    def run(**knobs):
        collector = RolloutCollector(
            model, make_env(4), greedy=True, logits_processor=stop, value_head=lambda h: head(h)[:, 0], **knobs
        )
        return collector.collect(30, seed=7)

    eager = run()
    torch._dynamo.reset()
    counters.clear()
    compiled = run(compile=True)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1 and eager.dones.sum() > 10  # compiled, over many refills
    assert_same_rollout(compiled, eager)
    assert torch.allclose(compiled.values, eager.values, atol=1e-5)
    assert_same_rollout(run(compile=True), eager)
    assert counters["stats"]["unique_graphs"] == graphs  # no recompile


@pytest.mark.parametrize("mode", ["packed", "split"])
def test_a_window_runner_follows_a_collectors_observations(model, mode):
    """A runner fed the observations a collector samples from (NLPO's mask model) gives
    the logits of a second collector's ``feed`` and, for the same model, the collector's
    own logits: over refills of varied lengths, through collect and collect_episodes."""
    other = tiny_model(load_tokenizer("byte"), seed=11)
    env = make_env(4)
    runner, own = WindowRunner(other, env, **REFILL_MODES[mode]), WindowRunner(model, env, **REFILL_MODES[mode])
    follower = RolloutCollector(other, make_env(4), **REFILL_MODES[mode])  # used only for feed, as NLPO did
    stop = stop_at_varied_lengths(env.prompt_tokens)
    seen = []

    def process(logits, obs):
        mask_logits, _ = runner.feed(obs)
        assert torch.equal(mask_logits, follower.feed(obs)[0])
        assert torch.allclose(own.feed(obs)[0][:, :258], logits, atol=1e-5)  # the policy's own logits
        seen.append(obs["new_span"][:, 1] - obs["new_span"][:, 0])
        return stop(logits, obs)

    collector = RolloutCollector(model, env, greedy=True, logits_processor=process, **REFILL_MODES[mode])
    batch = collector.collect(30, seed=3)
    collector.collect_episodes(seed=4)
    assert batch.dones.sum() > 10 and (torch.stack(seen) > 1).any(1).sum() > 10  # many refill steps


def test_a_window_runner_needs_only_the_envs_shape_facts(model):
    """A SimpleNamespace with the env's shape facts builds a runner whose logits and hidden
    states equal one built from the env; the model checks apply to it too."""
    from types import SimpleNamespace

    env = make_env(3)
    facts = SimpleNamespace(
        num_envs=3, prompt_tokens=env.prompt_tokens, window=env.window, vocab_size=258, device=env.device
    )
    from_env, from_facts = WindowRunner(model, env, hidden=True), WindowRunner(model, facts, hidden=True)
    obs, _ = env.reset(seed=0)
    for _ in range(12):
        (logits, hidden), (logits2, hidden2) = from_env.feed(obs), from_facts.feed(obs)
        assert torch.equal(logits, logits2) and torch.equal(hidden, hidden2) and hidden.shape == (3, 64)
        obs, *_ = env.step(logits[:, :258].argmax(-1))
    with pytest.raises(ValueError, match=r"vocabulary \(258\) is smaller than the action space Discrete\(300\)"):
        WindowRunner(model, SimpleNamespace(**{**vars(facts), "vocab_size": 300}))
    with pytest.raises(ValueError, match="built for tokenizer 'byte'.*HuggingFaceTB"):
        WindowRunner(model, TextVectorEnv(1, output="torch", max_new_tokens=2))
    with pytest.raises(ValueError, match=r"output='numpy'.*TextVectorEnv\(output='torch'\)"):
        WindowRunner(model, TextVectorEnv(1, tokenizer="byte", max_new_tokens=2))


def test_refresh_prefix_recomputes_the_prefix_after_an_unrecorded_weight_change():
    """A write through ``param.data`` bumps no version: the runner keeps its prefix's
    keys/values until told, then recomputes them and matches a prefix-free runner."""
    model = tiny_model(load_tokenizer("byte"), seed=5)
    env = make_env(2)
    cached, plain = WindowRunner(model, env), WindowRunner(model, env, prefix_cache=False)
    obs, _ = env.reset(seed=0)
    assert torch.allclose(cached.feed(obs)[0], plain.feed(obs)[0], atol=1e-5)
    for p in model.parameters():
        p.data.mul_(0.8)
    obs, _ = env.reset(seed=1)
    stale = cached.feed(obs)[0]
    cached.refresh_prefix()
    fresh, expected = cached.feed(obs)[0], plain.feed(obs)[0]
    assert not torch.allclose(stale, expected, atol=1e-3) and torch.allclose(fresh, expected, atol=1e-5)


SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
FAMILIES = {  # model type: the config's size arguments
    "llama": {**SMALL, "num_key_value_heads": 2},
    "mistral": {**SMALL, "num_key_value_heads": 2},
    "qwen2": {**SMALL, "num_key_value_heads": 2},
    "qwen3": {**SMALL, "num_key_value_heads": 2, "head_dim": 8},
    "olmo2": {**SMALL, "num_key_value_heads": 2},
    "gemma": {**SMALL, "num_key_value_heads": 2, "head_dim": 8},
    "gemma2": {**SMALL, "num_key_value_heads": 2, "head_dim": 8},
    "gemma3_text": {**SMALL, "num_key_value_heads": 2, "head_dim": 8},
    "phi": SMALL,
    "phi3": {**SMALL, "num_key_value_heads": 2, "pad_token_id": 0},  # its default pad id is past 258
    "gpt_neox": SMALL,
    "gpt2": {"n_embd": 32, "n_layer": 2, "n_head": 4},
    "gptj": {"n_embd": 32, "n_layer": 2, "n_head": 4, "rotary_dim": 4},
    "gpt_bigcode": {"n_embd": 32, "n_layer": 2, "n_head": 4},
}


@pytest.mark.parametrize("model_type", FAMILIES)
def test_supported_families_give_the_logits_of_a_full_forward(model_type):
    """Each family the docs name as supported: the runner's next-token logits over a
    prefill, decode steps and refills equal a full forward pass over the window."""
    import transformers

    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model(model_type, vocab_size=258, **FAMILIES[model_type])
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    env = make_env(2, max_new_tokens=3)
    runner = WindowRunner(model, env, pack_refills=False)
    obs, _ = env.reset(seed=0)
    for _ in range(7):  # two episodes per slot: prefill, decodes, a refill
        logits, _ = runner.feed(obs)
        attn = obs["attention_mask"].long()
        with torch.no_grad():
            full = model(obs["input_ids"], attention_mask=attn, position_ids=(attn.cumsum(1) - 1).clamp(min=0)).logits
        expected = full[torch.arange(2), obs["new_span"][:, 1] - 1]
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
        obs, *_ = env.step(logits[:, :258].argmax(-1))


def test_a_decode_step_attends_only_as_far_as_the_windows_reach():
    """The cache hands attention the columns [0, reach) on a decode step, the logits equal
    those over the whole window, and SDPA models get the boolean mask."""
    from text_gym.rollout.cache import WindowCache, model_mask

    cache = WindowCache(num_rows=2, window=6)
    cache.select(None, torch.tensor([[1], [2]]), reach=3)
    key = torch.ones(2, 1, 1, 4)
    keys, values = cache.update(key, key, layer_idx=0)
    assert keys.shape == (2, 1, 3, 4) and cache.keys[0].shape == (2, 1, 7, 4)
    assert keys[:, 0, :, 0].tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]

    model = tiny_model(load_tokenizer("byte"), seed=3)
    allowed = torch.tensor([[True, False]])
    assert model_mask(allowed, model) is allowed  # sdpa: the boolean mask itself
    model.config._attn_implementation = "eager"
    assert model_mask(allowed, model).dtype == torch.float32
    model.config._attn_implementation = "sdpa"

    env, reaches = make_env(3), []
    runner = WindowRunner(model, env)
    select = runner.cache.select
    runner.cache.select = lambda *a: (reaches.append(a[3] if len(a) > 3 else None), select(*a))[1]
    full = WindowRunner(model, make_env(3))
    full._eager_decode = None  # as a compiled runner does: every decode step over the whole window
    obs, _ = env.reset(seed=0)
    runner.feed(obs), full.feed(obs)
    for _ in range(3):
        obs, *_ = env.step(torch.tensor([104, 105, 106]))
        logits, _ = runner.feed(obs)
        assert torch.allclose(logits, full.feed(obs)[0], atol=1e-5)
    assert reaches[-3:] == [env.prompt_tokens + 1, env.prompt_tokens + 2, env.prompt_tokens + 3]
