-- Datasets, fine-tuning jobs, their events and checkpoints. Files live under the artifacts
-- directory; these rows say which exist and are complete.
CREATE TABLE trainer.datasets (
    id                 text PRIMARY KEY,
    tenant             text NOT NULL,
    filename           text NOT NULL,
    format             text NOT NULL,
    source             text NOT NULL,
    path               text NOT NULL,
    example_count      int NOT NULL,
    byte_count         bigint NOT NULL,
    token_count        bigint NOT NULL,
    max_example_tokens int NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX datasets_tenant_idx ON trainer.datasets (tenant, id);

CREATE TABLE trainer.jobs (
    id                     text PRIMARY KEY,
    tenant                 text NOT NULL,
    base_model             text NOT NULL,
    status                 text NOT NULL CHECK (status IN
                               ('validating_files', 'queued', 'running', 'succeeded', 'failed', 'cancelled')),
    training_file          text NOT NULL REFERENCES trainer.datasets (id),
    validation_file        text REFERENCES trainer.datasets (id),
    config                 jsonb NOT NULL,
    fine_tuned_model       text,
    error                  jsonb,
    cancel_requested       boolean NOT NULL DEFAULT false,
    step                   int NOT NULL DEFAULT 0,
    total_steps            int NOT NULL DEFAULT 0,
    trained_tokens         bigint NOT NULL DEFAULT 0,
    trained_token_fraction double precision NOT NULL DEFAULT 0,
    train_loss             double precision NOT NULL DEFAULT 0,
    eval_loss              double precision NOT NULL DEFAULT 0,
    adapter_path           text,
    publish_state          text NOT NULL DEFAULT 'pending',
    publish_error          text NOT NULL DEFAULT '',
    resume_count           int NOT NULL DEFAULT 0,
    event_seq              bigint NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL DEFAULT now(),
    started_at             timestamptz,
    finished_at            timestamptz
);
CREATE INDEX jobs_tenant_idx ON trainer.jobs (tenant, id DESC);
CREATE INDEX jobs_pending_idx ON trainer.jobs (id) WHERE status IN ('validating_files', 'queued', 'running');

CREATE TABLE trainer.job_events (
    job_id     text NOT NULL REFERENCES trainer.jobs (id) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    kind       text NOT NULL,
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE trainer.checkpoints (
    job_id     text NOT NULL REFERENCES trainer.jobs (id) ON DELETE CASCADE,
    step       int NOT NULL,
    path       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, step)
);
