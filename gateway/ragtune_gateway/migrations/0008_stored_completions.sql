-- Stored chat completions (POST /v1/chat/completions with store: true, or for a tenant that stores
-- by default), read back, filtered, updated and deleted as OpenAI's /v1/chat/completions does.

-- Per-tenant settings, kept by the admin API: whether a chat completion that does not say `store`
-- is stored, and how many days a stored one is kept (NULL: until deleted). The retention sweep
-- (any gateway worker, repeatedly: one idempotent DELETE) removes what is older.
ALTER TABLE gateway.tenants
    ADD COLUMN store_completions         boolean NOT NULL DEFAULT false,
    ADD COLUMN completion_retention_days integer DEFAULT 30
        CHECK (completion_retention_days IS NULL OR completion_retention_days BETWEEN 1 AND 36500);

-- One answered request: what was asked (messages as sent, the model or alias named, the sampling
-- and rag options), who answered (the name shown and the adapter that generated, '' = the base
-- model), the answer (choices, usage), the passages and citations of a grounded answer, and the
-- caller's metadata (at most 16 string pairs). `correction` is the current corrected answer (from
-- metadata's `correction` or the longer `correction` extension field); updated_by/updated_at say
-- who changed metadata last, completion_feedback keeps every change.
CREATE TABLE gateway.stored_completions (
    id              text PRIMARY KEY,
    tenant_id       text NOT NULL REFERENCES gateway.tenants (id) ON DELETE CASCADE,
    model           text NOT NULL,
    requested_model text NOT NULL,
    adapter         text NOT NULL,
    messages        jsonb NOT NULL,
    request         jsonb NOT NULL,
    choices         jsonb NOT NULL,
    usage           jsonb,
    citations       jsonb,
    metadata        jsonb NOT NULL DEFAULT '{}',
    correction      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz,
    updated_by      text
);
CREATE INDEX stored_completions_tenant_idx ON gateway.stored_completions (tenant_id, created_at, id);
CREATE INDEX stored_completions_model_idx ON gateway.stored_completions (tenant_id, model, created_at, id);
CREATE INDEX stored_completions_requested_idx
    ON gateway.stored_completions (tenant_id, requested_model, created_at, id);
CREATE INDEX stored_completions_metadata_idx ON gateway.stored_completions USING gin (metadata jsonb_path_ops);
CREATE INDEX stored_completions_age_idx ON gateway.stored_completions (created_at);

-- Every metadata update of a stored completion (how feedback arrives): the metadata it set, the
-- rating and correction it left, the API key that sent it, and when. Deleted with the completion.
CREATE TABLE gateway.completion_feedback (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    completion_id text NOT NULL REFERENCES gateway.stored_completions (id) ON DELETE CASCADE,
    tenant_id     text NOT NULL REFERENCES gateway.tenants (id) ON DELETE CASCADE,
    api_key_id    text,
    metadata      jsonb NOT NULL,
    feedback      text,
    correction    text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX completion_feedback_completion_idx ON gateway.completion_feedback (completion_id, id);
