"""The code version a resumable benchmark run was produced by, so stored answers from older code are
never reported as if the current code had given them.

A version is the git commit, whether the work tree had uncommitted changes to tracked files, and a
hash of that diff (two dirty trees on the same commit are different code). A run directory keeps
the version of the code that wrote its answers in ``code-version.json``; :func:`check_run_code`
refuses a resume under other code, or (``recompute=True``) deletes the stale answers so that they
are asked again.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

VERSION_FILE = "code-version.json"


class StaleRunError(RuntimeError):
    """The run directory holds answers produced by another version of the code."""


def _git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, check=True).stdout


def code_version(repo: Path) -> dict[str, Any]:
    """``{"commit", "dirty", "diff_sha256"}`` of the checkout at ``repo``; ``commit`` is None
    outside a git checkout (then every run counts as a different version)."""
    try:
        commit = _git(repo, "rev-parse", "HEAD").decode().strip()
        diff = _git(repo, "diff", "HEAD", "--binary")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": True, "diff_sha256": None}
    return {
        "commit": commit,
        "dirty": bool(diff),
        "diff_sha256": hashlib.sha256(diff).hexdigest() if diff else None,
    }


def _answer_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "results").glob("*.jsonl"))


def check_run_code(run_dir: Path, version: dict[str, Any], recompute: bool) -> list[Path]:
    """Makes ``run_dir`` safe to resume under ``version``; returns the answer files it deleted.

    Stale means: stored answers exist and the recorded version differs from ``version``, is missing
    (a run from before versions were recorded), or cannot identify its code (no commit). Stale
    answers raise :class:`StaleRunError`, or are deleted when ``recompute``. The current version is
    then recorded."""
    path = run_dir / VERSION_FILE
    recorded = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    answers = [p for p in _answer_files(run_dir) if p.stat().st_size]
    stale = bool(answers) and (recorded != version or version.get("commit") is None)
    deleted: list[Path] = []
    if stale:
        if not recompute:
            raise StaleRunError(
                f"{run_dir} holds answers from other code (recorded {recorded}, now {version}): rerun with"
                " --eval-recompute-stale to ask those questions again, or use a new --eval-run-dir"
            )
        for answer in answers:
            answer.unlink()
            deleted.append(answer)
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(version, indent=2) + "\n", encoding="utf-8")
    return deleted
