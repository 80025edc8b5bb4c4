-- Model aliases (e.g. "ft:latest-good") and the promotion decisions that move them. An alias
-- moves to a candidate adapter only when the candidate beats the holder on the same held-out
-- questions; every decision, taken or refused, is kept with both scores.
CREATE TABLE gateway.model_aliases (
    tenant_id     text NOT NULL REFERENCES gateway.tenants (id) ON DELETE CASCADE,
    alias         text NOT NULL,
    model         text NOT NULL,
    metric        text NOT NULL,
    score         double precision NOT NULL,
    evaluation    jsonb NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, alias)
);

CREATE TABLE gateway.promotions (
    id              text PRIMARY KEY,
    tenant_id       text NOT NULL REFERENCES gateway.tenants (id) ON DELETE CASCADE,
    alias           text NOT NULL,
    candidate       text NOT NULL,
    candidate_score double precision NOT NULL,
    holder          text,
    holder_score    double precision,
    metric          text NOT NULL,
    promoted        boolean NOT NULL,
    reason          text NOT NULL,
    evaluation      jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX promotions_alias_idx ON gateway.promotions (tenant_id, alias, created_at);

-- Evaluations run by the gateway (POST /v1/evaluations): the request, where its resumable run
-- directory is, and its outcome. A gateway that restarts picks up the ones left running.
CREATE TABLE gateway.evaluations (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES gateway.tenants (id) ON DELETE CASCADE,
    status      text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    request     jsonb NOT NULL,
    progress    jsonb NOT NULL DEFAULT '{}',
    report      jsonb,
    promotion   jsonb,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz
);
CREATE INDEX evaluations_tenant_idx ON gateway.evaluations (tenant_id, created_at, id);
