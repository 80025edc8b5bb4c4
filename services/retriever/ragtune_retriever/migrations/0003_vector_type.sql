-- A collection's HNSW index precision: 'vector' (float32) or 'halfvec' (float16, half the index
-- size). The chunks table keeps float32 either way; the index and the search cast to this type.
ALTER TABLE retriever.collections
    ADD COLUMN vector_type text NOT NULL DEFAULT 'vector' CHECK (vector_type IN ('vector', 'halfvec'));
