"""Where an evaluation keeps what it has done, so that a rerun resumes: the settings it was asked
for (a rerun with other settings is refused), its state (the store, the uploaded contexts, the
fine-tuning jobs, their costs) and its results (one row per answered question, kept as it comes,
so a rerun asks only what is missing).

:class:`RunStore` is what the harness needs; :class:`RunDir` keeps it in a directory for the CLI
and the benchmarks (``config.json``, ``state.json`` rewritten atomically, ``results/<arm>.jsonl``
appended line by line); the gateway keeps it in PostgreSQL, where every replica reads it
(``ragtune_gateway.services.evaluation_store``). Either way ``path`` is a local folder the report
files are written to."""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any


class RunDirError(ValueError):
    pass


def changed_settings(before: dict[str, Any], config: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(before) | set(config) if before.get(k) != config.get(k))


class RunStore(ABC):
    """An evaluation's resumable record. ``state`` is edited in place and saved with :meth:`save_state`."""

    path: Path
    state: dict[str, Any]

    @abstractmethod
    async def check_config(self, config: dict[str, Any]) -> None:
        """Stores ``config`` on the first run; later runs must ask for the same thing (:class:`RunDirError`)."""

    @abstractmethod
    async def save_state(self) -> None: ...

    @abstractmethod
    async def results(self, arm: str) -> list[dict[str, Any]]:
        """The rows kept under ``arm``, in the order they came."""

    @abstractmethod
    async def append_result(self, arm: str, row: dict[str, Any]) -> None: ...

    async def done(self, arm: str) -> set[tuple[str, str]]:
        return {(row["split"], row["id"]) for row in await self.results(arm)}


class RunDir(RunStore):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.results_dir = path / "results"
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self._state_path = path / "state.json"
        self.state = json.loads(self._state_path.read_text(encoding="utf-8")) if self._state_path.exists() else {}

    async def check_config(self, config: dict[str, Any]) -> None:
        path = self.path / "config.json"
        if path.exists():
            changed = changed_settings(json.loads(path.read_text(encoding="utf-8")), config)
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

    async def save_state(self) -> None:
        self.write_json("state.json", self.state)

    def _results_path(self, arm: str) -> Path:
        return self.results_dir / f"{arm.replace('+', '_')}.jsonl"

    async def results(self, arm: str) -> list[dict[str, Any]]:
        """A torn last line (a run killed mid-write) is ignored."""
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

    async def append_result(self, arm: str, row: dict[str, Any]) -> None:
        path = self._results_path(arm)
        # a line torn by a killed run is closed off so the next one stays readable
        prefix = "\n" if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n") else ""
        with path.open("a", encoding="utf-8") as f:
            f.write(prefix + json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
