"""Task datasets: the user shapes (CSV, JSONL input/label/output, chat), the public sets' formats,
line-numbered errors, and the seeded nested / stratified split. Fuzzed: any input is a dataset or a
DatasetError naming the file, never another exception (the gateway parses uploads with these)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtune_eval.dataset import DatasetError
from ragtune_eval.public_sets import (
    load_public_set,
    load_task,
    parse_conll,
    parse_gsm8k,
    parse_restaurant8k,
    parse_sst2,
)
from ragtune_eval.task_data import TaskData, TaskItem, build_task, parse_csv, parse_jsonl, parse_task_file
from ragtune_eval.task_split import split_task


def jsonl(*rows: object) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_csv_with_quoted_fields() -> None:
    data = b'text,label\n"Hello, world",greeting\n"two\nlines ""quoted""",other\n\nbye,greeting\n'
    items = parse_csv(data, "t.csv")
    assert [(i.input, i.target) for i in items] == [
        ("Hello, world", "greeting"),
        ('two\nlines "quoted"', "other"),
        ("bye", "greeting"),
    ]
    banking = parse_csv(b"text,category\nwhere is my card?,card_arrival\n", "b.csv")
    assert banking[0].target == "card_arrival"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", "t.csv: empty file"),
        (b"words,label\na,b\n", "t.csv:1: the header needs a column named one of text"),
        (b"text,label\na,b\nc\n", "t.csv:3: 1 fields, the header has 2"),
        (b'text,label\n"multi\nline",x\n,y\n', "t.csv:4: empty text"),
        (b"text,label\na,b\nc, \n", "t.csv:3: empty label"),
        (b"text,label\n\xff,b\n", "t.csv: not UTF-8"),
    ],
)
def test_csv_errors_name_the_line(data: bytes, error: str) -> None:
    with pytest.raises(DatasetError) as found:
        parse_csv(data, "t.csv")
    assert str(found.value).startswith(error)


def test_jsonl_shapes() -> None:
    data = jsonl(
        {"input": "a", "label": "x"},
        {"id": "k", "input": "b", "output": "y"},
        {"input": "c", "output": {"name": "Ann"}},
        {"messages": [{"role": "user", "content": "d"}, {"role": "assistant", "content": "z"}]},
    )
    items, system = parse_jsonl(data, "t.jsonl")
    assert [(i.id, i.input, i.target) for i in items] == [
        ("1", "a", "x"),
        ("k", "b", "y"),
        ("3", "c", {"name": "Ann"}),
        ("4", "d", "z"),
    ]
    assert system == ""


def test_chat_rows_share_their_system_message_as_instructions() -> None:
    def row(user: str, answer: str, system: str = "Say the colour.") -> dict:
        turns = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return {"messages": [*turns, {"role": "assistant", "content": answer}]}

    data = parse_task_file(jsonl(row("sky", "blue"), row("grass", "green")), "c.jsonl", "classification")
    assert data.instructions == "Say the colour." and data.labels == ("blue", "green")
    with pytest.raises(DatasetError, match=r"c.jsonl:2: every row must share one system message"):
        parse_jsonl(jsonl(row("sky", "blue"), row("grass", "green", "Other.")), "c.jsonl")
    extraction = parse_task_file(jsonl(row("Ann is 3", '{"name": "Ann"}', "")), "e.jsonl", "extraction")
    assert extraction.items[0].target == {"name": "Ann"} and extraction.schema == {"name": "string"}


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ("not json", "t.jsonl:2: not JSON"),
        ("[1]", "t.jsonl:2: each line must be a JSON object"),
        ('{"input": "", "label": "x"}', "t.jsonl:2: needs a non-empty 'input'"),
        ('{"input": "a"}', "t.jsonl:2: needs a non-empty 'label' or 'output'"),
        ('{"input": "a", "output": 3}', "t.jsonl:2: needs a non-empty 'label' or 'output'"),
        ('{"messages": [{"role": "user", "content": "a"}]}', "t.jsonl:2: 'messages' must be a list of at least"),
        ('{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}', "t.jsonl:2: the last"),
        ('{"messages": [{"role": "bot", "content": "a"}, {"role": "assistant", "content": "b"}]}', "t.jsonl:2: every"),
        ('{"id": [1], "input": "a", "label": "x"}', "t.jsonl:2: 'id' must be"),
    ],
)
def test_jsonl_errors_name_the_line(row: str, error: str) -> None:
    data = b'{"input": "ok", "label": "y"}\n' + row.encode() + b"\n"
    with pytest.raises(DatasetError) as found:
        parse_jsonl(data, "t.jsonl")
    assert str(found.value).startswith(error)


def test_task_kinds_check_their_outputs() -> None:
    items = [TaskItem("1", "a", "x"), TaskItem("2", "b", "x")]
    with pytest.raises(DatasetError, match="needs 2 to 500 labels, found 1"):
        build_task("classification", "t", items)
    with pytest.raises(DatasetError, match="an extraction output must be a JSON object"):
        build_task("extraction", "t", items)
    mixed = [TaskItem("1", "a", {"n": "x"}), TaskItem("2", "b", {"n": ["x"]})]
    with pytest.raises(DatasetError, match="field 'n' is a list, elsewhere a string"):
        build_task("extraction", "t", mixed)
    guessed = parse_task_file(jsonl({"input": "2+2", "output": "2+2=4\n#### 4"}), "g.jsonl")
    assert guessed.kind == "answer"


def test_sst2_lines() -> None:
    items = parse_sst2(b"1 a fine film .\n0 dull .\n", "s")
    assert [(i.input, i.target) for i in items] == [("a fine film .", "positive"), ("dull .", "negative")]
    with pytest.raises(DatasetError, match=r"^s:2: expected '0 <text>'"):
        parse_sst2(b"1 ok\n2 bad\n", "s")


def test_restaurant8k_spans_become_slots() -> None:
    rows = [
        {
            "userInput": {"text": "Table for 4 at 7pm"},
            "labels": [
                {"slot": "people", "valueSpan": {"startIndex": 10, "endIndex": 11}},
                {"slot": "time", "valueSpan": {"startIndex": 15, "endIndex": 18}},
            ],
        },
        {"userInput": {"text": "Anna please"}, "labels": [{"slot": "first_name", "valueSpan": {"endIndex": 4}}]},
        {"userInput": {"text": "hello"}},
    ]
    items = parse_restaurant8k(json.dumps(rows).encode(), "r")
    assert [i.target for i in items] == [{"people": "4", "time": "7pm"}, {"first_name": "Anna"}, {}]
    bad = [{"userInput": {"text": "abc"}, "labels": [{"slot": "x", "valueSpan": {"startIndex": 2, "endIndex": 9}}]}]
    with pytest.raises(DatasetError, match=r"^r: row 0: label 'x': span \[2, 9\) is outside the text"):
        parse_restaurant8k(json.dumps(bad).encode(), "r")


def test_conll_bio_becomes_entity_lists() -> None:
    data = b"Empire\tB-location\nState\tI-location\nis\tO\nbig\tO\n\t\nAnn\tB-person\nand\tO\nBob\tB-person\n\nhi\tO\n"
    items = parse_conll(data, "w")
    assert [(i.input, i.target) for i in items] == [
        ("Empire State is big", {"location": ["Empire State"]}),
        ("Ann and Bob", {"person": ["Ann", "Bob"]}),
        ("hi", {}),
    ]
    with pytest.raises(DatasetError, match=r"^w:2: expected 'token<TAB>tag'"):
        parse_conll(b"a\tO\nb\tX-thing\n", "w")


def test_gsm8k_needs_the_final_answer_mark() -> None:
    items = parse_gsm8k(jsonl({"question": "1+1?", "answer": "1+1=2\n#### 2"}), "g")
    assert items[0].target.endswith("#### 2")
    with pytest.raises(DatasetError, match=r"^g:1: the answer does not end in '#### <number>'"):
        parse_gsm8k(jsonl({"question": "1+1?", "answer": "2"}), "g")


def test_public_set_from_its_folder(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("text,category\na,x\nb,y\n")
    (tmp_path / "test.csv").write_text("text,category\nc,x\n")
    data = load_public_set("banking77", tmp_path)
    assert data.kind == "classification" and data.labels == ("x", "y")
    assert [i.id for i in data.test] == ["test-1"]  # never the id of a training item
    with pytest.raises(DatasetError, match="no such file"):
        load_public_set("sst2", tmp_path)


def classification(labels: int, per_label: int) -> TaskData:
    items = [TaskItem(f"{n}-{i}", f"text {n} {i}", f"label{n}") for n in range(labels) for i in range(per_label)]
    return build_task("classification", "c", items)


def test_classification_split_is_stratified_nested_and_seeded() -> None:
    data = classification(labels=6, per_label=12)
    split = split_task(data, train=5, test=12, seed=3, train_sample=6, per_class=True, labels=4)
    assert len(split.labels) == 4 and len(split.train) == 20 and len(split.test) == 12
    assert Counter(i.target for i in split.test) == {label: 3 for label in split.labels}
    for k in range(1, 6):  # every prefix of k x labels holds k of each label
        assert Counter(i.target for i in split.subset(k * 4)) == {label: k for label in split.labels}
    assert not {i.id for i in split.train} & {i.id for i in split.test}
    assert len(split.train_sample) == 6 and {i.target for i in split.train_sample} == set(split.labels)
    bigger = split_task(data, train=8, test=12, seed=3, train_sample=6, per_class=True, labels=4)
    assert bigger.test == split.test and bigger.labels == split.labels
    assert split_task(data, train=5, test=12, seed=3, train_sample=6, per_class=True, labels=4) == split
    with pytest.raises(DatasetError, match="fewer"):
        split_task(data, train=11, test=12, seed=3, per_class=True)


def test_other_tasks_split_at_random_from_the_held_out_file() -> None:
    items = [TaskItem(str(i), f"q{i}", f"a\n#### {i}") for i in range(10)]
    test = [TaskItem(f"t{i}", f"q{i}", f"a\n#### {i}") for i in range(4)]
    data = build_task("answer", "g", items, test)
    split = split_task(data, train=6, test=3, seed=0, train_sample=2)
    assert len(split.train) == 6 and all(i.id.startswith("t") for i in split.test) and len(split.test) == 3
    assert split.train_sample == split.train[:2]
    with pytest.raises(DatasetError, match="per-class"):
        split_task(data, train=2, test=2, seed=0, per_class=True)


KEYS = ["input", "label", "output", "messages", "role", "content", "id", "text"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.sampled_from(["user", "assistant", "system"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(JSON_VALUES, max_size=3), kind=st.sampled_from(["auto", "classification", "extraction", "answer"]))
def test_any_jsonl_is_a_task_or_a_named_error(rows: list[object], kind: str) -> None:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    try:
        task = parse_task_file(data, "up.jsonl", kind)
    except DatasetError as exc:
        assert str(exc).startswith("up.jsonl")
    else:
        assert task.items and all(isinstance(i, TaskItem) for i in task.items)


PARSERS = {
    "t.csv": lambda d, n: parse_task_file(d, n),
    "t.jsonl": lambda d, n: parse_task_file(d, n),
    "sst2": parse_sst2,
    "r8k": parse_restaurant8k,
    "wnut": parse_conll,
    "gsm8k": parse_gsm8k,
}


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=80) | st.text(max_size=80).map(str.encode), name=st.sampled_from(sorted(PARSERS)))
def test_any_bytes_are_items_or_a_named_error(data: bytes, name: str) -> None:
    try:
        PARSERS[name](data, name)
    except DatasetError as exc:
        assert str(exc).startswith(name)


R8K_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 30) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["userInput", "text", "labels", "slot", "valueSpan", "startIndex", "endIndex"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=14,
)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(R8K_VALUES, max_size=3))
def test_any_restaurant8k_json_is_items_or_a_named_error(rows: list[object]) -> None:
    try:
        items = parse_restaurant8k(json.dumps(rows).encode(), "r8k")
    except DatasetError as exc:
        assert str(exc).startswith("r8k")
    else:
        assert all(isinstance(i.target, dict) for i in items)


def test_a_task_file_with_its_own_held_out_file(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_bytes(jsonl({"input": "a", "label": "x"}, {"input": "b", "label": "y"}))
    (tmp_path / "test.csv").write_text("text,label\nc,x\n")  # one label only: fine for a held-out file
    data = load_task(tmp_path / "train.jsonl", test_path=tmp_path / "test.csv")
    assert data.kind == "classification" and [(i.id, i.target) for i in data.test] == [("test-1", "x")]
    (tmp_path / "bad.csv").write_text("text,label\nc\n")
    with pytest.raises(DatasetError, match=r"bad.csv:2: 1 fields"):
        load_task(tmp_path / "train.jsonl", test_path=tmp_path / "bad.csv")
