-- Collections, documents and chunks. Each collection gets its own partial HNSW index over
-- embedding::vector(<dimension>), created with the collection (see store.create_collection).
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE retriever.collections (
    id              bigserial PRIMARY KEY,
    tenant          text NOT NULL,
    name            text NOT NULL,
    embedding_model text NOT NULL,
    dimension       int  NOT NULL CHECK (dimension BETWEEN 1 AND 16000),
    max_tokens      int  NOT NULL,
    overlap_tokens  int  NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, name)
);

CREATE TABLE retriever.documents (
    collection_id bigint NOT NULL REFERENCES retriever.collections (id) ON DELETE CASCADE,
    id            text NOT NULL,
    mime_type     text NOT NULL,
    source_name   text NOT NULL DEFAULT '',
    metadata      jsonb NOT NULL DEFAULT '{}',
    content_hash  text NOT NULL,
    body          text NOT NULL,
    chunk_count   int  NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection_id, id)
);

CREATE TABLE retriever.chunks (
    id            bigserial PRIMARY KEY,
    collection_id bigint NOT NULL,
    document_id   text NOT NULL,
    seq           int  NOT NULL,
    body          text NOT NULL,
    start_offset  int  NOT NULL,
    end_offset    int  NOT NULL,
    metadata      jsonb NOT NULL DEFAULT '{}',
    embedding     vector NOT NULL,
    tsv           tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED,
    FOREIGN KEY (collection_id, document_id) REFERENCES retriever.documents (collection_id, id) ON DELETE CASCADE,
    UNIQUE (collection_id, document_id, seq)
);

CREATE INDEX chunks_tsv_idx ON retriever.chunks USING gin (tsv);
