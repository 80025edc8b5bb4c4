"""Tests for ragtune_retriever.parsing: MIME resolution and text extraction per type."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader, PdfWriter

from ragtune_common.errors import InvalidArgument
from ragtune_retriever.parsing import (
    SUPPORTED_MIME_TYPES,
    extract_text,
    resolve_mime_type,
)

FIELD = "document.content"


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF (correct xref) with one Helvetica text line per page."""
    n = len(pages)
    font_id = 3 + 2 * n
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode(),
    ]
    for i, text in enumerate(pages):
        esc = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({esc}) Tj ET".encode("latin-1")
        resources = f"/Resources << /Font << /F1 {font_id} 0 R >> >>"
        objs.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] {resources} /Contents {4 + 2 * i} 0 R >>".encode()
        )
        objs.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for num, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (num, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objs) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def encrypt(pdf: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password, owner_password="owner", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def invalid(data: bytes, mime: str) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        extract_text(data, mime, field=FIELD)
    assert info.value.field == FIELD
    return info.value


# --- MIME resolution ---------------------------------------------------------------


def test_supported_types() -> None:
    assert {
        "text/plain",
        "text/markdown",
        "text/html",
        "application/pdf",
    } == SUPPORTED_MIME_TYPES


@pytest.mark.parametrize(
    ("mime", "name", "expected"),
    [
        ("text/html; charset=utf-8", "notes.txt", "text/html"),  # explicit wins
        ("  Application/PDF ", "", "application/pdf"),
        ("TEXT/MARKDOWN;variant=GFM", "x.pdf", "text/markdown"),
        ("", "readme.md", "text/markdown"),
        ("", "Guide.MARKDOWN", "text/markdown"),
        ("", "dir/page.htm", "text/html"),
        ("", "https://example.com/a/report.pdf?dl=1#p2", "application/pdf"),
        ("", "C:\\docs\\index.html", "text/html"),
        ("", "notes.txt", "text/plain"),
        ("", "archive.tar.gz", "text/plain"),
        ("", "no_extension", "text/plain"),
        ("", "", "text/plain"),
        ("application/octet-stream", "paper.pdf", "application/pdf"),
    ],
)
def test_resolve_mime_type(mime: str, name: str, expected: str) -> None:
    assert resolve_mime_type(mime, name, "document.mime_type") == expected


@pytest.mark.parametrize("mime", ["image/png", "application/msword", "text"])
def test_unsupported_explicit_mime_type(mime: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        resolve_mime_type(mime, "file.txt", "document.mime_type")
    assert info.value.field == "document.mime_type"
    assert "unsupported" in info.value.message


# --- plain text ----------------------------------------------------------------------


def test_plain_text_bom_crlf_and_strip() -> None:
    data = "\ufeff  Line one\r\nLine two\r\n\r\nCafé ☕ 東京\r\n".encode()
    assert extract_text(data, "text/plain", field=FIELD) == ("Line one\nLine two\n\nCafé ☕ 東京")


def test_invalid_utf8_names_field_and_offset() -> None:
    err = invalid(b"abc\xff\xfedef", "text/plain")
    assert "is not valid UTF-8 (byte offset 3)" in err.message
    assert str(err).startswith(FIELD)


def test_invalid_utf8_html_and_markdown() -> None:
    assert "UTF-8" in invalid(b"<p>\xc3(</p>", "text/html").message
    assert "UTF-8" in invalid(b"# T\xe9st", "text/markdown").message


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (b"", "text/plain"),
        (b" \n\t\r\n ", "text/plain"),
        (b"\xef\xbb\xbf", "text/plain"),
        (
            b"<html><head><title>T</title></head><script>x()</script></html>",
            "text/html",
        ),
        (b"<!-- only a comment -->", "text/html"),
        (b"   \n\n", "text/markdown"),
    ],
)
def test_document_without_text(data: bytes, mime: str) -> None:
    assert "has no text" in invalid(data, mime).message


# --- HTML ----------------------------------------------------------------------------

HTML = b"""<!DOCTYPE html>
<html><head><title>Page title</title><style>p { color: red }</style>
<script>var headScript = 1;</script></head>
<body>
  <noscript>Enable JS</noscript><template><p>templated</p></template>
  <h1>Main   heading</h1>
  <p>First <b>bold</b>
     paragraph &amp; more.<script>alert("x")</script></p>
  <!-- a comment -->
  <div>Block one</div><div>Block two</div>
  <ul><li>apple</li><li>banana</li></ul>
  <p></p><p></p><p>After empties</p>
  <pre>def f():
    return 1</pre>
  <table><tr><td>a1</td><td>b1</td></tr><tr><td>a2</td><td>b2</td></tr></table>
  line<br>break
</body></html>"""


def test_html_visible_text_only() -> None:
    text = extract_text(HTML, "text/html", field=FIELD)
    for hidden in (
        "color",
        "headScript",
        "alert",
        "Enable JS",
        "templated",
        "Page title",
    ):
        assert hidden not in text
    assert "a comment" not in text
    assert "First bold paragraph & more." in text


def test_html_block_structure() -> None:
    text = extract_text(HTML, "text/html", field=FIELD)
    assert text.startswith("Main heading\n\nFirst bold")
    assert "Block one\nBlock two" in text
    assert "apple\nbanana" in text
    assert "\n\nAfter empties\n\n" in text
    assert "def f():\n    return 1" in text  # preformatted text kept verbatim
    assert "a1 b1\na2 b2" in text
    assert text.endswith("line\nbreak")
    assert "\n\n\n" not in text
    assert "  " not in text.replace("    return", "")
    assert all(line == line.strip() for line in text.split("\n") if "return" not in line)


def test_html_without_blocks_is_one_line() -> None:
    data = b"<span>Hello</span>\n\n\n   <i>world</i>"
    assert extract_text(data, "text/html", field=FIELD) == "Hello world"


# --- Markdown ------------------------------------------------------------------------

MARKDOWN = b"""# Getting *started*

Some **bold** text with a [link](https://example.com/x) and `inline code`.

## Steps

- first item
- second _item_

1. numbered

```python
def hello():
    print("hi")
```

> quoted words
"""


def test_markdown_reads_as_prose() -> None:
    text = extract_text(MARKDOWN, "text/markdown", field=FIELD)
    for syntax in (
        "#",
        "*",
        "_item_",
        "[link]",
        "](",
        "https://example.com",
        "```",
        ">",
    ):
        assert syntax not in text
    lines = text.split("\n")
    assert lines[0] == "Getting started"
    assert "Some bold text with a link and inline code." in lines
    assert "Steps" in lines
    assert "first item" in lines and "second item" in lines and "numbered" in lines
    assert 'def hello():\n    print("hi")' in text
    assert "quoted words" in lines
    assert "\n\n\n" not in text


# --- PDF -----------------------------------------------------------------------------


def test_pdf_text_of_all_pages() -> None:
    pdf = make_pdf(["Hello PDF world", "Second page (with parens)"])
    text = extract_text(pdf, "application/pdf", field=FIELD)
    assert text == "Hello PDF world\n\nSecond page (with parens)"


def test_pdf_with_empty_user_password_is_readable() -> None:
    pdf = encrypt(make_pdf(["Readable anyway"]), user_password="")
    assert extract_text(pdf, "application/pdf", field=FIELD) == "Readable anyway"


def test_encrypted_pdf() -> None:
    pdf = encrypt(make_pdf(["Secret words"]), user_password="hunter2")
    err = invalid(pdf, "application/pdf")
    assert err.message.startswith("could not parse PDF:")
    assert "encrypted" in err.message


@pytest.mark.parametrize(
    "data",
    [
        b"this is not a pdf at all" * 20,
        b"%PDF-1.4\n" + bytes(range(256)) * 4,
        b"",
        b"%PDF-1.7\n",
    ],
)
def test_unparseable_pdf(data: bytes) -> None:
    assert invalid(data, "application/pdf").message.startswith("could not parse PDF:")


def test_truncated_pdf() -> None:
    pdf = make_pdf(["Hello PDF world"])
    for cut in (len(pdf) // 3, len(pdf) // 2, len(pdf) - 30):
        assert invalid(pdf[:cut], "application/pdf").message.startswith("could not parse PDF:")


def test_damaged_pdf_never_leaks_other_errors() -> None:
    pdf = make_pdf(["Hello PDF world", "Page two"])
    for i in range(0, len(pdf), 7):
        damaged = pdf[:i] + b"\x00" + pdf[i + 1 :]
        try:
            extract_text(damaged, "application/pdf", field=FIELD)
        except InvalidArgument as err:
            assert err.field == FIELD


def test_pdf_without_text() -> None:
    assert "has no text" in invalid(make_pdf([""]), "application/pdf").message


# --- NUL characters and output bounds --------------------------------------------------


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (b"a\x00b\x00 c", "text/plain"),
        (b"<p>a\x00b\x00 c</p>", "text/html"),
        (b"a\x00b\x00 c", "text/markdown"),
    ],
)
def test_nul_characters_are_stripped(data: bytes, mime: str) -> None:
    """PostgreSQL text cannot hold NUL: it is removed from document text (documented)."""
    assert extract_text(data, mime, field=FIELD) == "ab c"


def test_only_nuls_is_no_text() -> None:
    assert "has no text" in invalid(b"\x00\x00", "text/plain").message


def test_inflating_pdf_stops_at_the_character_limit() -> None:
    from tests.integration.retriever.helpers import inflating_pdf

    pdf = inflating_pdf(pages=200, lines=2000)  # ~32 KB that would extract to ~17 MB
    assert len(pdf) < 64 * 1024
    with pytest.raises(InvalidArgument) as info:
        extract_text(pdf, "application/pdf", field=FIELD, max_chars=500_000)
    assert info.value.field == FIELD
    assert "more than 500000 characters" in info.value.message


@pytest.mark.parametrize("mime", ["text/plain", "text/html", "text/markdown"])
def test_text_over_the_character_limit(mime: str) -> None:
    err = invalid_with_limit(b"word " * 1000, mime, 1000)
    assert "more than 1000 characters" in err.message
    assert extract_text(b"word " * 100, mime, field=FIELD, max_chars=1000).startswith("word")


def invalid_with_limit(data: bytes, mime: str, max_chars: int) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        extract_text(data, mime, field=FIELD, max_chars=max_chars)
    assert info.value.field == FIELD
    return info.value
