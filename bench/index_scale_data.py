"""Synthetic corpus for index_scale: vectors made from real MiniLM embeddings, text from a Zipf law.

Vectors: SciFact abstracts and SQuAD dev contexts embedded once with the retriever's own
``Embedder`` (cached as .npy under the state directory), then each chunk = a random convex mix of
``mix`` of them (Dirichlet weights) plus gaussian noise (``sigma`` per dimension), renormalised. With
``mix`` 2 the chunks fill the space between real passages, so distances to a query spread as on
real data; ``mix`` 1 (copies of 1,000 passages) makes tight clusters of near-ties that no graph
walk separates (recall@10 0.55 at 1M), a property of the generator, not of the index. Queries: real SciFact test
queries embedded the same way, so they land among the passages as real queries do.

Text: words are pronounceable pseudo-words (2-4 consonant-vowel syllables) whose frequencies
follow a Zipf law over the vocabulary; a chunk is ``words`` of them. Keyword queries draw their
words from the same law with the commonest ``QUERY_SKIP_RANKS`` left out (they stand for the stop
words that the 'english' text-search configuration drops from real queries).

Everything is generated in blocks from seeds, so a run never holds the whole corpus in memory and
two runs build the same corpus.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import load_scifact

VOCABULARY = 50_000
ZIPF_EXPONENT = 1.07
QUERY_SKIP_RANKS = 50
QUERY_WORDS = 6
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def passages(datasets: Path) -> list[str]:
    """SciFact abstracts (title + text) and SQuAD v1.1 dev contexts, alternating (so any prefix
    holds both), then the rest of the longer list."""
    scifact = [text for _, text in load_scifact(datasets / "scifact").corpus]
    squad_file = json.loads((datasets / "squad-v1.1" / "dev-v1.1.json").read_text(encoding="utf-8"))
    squad = [para["context"] for article in squad_file["data"] for para in article["paragraphs"]]
    paired = [text for pair in zip(scifact, squad, strict=False) for text in pair]
    return paired + scifact[len(squad) :] + squad[len(scifact) :]


def scifact_queries(datasets: Path) -> list[str]:
    """SciFact test queries first (deduplicated, in qrels order), then the others."""
    data = load_scifact(datasets / "scifact")
    ordered = [data.queries[q] for q in data.test_qrels if q in data.queries]
    ordered += list(data.queries.values())
    return list(dict.fromkeys(t.strip() for t in ordered))


def embed_cached(texts: list[str], cache: Path, model: str) -> np.ndarray:
    """``texts`` embedded by the retriever's Embedder (unit-length float32), cached at ``cache``."""
    if cache.exists():
        cached = np.load(cache)
        if cached.shape[0] == len(texts):
            return cached
    from ragtune_retriever.embedding import Embedder

    vectors = np.asarray(Embedder(model).encode(texts), dtype=np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def _word(rank: int) -> str:
    syllables, n = [], rank + len(_SYLLABLES)  # at least two syllables: no stop word, no one-letter word
    while n:
        n, digit = divmod(n, len(_SYLLABLES))
        syllables.append(_SYLLABLES[digit])
    return "".join(syllables)


@dataclass
class SyntheticCorpus:
    base: np.ndarray  # real embeddings, unit length
    sigma: float
    words_per_chunk: int
    seed: int = 0
    mix: int = 2

    def __post_init__(self) -> None:
        self.vocabulary = np.array([_word(r) for r in range(VOCABULARY)], dtype=object)
        weights = 1.0 / np.arange(1, VOCABULARY + 1) ** ZIPF_EXPONENT
        self._cdf = np.cumsum(weights / weights.sum())

    def vectors(self, start: int, count: int) -> np.ndarray:
        """Chunk vectors ``start .. start+count`` (``start`` a multiple of the block used to write)."""
        rng = np.random.default_rng([self.seed, 1, start])
        picked = self.base[rng.integers(len(self.base), size=(count, self.mix))]  # (count, mix, dim)
        weights = rng.dirichlet(np.ones(self.mix), size=count).astype(np.float32)
        mixed = np.einsum("cm,cmd->cd", weights, picked)
        noisy = mixed + rng.normal(0.0, self.sigma, size=mixed.shape).astype(np.float32)
        return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)

    def _ranks(self, rng: np.random.Generator, size: int | tuple[int, int]) -> np.ndarray:
        return np.minimum(np.searchsorted(self._cdf, rng.random(size)), VOCABULARY - 1)

    def texts(self, start: int, count: int) -> list[str]:
        rng = np.random.default_rng([self.seed, 2, start])
        words = self.vocabulary[self._ranks(rng, (count, self.words_per_chunk))]
        return [" ".join(row) for row in words]

    def keyword_queries(self, count: int) -> list[str]:
        rng = np.random.default_rng([self.seed, 3])
        queries: list[str] = []
        while len(queries) < count:
            ranks = self._ranks(rng, QUERY_WORDS * 4)
            kept = [r for r in ranks if r >= QUERY_SKIP_RANKS][:QUERY_WORDS]
            if len(kept) == QUERY_WORDS:
                queries.append(" ".join(self.vocabulary[kept]))
        return queries

    def blocks(self, start: int, stop: int, block: int) -> Iterator[tuple[int, np.ndarray, list[str]]]:
        for first in range(start, stop, block):
            count = min(block, stop - first)
            yield first, self.vectors(first, count), self.texts(first, count)
