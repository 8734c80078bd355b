-- A second layout: each delivery written once (its body dropped in place when handled: no
-- indexed column changes), and a small queue table it is deleted from when handled.
CREATE TABLE inbox (
    id TEXT PRIMARY KEY, provider TEXT NOT NULL, tenant TEXT, body BYTEA, signed_headers TEXT,
    handled BOOLEAN NOT NULL DEFAULT false, attempts BIGINT NOT NULL DEFAULT 0,
    received_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, last_error TEXT)
  WITH (fillfactor = 90);
CREATE INDEX inbox_expires ON inbox (expires_at);
CREATE TABLE queue (
    id TEXT PRIMARY KEY, tenant TEXT, due_at BIGINT NOT NULL, lease_owner TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0)
  WITH (fillfactor = 50);
CREATE INDEX queue_due ON queue (tenant, due_at, id);
