"""TextDialog-v0's task: chitchat next-response samples, splits, scoring, loaders."""

from __future__ import annotations

import doctest
import json
import logging

import numpy as np
import pytest

from text_gym import TextVectorEnv
from text_gym.tasks import dialogue
from text_gym.tasks.dialogue import DialogueTask, build_samples, load_chitchat, rows_to_conversations
from text_gym.tokenizers import load_tokenizer


@pytest.fixture(scope="module")
def splits() -> dict[str, DialogueTask]:
    return {s: DialogueTask(split=s) for s in dialogue.SPLITS}


def test_split_counts_add_up_and_no_conversation_spans_two_splits(splits):
    conversations, skipped = load_chitchat()
    assert skipped == {"empty_messages": 33, "short_conversations": 3151}
    assert len(conversations) + skipped["short_conversations"] == 7168
    assert {s: len(t) for s, t in splits.items()} == {"train": 103676, "validation": 14541, "test": 13331}
    assert sum(map(len, splits.values())) == sum(len(turns) - 1 for _, turns in conversations)
    ids = {s: {x.extra["conversation"] for x in t.samples} for s, t in splits.items()}
    assert sum(map(len, ids.values())) == len(set.union(*ids.values())) == len(conversations)
    for s, cids in ids.items():
        assert all(dialogue.split_of(c) == s for c in cids)


def test_samples_are_history_then_next_turn(splits):
    sample = splits["test"].samples[2]
    conversations = dict(load_chitchat()[0])
    turns = conversations[sample.extra["conversation"]]
    assert sample.extra["turn"] == 3 and sample.references == (turns[3],)
    assert sample.prompt == f"A: {turns[0]}\nB: {turns[1]}\nA: {turns[2]}\nB:" == sample.source
    roles = [m["role"] for m in sample.extra["messages"]]
    assert roles == ["user", "assistant", "user"]  # the reference is the assistant's turn
    assert [m["content"] for m in sample.extra["messages"]] == list(turns[:3])


def test_history_turns_is_respected():
    short = DialogueTask(split="validation", history_turns=2, max_samples=300)
    long = DialogueTask(split="validation", history_turns=50, max_samples=300)
    assert len(short) == len(long) == 300
    for s, ls in zip(short.samples, long.samples):
        lines = s.prompt.split("\n")
        assert len(lines) == min(s.extra["turn"], 2) + 1 and len(s.extra["messages"]) == len(lines) - 1
        assert lines == ls.prompt.split("\n")[-len(lines) :] and s.references == ls.references
    assert max(len(s.prompt.split("\n")) for s in long.samples) > 3


def _write_chitchat(path, data) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def test_same_sender_messages_merge_and_empty_ones_are_skipped(tmp_path, caplog):
    def msg(text, sender):
        return {"text": text, "sender": sender, "timestamp": ""}

    data = {
        "c1": {
            "messages": [
                [msg("hi", "a")],
                [msg("  there\n you", "a")],
                [msg(" ", "b")],
                [msg("yo", "b"), msg("sup", "b")],
                [msg("ok", "a")],
            ]
        },
        "c2": {"messages": [[msg("anyone?", "a"), msg("hello?", "a")]]},
    }
    with caplog.at_level(logging.INFO, logger="text_gym.tasks.dialogue"):
        conversations, skipped = load_chitchat(_write_chitchat(tmp_path / "d.json", data))
    assert conversations == (("c1", ("hi there you", "yo sup", "ok")),)
    assert skipped == {"empty_messages": 1, "short_conversations": 1}
    assert "skipped 1 empty messages and 1 conversations" in caplog.text
    samples = build_samples(conversations, history_turns=1)
    assert [(s.prompt, s.references) for s in samples] == [
        ("A: hi there you\nB:", ("yo sup",)),
        ("B: yo sup\nA:", ("ok",)),
    ]


@pytest.mark.parametrize(
    "content, match",
    [
        (
            b'{"c1": {"messages": [[{"text": "caf\xe9", "sender": "a"}]]}}',
            r"conversation 'c1', message \[0\]\[0\]: field 'text' is not valid UTF-8",
        ),
        (
            b'{"c1": {"messages": [[{"sender": "a"}]]}}',
            r"conversation 'c1', message \[0\]\[0\]: field 'text' is missing",
        ),
        (
            b'{"c1": {"messages": [[{"text": "x"}]]}}',
            r"conversation 'c1', message \[0\]\[0\]: field 'sender' is missing",
        ),
        (b'{"c1": {"turns": []}}', "conversation 'c1': field 'messages' is missing"),
        (b'{"c1": {"messages": [[{"text": "x\\udcff", "sender": "a"}]]}}', "field 'text' is not valid UTF-8"),
    ],
)
def test_bad_chitchat_data_names_the_conversation_and_field(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        load_chitchat(str(path))


def test_perfect_response_scores_one_and_empty_zero(splits):
    samples = splits["test"].samples[:3] + [dialogue.Sample("A: hi\nB:", (":)",))]  # no ROUGE tokens
    for reward in dialogue.REWARDS:
        task = DialogueTask(split="test", reward=reward, max_samples=1)
        perfect = task.score([" " + s.references[0] for s in samples], samples)
        empty = task.score([""] * 4, samples)
        assert perfect.rewards.tolist() == [1.0] * 4 and empty.rewards.tolist() == [0.0] * 4
        assert perfect.metrics["chrf"].tolist() == [100.0] * 4 and perfect.metrics["rougeL"].tolist() == [1.0] * 4


PAIRS = [
    ("i am doing good, how about you?", "im doing good how are you doing?"),
    ("Running to the stores", "he runs to the store"),
    ("nope", "yeah I think so"),
]


def test_metrics_equal_sacrebleu_and_rouge_score():
    sacrebleu = pytest.importorskip("sacrebleu")
    from rouge_score import rouge_scorer

    rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True, split_summaries=False)
    task = DialogueTask(split="test", max_samples=1)
    samples = [dialogue.Sample("", (ref,)) for _, ref in PAIRS]
    scores = task.score([hyp for hyp, _ in PAIRS], samples)
    chrf = [sacrebleu.metrics.CHRF().sentence_score(h, [r]).score for h, r in PAIRS]
    rouge_l = [rouge.score(r, h)["rougeL"].fmeasure for h, r in PAIRS]
    assert np.allclose(scores.metrics["chrf"], chrf, atol=1e-9) and np.allclose(
        scores.metrics["rougeL"], rouge_l, atol=1e-12
    )
    assert np.allclose(scores.rewards, np.array(chrf) / 100)
    assert np.allclose(
        DialogueTask(reward="rougeL", max_samples=1).score([h for h, _ in PAIRS], samples).rewards, rouge_l
    )
    assert 0 < min(rouge_l[:2]) and rouge_l[2] == 0.0


def test_batched_scoring_equals_one_at_a_time(splits):
    task, samples = splits["validation"], splits["validation"].samples[:16]
    responses = [s.references[0][: i * 3] for i, s in enumerate(samples)]
    batch = task.score(responses, samples)
    for i in range(len(samples)):
        one = task.score(responses[i : i + 1], samples[i : i + 1])
        assert one.rewards[0] == batch.rewards[i]
        assert all(one.metrics[k][0] == batch.metrics[k][i] for k in ("chrf", "rougeL"))
    assert list(DialogueTask(metrics=(), max_samples=1).score(responses, samples).metrics) == ["chrf"]


def _write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_hugging_face_dialog_loader_offline(tmp_path):
    pytest.importorskip("datasets")
    rows = [
        {"dialog": ["Say , Jim , how about a beer ? ", "Sure .", "Great ."]},
        {"dialog": ["Only me ."]},
        {"dialog": ["Bye .", "See you ."]},
    ]
    task = DialogueTask(dataset="json", data_files=_write_jsonl(tmp_path / "d.jsonl", rows), history_turns=1)
    assert [(s.prompt, s.references) for s in task.samples] == [
        ("A: Say , Jim , how about a beer ?\nB:", ("Sure .",)),
        ("B: Sure .\nA:", ("Great .",)),
        ("A: Bye .\nB:", ("See you .",)),
    ]
    assert task.skipped == {"short_conversations": 1}
    assert task.score(["Sure .", ""], task.samples[:1] * 2).rewards.tolist() == [1.0, 0.0]
    renamed = [{"utterances": r["dialog"]} for r in rows]
    files = {"test": _write_jsonl(tmp_path / "u.jsonl", renamed)}
    other = DialogueTask(dataset="json", data_files=files, split="test", dialog_field="utterances", max_samples=2)
    assert [s.prompt for s in other.samples] == [
        "A: Say , Jim , how about a beer ?\nB:",
        "A: Say , Jim , how about a beer ?\nB: Sure .\nA:",
    ]


def test_hugging_face_bad_rows_name_the_row_and_field(tmp_path):
    pytest.importorskip("datasets")
    rows = [{"dialog": ["Hi", "Hello"]}, {"dialog": ["Hi", "  "]}]
    with pytest.raises(ValueError, match=r"row 1: field 'dialog\[1\]' is empty"):
        DialogueTask(dataset="json", data_files=_write_jsonl(tmp_path / "empty.jsonl", rows))
    rows = [{"dialog": ["Hi", "Hello"]}, {"other": ["Hi", "Hello"]}]
    with pytest.raises(ValueError, match="has no conversation of two or more turns"):
        DialogueTask(dataset="json", data_files=_write_jsonl(tmp_path / "short.jsonl", [{"dialog": ["Hi"]}]))
    with pytest.raises(ValueError, match=r"row 1: field 'dialog' is missing .* pass dialog_field="):
        DialogueTask(dataset="json", data_files=_write_jsonl(tmp_path / "missing.jsonl", rows))
    with pytest.raises(ValueError, match=r"row 0: field 'dialog\[1\]' is not valid UTF-8"):
        rows_to_conversations([{"dialog": ["ok", "bad \udcff"]}])
    with pytest.raises(ValueError, match=r"row 0: field 'dialog\[0\]' is missing or not a string"):
        rows_to_conversations([{"dialog": [None, "x"]}])


def test_unknown_arguments_and_choices_raise_listing_the_valid_ones():
    with pytest.raises(ValueError, match="unknown argument.*'histroy_turns'.*'history_turns'"):
        DialogueTask.check_kwargs("TextDialog-v0", {"histroy_turns": 2})
    with pytest.raises(ValueError, match=r"split='val' is not valid; choose one of \['train', 'validation', 'test'\]"):
        DialogueTask(split="val")
    with pytest.raises(ValueError, match=r"reward='bleu' is not valid; choose one of \['chrf', 'rougeL'\]"):
        DialogueTask(reward="bleu")
    with pytest.raises(ValueError, match="metrics entry='bleu'"):
        DialogueTask(metrics=("bleu",))
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="history_turns="):
            DialogueTask(history_turns=bad)
    with pytest.raises(ValueError, match="max_samples=0"):
        DialogueTask(max_samples=0)


def test_env_chat_template_renders_the_history_as_messages():
    tok = load_tokenizer("default")
    env = TextVectorEnv(1, task=DialogueTask(split="test", max_samples=3), chat_template=True, max_new_tokens=4)
    plain = env.task.samples[2]
    turns = [line.split(": ", 1)[1] for line in plain.prompt.split("\n")[:-1]]
    messages = [{"role": r, "content": t} for r, t in zip(["user", "assistant", "user"], turns)]
    assert plain.extra["messages"] == messages
    text = env._encoded.text(2)
    assert text == tok.apply_chat_template(messages)
    assert text.endswith("<|im_start|>user\n" + turns[-1] + "<|im_end|>\n<|im_start|>assistant\n")


def test_env_smoke_random_actions():
    env = TextVectorEnv(
        4, task=DialogueTask(split="test", max_samples=50), tokenizer="byte", max_prompt_tokens=256, max_new_tokens=8
    )
    env.reset(seed=0)
    rng, finished = np.random.default_rng(0), 0
    for _ in range(30):
        actions = rng.integers(32, 127, size=4)
        actions[rng.random(4) < 0.2] = env.tokenizer.eos_token_id
        _, rewards, terminated, truncated, info = env.step(actions)
        done = terminated | truncated
        if done.any():
            finished += done.sum()
            metrics = info["metrics"]
            assert np.allclose(rewards[done], metrics["chrf"][done] / 100)
            assert ((metrics["rougeL"][done] >= 0) & (metrics["rougeL"][done] <= 1)).all()
    assert finished >= 8


def test_env_reward_for_reference_response():
    task = DialogueTask(split="test", max_samples=20)
    longest = max(len(s.references[0].encode()) for s in task.samples)
    env = TextVectorEnv(4, task=task, tokenizer="byte", max_prompt_tokens=256, max_new_tokens=longest + 2)
    _, info = env.reset(seed=0)
    eos = env.tokenizer.eos_token_id
    refs = [task.samples[j].references[0] for j in info["sample_index"]]
    scripts = [list((" " + r).encode()) + [eos] for r in refs]
    seen = set()
    for t in range(max(map(len, scripts))):
        actions = np.array([s[t] if t < len(s) else 0 for s in scripts])
        _, rewards, terminated, _, info = env.step(actions)
        for i, s in enumerate(scripts):
            if t == len(s) - 1:
                assert terminated[i] and rewards[i] == 1.0 and info["response"][i] == " " + refs[i]
                assert info["metrics"]["chrf"][i] == 100.0 and info["metrics"]["rougeL"][i] == 1.0
                seen.add(i)
    assert seen == {0, 1, 2, 3}


def test_doctests():
    result = doctest.testmod(dialogue)
    assert result.failed == 0 and result.attempted > 0
