"""The KV-cache rollout backend: greedy equals generate, log-probs equal a full forward,
slot refill leaves every episode as it would be alone, and construction-time checks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from text_gym import TextVectorEnv
from text_gym.rollout import RolloutCollector, merge_budget, sample_categorical, sequence_logprobs, tiny_model
from text_gym.rollout import collector as collector_module
from text_gym.rollout.collector import (
    SAMPLE_BLOCK,
    SWAPPED_HEAD_MIN_WEIGHTS,
    SWAPPED_HEAD_ROWS,
    head_logits,
    plain_head,
)
from text_gym.tasks.base import Sample, Scores, Task
from text_gym.tokenizers import load_tokenizer

T = 8


def make_env(n: int, **kwargs) -> TextVectorEnv:
    kwargs.setdefault("max_new_tokens", T)
    return TextVectorEnv(n, tokenizer="byte", output="torch", **kwargs)


def stop_at_varied_lengths(prompt_width: int):
    """A logits processor that forces EOS once the response reaches a length set by the
    episode's prompt, so slots finish (and refill) at different steps."""

    def process(logits: torch.Tensor, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        prompt_len = obs["attention_mask"][:, :prompt_width].sum(1)
        first_token = obs["input_ids"].gather(1, (prompt_width - prompt_len)[:, None])[:, 0]
        length = obs["new_span"][:, 1] - prompt_width
        stop = length >= (first_token + prompt_len) % 5 + 1
        return torch.where(stop[:, None] & (torch.arange(logits.shape[1]) == 256), 1e4, logits)

    return process


@pytest.fixture(scope="module")
def model():
    return tiny_model(load_tokenizer("byte"), seed=3)


def full_forward_logprobs(model, first_obs, actions, P, temperature=1.0):
    """log p(action) at every step, from one forward pass over prompts + actions (steps, N)."""
    prompt_ids, prompt_mask = first_obs["input_ids"][:, :P], first_obs["attention_mask"][:, :P].long()
    full = torch.cat((prompt_ids, actions.T), 1)
    mask = torch.cat((prompt_mask, torch.ones_like(actions.T)), 1)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(full, attention_mask=mask, position_ids=positions).logits.float()
    logp = torch.log_softmax(logits / temperature, -1)
    return logp[:, P - 1 : -1].gather(2, actions.T[:, :, None])[:, :, 0].T


def first_episodes(dones):
    """(steps, N) bool: the steps of each slot's first episode."""
    return torch.cumsum(dones.long(), 0) - dones.long() == 0


@pytest.mark.parametrize("large_head", [False, True])
def test_greedy_tokens_equal_generate_and_logprobs_equal_full_forward(model, large_head):
    """``large_head``: a 49,152-token vocabulary, whose head over 4 rows runs swapped on
    CPU (:func:`head_logits`)."""
    make = make_env
    if large_head:
        model = tiny_model(load_tokenizer("default"), hidden=128, seed=3)
        assert model.get_output_embeddings().weight.numel() >= SWAPPED_HEAD_MIN_WEIGHTS
        make = lambda n: TextVectorEnv(n, output="torch", max_new_tokens=T)  # noqa: E731
    env = make(4)
    first_obs, _ = make(4).reset(seed=0)  # the same prompts the collector will see
    batch = RolloutCollector(model, env, greedy=True).collect(T, seed=0)
    P = env.prompt_tokens
    generated = model.generate(
        first_obs["input_ids"][:, :P],
        attention_mask=first_obs["attention_mask"][:, :P].long(),
        max_new_tokens=T,
        do_sample=False,
        eos_token_id=env.tokenizer.eos_token_id,
        pad_token_id=env.tokenizer.pad_token_id,
    )[:, P:]
    for i in range(4):
        steps = int(batch.dones[:, i].nonzero()[0]) + 1  # the first episode's length
        assert batch.actions[:steps, i].tolist() == generated[i, :steps].tolist()
    expected = full_forward_logprobs(model, first_obs, batch.actions, P)
    first = first_episodes(batch.dones)
    assert torch.allclose(batch.logprobs[first], expected[first], atol=1e-4)


def test_sampled_logprobs_equal_full_forward_at_the_temperature(model):
    """Sampling (temperature 0.7) records log-probs of the tempered distribution."""
    env = make_env(4)
    first_obs, _ = make_env(4).reset(seed=0)
    torch.manual_seed(0)
    batch = RolloutCollector(model, env, temperature=0.7).collect(T, seed=0)
    expected = full_forward_logprobs(model, first_obs, batch.actions, env.prompt_tokens, 0.7)
    first = first_episodes(batch.dones)
    assert first.sum() > 8
    assert torch.allclose(batch.logprobs[first], expected[first], atol=1e-4)


def test_slot_refill_keeps_each_episode_as_it_would_be_alone(model):
    """Slots end at different steps and refill while the others decode; each slot's whole
    action stream equals a one-slot run with that slot's seed (s + i)."""
    steps, n = 40, 4
    stop = stop_at_varied_lengths(make_env(1).prompt_tokens)
    together = RolloutCollector(model, make_env(n), greedy=True, logits_processor=stop).collect(steps, seed=10)
    first_ends = together.dones.float().argmax(0).tolist()
    assert together.dones.sum() > 2 * n and len(set(first_ends)) > 1  # refills at different steps
    for i in range(n):
        alone = RolloutCollector(model, make_env(1), greedy=True, logits_processor=stop).collect(steps, seed=10 + i)
        assert together.actions[:, i].tolist() == alone.actions[:, 0].tolist()
        assert together.dones[:, i].tolist() == alone.dones[:, 0].tolist()
        assert torch.allclose(together.logprobs[:, i], alone.logprobs[:, 0], atol=1e-5)


def test_sampling_controls_and_mask(model):
    env = make_env(3)
    top1 = RolloutCollector(model, env, top_k=1).collect(6, seed=1)
    greedy = RolloutCollector(model, make_env(3), greedy=True).collect(6, seed=1)
    assert torch.equal(top1.actions, greedy.actions)  # top-k 1 is greedy
    assert torch.equal(top1.mask[0], torch.ones(3, dtype=torch.bool))
    # after a slot finishes, its next step is the reset step and is masked out
    done_rows, done_cols = greedy.dones[:-1].nonzero(as_tuple=True)
    assert not greedy.mask[done_rows + 1, done_cols].any()


def test_sample_categorical_follows_the_distribution_and_never_draws_zero_probability():
    gen = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.2, 0.0]]).repeat(40_000, 1)
    draws = sample_categorical(probs * 7.0, generator=gen)  # any positive total
    freq = torch.bincount(draws, minlength=6).double() / len(draws)
    assert freq[[0, 2, 5]].sum() == 0  # zero-probability tokens, first and last included
    # within 5 binomial standard deviations (~0.013 for p=0.5 at 40k draws)
    assert torch.allclose(freq, probs[0].double(), atol=0.015), freq
    one_hot = torch.zeros(3, 49_152)
    one_hot[0, 0], one_hot[1, -1], one_hot[2, 1234] = 1.0, 1e-30, 3.0
    for _ in range(200):  # a single nonzero entry, even a tiny one, at either end
        assert sample_categorical(one_hot).tolist() == [0, 49_151, 1234]
    a = sample_categorical(probs[:50], generator=torch.Generator().manual_seed(5))
    b = sample_categorical(probs[:50], generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    # several blocks of columns and a partial last one: a block with no weight at all,
    # zeros scattered inside the others, and odds spanning five orders of magnitude
    V = 2 * SAMPLE_BLOCK + 37
    weights = torch.rand(V, generator=torch.Generator().manual_seed(1)) ** 4
    weights[::7] = 0.0
    weights[SAMPLE_BLOCK : 2 * SAMPLE_BLOCK] = 0.0
    counts = torch.zeros(V, dtype=torch.float64)
    for _ in range(10):  # 400k draws, 40k rows at a time
        counts += torch.bincount(sample_categorical(weights.expand(40_000, V), gen), minlength=V)
    p = weights.double() / weights.double().sum()
    assert counts[weights == 0].sum() == 0
    assert ((counts / counts.sum() - p).abs() <= 5 * (p * (1 - p) / counts.sum()).sqrt() + 1e-6).all()


def test_construction_checks():
    byte_model = tiny_model(load_tokenizer("byte"))
    with pytest.raises(ValueError, match="output='torch'"):
        RolloutCollector(byte_model, TextVectorEnv(1, tokenizer="byte"))
    with pytest.raises(ValueError, match="built for tokenizer 'byte'.*HuggingFaceTB"):
        RolloutCollector(byte_model, TextVectorEnv(1, output="torch", max_new_tokens=2))
    small = tiny_model(load_tokenizer("byte"))
    small.config.vocab_size, small.config.text_gym_tokenizer = 100, None
    with pytest.raises(ValueError, match=r"vocabulary \(100\) is smaller than the action space Discrete\(258\)"):
        RolloutCollector(small, make_env(1))
    meta = tiny_model(load_tokenizer("byte")).to("meta")
    with pytest.raises(ValueError, match="model is on meta but the env is on cpu"):
        RolloutCollector(meta, make_env(1))
    import transformers

    opt = transformers.OPTForCausalLM(
        transformers.OPTConfig(
            vocab_size=258,
            hidden_size=16,
            ffn_dim=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            word_embed_proj_dim=16,
        )
    )
    with pytest.raises(ValueError, match=r"model type 'opt' does not run on the rollout's window cache"):
        RolloutCollector(opt, make_env(1))

    def mistral(window):  # noqa: E306
        config = transformers.MistralConfig(
            vocab_size=258,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            sliding_window=window,
        )
        return transformers.MistralForCausalLM(config)

    env = make_env(2)
    with pytest.raises(ValueError, match=rf"sliding window of 32 tokens.*whole window \({env.window} tokens\)"):
        RolloutCollector(mistral(32), env)
    assert RolloutCollector(mistral(env.window), env).collect(2, seed=0).actions.shape == (2, 2)

    def gpt_neo(window):  # noqa: E306  (local layers attend over a band of window_size)
        config = transformers.GPTNeoConfig(
            vocab_size=258,
            hidden_size=16,
            num_layers=2,
            num_heads=2,
            attention_types=[[["global", "local"], 1]],
            window_size=window,
            max_position_embeddings=512,
        )
        return transformers.GPTNeoForCausalLM(config)

    with pytest.raises(ValueError, match=r"\(gpt_neo\) attends over a sliding window of 15 tokens"):
        RolloutCollector(gpt_neo(16), env)
    RolloutCollector(gpt_neo(env.window + 1), env)
    # a device named with an index (or without, as "cuda" is) is the model's device
    indexed = make_env(1, device="cpu:0")
    assert indexed.device == torch.device("cpu")
    RolloutCollector(byte_model, indexed)
    for bad, message in (
        (dict(top_k=259), r"top_k=259 must be an int in \[0, 258\]"),
        (dict(top_k=2.5), r"top_k=2.5 must be an int"),
        (dict(temperature=float("nan")), r"finite temperature > 0.*temperature=nan"),
        (dict(temperature=0.0), r"finite temperature > 0"),
        (dict(top_p=0.0), r"0 < top_p <= 1.*top_p=0.0"),
    ):
        with pytest.raises(ValueError, match=message):
            RolloutCollector(byte_model, make_env(1), **bad)
    for mode in ("same_step", "disabled"):  # a finished slot's next step must be its reset
        with pytest.raises(ValueError, match=f"needs autoreset_mode=NEXT_STEP.*{mode.upper()}"):
            RolloutCollector(byte_model, make_env(2, autoreset_mode=mode))
    wrapped = gym.wrappers.vector.TransformReward(make_env(2), lambda r: r + 100.0)
    with pytest.raises(ValueError, match="wrappers around it would be skipped.*env.unwrapped"):
        RolloutCollector(byte_model, wrapped)


def test_seeded_collection_is_reproducible(model):
    def actions(seed):
        collector = RolloutCollector(model, make_env(3))
        return collector.collect(6, seed=seed).actions, collector.collect_episodes(seed=seed).input_ids

    (a1, e1), (a2, e2), (b, f) = actions(5), actions(5), actions(6)
    assert torch.equal(a1, a2) and torch.equal(e1, e2)
    assert not torch.equal(a1, b) and not torch.equal(e1, f)


def test_a_collector_starts_over_when_other_code_moved_its_env(model):
    env = make_env(3)
    train, other = RolloutCollector(model, env), RolloutCollector(model, env, greedy=True)
    train.collect(4, seed=0)
    other.evaluate(range(5))  # resets and steps the shared env
    assert env.calls != train._calls
    rollout = train.collect(5)  # starts over with a reset: its cache matches the env again
    assert env.calls == train._calls and not rollout.dones[:4].any()
    # every action it records as taken is in the window (not eaten by a pending autoreset)
    P = env.prompt_tokens
    assert rollout.mask.all() and torch.equal(train._obs["input_ids"][:, P : P + 5], rollout.actions.T)
    obs = train._obs  # the next-token logits it holds equal a full forward of the windows
    attn = obs["attention_mask"].long()
    with torch.no_grad():
        logits = model(obs["input_ids"], attention_mask=attn, position_ids=(attn.cumsum(1) - 1).clamp(min=0)).logits
    last = logits[torch.arange(3), obs["new_span"][:, 1] - 1]
    assert torch.allclose(train._last[0], last, atol=1e-4)


def test_multi_turn_user_replies_are_prefilled(model):
    env = TextVectorEnv(2, task="goal_dialogue", tokenizer="byte", output="torch")
    stop_soon = lambda logits, obs: logits.index_fill(1, torch.tensor([256]), 5.0)  # noqa: E731
    batch = RolloutCollector(model, env, greedy=True, logits_processor=stop_soon).collect(30, seed=0)
    assert batch.actions.shape == (30, 2)
    # the window holds the agent's tokens and the user's replies; only the first are agent_mask
    obs = RolloutCollector(model, env, greedy=True, logits_processor=stop_soon)
    obs.collect(6, seed=0)
    window = obs._obs
    assert (window["attention_mask"].sum(1) > window["agent_mask"].sum(1) + env.prompt_tokens // 2).all()


def test_reference_logprobs_of_finished_windows_match_the_rollout(model):
    """One batched pass over final windows gives the log-probs the policy sampled with."""
    env = make_env(3, max_new_tokens=5)
    collector = RolloutCollector(model, env, temperature=1.0)
    batch = collector.collect(5, seed=4)  # a draw with one episode per slot (truncated at 5)
    assert batch.dones[-1].all() and not batch.dones[:-1].any()
    window = collector._obs  # NEXT_STEP: the final windows, until the next step resets them
    logp = sequence_logprobs(model, window["input_ids"], window["attention_mask"])
    agent = window["agent_mask"].bool()
    assert torch.allclose(logp[agent].view(3, 5), batch.logprobs.T, atol=1e-4)


def test_bfloat16_model_runs(model):
    bf16 = tiny_model(load_tokenizer("byte"), seed=3, dtype=torch.bfloat16)
    batch = RolloutCollector(bf16, make_env(2), greedy=True).collect(4, seed=0)
    assert batch.logprobs.dtype == torch.float32 and torch.isfinite(batch.logprobs).all()


@pytest.mark.parametrize("env_id", __import__("text_gym").env_ids())
def test_backend_runs_on_every_registered_env(env_id):
    """Short rollouts on every registered id (the env's own tokenizer, a tiny model)."""
    import gymnasium as gym

    envs = gym.make_vec(env_id, num_envs=2, output="torch", max_new_tokens=6)
    env = envs.unwrapped
    stop_sometimes = lambda logits, obs: logits.index_fill(1, torch.tensor([env.tokenizer.eos_token_id]), 4.0)  # noqa: E731
    collector = RolloutCollector(tiny_model(env.tokenizer), env, logits_processor=stop_sometimes)
    batch = collector.collect(8, seed=0)
    assert batch.actions.shape == (8, 2) and batch.dones.any()
    assert torch.isfinite(batch.logprobs).all() and (batch.logprobs <= 0).all()


def test_collect_episodes_returns_each_slots_first_episode(model):
    stop = stop_at_varied_lengths(make_env(1).prompt_tokens)
    env = make_env(4)
    batch = RolloutCollector(model, make_env(4), greedy=True, logits_processor=stop).collect(3 * T, seed=5)
    episodes = RolloutCollector(model, env, greedy=True, logits_processor=stop).collect_episodes(seed=5)
    P = env.prompt_tokens
    for i in range(4):
        steps = int(batch.dones[:, i].nonzero()[0]) + 1
        assert episodes.agent_mask[i].sum() == steps
        assert episodes.input_ids[i, P : P + steps].tolist() == batch.actions[:steps, i].tolist()
        assert episodes.rewards[i] == batch.rewards[steps - 1, i]
        assert bool(episodes.terminated[i]) == (batch.actions[steps - 1, i] == env.tokenizer.eos_token_id)
    response = env.tokenizer.decode_batch([episodes.input_ids[0, P:][episodes.agent_mask[0, P:].bool()].tolist()])
    sample = env.task.samples[int(episodes.sample_index[0])]
    assert episodes.rewards[0] == env.task.score(response, [sample]).rewards[0]


def test_pinned_samples_groups_and_evaluate(model):
    env = make_env(4)
    collector = RolloutCollector(model, env)  # sampling: a group's answers differ
    episodes = collector.collect_episodes(seed=0, sample_index=[2, 2, 2, 9])
    assert episodes.sample_index.tolist() == [2, 2, 2, 9]
    P = env.prompt_tokens
    assert (episodes.input_ids[:3, :P] == episodes.input_ids[0, :P]).all()
    greedy = RolloutCollector(model, make_env(4), greedy=True)
    scores = greedy.evaluate(range(6))
    assert scores.shape == (6,)
    alone = RolloutCollector(model, make_env(1), greedy=True)
    assert scores.tolist() == [float(alone.evaluate([j])[0]) for j in range(6)]


def assert_same_rollout(cached, plain):
    assert torch.equal(cached.actions, plain.actions) and torch.equal(cached.dones, plain.dones)
    assert torch.allclose(cached.logprobs, plain.logprobs, atol=1e-4)


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
                prefix = collector.env.tokenizer.decode_batch([collector._prefix.tolist()])[0]
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
    decode = lambda ids: cached.env.tokenizer.decode_batch([ids.tolist()])[0]  # noqa: E731
    computed = []  # the prefixes whose keys/values were computed, with layer 0's keys
    compute = cached._prefix_key_values
    cached._prefix_key_values = lambda ids: computed.append((decode(ids), kv := compute(ids))) or kv  # noqa: E731
    # samples 0-2 are "word" prompts
    first = [c.collect_episodes(seed=0, sample_index=[0, 1, 2]) for c in (cached, plain)]
    assert decode(cached._prefix) == "Spell the word please: "
    later = [c.collect(40) for c in (cached, plain)]  # refills draw both families
    assert later[0].dones.sum() > 10
    assert decode(cached._prefix) == "Spell the "
    assert [c[0] for c in computed] == ["Spell the word please: "] * 2  # once per call
    assert torch.equal(cached._prefix_kv[0][0], computed[-1][1][0][0][:, : len(cached._prefix)])
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
    assert len(collectors[0]._prefix) == len(prompt.encode()) - 1  # all of it but the token fed
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


def test_collect_after_collect_episodes_starts_with_a_reset(model):
    """Slots that finished early hold waiting tokens the policy never chose: a following
    collect resets instead of continuing those episodes."""
    stop = stop_at_varied_lengths(make_env(1).prompt_tokens)
    env = make_env(3)
    collector = RolloutCollector(model, env, greedy=True, logits_processor=stop)
    resets = []
    reset = env.reset
    env.reset = lambda **kwargs: resets.append(kwargs) or reset(**kwargs)
    episodes = collector.collect_episodes(seed=0)
    assert len(set(episodes.agent_mask.sum(1).tolist())) > 1  # some slots waited
    collector.logits_processor = lambda logits, obs: logits.index_fill(
        1, torch.tensor(env.stop_token_ids), float("-inf")
    )  # noqa: E731
    batch = collector.collect(3)
    assert len(resets) == 2 and resets[1]["seed"] is None  # the streams go on
    P = env.prompt_tokens
    assert batch.mask.all() and torch.equal(collector._obs["input_ids"][:, P : P + 3], batch.actions.T)


def test_evaluate_leaves_the_env_streams_alone(model):
    """An evaluation on an env a training collector also uses must not reseed it: the
    training prompts after each evaluation would be the same ones again."""
    env = make_env(4)
    env.reset(seed=1)
    held_out = RolloutCollector(model, env, greedy=True)
    after = []
    for _ in range(2):
        assert held_out.evaluate(range(5)).shape == (5,)
        after.append(env.reset()[1]["sample_index"].tolist())
    assert after[0] != after[1]


def test_collect_episodes_scores_only_the_returned_episodes(model):
    """Slots that finish early wait without ending another episode: every response the
    task scores is one of the returned episodes (a code task pays a sandbox run each)."""
    stop = stop_at_varied_lengths(make_env(1).prompt_tokens)
    env = make_env(4)
    scored = []
    score = env.task.score
    env.task.score = lambda responses, samples: scored.extend(responses) or score(responses, samples)
    try:
        episodes = RolloutCollector(model, env, greedy=True, logits_processor=stop).collect_episodes(seed=5)
    finally:
        del env.task.score
    assert len(scored) == 4 and episodes.terminated.any()


def test_collect_episodes_when_the_policy_allows_only_the_stop_token(model):
    """A logits processor may leave the stop token as the only choice (an NLPO mask): slots
    waiting for the others must still be able to step."""
    env = make_env(4)
    eos = env.tokenizer.eos_token_id

    def stop_at_slot_index(logits, obs):  # slot i: i tokens, then EOS is the only choice
        now = ((obs["new_span"][:, 1] - env.prompt_tokens) >= torch.arange(4))[:, None]
        is_eos = torch.arange(logits.shape[1]) == eos
        return logits.masked_fill((now & ~is_eos) | (~now & is_eos), float("-inf"))

    episodes = RolloutCollector(model, env, logits_processor=stop_at_slot_index).collect_episodes(seed=0)
    assert episodes.agent_mask.sum(1).tolist() == [1, 2, 3, 4] and episodes.terminated.all()


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
    monkeypatch.setattr(collector_module, "head_logits", lambda head, hidden: head(hidden))

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
    monkeypatch.setattr(collector_module, "plain_head", lambda model: (None, None))
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
    monkeypatch.setattr(collector_module, "plain_head", lambda model: (None, None))
    model = tiny_model(load_tokenizer("byte"))
    with pytest.raises(ValueError, match="pack_refills=True needs a model whose logits are lm_head"):
        RolloutCollector(model, make_env(2), pack_refills=True)
    assert not RolloutCollector(model, make_env(2)).pack_refills  # the default falls back


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
    rows = int(collector.merge_budget // 10)
    assert collector._merges(rows, 11) and not collector._merges(rows + 1, 11)
    collector.merge_refills = False
    assert not collector._merges(1, 2)
    collector.merge_refills = True
    assert collector._merges(100, 100)


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
