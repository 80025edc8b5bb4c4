-- Any gateway replica serves any request: what lived on a pod's disk (file bytes, evaluation runs
-- and reports) moves into PostgreSQL, beside the rows it belongs to, deleted with them.

-- The bytes of documents and evaluation datasets (a fine-tune file's bytes live in the trainer), in
-- chunks of at most 1 MiB, inserted in the transaction that inserts the file's row.
CREATE TABLE gateway.file_chunks (
    file_id text NOT NULL REFERENCES gateway.files (id) ON DELETE CASCADE,
    seq     integer NOT NULL,
    data    bytea NOT NULL,
    PRIMARY KEY (file_id, seq)
);

-- Evaluations are leased jobs: a worker claims one (lease_owner, lease_expires_at), renews its lease
-- while it runs, and every write it makes is conditional on still holding it; a lease that lapses
-- (its process was killed) lets any other worker resume the run from what is recorded here.
-- attempts counts claims not given back (crashes), so a run that kills its worker stops retrying.
ALTER TABLE gateway.evaluations
    ADD COLUMN config           jsonb,
    ADD COLUMN state            jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN lease_owner      text,
    ADD COLUMN lease_expires_at timestamptz,
    ADD COLUMN attempts         integer NOT NULL DEFAULT 0;
CREATE INDEX evaluations_active_idx ON gateway.evaluations (created_at, id) WHERE status IN ('queued', 'running');

-- The evaluation's inputs (its copy of the dataset) and outputs (report.md, chart.svg, report.html).
CREATE TABLE gateway.evaluation_files (
    evaluation_id text NOT NULL REFERENCES gateway.evaluations (id) ON DELETE CASCADE,
    name          text NOT NULL,
    media_type    text NOT NULL,
    content       bytea NOT NULL,
    PRIMARY KEY (evaluation_id, name)
);

-- Each answered (or judged) question of a run, in the order they came: a resumed run asks only the rest.
CREATE TABLE gateway.evaluation_results (
    evaluation_id text NOT NULL REFERENCES gateway.evaluations (id) ON DELETE CASCADE,
    arm           text NOT NULL,
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    result        jsonb NOT NULL,
    PRIMARY KEY (evaluation_id, arm, seq)
);
