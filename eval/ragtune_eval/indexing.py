"""The evaluation's vector store, built through the REST API from a set of texts (a QA dataset's
contexts, a BEIR corpus): each text uploaded as a file, then added to one store. Resumable: the
uploaded file ids and the store id are kept in the run's state as they come."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Protocol

from ragtune_eval.client import GatewayClient
from ragtune_eval.rundir import RunStore
from ragtune_eval.tasks import run_each

FIRST_FILES = 500  # file ids a vector store can be created with; the rest are added one by one
SAVE_EVERY = 50
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class Progress(Protocol):
    def start(self, key: str, description: str, total: int | None) -> None: ...
    def update(self, key: str, completed: int, total: int | None = None, note: str = "") -> None: ...
    def log(self, message: str) -> None: ...


async def ensure_store(
    client: GatewayClient,
    run: RunStore,
    texts: dict[str, str],
    limit: asyncio.Semaphore,
    progress: Progress,
    attributes: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``run.state["store"]``: ``id``, ``files`` (text key -> file id, the store's document id),
    ``upload_s``, ``build_s`` (the retriever's chunking + embedding + writing, seen from REST),
    ``documents``, ``chunks``, ``text_bytes``. With ``attributes`` (text key -> the file's
    attributes, for search filters) every file is added on its own, with its attributes."""
    state = run.state.setdefault("store", {"files": {}, "upload_s": 0.0, "build_s": 0.0})
    missing = [key for key in texts if key not in state["files"]]
    if missing:
        progress.start("upload", "uploading documents", len(texts))
        start = time.perf_counter()

        async def upload(key: str) -> None:
            async with limit:
                name = _UNSAFE.sub("_", key)[:100] + ".txt"
                state["files"][key] = await client.upload(name, texts[key].encode("utf-8"), "assistants")
            progress.update("upload", len(state["files"]))

        for batch in range(0, len(missing), SAVE_EVERY):
            async with asyncio.TaskGroup() as group:
                for key in missing[batch : batch + SAVE_EVERY]:
                    group.create_task(upload(key))
            await run.save_state()
        state["upload_s"] += time.perf_counter() - start
    if state.get("complete"):
        return dict(state)
    file_ids = [state["files"][key] for key in texts]
    progress.start("index", "building the vector store", len(file_ids))
    start = time.perf_counter()
    first = [] if attributes is not None else file_ids[:FIRST_FILES]
    if "id" not in state:
        created = await client.create_store(f"eval-{run.path.name}", first)
        state["id"] = created["id"]
        await run.save_state()
    progress.update("index", len(first))
    if attributes is None:
        for done, file_id in enumerate(file_ids[FIRST_FILES:], start=FIRST_FILES + 1):
            await client.add_to_store(state["id"], file_id)  # idempotent: a resumed run re-adds cheaply
            progress.update("index", done)
    else:
        added = 0

        async def add(key: str) -> None:
            nonlocal added
            async with limit:
                await client.add_to_store(state["id"], state["files"][key], attributes.get(key))
            added += 1
            progress.update("index", added)

        await run_each(list(texts), add)
    state["build_s"] += time.perf_counter() - start
    store = await client.get_store(state["id"])
    state.update(
        complete=True,
        documents=store["file_counts"]["total"],
        chunks=store.get("chunk_count"),
        text_bytes=sum(len(text.encode("utf-8")) for text in texts.values()),
    )
    await run.save_state()
    progress.log(
        f"vector store {state['id']}: {state['documents']} documents, {state['chunks']} chunks, "
        f"built in {state['build_s']:.1f}s"
    )
    return dict(state)
