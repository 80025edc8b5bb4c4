-- The OpenAI Evals dialect (/v1/evals): an eval is an item schema and its graders; a run samples a
-- model (or takes the samples given) for each item of its data source and grades them. Runs are
-- leased jobs like the evaluations (0005): any gateway worker claims one, renews its lease, writes
-- only while it holds it, and a run whose worker died is resumed from its first ungraded item.
CREATE TABLE gateway.evals (
    id                 text PRIMARY KEY,
    tenant_id          text NOT NULL REFERENCES gateway.tenants (id) ON DELETE CASCADE,
    name               text NOT NULL,
    metadata           jsonb,
    data_source_config jsonb NOT NULL,
    testing_criteria   jsonb NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX evals_tenant_idx ON gateway.evals (tenant_id, created_at, id);

CREATE TABLE gateway.eval_runs (
    id               text PRIMARY KEY,
    eval_id          text NOT NULL REFERENCES gateway.evals (id) ON DELETE CASCADE,
    tenant_id        text NOT NULL REFERENCES gateway.tenants (id) ON DELETE CASCADE,
    name             text NOT NULL,
    metadata         jsonb,
    model            text NOT NULL,
    data_source      jsonb NOT NULL,
    status           text NOT NULL CHECK (status IN ('queued', 'in_progress', 'completed', 'failed', 'canceled')),
    error            jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    lease_owner      text,
    lease_expires_at timestamptz,
    attempts         integer NOT NULL DEFAULT 0
);
CREATE INDEX eval_runs_eval_idx ON gateway.eval_runs (eval_id, created_at, id);
CREATE INDEX eval_runs_active_idx ON gateway.eval_runs (created_at, id) WHERE status IN ('queued', 'in_progress');

-- One row per item of a run's data source, written whole when the run is created (status
-- 'pending'), then its sample and grades once the worker has them.
CREATE TABLE gateway.eval_run_items (
    run_id     text NOT NULL REFERENCES gateway.eval_runs (id) ON DELETE CASCADE,
    idx        integer NOT NULL,
    item       jsonb NOT NULL,
    sample     jsonb,
    results    jsonb,
    status     text NOT NULL CHECK (status IN ('pending', 'pass', 'fail', 'error')),
    graded_at  timestamptz,
    PRIMARY KEY (run_id, idx)
);
CREATE INDEX eval_run_items_pending_idx ON gateway.eval_run_items (run_id, idx) WHERE status = 'pending';
