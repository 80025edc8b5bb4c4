"""Text extraction bounded in time, memory and output, off the event loop.

Plain text is decoded in a worker thread. HTML, Markdown and PDF are parsed by pure-Python
libraries that a hostile document can keep busy for minutes (a PDF of compressed streams, a deep
HTML tree): those go to a small pool of worker processes (:mod:`ragtune_retriever.extraction_worker`)
that run under an address-space limit and are killed, and replaced, when a document overruns
its time or its call is cancelled. A thread could be neither interrupted nor kept from holding
the GIL that the server needs. Every limit answers ``INVALID_ARGUMENT`` naming the document's
field: the same document would fail the same way again, so retrying is pointless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import sys
import time
from dataclasses import dataclass

from prometheus_client import Histogram

from ragtune_common.errors import InvalidArgument
from ragtune_retriever.extraction_worker import HEADER_BYTES, frame
from ragtune_retriever.parsing import TEXT_PLAIN, extract_text

log = logging.getLogger(__name__)

EXTRACTION_SECONDS = Histogram(
    "ragtune_retriever_extraction_seconds",
    "time to extract one document's text, by MIME type and outcome (ok, refused)",
    ["mime_type", "outcome"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)


@dataclass(frozen=True)
class ExtractionLimits:
    timeout_s: float
    max_chars: int
    memory_bytes: int  # address-space limit of a worker process; 0 = none
    workers: int  # worker processes, i.e. documents extracted at once


class _Worker:
    """One worker process, asked one document at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def ask(self, request: tuple[bytes, str, str, int]) -> tuple[str, str]:
        assert self.process.stdin is not None
        self.process.stdin.write(frame(request))
        await self.process.stdin.drain()
        return await self.receive()

    async def receive(self) -> tuple[str, str]:
        assert self.process.stdout is not None
        size = int.from_bytes(await self.process.stdout.readexactly(HEADER_BYTES), "big")
        reply: tuple[str, str] = pickle.loads(await self.process.stdout.readexactly(size))
        return reply

    async def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()


class TextExtractor:
    """Extracts documents' text within :class:`ExtractionLimits`; ``start`` spawns the workers."""

    def __init__(self, limits: ExtractionLimits) -> None:
        self.limits = limits
        self._slots = asyncio.Semaphore(limits.workers)
        self._idle: list[_Worker] = []

    async def _spawn(self) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ragtune_retriever.extraction_worker",
            str(self.limits.memory_bytes),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        worker = _Worker(process)
        try:
            await worker.receive()  # "ready": imports are not counted against a document's time
        except (asyncio.IncompleteReadError, ConnectionError):
            await worker.stop()
            raise RuntimeError("the text extraction worker failed to start (see its stderr)") from None
        return worker

    async def start(self) -> None:
        """Start the workers ahead of the first document (each imports the parsers: ~0.5 s)."""
        missing = self.limits.workers - len(self._idle)
        self._idle += await asyncio.gather(*(self._spawn() for _ in range(missing)))

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for worker in idle:
            await worker.stop()

    async def extract(self, data: bytes, mime_type: str, field: str) -> str:
        started, outcome = time.perf_counter(), "refused"
        try:
            text = await self._extract(data, mime_type, field)
            outcome = "ok"
            return text
        finally:
            EXTRACTION_SECONDS.labels(mime_type, outcome).observe(time.perf_counter() - started)

    async def _extract(self, data: bytes, mime_type: str, field: str) -> str:
        if mime_type == TEXT_PLAIN:
            return await asyncio.to_thread(extract_text, data, mime_type, field=field, max_chars=self.limits.max_chars)
        async with self._slots:
            kind, payload = await self._in_worker((data, mime_type, field, self.limits.max_chars))
        if kind == "ok":
            return payload
        if kind == "memory":
            mib = self.limits.memory_bytes // (1024 * 1024)
            raise InvalidArgument(f"text extraction needs more than {mib} MiB of memory", field=field)
        raise InvalidArgument(payload, field=field)

    async def _in_worker(self, request: tuple[bytes, str, str, int]) -> tuple[str, str]:
        field, timeout_s = request[2], self.limits.timeout_s
        worker = self._idle.pop() if self._idle else await self._spawn()
        reusable = False
        try:
            async with asyncio.timeout(timeout_s):
                reply = await worker.ask(request)
            reusable = reply[0] != "memory"  # after a MemoryError the worker exits
            return reply
        except TimeoutError:
            log.warning("%s: text extraction stopped after %.1f s", field, timeout_s)
            raise InvalidArgument(
                f"text extraction took longer than {timeout_s:g} s (the document is too large or too complex)",
                field=field,
            ) from None
        except (asyncio.IncompleteReadError, ConnectionError):  # died: killed by the kernel, a crash in C
            code = await worker.process.wait()
            log.warning("%s: the extraction worker died (exit code %s)", field, code)
            raise InvalidArgument(
                f"text extraction failed: the extractor died (exit code {code}); the document may be too large",
                field=field,
            ) from None
        finally:
            if reusable:
                self._idle.append(worker)
            else:  # timed out, died, or the call was cancelled: the work stops with the process
                await asyncio.shield(worker.stop())
