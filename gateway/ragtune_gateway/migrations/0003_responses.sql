-- Stored responses of POST /v1/responses (store: true, the default), per tenant: what
-- previous_response_id continues and GET /v1/responses/{id} (and its input_items) reads back.
-- response is the whole answer as sent (with the file search results, shown only when asked for);
-- input_items the whole conversation it answered (the turns of the responses it continues, then
-- its own input), so a chain survives the deletion of an earlier response.
CREATE TABLE gateway.responses (
    id                    text PRIMARY KEY,
    tenant_id             text NOT NULL REFERENCES gateway.tenants (id) ON DELETE CASCADE,
    model                 text NOT NULL,
    status                text NOT NULL,
    response              jsonb NOT NULL,
    input_items           jsonb NOT NULL,
    previous_response_id  text,
    created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX responses_tenant_idx ON gateway.responses (tenant_id, created_at);
