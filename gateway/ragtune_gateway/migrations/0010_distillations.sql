-- Distillations (POST /v1/distillations): fine-tuning files built from stored chat completions,
-- and which completion went where, so that deleting a completion also removes it from a file no
-- fine-tuning job has used yet, and so that an eval can run on exactly the held-out completions.

-- One distillation: the filter it was built from, the held-out share and its seed, the teacher
-- (base URL and model, never a key), what came of it (counts), and the training file it made
-- (NULL once that file is gone: deleted, or emptied by the deletion of its completions).
CREATE TABLE gateway.distillations (
    id               text PRIMARY KEY,
    tenant_id        text NOT NULL REFERENCES gateway.tenants (id) ON DELETE CASCADE,
    file_id          text,
    filename         text NOT NULL,
    filter           jsonb NOT NULL,
    holdout_fraction double precision NOT NULL,
    seed             bigint NOT NULL,
    teacher          jsonb,
    counts           jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX distillations_tenant_idx ON gateway.distillations (tenant_id, created_at, id);
CREATE INDEX distillations_file_idx ON gateway.distillations (file_id);

-- Every stored completion a distillation took: 'train' (its line, as written in the file, in
-- `line`, at position `position`), 'holdout' (kept apart for the evaluation), or 'merged' (a
-- duplicate of another completion's prompt whose line was preferred; nothing of it is in the file).
-- No foreign key to the completion: deleting one reads its links first to rewrite the file.
CREATE TABLE gateway.distillation_items (
    distillation_id text NOT NULL REFERENCES gateway.distillations (id) ON DELETE CASCADE,
    tenant_id       text NOT NULL,
    completion_id   text NOT NULL,
    split           text NOT NULL CHECK (split IN ('train', 'holdout', 'merged')),
    position        integer,
    line            jsonb,
    PRIMARY KEY (distillation_id, completion_id)
);
CREATE INDEX distillation_items_completion_idx ON gateway.distillation_items (tenant_id, completion_id);
