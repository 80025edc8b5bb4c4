"""``ragtune files``: upload, list, download and delete files (``/v1/files``, through the official
``openai`` client); :func:`local_files` and :func:`upload_file` serve ``ingest`` and ``stores create`` too."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from openai import APIStatusError, OpenAI
from openai.types import FileObject

from ragtune_eval.cli.gateway import CliError, openai_client, refusal_line
from ragtune_eval.cli.terminal import bars, one_line_errors, say, show_table, size, when

files_app = typer.Typer(help="Files: upload, list, download, delete.", no_args_is_help=True)
Purpose = Literal["assistants", "fine-tune", "evals", "user_data"]
DOCUMENT_SUFFIXES = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf"}


def local_files(paths: list[Path]) -> list[Path]:
    """The files named, a directory standing for the documents under it (.txt .md .html .pdf);
    all checked before anything is sent."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise CliError(f"no such file or directory: {path}")
    if not found:
        raise CliError(f"no documents (.txt .md .html .pdf) in {', '.join(map(str, paths))}")
    return found


def upload_files(client: OpenAI, paths: list[Path], purpose: Purpose, description: str) -> list[FileObject]:
    """Upload ``paths`` one by one under a progress bar; if one is refused, the ones uploaded before
    it are deleted again (nothing half-done is left) and the refusal is raised."""
    uploaded: list[FileObject] = []
    try:
        with bars() as progress:
            task = progress.add_task(description, total=len(paths))
            for path in paths:
                uploaded.append(upload_file(client, path, purpose))
                progress.advance(task)
    except BaseException:
        delete_quietly(client, [f.id for f in uploaded])
        raise
    return uploaded


def upload_file(client: OpenAI, path: Path, purpose: Purpose) -> FileObject:
    """One file uploaded; a refusal names the file."""
    try:
        with path.open("rb") as f:
            return client.files.create(file=(path.name, f), purpose=purpose)
    except APIStatusError as error:
        raise CliError(f"{path}: {refusal_line(error)}") from None


def delete_quietly(client: OpenAI, file_ids: list[str]) -> None:
    """Delete files while another failure is being reported (which stays the one shown)."""
    for file_id in file_ids:
        with contextlib.suppress(Exception):
            client.files.delete(file_id)


@files_app.command("list")
def list_files(
    purpose: Annotated[Purpose | None, typer.Option(help="only the files of this purpose")] = None,
) -> None:
    """List your files."""
    with one_line_errors(), openai_client() as client:
        listed = list(client.files.list(purpose=purpose) if purpose else client.files.list())
        if not listed:
            say("no files" + (f" of purpose {purpose}" if purpose else ""))
            return
        show_table(
            ("id", "filename", "purpose", "size", "status", "created"),
            ((f.id, f.filename, f.purpose, size(f.bytes), f.status, when(f.created_at)) for f in listed),
        )


@files_app.command()
def upload(
    paths: Annotated[list[Path], typer.Argument(help="files, or directories of documents (.txt .md .html .pdf)")],
    purpose: Annotated[
        Purpose, typer.Option(help="assistants: documents for vector stores; fine-tune: JSONL training data")
    ] = "assistants",
) -> None:
    """Upload files with a progress bar; prints each file's id (and a training file's validation
    report). If one is refused, those uploaded before it are deleted again."""
    with one_line_errors(), openai_client() as client:
        uploaded = upload_files(client, local_files(paths), purpose, "uploading")
        for f in uploaded:
            say(f"{f.id}  {f.filename}  {size(f.bytes)}  {f.status}")
            if f.status_details:
                say(f.status_details)


@files_app.command()
def download(
    file_id: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="where to write it ('-': stdout); default: its filename")
    ] = None,
) -> None:
    """Download a file's content."""
    with one_line_errors(), openai_client() as client:
        target = output or Path(Path(client.files.retrieve(file_id).filename).name)
        if str(target) == "-":
            sys.stdout.buffer.write(client.files.content(file_id).read())
            return
        if target.exists():
            raise CliError(f"{target} exists: choose another --output")
        partial = target.with_name(f".{target.name}.part")
        try:
            with client.files.with_streaming_response.content(file_id) as response, partial.open("wb") as f:
                for chunk in response.iter_bytes():
                    f.write(chunk)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        say(f"{file_id} -> {target} ({size(target.stat().st_size)})")


@files_app.command()
def delete(file_ids: Annotated[list[str], typer.Argument(help="one or more file ids")]) -> None:
    """Delete files (what was added to vector stores from them stays there, as with OpenAI)."""
    with one_line_errors(), openai_client() as client:
        for file_id in file_ids:
            client.files.delete(file_id)
            say(f"deleted {file_id}")
