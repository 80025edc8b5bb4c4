"""Loading SQuAD JSON and JSONL QA sets, the seeded split, RAFT example lines, and the run directory
that makes an evaluation resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtune_eval.arms import (
    ANSWER_MARK,
    BEGIN_QUOTE,
    END_QUOTE,
    INSTRUCTION,
    Passage,
    closed_book_line,
    closed_book_lines,
    final_answer,
    no_gold_ids,
    parse_arms,
    quote_for,
    raft_line,
    short_answer,
)
from ragtune_eval.dataset import DatasetError, QAItem, load_beir, load_qa, parse_qa, split_dataset
from ragtune_eval.rundir import RunDir, RunDirError

SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "T",
            "paragraphs": [
                {
                    "context": "Alpha is first. Beta is second.",
                    "qas": [
                        {"id": "a", "question": "What is first?", "answers": [{"text": "Alpha", "answer_start": 0}]},
                        {"id": "b", "question": "What is second?", "answers": [{"text": "Beta", "answer_start": 16}]},
                        {"id": "c", "question": "Unanswerable?", "answers": [], "is_impossible": True},
                    ],
                }
            ],
        }
    ],
}


def test_squad_json(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(SQUAD))
    items = load_qa(path)
    assert [i.id for i in items] == ["a", "b"]
    assert items[0].answers == ("Alpha",) and items[0].context.startswith("Alpha")
    assert items[0].context_id == items[1].context_id


def test_jsonl_with_and_without_context(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text(
        json.dumps({"question": "Q1?", "answers": ["x", "x", " y "]})
        + "\n\n"
        + json.dumps({"id": "k", "question": "Q2?", "answers": "z", "context": "ctx"})
        + "\n"
    )
    items = load_qa(path)
    assert items[0] == QAItem("1", "Q1?", ("x", "y"), "")
    assert items[1].id == "k" and items[1].answers == ("z",)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"answers": ["a"]}), "question"),
        (json.dumps({"question": "q", "answers": []}), "at least one answer"),
        (json.dumps({"question": "q", "answers": [1]}), "answers must be"),
    ],
)
def test_bad_jsonl_names_the_line(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "ok", "answers": ["a"]}) + "\n" + line + "\n")
    with pytest.raises(DatasetError, match=rf"bad.jsonl:2: .*{reason}"):
        load_qa(path)


def test_split_is_seeded_disjoint_and_stable_when_train_grows() -> None:
    items = [QAItem(str(i), f"q{i}", ("a",), f"c{i % 7}") for i in range(100)]
    one = split_dataset(items, 20, 10, seed=5, train_sample=4)
    assert one == split_dataset(items, 20, 10, seed=5, train_sample=4)
    assert not {i.id for i in one.train} & {i.id for i in one.test}
    assert one.train_sample == one.train[:4]
    assert split_dataset(items, 40, 10, seed=5, train_sample=4).test == one.test
    assert split_dataset(items, 20, 10, seed=6, train_sample=4).test != one.test
    assert len(one.contexts()) == len({i.context for i in [*one.train, *one.test]})
    with pytest.raises(DatasetError, match="asked for"):
        split_dataset(items, 95, 10, seed=0, train_sample=0)


def test_beir_folder(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "title": "T", "text": "body"}) + "\n")
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "what"}) + "\n")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td1\t1\n")
    data = load_beir(tmp_path)
    assert data.corpus == {"d1": "T\n\nbody"} and data.qrels == {"q1": {"d1": 1}}
    with pytest.raises(DatasetError, match="missing"):
        load_beir(tmp_path / "nowhere")


def test_parse_arms_keeps_canonical_order() -> None:
    assert parse_arms("rag+ft, base") == ["base", "rag+ft"]
    with pytest.raises(ValueError, match="unknown arm"):
        parse_arms("base,rerank")


def test_training_lines() -> None:
    item = QAItem("q1", "Who?", ("Ada", "Ada V."), "Ada painted it.")
    closed = json.loads(closed_book_line(item))["messages"]
    assert closed == [
        {"role": "system", "content": INSTRUCTION},
        {"role": "user", "content": "Who?"},
        {"role": "assistant", "content": "Ada"},
    ]
    gold = Passage("file-gold", "g.txt", "Ada painted it.")
    retrieved = [Passage("file-gold", "g.txt", "Ada painted"), Passage("file-1", "1.txt", "Other text.")]
    messages = json.loads(raft_line(item, gold, retrieved, 3, True, 0, 10_000))["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    system = messages[0]["content"]  # the gateway's grounded prompt, the instruction kept
    assert system.startswith(INSTRUCTION) and "Passages:" in system
    assert "Ada painted it." in system and "Other text." in system and "Ada painted\n" not in system
    no_gold = json.loads(raft_line(item, gold, retrieved, 3, False, 0, 10_000))["messages"][0]["content"]
    assert "Ada painted it." not in no_gold and "Other text." in no_gold
    tight = json.loads(raft_line(item, gold, retrieved, 3, True, 0, 20))["messages"][0]["content"]
    assert "Ada painted it." in tight and "Other text." not in tight  # over budget: distractors go first


def test_no_gold_fraction_is_seeded() -> None:
    items = [QAItem(str(i), "q", ("a",)) for i in range(10)]
    assert len(no_gold_ids(items, 0.2, 1)) == 2
    assert no_gold_ids(items, 0.2, 1) == no_gold_ids(items, 0.2, 1)


async def test_run_dir_resumes_and_refuses_other_settings(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    await run.check_config({"seed": 1})
    await run.append_result("rag+ft", {"id": "a", "split": "test", "f1": 1.0})
    with (tmp_path / "run" / "results" / "rag_ft.jsonl").open("a") as f:
        f.write('{"id": "b", "spl')  # a run killed mid-write
    again = RunDir(tmp_path / "run")
    await again.check_config({"seed": 1})
    assert await again.done("rag+ft") == {("test", "a")}
    await again.append_result("rag+ft", {"id": "c", "split": "train", "f1": 0.0})
    assert await again.done("rag+ft") == {("test", "a"), ("train", "c")}
    again.state["store"] = {"id": "vs_1"}
    await again.save_state()
    assert RunDir(tmp_path / "run").state == {"store": {"id": "vs_1"}}
    with pytest.raises(RunDirError, match="seed"):
        await RunDir(tmp_path / "run").check_config({"seed": 2})


def test_raft_published_recipe_reasons_with_a_quote_then_answers() -> None:
    item = QAItem("q1", "Who painted it?", ("Ada",), "It was old. Ada painted it in 1901. Then it sold.")
    gold = Passage("file-gold", "g.txt", item.context)
    retrieved = [Passage(f"file-{i}", f"{i}.txt", f"Distractor {i}.") for i in range(6)]
    messages = json.loads(raft_line(item, gold, retrieved, 4, True, 0, 10_000))["messages"]
    prompt, answer = messages[0]["content"], messages[-1]["content"]
    assert sum(f"Distractor {i}." in prompt for i in range(6)) == 4, "one gold among four distractors"
    assert f"{BEGIN_QUOTE} Ada painted it in 1901. {END_QUOTE}" in answer, "the quote is the sentence with the answer"
    assert answer.endswith(f"{ANSWER_MARK} Ada") and final_answer(answer) == "Ada"
    plain = json.loads(raft_line(item, gold, retrieved, 4, True, 0, 10_000, recipe="answer-only"))["messages"]
    assert plain[-1]["content"] == "Ada"
    assert quote_for("No answer here.", "Ada") == "Ada", "a context without the answer quotes the answer itself"


def test_closed_book_paraphrases_repeat_the_fact_in_other_words() -> None:
    item = QAItem("q1", "Who painted it?", ("Ada",))
    lines = [json.loads(line)["messages"] for line in closed_book_lines(item, 2)]
    assert len(lines) == 3 and len({m[1]["content"] for m in lines}) == 3
    assert all(m[-1]["content"] == "Ada" and "Who painted it?" in m[1]["content"] for m in lines)
    assert closed_book_lines(item) == [closed_book_line(item)]


@pytest.mark.parametrize(
    ("text", "short"),
    [
        ("The answer is Paris [1].", "Paris"),
        ("It is the Eiffel Tower. It was built in 1889.", "the Eiffel Tower"),
        ("##Reason: the passage says ... so the answer is 1889.\n<ANSWER>: 1889", "1889"),
        ('"Denver Broncos"', "Denver Broncos"),
        ("Paris, France.\nMore text.", "Paris, France"),
        ("", ""),
    ],
)
def test_short_answer_extraction_is_the_same_for_every_arm(text: str, short: str) -> None:
    assert short_answer(text) == short


KEYS = ["data", "paragraphs", "context", "qas", "id", "question", "answers", "answer", "text", "is_impossible"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES, jsonl=st.booleans())
def test_any_json_reads_as_a_dataset_or_a_named_error(value: object, jsonl: bool) -> None:
    """The gateway parses uploaded datasets: anything but a DatasetError naming the file would be a 500."""
    name = "upload.jsonl" if jsonl else "upload.json"
    data = (json.dumps(value) + "\n").encode() if jsonl else json.dumps({"data": value}).encode()
    try:
        items = parse_qa(data, name)
    except DatasetError as exc:
        assert str(exc).startswith(name)
    else:
        assert all(isinstance(i, QAItem) and i.answers for i in items)


@given(data=st.binary(max_size=64))
def test_any_bytes_read_as_a_dataset_or_a_named_error(data: bytes) -> None:
    for name in ("x.json", "x.jsonl"):
        try:
            parse_qa(data, name)
        except DatasetError as exc:
            assert str(exc).startswith(name)
