"""Turn uploaded document bytes into plain text, by MIME type.

Supported: plain text, Markdown (rendered to HTML, then read like HTML), HTML (visible text,
block elements on their own lines) and PDF (pypdf, one blank line between pages). NUL characters
are removed from the text (PostgreSQL text cannot hold them), and the text is bounded: a document
that extracts to more than ``max_chars`` characters (a PDF of compressed streams can inflate
a thousandfold) is refused, a PDF page by page, before the rest is read. Every client mistake -
an unsupported type, bad UTF-8, an unreadable PDF, a document with no text or too much - surfaces
as :class:`~ragtune_common.errors.InvalidArgument` naming the offending field. Time and memory
are bounded by the caller, :mod:`ragtune_retriever.extraction`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import NoReturn

from bs4 import BeautifulSoup, NavigableString, PageElement, Tag
from markdown_it import MarkdownIt
from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError

from ragtune_common.errors import InvalidArgument

TEXT_PLAIN = "text/plain"
TEXT_MARKDOWN = "text/markdown"
TEXT_HTML = "text/html"
APPLICATION_PDF = "application/pdf"
SUPPORTED_MIME_TYPES: frozenset[str] = frozenset({TEXT_PLAIN, TEXT_MARKDOWN, TEXT_HTML, APPLICATION_PDF})

_ALIASES = {
    "text/x-markdown": TEXT_MARKDOWN,
    "application/xhtml+xml": TEXT_HTML,
}
_UNSPECIFIED = {"", "application/octet-stream"}
_EXTENSIONS = {
    ".txt": TEXT_PLAIN,
    ".text": TEXT_PLAIN,
    ".md": TEXT_MARKDOWN,
    ".markdown": TEXT_MARKDOWN,
    ".html": TEXT_HTML,
    ".htm": TEXT_HTML,
    ".pdf": APPLICATION_PDF,
}

_DROPPED_TAGS = frozenset({"script", "style", "noscript", "template", "head", "title"})
# Block elements; 2 = a paragraph break (blank line) around them, 1 = a line break.
_BLOCK_BREAKS = {
    **dict.fromkeys(("p", "pre", "blockquote", "table", "ul", "ol", "dl", "figure"), 2),
    **dict.fromkeys(("h1", "h2", "h3", "h4", "h5", "h6", "hr", "address", "details"), 2),
    **dict.fromkeys(("div", "section", "article", "header", "footer", "main", "nav"), 1),
    **dict.fromkeys(("aside", "li", "dt", "dd", "tr", "br", "figcaption", "summary"), 1),
    **dict.fromkeys(("form", "fieldset", "caption", "thead", "tbody", "tfoot"), 1),
}
_CELL_TAGS = frozenset({"td", "th"})
_MARKER_CHARS = dict.fromkeys(range(5))  # \x00-\x04 mark breaks internally; drop stray ones

_MARKDOWN = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def resolve_mime_type(mime_type: str, source_name: str, field: str) -> str:
    """The canonical supported MIME type: the explicit one, else a guess from the name."""
    explicit = mime_type.split(";", 1)[0].strip().lower()
    explicit = _ALIASES.get(explicit, explicit)
    if explicit not in _UNSPECIFIED:
        if explicit not in SUPPORTED_MIME_TYPES:
            supported = ", ".join(sorted(SUPPORTED_MIME_TYPES))
            raise InvalidArgument(
                f"unsupported MIME type {mime_type!r} (supported: {supported})",
                field=field,
            )
        return explicit
    return _guess_from_name(source_name)


def _guess_from_name(source_name: str) -> str:
    name = re.split(r"[?#]", source_name, maxsplit=1)[0]
    name = re.split(r"[/\\]", name)[-1].lower()
    dot = name.rfind(".")
    return _EXTENSIONS.get(name[dot:], TEXT_PLAIN) if dot >= 0 else TEXT_PLAIN


def extract_text(data: bytes, mime_type: str, *, field: str, max_chars: int | None = None) -> str:
    """The document's text, stripped and without NULs; raises InvalidArgument if it is unreadable,
    empty, or longer than ``max_chars``."""
    kind = resolve_mime_type(mime_type, "", field)
    if kind == APPLICATION_PDF:
        text = _pdf_text(data, field, max_chars)
    elif kind == TEXT_HTML:
        text = html_to_text(_decode_utf8(data, field))
    elif kind == TEXT_MARKDOWN:
        text = html_to_text(_MARKDOWN.render(_decode_utf8(data, field)))
    else:
        text = _decode_utf8(data, field)
    text = text.replace("\x00", "").strip()
    if max_chars is not None and len(text) > max_chars:
        _too_long(max_chars, field)
    if not text:
        raise InvalidArgument("has no text", field=field)
    return text


def _too_long(max_chars: int, field: str) -> NoReturn:
    raise InvalidArgument(f"extracts to more than {max_chars} characters of text", field=field)


def _decode_utf8(data: bytes, field: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"is not valid UTF-8 (byte offset {exc.start})", field=field) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def _pdf_text(data: bytes, field: str, max_chars: int | None) -> str:
    pages: list[str] = []
    total = 0
    try:
        reader = PdfReader(io.BytesIO(data))
        for page in reader.pages:
            pages.append(page.extract_text() or "")
            total += len(pages[-1])
            if max_chars is not None and total > max_chars:
                break
    except FileNotDecryptedError:
        raise InvalidArgument("could not parse PDF: it is encrypted", field=field) from None
    except MemoryError:
        raise  # the extraction's memory limit, reported as such by its caller
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        raise InvalidArgument(f"could not parse PDF: {reason}", field=field) from None
    if max_chars is not None and total > max_chars:
        _too_long(max_chars, field)
    return "\n\n".join(p.replace("\r\n", "\n").replace("\r", "\n").strip() for p in pages)


def html_to_text(html: str) -> str:
    """Visible text of an HTML document: blocks on their own lines, spaces collapsed."""
    soup = BeautifulSoup(html, "html.parser")
    return _tidy("".join(_walk(soup)))


def _walk(root: Tag) -> Iterator[str]:
    """Yield text and break marks (\\x00 = newline, \\x01 = blank line) without recursion."""
    stack: list[tuple[PageElement | str, bool]] = [(root, False)]
    while stack:
        node, in_pre = stack.pop()
        if isinstance(node, str) and not isinstance(node, NavigableString):
            yield node  # a break marker queued for after a block's children
        elif isinstance(node, Tag):
            name = (node.name or "").lower()
            if name in _DROPPED_TAGS:
                continue
            marker = _break_mark(name)
            yield marker
            stack.append((marker, in_pre))
            in_pre = in_pre or name == "pre"
            stack.extend((child, in_pre) for child in reversed(node.contents))
        elif type(node) is NavigableString:  # skips comments, doctypes, CDATA
            text = str(node).translate(_MARKER_CHARS)
            yield _protect_pre(text) if in_pre else re.sub(r"\s+", " ", text)


def _break_mark(name: str) -> str:
    brk = _BLOCK_BREAKS.get(name)
    if brk is not None:
        return "\x01" if brk == 2 else "\x00"
    return " " if name in _CELL_TAGS else ""


def _protect_pre(text: str) -> str:
    """Keep preformatted text verbatim: newlines, spaces and tabs become uncollapsible marks."""
    return text.rstrip("\n").replace("\n", "\x04").replace(" ", "\x02").replace("\t", "\x03")


def _merge_breaks(match: re.Match[str]) -> str:
    run = match.group()
    return "\n\n" if "\x01" in run else "\n" if "\x00" in run else " "


def _tidy(text: str) -> str:
    text = re.sub(r"[ \x00\x01]+", _merge_breaks, text)  # adjacent breaks merge to the widest
    text = text.replace("\x04", "\n").replace("\x02", " ").replace("\x03", "\t")
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()
