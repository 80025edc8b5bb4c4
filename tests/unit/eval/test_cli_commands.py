"""Every `ragtune ...` command that the console's sign-in page and the README name exists (the page
once named `ragtune key create`, which did not)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from ragtune_eval.cli.main import app

ROOT = Path(__file__).resolve().parents[3]
SIGN_IN_PAGE = ROOT / "gateway" / "ragtune_gateway" / "console" / "js" / "app.js"


def resolved(words: list[str]) -> list[str]:
    """The words of ``words`` that lead to one command of ``ragtune`` (empty if they stop at a group)."""
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    for word in words:
        if word not in getattr(command, "commands", {}):
            break
        command = command.commands[word]
        path.append(word)
    return [] if hasattr(command, "commands") else path


def named_commands(text: str) -> list[list[str]]:
    """``ragtune a b ...`` as written in ``text``: the words after ``ragtune`` up to an option or a value."""
    return [m.group(1).split() for m in re.finditer(r"\bragtune((?: [a-z][a-z-]*)+)", text)]


def test_the_sign_in_page_names_a_real_command() -> None:
    named = named_commands(SIGN_IN_PAGE.read_text())
    assert named, "the sign-in page names no ragtune command"
    assert all(resolved(words) == ["keys", "create"] for words in named), named


def test_the_readme_names_real_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    inline = re.findall(r"`([^`\n]*ragtune [^`\n]*)`", readme)
    blocks = "\n".join(inline + re.findall(r"```(?:bash)?\n(.*?)```", readme, flags=re.DOTALL))
    named = [words for words in named_commands(blocks) if words[0] in {"keys", "tenants", "stores", "files"}]
    assert len(named) >= 8, named
    missing = [words for words in named if not resolved(words)]
    assert not missing, missing
