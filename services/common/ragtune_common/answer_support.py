"""How much of an answer its passages hold: SQuAD answer normalisation and the share of an
answer's content words found in given passages. Shared by the gateway (which files an uncited
answer is annotated with) and the evaluation (answer support of RAG arms)."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
CITATION = re.compile(r"\[(\d{1,3})\]")  # a passage number as the grounding prompt asks for it
_STOPWORDS_TEXT = """a an the of in on at to for by with from and or but is are was were be been being it its this
that these those as which who whom what when where why how i you he she they we do does did not no yes so than
then there their his her our your my me him them us will would can could should may might must has have had"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def normalize_answer(text: str) -> str:
    """Lower case, punctuation and the articles a/an/the removed, whitespace collapsed (the
    official SQuAD v1.1 evaluation script's normalisation)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def content_words(text: str) -> list[str]:
    """The normalised words of ``text`` without citation markers and stop words."""
    return [w for w in normalize_answer(CITATION.sub(" ", text)).split() if w not in STOPWORDS]


def support(answer: str, passages: Sequence[str]) -> float:
    """Share of the answer's content words that appear in ``passages`` (0 for an empty answer)."""
    words = content_words(answer)
    if not words:
        return 0.0
    vocabulary = set(normalize_answer(" ".join(passages)).split())
    return sum(1 for w in words if w in vocabulary) / len(words)
