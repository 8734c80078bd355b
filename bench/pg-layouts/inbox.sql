-- The inbox's table and indexes (crates/countersign-inbox/src/sql/mod.rs, SCHEMA, with
-- PostgreSQL's BYTEA), as scripts/bench-pg-layouts measures them.
CREATE TABLE inbox (
    id TEXT PRIMARY KEY, provider TEXT NOT NULL, tenant TEXT, body BYTEA, signed_headers TEXT,
    state TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, due_at BIGINT NOT NULL,
    lease_owner TEXT, received_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, last_error TEXT);
CREATE INDEX inbox_due ON inbox (state, due_at);
CREATE INDEX inbox_tenant_due ON inbox (tenant, state, due_at, id);
CREATE INDEX inbox_pending ON inbox (tenant, due_at, id) WHERE state = 'pending';
