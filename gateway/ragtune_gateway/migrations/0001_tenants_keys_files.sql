CREATE TABLE gateway.tenants (
    id text PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Only the sha256 of a key is stored; the key itself is shown once, when it is created.
CREATE TABLE gateway.api_keys (
    id text PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES gateway.tenants (id) ON DELETE CASCADE,
    key_hash text NOT NULL UNIQUE,
    prefix text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Files uploaded through /v1/files. Documents for vector stores keep their bytes under
-- <state_dir>/gateway/files/<id>; fine-tune files live in the trainer (same id).
CREATE TABLE gateway.files (
    id text PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES gateway.tenants (id) ON DELETE CASCADE,
    filename text NOT NULL,
    purpose text NOT NULL,
    bytes bigint NOT NULL,
    mime_type text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX files_tenant_id ON gateway.files (tenant_id, id);
