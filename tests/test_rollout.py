"""The KV-cache rollout loop: greedy equals generate, log-probs equal a full forward,
slot refill leaves every episode as it would be alone, episodes and evaluation, and
construction-time checks. The runner's forward strategies and prefix cache are in
test_rollout_runner.py, the sampler in test_rollout_sampling.py."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from text_gym import TextVectorEnv
from text_gym.rollout import RolloutCollector, sequence_logprobs, tiny_model
from text_gym.rollout.runner import SWAPPED_HEAD_MIN_WEIGHTS
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

    def make(n):
        if large_head:
            return TextVectorEnv(n, output="torch", max_new_tokens=T)
        return make_env(n)

    if large_head:
        model = tiny_model(load_tokenizer("default"), hidden=128, seed=3)
        assert model.get_output_embeddings().weight.numel() >= SWAPPED_HEAD_MIN_WEIGHTS
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

    def mistral(window):
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

    def gpt_neo(window):  # local layers attend over a band of window_size
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

    def stop_soon(logits, obs):
        return logits.index_fill(1, torch.tensor([256]), 5.0)

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

    def stop_sometimes(logits, obs):
        return logits.index_fill(1, torch.tensor([env.tokenizer.eos_token_id]), 4.0)

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

    def never_stop(logits, obs):
        return logits.index_fill(1, torch.tensor(env.stop_token_ids), float("-inf"))

    collector.logits_processor = never_stop
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


def recording_infos(env) -> list[dict]:
    """Make ``env.step`` keep every step's infos in the returned list."""
    infos, step = [], env.step

    def recorded(actions):
        out = step(actions)
        infos.append(out[-1])
        return out

    env.step = recorded
    return infos


def first_final_metrics(infos: list[dict], n: int) -> dict[str, list[float]]:
    """Each slot's metrics from the info of the step that first finished it."""
    out: dict[str, list[float]] = {}
    for slot in range(n):
        info = next(i for i in infos if "_metrics" in i and i["_metrics"][slot])
        for name, values in info["metrics"].items():
            if not name.startswith("_"):
                out.setdefault(name, []).append(float(values[slot]))
    return out


def test_episode_metrics_equal_the_envs_final_info_multi_turn(model):
    """TextDialogGoal-v0: success and turns per episode, as the env reported them; a won
    dialogue's reward is 1 - turn_cost * turns."""
    env = TextVectorEnv(8, task="goal_dialogue", tokenizer="byte", output="torch", low=1, high=4, max_turns=3)
    digits, eos = torch.tensor([ord(c) for c in "1234"]), env.tokenizer.eos_token_id

    def guess(logits, obs):  # one sampled digit per turn, then the end of the turn
        last = obs["new_span"][:, 1:] - 1
        guessed = obs["agent_mask"].gather(1, last)[:, 0].bool()
        allowed = torch.full_like(logits, float("-inf")).index_fill(1, digits, 0.0)
        return torch.where(guessed[:, None], allowed.index_fill(1, torch.tensor([eos]), 1e4), allowed)

    infos = recording_infos(env)
    episodes = RolloutCollector(model, env, logits_processor=guess).collect_episodes(seed=1)
    assert set(episodes.metrics) == {"success", "turns", "invalid_turns"}
    expected = first_final_metrics(infos, 8)
    for name, values in episodes.metrics.items():
        assert values.shape == (8,) and values.device == env.device and values.dtype == torch.float32
        assert values.tolist() == expected[name]
    won = episodes.metrics["success"] == 1
    assert 0 < int(won.sum()) < 8  # both outcomes occur in this draw
    cost = env.task.turn_cost
    assert torch.allclose(episodes.rewards[won], 1 - cost * episodes.metrics["turns"][won])
    assert ((episodes.metrics["turns"] >= 1) & (episodes.metrics["turns"] <= 3)).all()


def test_episode_metrics_single_turn_and_evaluate_with_metrics(model):
    stop = stop_at_varied_lengths(make_env(1).prompt_tokens)
    env = make_env(4, metrics=("exact_match", "chrf"))
    infos = recording_infos(env)
    episodes = RolloutCollector(model, env, logits_processor=stop).collect_episodes(seed=2)
    expected = first_final_metrics(infos, 4)
    assert set(episodes.metrics) == set(expected) and "chrf" in expected
    for name, values in episodes.metrics.items():
        assert torch.allclose(values, torch.tensor(expected[name], dtype=torch.float32))
    # evaluate: the metrics line up with the rewards, sample by sample, as one slot gives them
    greedy = RolloutCollector(model, make_env(4, metrics=("exact_match", "chrf")), greedy=True, logits_processor=stop)
    rewards, metrics = greedy.evaluate(range(6), metrics=True)
    assert rewards.shape == (6,) and all(v.shape == (6,) for v in metrics.values())
    assert torch.equal(rewards, greedy.evaluate(range(6)))
    alone = RolloutCollector(model, make_env(1, metrics=("exact_match", "chrf")), greedy=True, logits_processor=stop)
    for j in range(6):
        one = alone.evaluate([j], metrics=True)[1]
        assert {k: float(v[0]) for k, v in one.items()} == {k: float(v[j]) for k, v in metrics.items()}
