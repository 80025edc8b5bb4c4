-- BM25 for KEYWORD search: per-collection document frequencies of lexemes and average chunk
-- length, kept exact by statement-level triggers in the same transaction as the chunk writes.
CREATE TABLE retriever.lexeme_stats (
    collection_id bigint NOT NULL REFERENCES retriever.collections (id) ON DELETE CASCADE,
    lexeme        text   NOT NULL,
    df            bigint NOT NULL,
    PRIMARY KEY (collection_id, lexeme)
);

CREATE TABLE retriever.collection_stats (
    collection_id bigint PRIMARY KEY REFERENCES retriever.collections (id) ON DELETE CASCADE,
    chunks        bigint NOT NULL DEFAULT 0,
    lexemes       bigint NOT NULL DEFAULT 0
);

CREATE FUNCTION retriever.count_chunk_lexemes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sign int := CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    -- rows in a fixed order, so concurrent writers lock statistics rows in the same order
    INSERT INTO retriever.lexeme_stats AS s (collection_id, lexeme, df)
    SELECT r.collection_id, u.lexeme, sign * count(*)
    FROM changed_rows r, unnest(r.tsv) u
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (collection_id, lexeme) DO UPDATE SET df = s.df + excluded.df;
    INSERT INTO retriever.collection_stats AS s (collection_id, chunks, lexemes)
    SELECT collection_id, sign * count(*), sign * sum(length(tsv))
    FROM changed_rows GROUP BY 1 ORDER BY 1
    ON CONFLICT (collection_id) DO UPDATE SET chunks = s.chunks + excluded.chunks, lexemes = s.lexemes + excluded.lexemes;
    RETURN NULL;
END $$;

CREATE TRIGGER chunks_count_inserted AFTER INSERT ON retriever.chunks
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION retriever.count_chunk_lexemes();
CREATE TRIGGER chunks_count_deleted AFTER DELETE ON retriever.chunks
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION retriever.count_chunk_lexemes();

INSERT INTO retriever.lexeme_stats (collection_id, lexeme, df)
SELECT c.collection_id, u.lexeme, count(*) FROM retriever.chunks c, unnest(c.tsv) u GROUP BY 1, 2;
INSERT INTO retriever.collection_stats (collection_id, chunks, lexemes)
SELECT collection_id, count(*), sum(length(tsv)) FROM retriever.chunks GROUP BY 1;
