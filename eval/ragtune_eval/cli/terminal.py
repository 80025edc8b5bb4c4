"""What the CLI shows: the console, one-line errors (never a traceback for bad input, an unreachable
gateway or a 4xx), progress bars and the formats of tables."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import NoReturn

import openai
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ragtune_eval.cli.gateway import CliError, base_url, refusal_line

console = Console()
errors = Console(stderr=True)


def fail(message: str, status: int = 1, hint: str = "") -> NoReturn:
    """``error: <message>`` on stderr, on one line (then ``hint``, if any, on the next), and exit
    ``status`` (2: bad input caught before any call)."""
    errors.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    if hint:
        errors.print(hint, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(status)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Run a command's body: a :class:`CliError`, an error answer of the gateway (its message and
    the field it names), an unreachable gateway or a local file that cannot be read or written ends
    the command with one line (:func:`fail`)."""
    try:
        yield
    except CliError as error:
        fail(str(error))
    except openai.APIStatusError as error:
        fail(refusal_line(error))
    except openai.APIConnectionError as error:  # also a timeout
        fail(f"cannot reach the gateway at {base_url()}: {error.__cause__ or error.message}")
    except OSError as error:
        fail(f"{error.strerror or error}: {error.filename}" if error.filename else str(error))


def say(line: str) -> None:
    """A line of plain text: what it carries (a store's name, a filename) is never read as markup."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def show_table(columns: Iterable[str], rows: Iterable[Iterable[object]]) -> None:
    """A table of plain text cells (``None`` shows as empty)."""
    table = Table(*columns)
    for row in rows:
        table.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    console.print(table)


def bars(*extra: ProgressColumn) -> Progress:
    """A progress display of counted steps: description, bar, done/total, ``extra``, elapsed time."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *extra, TimeElapsedColumn())
    return Progress(*columns, console=console)


def when(timestamp: int | None) -> str:
    """A Unix timestamp as local ``YYYY-MM-DD HH:MM``; empty for none."""
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M") if timestamp else ""


def size(count: int) -> str:
    """A byte count for people: ``812 B``, ``4.2 KB``, ``1.3 MB``."""
    value = float(count)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
