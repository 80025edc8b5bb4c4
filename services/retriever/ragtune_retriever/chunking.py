"""Split document text into overlapping, token-bounded chunks for embedding.

The text is tokenised once with the embedding model's own (fast) tokenizer; every decision
is then made in token space using the character offsets of those tokens. Cut points are
ranked: between sentence/paragraph units (preferred; whole units are packed greedily),
then at whitespace, then between words, then anywhere between two tokens. Each chunk is an
exact slice of the text, trimmed of surrounding whitespace, and holds at most
``max_tokens - 2`` tokens so that [CLS] and [SEP] still fit.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from transformers import PreTrainedTokenizerFast

from ragtune_common.errors import InvalidArgument

MIN_MAX_TOKENS = 16
MAX_MAX_TOKENS = 8192
_SPECIAL_TOKENS = 2  # [CLS] ... [SEP]
# Whitespace that ends a unit: after a newline (lines, paragraphs) or a sentence end.
_UNIT_SEPARATOR = re.compile(r"\n\s*|(?<=[.!?])\s+|(?<=[.!?][\"'\u201d\u2019)\]])\s+")


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str  # exactly document_text[start:end]
    start: int  # character offsets into the document text
    end: int
    token_count: int


@dataclass(slots=True)
class _Tokens:
    """Token offsets of the whole text and the ranked cut points (token indices)."""

    text: str
    starts: list[int]
    units: list[int]  # starts of sentence/paragraph units, plus len(starts)
    spaces: list[int]  # tokens preceded by a gap (whitespace) in the text
    words: list[int]  # tokens starting a new pre-tokenizer word

    @property
    def count(self) -> int:
        return len(self.starts)

    def char_at(self, cut: int) -> int:
        """Character position of a cut before token ``cut``."""
        if cut == 0:
            return 0
        return self.starts[cut] if cut < self.count else len(self.text)


def chunk_text(
    text: str,
    tokenizer: PreTrainedTokenizerFast,
    max_tokens: int = 256,
    overlap_tokens: int = 32,
) -> list[Chunk]:
    """Chunks covering every non-whitespace character of ``text``, in order."""
    _validate(max_tokens, overlap_tokens)
    if not text.strip():
        return []
    toks = _tokenize(text, tokenizer)
    if toks.count == 0:
        return [c for c in [_make_chunk(text, 0, len(text), 0)] if c is not None]
    budget = max_tokens - _SPECIAL_TOKENS
    overlap = min(overlap_tokens, budget - 1)  # keep room for new tokens in every chunk
    chunks: list[Chunk] = []
    start, prev_end = 0, 0
    while True:
        end, at_unit = _choose_end(toks, start, prev_end, budget)
        count = end - start
        if not _is_word_cut(toks, start, end):
            end, count = _refit(tokenizer, toks, start, max(start, prev_end), end, budget)
        chunk = _make_chunk(text, toks.char_at(start), toks.char_at(end), count)
        if chunk is not None:
            chunks.append(chunk)
        if end >= toks.count:
            return chunks
        start, prev_end = _choose_next_start(toks, start, end, overlap, at_unit), end


def _validate(max_tokens: int, overlap_tokens: int) -> None:
    if not MIN_MAX_TOKENS <= max_tokens <= MAX_MAX_TOKENS:
        raise InvalidArgument(
            f"must be between {MIN_MAX_TOKENS} and {MAX_MAX_TOKENS}, got {max_tokens}",
            field="chunking.max_tokens",
        )
    if not 0 <= overlap_tokens < max_tokens:
        raise InvalidArgument(
            f"must be >= 0 and < max_tokens ({max_tokens}), got {overlap_tokens}",
            field="chunking.overlap_tokens",
        )


def _tokenize(text: str, tokenizer: PreTrainedTokenizerFast) -> _Tokens:
    enc = tokenizer(
        text,
        add_special_tokens=False,
        return_offsets_mapping=True,
        return_attention_mask=False,
        return_token_type_ids=False,
        truncation=False,
        verbose=False,  # no "longer than the maximum sequence length" warning
    )
    offsets: list[tuple[int, int]] = enc["offset_mapping"]
    word_ids = enc.word_ids()
    starts = [s for s, _ in offsets]
    n = len(starts)
    spaces = [i for i in range(1, n) if starts[i] > offsets[i - 1][1]]
    words = [i for i in range(1, n) if word_ids[i] != word_ids[i - 1]]
    words = sorted(set(words).union(spaces))
    units = {bisect_left(starts, m.end()) for m in _UNIT_SEPARATOR.finditer(text)}
    units.discard(0)
    units.add(n)
    return _Tokens(text, starts, sorted(units), spaces, words)


def _choose_end(toks: _Tokens, start: int, prev_end: int, budget: int) -> tuple[int, bool]:
    """The best cut after ``prev_end`` that keeps ``start..cut`` within the budget."""
    limit = start + budget
    if limit >= toks.count:
        return toks.count, True
    low = max(start, prev_end)
    cut = _last_in(toks.units, low, limit)
    if cut is not None:
        return cut, True
    for cuts in (toks.spaces, toks.words):
        cut = _last_in(cuts, low, limit)
        if cut is not None and cut - start >= budget // 2:
            return cut, False
    return limit, False


def _choose_next_start(toks: _Tokens, start: int, end: int, overlap: int, at_unit: bool) -> int:
    """Start of the next chunk: trailing units (or words) of this one within the overlap."""
    low = max(end - overlap, start + 1)
    cuts = toks.units if at_unit else toks.words
    first = _first_in(cuts, low, end)
    return end if first is None else first


def _last_in(cuts: list[int], low: int, high: int) -> int | None:
    """The largest cut in (low, high]."""
    i = bisect_right(cuts, high) - 1
    return cuts[i] if i >= 0 and cuts[i] > low else None


def _first_in(cuts: list[int], low: int, high: int) -> int | None:
    """The smallest cut in [low, high]."""
    i = bisect_left(cuts, low)
    return cuts[i] if i < len(cuts) and cuts[i] <= high else None


def _is_word_cut(toks: _Tokens, start: int, end: int) -> bool:
    """Whether both ends fall between words, so a re-tokenised slice gives the same tokens."""
    return all(c in (0, toks.count) or _first_in(toks.words, c, c) is not None for c in (start, end))


def _refit(
    tokenizer: PreTrainedTokenizerFast,
    toks: _Tokens,
    start: int,
    floor: int,
    end: int,
    budget: int,
) -> tuple[int, int]:
    """A chunk cut inside a word: re-count its tokens, pulling the end in while over budget."""
    while True:
        piece = toks.text[toks.char_at(start) : toks.char_at(end)]
        count = len(tokenizer(piece, add_special_tokens=False, verbose=False)["input_ids"])
        if count <= budget or end - 1 <= floor:
            return end, count
        end -= 1


def _make_chunk(text: str, start: int, end: int, token_count: int) -> Chunk | None:
    """The slice ``text[start:end]`` with surrounding whitespace trimmed; None if empty."""
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return None
    start += len(piece) - len(piece.lstrip())
    return Chunk(stripped, start, start + len(stripped), token_count)
