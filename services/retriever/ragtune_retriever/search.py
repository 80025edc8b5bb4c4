"""The retriever's search SQL: one collection's candidate lists (VECTOR by HNSW, KEYWORD by bounded
BM25), their fusion (reciprocal rank) and the hit rows.

VECTOR and KEYWORD searches are one statement each. HYBRID runs its two candidate lists at once, on
two pooled connections, and fuses them here: its latency is the slower half plus one short fetch of
the fused rows by primary key, not the sum of the halves. The query vector may still be on its way
when the KEYWORD half starts (``hybrid_search`` takes it as an awaitable).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from ragtune_retriever.store import VECTOR_TYPES, CollectionRow


@dataclass(frozen=True)
class Hit:
    collection: str
    document_id: str
    seq: int
    text: str
    score: float
    start_offset: int
    end_offset: int
    metadata: dict[str, Any]
    source_name: str
    vector_rank: int
    keyword_rank: int


@dataclass(frozen=True)
class SearchPlan:
    """One collection's search: mode is 'vector', 'keyword' or 'hybrid'."""

    mode: str
    query_vector: np.ndarray | None
    keyword_query: str
    filter_sql: sql.Composable
    filter_params: list[Any]
    top_k: int
    candidates: int
    rrf_k: int
    ef_search: int
    # KEYWORD side: at most this many matching chunks are scored (rarest query terms first)
    keyword_budget: int = 1000


_VECTOR_CTE = """
vec AS MATERIALIZED (
    SELECT c.id, c.embedding::{vtype}({dim}) <=> %s::{vtype}({dim}) AS distance
    FROM retriever.chunks c
    WHERE c.collection_id = {cid} AND ({filter})
    ORDER BY distance LIMIT %s),
vec_ranked AS (SELECT id, distance, row_number() OVER (ORDER BY distance, id) AS rnk FROM vec)"""

# BM25 (k1 = 1.2, b = 0.75) over the query's lexemes; chunk length = its number of distinct
# lexemes; the statistics tables give idf and avgdl. Bounded cost, whatever the corpus size: the
# GIN index finds the chunks of the rarest query terms, taken in order of document frequency while
# their summed frequency stays within {budget} (always the rarest one; the commonest terms weigh
# least in BM25 and match most rows); if those cover fewer than {candidates} chunks, the next terms
# fill up with at most {candidates} chunks more. Every row found is scored on all query terms,
# reading only the query's lexemes out of its tsvector: at most {budget} + {candidates} rows.
_KEYWORD_CTE = """
kw_query AS (
    SELECT coalesce(array_agg(DISTINCT u.lexeme), '{{}}') AS lexemes FROM unnest(to_tsvector('english', %s)) u),
kw_terms AS MATERIALIZED (
    SELECT s.lexeme, s.df, ln(1 + (cs.chunks - s.df + 0.5) / (s.df + 0.5)) AS idf,
           cs.lexemes::float8 / greatest(cs.chunks, 1) AS avg_len,
           sum(s.df) OVER (ORDER BY s.df, s.lexeme) AS cumulative_df
    FROM retriever.lexeme_stats s
    JOIN retriever.collection_stats cs ON cs.collection_id = s.collection_id
    WHERE s.collection_id = {cid} AND s.df > 0 AND s.lexeme = ANY((SELECT lexemes FROM kw_query)::text[])),
kw_match AS (
    SELECT to_tsquery('simple', coalesce(string_agg(lexeme, ' | ') FILTER (WHERE rare), '')) AS rare,
           to_tsquery('simple', coalesce(string_agg(lexeme, ' | ') FILTER (WHERE fill AND NOT rare), '')) AS fill
    FROM (SELECT lexeme, cumulative_df <= {budget} OR cumulative_df = df AS rare,
                 cumulative_df - df < {candidates} AS fill FROM kw_terms) t),
kw_rows AS MATERIALIZED (
    (SELECT c.id, c.tsv FROM kw_match q JOIN retriever.chunks c ON c.tsv @@ q.rare
     WHERE c.collection_id = {cid} AND ({filter}) LIMIT {budget})
    UNION ALL
    (SELECT c.id, c.tsv FROM kw_match q JOIN retriever.chunks c ON c.tsv @@ q.fill
     WHERE c.collection_id = {cid} AND ({filter}) AND NOT c.tsv @@ q.rare LIMIT {candidates})),
kw AS MATERIALIZED (
    SELECT r.id, sum(t.idf * array_length(u.positions, 1) * 2.2
                     / (array_length(u.positions, 1) + 1.2 * (0.25 + 0.75 * length(r.tsv) / t.avg_len))) AS rank
    FROM kw_rows r
    CROSS JOIN LATERAL unnest(ts_filter(setweight(r.tsv, 'A', (SELECT lexemes FROM kw_query)), '{{a}}')) u
    JOIN kw_terms t ON t.lexeme = u.lexeme
    GROUP BY r.id ORDER BY rank DESC, r.id LIMIT %s),
kw_ranked AS (SELECT id, rank, row_number() OVER (ORDER BY rank DESC, id) AS rnk FROM kw)"""

_RANKED = {"vector": "SELECT id FROM vec_ranked ORDER BY rnk", "keyword": "SELECT id FROM kw_ranked ORDER BY rnk"}

_FUSED = {
    "vector": "SELECT id, 1 - distance AS score, rnk AS vector_rank, 0::bigint AS keyword_rank"
    " FROM vec_ranked ORDER BY rnk LIMIT %s",
    "keyword": "SELECT id, rank AS score, 0::bigint AS vector_rank, rnk AS keyword_rank"
    " FROM kw_ranked ORDER BY rnk LIMIT %s",
}

# The fused rows of a HYBRID search, as arrays (id, score, vector_rank, keyword_rank).
_GIVEN = (
    "SELECT * FROM unnest(%s::bigint[], %s::float8[], %s::bigint[], %s::bigint[])"
    " AS g(id, score, vector_rank, keyword_rank)"
)

_SELECT_HITS = """
SELECT f.score::float8 AS score, f.vector_rank, f.keyword_rank, c.document_id, c.seq, c.body, c.start_offset,
       c.end_offset, c.metadata, d.source_name
FROM fused f
JOIN retriever.chunks c ON c.id = f.id
JOIN retriever.documents d ON d.collection_id = c.collection_id AND d.id = c.document_id
ORDER BY f.score DESC, f.id"""

# Per search, local to its transaction: the HNSW breadth; iterative scans, so a selective filter still
# yields k rows; and a plan made for this query's values. psycopg prepares a statement after five runs
# on a connection, and PostgreSQL's generic plan for it (limits and vector unknown) made VECTOR search
# about 2x slower on a 100k collection (6.5 against 3.0 ms): the planning it saves is ~0.2 ms.
SEARCH_SETTINGS = (
    "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', 'relaxed_order', true),"
    " set_config('plan_cache_mode', 'force_custom_plan', true)"
)


def _candidates_sql(plan: SearchPlan) -> tuple[str, list[Any]]:
    """The candidate-list CTEs of a VECTOR or KEYWORD plan, and their parameters."""
    if plan.mode == "vector":
        return _VECTOR_CTE, [plan.query_vector, *plan.filter_params, plan.candidates]
    if plan.mode == "keyword":
        return _KEYWORD_CTE, [plan.keyword_query, *plan.filter_params, *plan.filter_params, plan.candidates]
    raise ValueError(f"one statement serves 'vector' or 'keyword', not {plan.mode!r}")


def _compose(collection: CollectionRow, plan: SearchPlan, text: str) -> sql.Composed:
    return sql.SQL(text).format(
        vtype=sql.SQL(collection.vector_type if collection.vector_type in VECTOR_TYPES else "vector"),
        budget=sql.Literal(plan.keyword_budget),
        candidates=sql.Literal(plan.candidates),
        dim=sql.Literal(collection.dimension),
        cid=sql.Literal(collection.id),
        filter=plan.filter_sql,
    )


def build_search_sql(collection: CollectionRow, plan: SearchPlan) -> tuple[sql.Composed, list[Any]]:
    """A VECTOR or KEYWORD search as one statement: the candidate list, scores, and the hit rows."""
    ctes, params = _candidates_sql(plan)
    text = "WITH " + ctes + ",\nfused AS (" + _FUSED[plan.mode] + ")" + _SELECT_HITS
    return _compose(collection, plan, text), [*params, plan.top_k]


def build_ranked_sql(collection: CollectionRow, plan: SearchPlan) -> tuple[sql.Composed, list[Any]]:
    """One half of a HYBRID search: the ids of the VECTOR or KEYWORD candidates, best first."""
    ctes, params = _candidates_sql(plan)
    return _compose(collection, plan, "WITH " + ctes + "\n" + _RANKED[plan.mode]), params


def fuse(vector_ids: list[int], keyword_ids: list[int], rrf_k: int, top_k: int) -> list[tuple[int, Fraction, int, int]]:
    """Reciprocal rank fusion: (id, score, vector_rank, keyword_rank) of the ``top_k`` best, score
    sum of 1/(rrf_k + rank) over the lists holding the id (rank 0: absent); ties by id. Exact
    fractions, so equal sums tie whatever their float rounding."""
    ranks: dict[int, list[int]] = {}
    for side, ids in enumerate((vector_ids, keyword_ids)):
        for rank, chunk_id in enumerate(ids, start=1):
            ranks.setdefault(chunk_id, [0, 0])[side] = rank
    scored = [
        (chunk_id, sum((Fraction(1, rrf_k + r) for r in pair if r), Fraction(0)), pair[0], pair[1])
        for chunk_id, pair in ranks.items()
    ]
    scored.sort(key=lambda row: (-row[1], row[0]))
    return scored[:top_k]


def _hits(collection: CollectionRow, rows: list[tuple[Any, ...]]) -> list[Hit]:
    return [Hit(collection.name, r[3], r[4], r[5], r[0], r[6], r[7], r[8], r[9], int(r[1]), int(r[2])) for r in rows]


async def _fetch(
    pool: AsyncConnectionPool, statement: sql.SQL | sql.Composed, params: list[Any], ef_search: int
) -> list[Any]:
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(SEARCH_SETTINGS, (str(ef_search),))
        cur = await conn.execute(statement, params)
        return await cur.fetchall()


async def search_collection(pool: AsyncConnectionPool, collection: CollectionRow, plan: SearchPlan) -> list[Hit]:
    """One collection's top ``plan.top_k`` hits, best first."""
    if plan.mode == "hybrid":
        if plan.query_vector is None:
            raise ValueError("a hybrid plan needs its query vector (or hybrid_search with one to come)")
        return await hybrid_search(pool, collection, plan, asyncio.sleep(0, plan.query_vector))
    statement, params = build_search_sql(collection, plan)
    return _hits(collection, await _fetch(pool, statement, params, plan.ef_search))


async def hybrid_search(
    pool: AsyncConnectionPool, collection: CollectionRow, plan: SearchPlan, query_vector: Awaitable[np.ndarray]
) -> list[Hit]:
    """HYBRID: the KEYWORD candidates start at once; the VECTOR ones as soon as ``query_vector``
    is there, on a second connection; then the fused rows in one fetch by primary key."""

    async def ranked(half: SearchPlan) -> list[int]:
        statement, params = build_ranked_sql(collection, half)
        return [row[0] for row in await _fetch(pool, statement, params, half.ef_search)]

    async def vector_half() -> list[int]:
        return await ranked(dataclasses.replace(plan, mode="vector", query_vector=await query_vector))

    keyword_task = asyncio.ensure_future(ranked(dataclasses.replace(plan, mode="keyword")))
    try:
        vector_ids = await vector_half()
    except BaseException:
        keyword_task.cancel()
        raise
    fused = fuse(vector_ids, await keyword_task, plan.rrf_k, plan.top_k)
    if not fused:
        return []
    given: list[list[Any]] = [[row[0] for row in fused], [float(row[1]) for row in fused]]
    given += [[row[2] for row in fused], [row[3] for row in fused]]
    statement = _compose(collection, plan, "WITH fused AS (" + _GIVEN + ")" + _SELECT_HITS)
    return _hits(collection, await _fetch(pool, statement, given, plan.ef_search))


async def search_while_embedding(
    pool: AsyncConnectionPool, collection: CollectionRow, plan: SearchPlan, query_vector: Awaitable[np.ndarray] | None
) -> list[Hit]:
    """A search whose query vector is still being computed (None for KEYWORD, which needs none):
    HYBRID starts its KEYWORD half at once, VECTOR waits for the vector."""
    if plan.mode == "keyword":
        return await search_collection(pool, collection, plan)
    if query_vector is None:
        raise ValueError(f"a {plan.mode} search needs its query vector")
    if plan.mode == "hybrid":
        return await hybrid_search(pool, collection, plan, query_vector)
    return await search_collection(pool, collection, dataclasses.replace(plan, query_vector=await query_vector))
