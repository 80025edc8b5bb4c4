"""The extraction worker process: ``python -m ragtune_retriever.extraction_worker MEMORY_BYTES``.

Reads requests from stdin and writes replies to stdout, each an 8-byte big-endian length and a
pickle (the parent is the only peer: :class:`ragtune_retriever.extraction.TextExtractor`).
A request is ``(data, mime_type, field, max_chars)``; a reply is ``(kind, payload)`` with kind
``ok`` (payload: the text), ``invalid`` (payload: the message) or ``memory``; the first reply,
unasked, is ``ready``. The address space
is limited to MEMORY_BYTES (0 = no limit); after a MemoryError the worker exits, so the next
document starts in a fresh process.
"""

from __future__ import annotations

import pickle
import resource
import sys
from typing import Any, BinaryIO

from ragtune_common.errors import InvalidArgument
from ragtune_retriever.parsing import extract_text

HEADER_BYTES = 8


def read_frame(stream: BinaryIO) -> bytes | None:
    header = stream.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES:
        return None
    size = int.from_bytes(header, "big")
    body = stream.read(size)
    return body if len(body) == size else None


def frame(value: Any) -> bytes:
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return len(body).to_bytes(HEADER_BYTES, "big") + body


def extract(request: tuple[bytes, str, str, int]) -> tuple[str, str]:
    data, mime_type, field, max_chars = request
    try:
        return "ok", extract_text(data, mime_type, field=field, max_chars=max_chars)
    except InvalidArgument as exc:
        return "invalid", exc.message
    except MemoryError:
        return "memory", ""
    except Exception as exc:  # a parser bug on a hostile input is still the input's problem
        return "invalid", f"could not extract text ({type(exc).__name__})"


def main() -> None:
    memory_bytes = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the replies
    replies.write(frame(("ready", "")))  # the parsers are imported: time from here is the document's
    replies.flush()
    while (body := read_frame(requests)) is not None:
        try:
            reply = extract(pickle.loads(body))
            del body
            out = frame(reply)
        except MemoryError:
            reply, out = ("memory", ""), frame(("memory", ""))
        replies.write(out)
        replies.flush()
        if reply[0] == "memory":
            return


if __name__ == "__main__":
    main()
