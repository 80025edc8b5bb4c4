-- Each claim of a batch file (the first, or a takeover once the lease has lapsed) carries a new
-- token: a replica records the file's outcome, or gives its claim back, only while the row still
-- holds its token, so a replica whose claim was taken over never writes over the new claimant's.
ALTER TABLE gateway.vector_store_file_batch_files ADD COLUMN claim_token uuid;

-- Places reserved under a per-tenant cap (limits.reserve_place) while a creation is in flight on
-- another service: taken in a short transaction, deleted once the creation has been answered, so no
-- transaction stays open across the call. A gateway that dies mid-call leaves its reservation to
-- expire (expires_at), after which it no longer counts.
CREATE TABLE gateway.cap_reservations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   text NOT NULL REFERENCES gateway.tenants (id) ON DELETE CASCADE,
    kind        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX cap_reservations_tenant_idx ON gateway.cap_reservations (tenant_id, kind, expires_at);
