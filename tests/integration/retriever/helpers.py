"""Small builders shared by the retriever integration tests."""

from __future__ import annotations

from typing import Any

import psycopg

from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune_retriever.store import CollectionRow


def doc(doc_id: str, text: str, **metadata: Any) -> pb.DocumentInput:
    return pb.DocumentInput(id=doc_id, text=text, metadata=metadata or None)


def upsert(collection: str, *documents: pb.DocumentInput) -> pb.UpsertDocumentsRequest:
    return pb.UpsertDocumentsRequest(collection=collection, documents=list(documents))


def search(collection: str, query: str, mode: Any = pb.SEARCH_MODE_HYBRID, **kwargs: Any) -> pb.SearchRequest:
    return pb.SearchRequest(collections=[collection], query=query, mode=mode, **kwargs)


def minimal_pdf(*pages: str) -> bytes:
    """A valid PDF with one Helvetica text line per page, built by hand."""
    objects: list[bytes] = []
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{p} 0 R" for p in page_ids).encode()
    objects.append(b"<< /Type /Pages /Kids [" + kids + b"] /Count " + str(len(pages)).encode() + b" >>")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >>"
            f" /Contents {page_ids[i] + 1} 0 R >>".encode()
        )
        objects.append(b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream")
    return _pdf_file(objects)


def inflating_pdf(pages: int, lines: int, text: str = "All work and no play makes a dull document") -> bytes:
    """A small PDF that extracts to far more text than its size: every page draws one shared
    FlateDecode content stream of ``lines`` text lines (a decompression bomb in miniature)."""
    import zlib

    content = b"BT /F1 12 Tf 72 720 Td 14 TL " + (b"(" + text.encode() + b") Tj T* ") * lines + b"ET"
    packed = zlib.compress(content, 9)
    content_id, font_id, first_page = 3, 4, 5
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + " ".join(f"{first_page + i} 0 R" for i in range(pages)).encode()
        + b"] /Count "
        + str(pages).encode()
        + b" >>",
        b"<< /Length " + str(len(packed)).encode() + b" /Filter /FlateDecode >>\nstream\n" + packed + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    page = (
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 {font_id} 0 R >> >>"
        f" /Contents {content_id} 0 R >>"
    ).encode()
    objects += [page] * pages
    return _pdf_file(objects)


def _pdf_file(objects: list[bytes]) -> bytes:
    """A PDF file of these objects (numbered from 1, the first the catalog) with its xref table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


async def collection_row(conn: psycopg.AsyncConnection, name: str) -> CollectionRow:
    """The store's row of the collection ``name`` (counts left 0), read on a test's own connection."""
    cur = await conn.execute(
        "SELECT id, tenant, name, embedding_model, dimension, max_tokens, overlap_tokens, metadata, created_at,"
        " 0, 0, vector_type FROM retriever.collections WHERE name = %s",
        (name,),
    )
    row = await cur.fetchone()
    assert row is not None
    return CollectionRow(*row)
