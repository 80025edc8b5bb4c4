"""Two benchmark runs on one state directory would share its database and services: the second is
refused until the first ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.__main__ import hold_state_dir, main


def test_a_state_dir_is_held_by_one_run_at_a_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = hold_state_dir(tmp_path / "state")
    assert first is not None
    assert hold_state_dir(tmp_path / "state") is None
    assert hold_state_dir(tmp_path / "other") is not None
    assert main(["--only", "eval_tasks", "--state-dir", str(tmp_path / "state")]) == 2
    assert "in use by another benchmark run" in capsys.readouterr().err
    first.close()
    again = hold_state_dir(tmp_path / "state")
    assert again is not None and (tmp_path / "state" / ".bench.lock").read_text().strip().isdigit()
    again.close()
