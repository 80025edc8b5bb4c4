"""TextExtractor: HTML/Markdown/PDF extracted in a killable child process, bounded in time, memory
and output; plain text in a thread. Real child processes, no mocks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import psutil
import pytest
from prometheus_client import REGISTRY

from ragtune_common.errors import InvalidArgument
from ragtune_retriever.extraction import ExtractionLimits, TextExtractor
from tests.integration.retriever.helpers import inflating_pdf, minimal_pdf

FIELD = "documents[0].data"
LIMITS = ExtractionLimits(timeout_s=2.0, max_chars=200_000, memory_bytes=1024 * 1024 * 1024, workers=2)


@pytest.fixture
async def extractor() -> AsyncIterator[TextExtractor]:
    extractor = TextExtractor(LIMITS)
    await extractor.start()
    yield extractor
    await extractor.close()


def workers() -> set[int]:
    """The live extraction workers among this process's children (other tests' exited children may
    linger as zombies, whose command line cannot be read)."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if "ragtune_retriever.extraction_worker" in " ".join(child.cmdline()):
                found.add(child.pid)
        except (psutil.ZombieProcess, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


async def refused(extractor: TextExtractor, data: bytes, mime: str) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        await extractor.extract(data, mime, FIELD)
    assert info.value.field == FIELD
    return info.value


async def test_each_kind_is_extracted(extractor: TextExtractor) -> None:
    before = REGISTRY.get_sample_value(
        "ragtune_retriever_extraction_seconds_count", {"mime_type": "text/html", "outcome": "ok"}
    )
    assert await extractor.extract(b"plain\x00 words", "text/plain", FIELD) == "plain words"
    assert await extractor.extract(b"<p>Hello <b>there</b></p>", "text/html", FIELD) == "Hello there"
    assert await extractor.extract(b"# Title\n\nbody", "text/markdown", FIELD) == "Title\n\nbody"
    assert await extractor.extract(minimal_pdf("Page one", "Page two"), "application/pdf", FIELD) == (
        "Page one\n\nPage two"
    )
    after = REGISTRY.get_sample_value(
        "ragtune_retriever_extraction_seconds_count", {"mime_type": "text/html", "outcome": "ok"}
    )
    assert after == (before or 0) + 1


async def test_client_mistakes_come_back_as_invalid_argument(extractor: TextExtractor) -> None:
    assert "could not parse PDF" in (await refused(extractor, b"%PDF-1.4 junk", "application/pdf")).message
    assert "UTF-8" in (await refused(extractor, b"<p>caf\xc3(</p>", "text/html")).message


async def test_inflating_pdf_is_refused_by_size(extractor: TextExtractor) -> None:
    err = await refused(extractor, inflating_pdf(pages=200, lines=2000), "application/pdf")
    assert "more than 200000 characters" in err.message


async def test_slow_document_is_killed_at_the_time_limit(extractor: TextExtractor) -> None:
    """One page drawing a 17 MB content stream keeps pypdf busy for minutes: the child is killed."""
    started = time.monotonic()
    err = await refused(extractor, inflating_pdf(pages=1, lines=400_000), "application/pdf")
    assert "longer than 2 s" in err.message
    assert time.monotonic() - started < 10
    # and the extractor still works
    assert await extractor.extract(b"<p>after</p>", "text/html", FIELD) == "after"


async def test_memory_limit() -> None:
    small = TextExtractor(ExtractionLimits(timeout_s=60, max_chars=10**8, memory_bytes=300 * 1024**2, workers=1))
    try:
        err = await refused(small, b"<b>a</b>" * 250_000, "text/html")  # 2 MB -> ~1 GB of bs4 objects
        assert "more than 300 MiB of memory" in err.message
        assert await small.extract(b"<p>after</p>", "text/html", FIELD) == "after"
    finally:
        await small.close()


async def test_cancellation_kills_the_worker() -> None:
    others = workers()  # other extractors of this process (the session's retriever, in a full run)
    extractor = TextExtractor(LIMITS)
    await extractor.start()
    try:
        await _cancel_one(extractor, workers() - others, others)
    finally:
        await extractor.close()


async def _cancel_one(extractor: TextExtractor, before: set[int], others: set[int]) -> None:
    task = asyncio.create_task(extractor.extract(inflating_pdf(pages=1, lines=400_000), "application/pdf", FIELD))
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(before) == LIMITS.workers
    assert len(before & (workers() - others)) == LIMITS.workers - 1, "the busy worker outlived its cancelled call"
    assert await extractor.extract(b"<p>after</p>", "text/html", FIELD) == "after"


async def test_documents_extract_in_parallel_up_to_the_worker_count(extractor: TextExtractor) -> None:
    html = b"<p>" + b"word " * 1000 + b"</p>"
    texts = await asyncio.gather(*(extractor.extract(html, "text/html", FIELD) for _ in range(6)))
    assert all(t.startswith("word") for t in texts)
