-- File batches of vector stores (POST /v1/vector_stores/{id}/file_batches): each file of a batch is
-- added to the store on its own, so one bad file fails alone with its reason. A file row is claimed
-- (claimed_at) by the gateway replica adding it; a claim older than the lease is taken over, so a
-- batch left by a stopped gateway is finished by another (adding a file again is idempotent).
CREATE TABLE gateway.vector_store_file_batches (
    id               text PRIMARY KEY,
    tenant_id        text NOT NULL REFERENCES gateway.tenants (id) ON DELETE CASCADE,
    vector_store_id  text NOT NULL,
    attributes       jsonb,
    cancelled        boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vector_store_file_batches_tenant_idx ON gateway.vector_store_file_batches (tenant_id, vector_store_id);

CREATE TABLE gateway.vector_store_file_batch_files (
    batch_id       text NOT NULL REFERENCES gateway.vector_store_file_batches (id) ON DELETE CASCADE,
    file_id        text NOT NULL,
    position       int NOT NULL,
    filename       text NOT NULL DEFAULT '',
    status         text NOT NULL DEFAULT 'in_progress'
                   CHECK (status IN ('in_progress', 'completed', 'failed', 'cancelled')),
    claimed_at     timestamptz,
    error_code     text,
    error_message  text,
    usage_bytes    bigint NOT NULL DEFAULT 0,
    chunk_count    bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, file_id)
);
CREATE INDEX vector_store_file_batch_files_pending_idx
    ON gateway.vector_store_file_batch_files (batch_id, position) WHERE status = 'in_progress';
