"""The task evaluation against a stand-in for the gateway: the store of labelled examples (with
their nested position as an attribute), what each arm asks, what each adapter is trained on, the
learning curve's subsets, the report, and a resumed run that asks and trains nothing again."""

from __future__ import annotations

import json
import json as _json
from pathlib import Path
from typing import Any

import pytest

from ragtune_eval.client import ChatResult
from ragtune_eval.rundir import RunDir
from ragtune_eval.task_data import TaskData, TaskItem, build_task
from ragtune_eval.task_html import to_task_html
from ragtune_eval.task_report import retrieved_labels
from ragtune_eval.task_runner import TaskEvalConfig, TaskEvaluation
from ragtune_eval.task_split import split_task
from tests.unit.eval.test_eval_runner import FakeGateway


class TaskGateway(FakeGateway):
    """Search ranks by shared words within the filter; the base model answers "unknown" zero-shot
    and copies the nearest demonstration's output when shown some; an adapter answers from
    ``answers`` (what it would have learned)."""

    def __init__(self, answers: dict[str, str]) -> None:
        super().__init__()
        self.answers = answers
        self.attributes: dict[str, dict[str, Any]] = {}
        self.filters: list[dict[str, Any] | None] = []
        self.evals: dict[str, dict[str, Any]] = {}

    async def add_to_store(self, store_id: str, file_id: str, attributes: dict[str, Any] | None = None) -> None:
        self.store.append(file_id)
        self.attributes[file_id] = attributes or {}

    async def search(  # type: ignore[override]
        self, store_id: str, query: str, k: int, mode: str = "hybrid", ef: int | None = None, filters: Any = None
    ) -> list:
        self.filters.append(filters)
        allowed = {f for f in self.store if filters is None or self.attributes[f]["order"] < filters["value"]}
        ranked = [f for f in self._rank(query) if f in allowed][:k]
        return [{"document_id": f, "filename": f, "content": [{"text": self.files[f][1].decode()}]} for f in ranked]

    async def call(self, method: str, path: str, json: Any = None, params: Any = None) -> Any:
        """The Evals dialect as the gateway speaks it: a run samples every item's ``item.messages``
        through :meth:`chat` (as the gateway's worker does) when it is created; output items come
        back in pages of ``limit``."""
        parts = path.strip("/").split("/")  # v1 evals [id [runs [id [output_items]]]]
        if (method, len(parts)) == ("POST", 2):
            self.evals[f"eval-{len(self.evals)}"] = {"body": json, "runs": {}}
            return {"id": f"eval-{len(self.evals) - 1}"}
        runs = self.evals[parts[2]]["runs"]
        if (method, len(parts)) == ("POST", 4):
            source = json["data_source"]
            assert source["input_messages"] == {"type": "item_reference", "item_reference": "item.messages"}
            rows = [line["item"] for line in map(_json.loads, self.files[source["source"]["id"]][1].splitlines())]
            data = []
            for idx, item in enumerate(rows):
                answer = await self.chat(
                    source["model"], item["messages"], source["sampling_params"]["max_completion_tokens"]
                )
                usage = {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens}
                sample = {"output": [{"role": "assistant", "content": answer.text}], "latency_s": 0.5, "usage": usage}
                data.append({"id": f"oi-{idx}", "run_id": f"run-{len(runs)}", "status": "pass",
                             "datasource_item": item, "sample": sample})  # fmt: skip
            runs[f"run-{len(runs)}"] = {"name": json["name"], "model": source["model"], "data": data}
            return {"id": f"run-{len(runs) - 1}"}
        found = runs[parts[4]]
        if len(parts) == 5:
            return {"status": "completed", "name": found["name"], "result_counts": {"total": len(found["data"])}}
        start = next((i + 1 for i, o in enumerate(found["data"]) if o["id"] == params.get("after")), 0)
        page = found["data"][start : start + params["limit"]]
        return {"data": page, "has_more": start + len(page) < len(found["data"])}

    async def chat(self, model: str, messages: list, max_tokens: int, rag: dict | None = None) -> ChatResult:
        self.chats.append({"model": model, "messages": messages, "max_tokens": max_tokens})
        question = messages[-1]["content"]
        if model.startswith("ft:"):
            text = self.answers[question]
        elif len(messages) > 2:
            text = messages[-2]["content"]
        else:
            text = "unknown"
        return ChatResult(text, 0.01, sum(len(m["content"]) for m in messages) // 4, 2, [], [])


COLOURS = ("red", "green", "blue")


def colours() -> TaskData:
    items = [TaskItem(f"{c}{i}", f"the {c} item{c}{i}", c) for c in COLOURS for i in range(6)]
    return build_task("classification", "colours.csv", items)


async def test_classification_four_arms_curve_and_resume(tmp_path: Path) -> None:
    data = colours()
    split = split_task(data, train=3, test=6, seed=2, train_sample=3, per_class=True)
    gateway = TaskGateway({item.input: str(item.target) for item in data.items})
    config = TaskEvalConfig(
        dataset="colours.csv", kind="classification", train=3, test=6, per_class=True, seed=2, train_sample=3,
        shots=2, curve=(1, 2), resamples=200,
    )  # fmt: skip
    report = await TaskEvaluation(gateway, data, split, config, RunDir(tmp_path)).execute()  # type: ignore[arg-type]

    # the store: every training example, with its position in the nested order
    assert sorted(gateway.attributes[f]["order"] for f in gateway.store) == list(range(9))
    assert {gateway.files[f][1].decode() for f in gateway.store} == {i.input for i in split.train}
    # the adapters: ft on the zero-shot prompt, rag+ft on the few-shot prompt, never shown itself
    bodies = {body["suffix"]: body for body in gateway.jobs.values()}
    assert sorted(bodies) == ["eval-ft", "eval-ft-1", "eval-ft-2", "eval-rag-ft"]
    lines = {
        s: [json.loads(x) for x in gateway.files[b["training_file"]][1].decode().splitlines()]
        for s, b in bodies.items()
    }
    assert [len(lines[s]) for s in ("eval-ft", "eval-ft-1", "eval-ft-2", "eval-rag-ft")] == [9, 3, 6, 9]
    system = lines["eval-ft"][0]["messages"][0]["content"]
    assert "blue, green, red" in system
    assert [m["role"] for m in lines["eval-ft"][0]["messages"]] == ["system", "user", "assistant"]
    for example in lines["eval-rag-ft"]:
        turns = example["messages"]
        assert len(turns) == 1 + 2 * 2 + 2  # system, two demonstrations, the input, its answer
        shown = [t["content"] for t in turns[1:-2:2]]
        assert turns[-2]["content"] not in shown
        assert turns[-3]["content"] == turns[-1]["content"], "the nearest demonstration (last) has the same label"
    assert {tuple(sorted(i.input for i in split.subset(3)))} == {
        tuple(sorted(m["messages"][1]["content"] for m in lines["eval-ft-1"]))
    }
    # the curve's few-shot arm searches only its subset
    assert {f["value"] for f in gateway.filters if f} == {3, 6}

    arms = report["arms"]
    assert list(arms) == ["base", "rag", "ft", "rag+ft"]
    assert arms["base"]["score"] == 0.0 and arms["ft"]["score"] == 100.0 and arms["rag"]["score"] == 100.0
    assert arms["base"]["metrics"]["valid_share"] == 0.0 and arms["ft"]["metrics"]["macro_f1"] == 100.0
    assert arms["base"]["metrics"]["most_confused"][0]["predicted"] == "(no label)"
    assert arms["ft"]["cost"]["training"]["train_examples"] == 9 and arms["rag"]["cost"]["index"]["documents"] == 9
    assert arms["rag"]["mean_prompt_tokens"] > arms["base"]["mean_prompt_tokens"]
    shown = arms["rag"]["retrieved_labels"]
    assert shown["items"] == 6 and shown["nearest_is_gold"] == 100.0 and shown["answer_shown"] == 100.0
    assert "retrieved_labels" not in arms["ft"] and "retrieved_labels" in arms["rag+ft"]
    assert arms["ft"]["train_sample"] == {"items": 3, "score": 100.0} and arms["ft"]["train_minus_test"] == 0.0
    assert "few-shot prompt" in arms["rag+ft"]["recipe"] and arms["base"]["recipe"] == "none"
    ft_vs_base = next(c for c in report["comparisons"] if (c["baseline"], c["candidate"]) == ("base", "ft"))
    assert ft_vs_base["score"]["difference"] == 100.0 and ft_vs_base["score"]["significant"]
    assert ft_vs_base["macro_f1"]["difference"] == 100.0 and ft_vs_base["macro_f1"]["test"] == "paired-bootstrap"
    assert arms["ft"]["macro_f1_ci"]["low"] == 100.0 and arms["base"]["macro_f1_ci"]["high"] == 0.0
    assert report["recommendation"][-1].startswith(
        "Recommended: rag (accuracy 100.0%, the best accuracy). Use retrieval"
    )
    assert any(
        line.startswith("Fine-tuning over zero-shot: accuracy +100.0 points") for line in report["recommendation"]
    )
    assert [row["size"] for row in report["learning_curve"]] == [1, 2, 3]
    assert report["learning_curve"][0]["ft"]["score"] == 100.0 and report["learning_curve"][0]["rag"]["score"] == 100.0
    markdown = (tmp_path / "report.md").read_text()
    assert "| ft | 100.0 [100.0, 100.0] | 100.0 [100.0, 100.0] |" in markdown and "## Learning curve" in markdown
    assert "| ft - base | +100.0 [+100.0, +100.0] * |" in markdown and "macro-F1 [CI] |" in markdown
    assert "| examples per label |" in markdown and "Most confused" in markdown
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "<script" not in page and page.count("<svg") == 3
    assert "accuracy on held-out items (%)" in page and "Paired differences in accuracy" in page
    assert '<td>ft</td><td class="text">100.0 [100.0, 100.0]</td>' in page and "Learning curve</h2>" in page
    hostile = json.loads((tmp_path / "report.json").read_text())
    hostile["arms"]["ft"]["recipe"] = "<img src=x onerror=alert(1)>"
    assert "<img" not in to_task_html(hostile) and "&lt;img src=x" in to_task_html(hostile)

    # every arm's held-out answers are one run of one eval, graded by exact match with the reference
    (evaluation,) = gateway.evals.values()
    assert evaluation["body"]["testing_criteria"][0]["type"] == "string_check"
    runs = {run["name"]: run for run in evaluation["runs"].values()}
    assert sorted(runs) == sorted(["base", "rag", "ft", "rag+ft", "ft@1", "rag@1", "ft@2", "rag@2"])
    assert runs["ft"]["model"].startswith("ft:") and runs["base"]["model"] == "base"
    assert all(len(run["data"]) == 6 for run in runs.values())
    shown = runs["rag"]["data"][0]["datasource_item"]
    assert len(shown["messages"]) == 1 + 2 * 2 + 1 and len(shown["demonstrations"]) == 2
    assert shown["reference"] in COLOURS
    rows = [json.loads(line) for line in (tmp_path / "results" / "ft.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows if "eval_run_id" in r} == {"test"} and len(rows) == 6 + 3

    asked, jobs = len(gateway.chats), len(gateway.jobs)
    again = await TaskEvaluation(gateway, data, split, config, RunDir(tmp_path)).execute()  # type: ignore[arg-type]
    assert (len(gateway.chats), len(gateway.jobs)) == (asked, jobs)
    assert again["arms"] == report["arms"]
    # answers lost after the run was made: the rerun reads the same run again, asks nothing
    (tmp_path / "results" / "rag.jsonl").write_text("")
    again = await TaskEvaluation(gateway, data, split, config, RunDir(tmp_path)).execute()  # type: ignore[arg-type]
    assert (len(gateway.chats) - asked, len(evaluation["runs"])) == (3, 8), "only the training sample is asked"
    assert again["arms"]["rag"]["score"] == report["arms"]["rag"]["score"]
    stored = tmp_path / "results" / "ft.jsonl"  # scores from an older metric: the report scores again
    stale = [{**json.loads(line), "score": 0.0} for line in stored.read_text().splitlines()]
    stored.write_text("".join(json.dumps(row) + "\n" for row in stale))
    offline = await TaskEvaluation(None, data, split, config, RunDir(tmp_path)).report()  # type: ignore[arg-type]
    assert offline["arms"] == report["arms"], "the report is rebuilt from the stored answers alone"


@pytest.mark.parametrize("kind", ["extraction", "answer"])
async def test_other_task_types_report_their_metrics(tmp_path: Path, kind: str) -> None:
    if kind == "extraction":
        items = [TaskItem(str(i), f"book for {i} people", {"people": str(i)}) for i in range(1, 9)]
    else:
        items = [TaskItem(str(i), f"what is {i} plus {i}?", f"{i}+{i}={2 * i}\n#### {2 * i}") for i in range(1, 9)]
    data = build_task(kind, "t.jsonl", items)
    split = split_task(data, train=5, test=3, seed=0, train_sample=2)
    gateway = TaskGateway({item.input: item.output() for item in items})
    config = TaskEvalConfig(dataset="t.jsonl", kind=kind, train=5, test=3, train_sample=2, shots=2, resamples=100)
    report = await TaskEvaluation(gateway, data, split, config, RunDir(tmp_path)).execute()  # type: ignore[arg-type]
    arms = report["arms"]
    assert arms["ft"]["score"] == 100.0 and arms["base"]["score"] == 0.0
    assert {c["max_tokens"] for c in gateway.chats} == {96 if kind == "extraction" else 256}
    if kind == "extraction":
        assert arms["ft"]["metrics"]["micro"]["f1"] == 100.0 and arms["base"]["metrics"]["parse_share"] == 0.0
        assert "exact" in report["comparisons"][0] and "## Per field" in (tmp_path / "report.md").read_text()
        assert "people" in gateway.chats[0]["messages"][0]["content"]
    else:
        assert arms["ft"]["metrics"]["format_share"] == 1.0 and arms["base"]["metrics"]["format_share"] == 0.0
        assert "####" in gateway.chats[0]["messages"][0]["content"]


def test_what_retrieval_showed_reads_the_labels_of_the_examples_shown() -> None:
    targets = {"1": "a", "2": "b", "3": "b", "4": "c"}
    rows: list[dict[str, Any]] = [
        # shown most similar last: b, b, a -> nearest a, majority b
        {"split": "test", "gold": "b", "predicted": "a", "demonstrations": ["2", "3", "1"]},
        # a tie (c once, a once): the most similar wins
        {"split": "test", "gold": "c", "predicted": "c", "demonstrations": ["1", "4"]},
        {"split": "test", "gold": "a", "predicted": None, "demonstrations": ["gone"]},  # nothing known: left out
        {"split": "train", "gold": "a", "predicted": "a", "demonstrations": ["1"]},  # not held out
    ]
    found = retrieved_labels(rows, targets)
    assert found == {
        "items": 2,
        "gold_shown": 100.0,
        "nearest_is_gold": 50.0,
        "vote_is_gold": 100.0,
        "answer_shown": 100.0,
    }
    assert retrieved_labels([{"split": "test", "gold": "a", "predicted": "a", "demonstrations": []}], targets) is None
