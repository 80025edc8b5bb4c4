"""``ragtune eval task``: a bad row is refused before anything is asked (exit 2, the line named);
a run against a stand-in gateway prints the four-arm table and writes the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtune_eval.cli import eval as eval_cli
from ragtune_eval.cli.main import app
from tests.unit.eval.test_task_runner import COLOURS, TaskGateway


class SteppedGateway(TaskGateway):
    async def __aenter__(self) -> SteppedGateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


def test_a_bad_row_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,label\nfine,a\nnot fine\n")
    result = CliRunner().invoke(app, ["eval", "task", str(path), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and f"{path}:3: 1 fields, the header has 2" in result.output.replace("\n", "")


def test_a_run_prints_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"input": f"the {c} item{c}{i}", "label": c} for c in COLOURS for i in range(4)]
    path = tmp_path / "colours.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    answers = {r["input"]: r["label"] for r in rows}
    monkeypatch.setattr(eval_cli, "GatewayClient", lambda url, key: SteppedGateway(answers))
    monkeypatch.setenv("RAGTUNE_API_KEY", "test-key")
    args = ["eval", "task", str(path), "--run-dir", str(tmp_path / "run"), "--train", "2", "--per-class"]
    args += ["--test", "6", "--train-sample", "3", "--shots", "2", "--curve", "1", "--arms", "base,ft"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| ft | 100.0" in result.output and "## Learning curve" in result.output
    assert json.loads((tmp_path / "run" / "report.json").read_text())["kind"] == "classification"
