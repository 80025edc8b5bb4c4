"""``ragtune stores``: list, create (with files), delete vector stores and list a store's files
(``/v1/vector_stores``, through the official ``openai`` client). A store is named by its id or by
its name; :func:`find_store` is how every command (``ingest`` and ``ask`` too) resolves one."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer
from openai import APIStatusError, NotFoundError, OpenAI
from openai.types import VectorStore

from ragtune_eval.cli.files import delete_quietly, local_files, upload_file
from ragtune_eval.cli.gateway import CliError, openai_client, refusal_line
from ragtune_eval.cli.terminal import bars, one_line_errors, say, show_table, when
from ragtune_eval.client import VECTOR_STORE_PREFIX

stores_app = typer.Typer(
    help="Vector stores: list, create with files, delete, list a store's files.", no_args_is_help=True
)


def _extra(obj: Any, field: str, default: Any = None) -> Any:
    """One of ragtune's fields beside OpenAI's (e.g. ``chunk_count``, ``filename``)."""
    return (obj.model_extra or {}).get(field, default)


def stores_named(client: OpenAI, name: str) -> list[VectorStore]:
    return [s for s in client.vector_stores.list(limit=100) if s.name == name]


def find_store(client: OpenAI, name_or_id: str, create: bool = False) -> VectorStore:
    """The store with this id, else the one store with this name (created when ``create`` and none
    has it); a name that several stores share must be given as an id."""
    if name_or_id.startswith(VECTOR_STORE_PREFIX):
        return client.vector_stores.retrieve(name_or_id)
    named = stores_named(client, name_or_id)
    if len(named) > 1:
        ids = ", ".join(s.id for s in named)
        raise CliError(f"{len(named)} vector stores are named {name_or_id!r} ({ids}): give an id")
    if named:
        return named[0]
    if not create:
        raise CliError(f"no vector store named {name_or_id!r} (`ragtune stores list` lists them)")
    return client.vector_stores.create(name=name_or_id)


def add_file(client: OpenAI, store_id: str, path: Path) -> str:
    """Upload one file and add it to a store: its id. A refusal names the file, whose upload is deleted again."""
    uploaded = upload_file(client, path, "assistants")
    try:
        client.vector_stores.files.create(vector_store_id=store_id, file_id=uploaded.id)
    except BaseException as error:
        delete_quietly(client, [uploaded.id])
        if isinstance(error, APIStatusError):
            raise CliError(f"{path}: {refusal_line(error)}") from None
        raise
    return uploaded.id


def add_files(client: OpenAI, store_id: str, paths: list[Path], added: list[str]) -> None:
    """:func:`add_file` for each path under a progress bar, appending each file's id to ``added``."""
    with bars() as progress:
        task = progress.add_task(f"adding to {store_id}", total=len(paths))
        for path in paths:
            added.append(add_file(client, store_id, path))
            progress.advance(task)


def _files_held(store: VectorStore) -> str:
    counts = store.file_counts
    return str(counts.completed) + (f" ({counts.failed} failed)" if counts.failed else "")


def describe(store: VectorStore) -> str:
    files = store.file_counts.completed
    return f"{store.id} ({store.name}): {files} file(s), {_extra(store, 'chunk_count', 0)} chunk(s)"


@stores_app.command("list")
def list_stores() -> None:
    """List your vector stores, with their files, chunks and embedding model."""
    with one_line_errors(), openai_client() as client:
        stores = list(client.vector_stores.list(limit=100))
        if not stores:
            say("no vector stores yet: `ragtune stores create NAME PATH...` makes one")
            return
        show_table(
            ("id", "name", "files", "chunks", "embedding model", "created"),
            (
                (
                    s.id,
                    s.name,
                    _files_held(s),
                    _extra(s, "chunk_count", 0),
                    _extra(s, "embedding_model"),
                    when(s.created_at),
                )
                for s in stores
            ),
        )


@stores_app.command()
def create(
    name: str,
    paths: Annotated[
        list[Path] | None, typer.Argument(help="files, or directories of documents (.txt .md .html .pdf)")
    ] = None,
) -> None:
    """Create a vector store with these files, added one by one under a progress bar; if one is
    refused, neither the store nor the uploaded files are left behind."""
    with one_line_errors(), openai_client() as client:
        files = local_files(paths) if paths else []
        if taken := stores_named(client, name):
            raise CliError(
                f"a vector store is named {name!r} already ({taken[0].id}): "
                f"add files with `ragtune ingest PATH... --store {name}`"
            )
        store = client.vector_stores.create(name=name)  # at the store quota: refused before any upload
        added: list[str] = []
        try:
            add_files(client, store.id, files, added)
        except BaseException:
            with contextlib.suppress(Exception):
                client.vector_stores.delete(store.id)
            delete_quietly(client, added)
            raise
        say(describe(client.vector_stores.retrieve(store.id)))


@stores_app.command()
def delete(
    stores: Annotated[list[str], typer.Argument(help="vector store ids or names")],
    with_files: Annotated[bool, typer.Option(help="delete the store's files too (else they stay)")] = False,
) -> None:
    """Delete vector stores (freeing places under the store quota); their files stay unless --with-files."""
    with one_line_errors(), openai_client() as client:
        for name_or_id in stores:
            store = find_store(client, name_or_id)
            held = [f.id for f in client.vector_stores.files.list(store.id, limit=100)] if with_files else []
            client.vector_stores.delete(store.id)
            for file_id in held:
                with contextlib.suppress(NotFoundError):  # deleted already
                    client.files.delete(file_id)
            say(f"deleted {store.id} ({store.name})" + (f" and {len(held)} file(s)" if held else ""))


@stores_app.command()
def files(store: Annotated[str, typer.Argument(help="vector store id or name")]) -> None:
    """List the files of a vector store, with their chunks and status."""
    with one_line_errors(), openai_client() as client:
        found = find_store(client, store)
        show_table(
            ("file id", "filename", "status", "chunks", "characters", "added"),
            (
                (
                    f.id,
                    _extra(f, "filename"),
                    f.status + (f": {f.last_error.message}" if f.last_error else ""),
                    _extra(f, "chunk_count", 0),
                    f.usage_bytes,
                    when(f.created_at),
                )
                for f in client.vector_stores.files.list(found.id, limit=100)
            ),
        )
