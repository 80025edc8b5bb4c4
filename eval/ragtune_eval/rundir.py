"""A run directory makes an evaluation resumable: ``config.json`` (what was asked; a rerun with
other settings is refused), ``state.json`` (the store, the uploaded contexts, the fine-tuning jobs,
their costs; rewritten atomically), and ``results/<arm>.jsonl`` (one line per answered question,
appended as it comes, so a rerun asks only what is missing)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class RunDirError(ValueError):
    pass


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.results_dir = path / "results"
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self._state_path = path / "state.json"
        self.state: dict[str, Any] = (
            json.loads(self._state_path.read_text(encoding="utf-8")) if self._state_path.exists() else {}
        )

    def check_config(self, config: dict[str, Any]) -> None:
        """Stores ``config`` on the first run; later runs must ask for the same thing."""
        path = self.path / "config.json"
        if path.exists():
            before = json.loads(path.read_text(encoding="utf-8"))
            changed = sorted(k for k in set(before) | set(config) if before.get(k) != config.get(k))
            if changed:
                raise RunDirError(
                    f"{self.path} holds a run with other settings ({', '.join(changed)}): use a new --run-dir"
                )
            return
        self.write_json("config.json", config)

    def write_json(self, name: str, value: Any) -> Path:
        path = self.path / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    def save_state(self) -> None:
        self.write_json("state.json", self.state)

    def _results_path(self, arm: str) -> Path:
        return self.results_dir / f"{arm.replace('+', '_')}.jsonl"

    def results(self, arm: str) -> list[dict[str, Any]]:
        """The arm's answered questions; a torn last line (a run killed mid-write) is ignored."""
        path = self._results_path(arm)
        if not path.exists():
            return []
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def done(self, arm: str) -> set[tuple[str, str]]:
        return {(row["split"], row["id"]) for row in self.results(arm)}

    def append_result(self, arm: str, row: dict[str, Any]) -> None:
        path = self._results_path(arm)
        # a line torn by a killed run is closed off so the next one stays readable
        prefix = "\n" if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n") else ""
        with path.open("a", encoding="utf-8") as f:
            f.write(prefix + json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
