//! The statements only PostgreSQL's inbox has: its claim, its one-statement commits, and the
//! workers' bookkeeping for many deliveries in one statement.

use crate::sql;

/// Each tenant's oldest due delivery before a second of any, at a cost that does not grow with
/// the backlog: the tenants with pending deliveries are found by a loose scan of the index
/// (one seek per tenant), each gives at most `$7` of its oldest due ones (those of no tenant
/// ordered by `tenant` too: `IS NULL` alone does not let PostgreSQL read the index in order,
/// and it sorted all of them), and the leases that lapsed are taken over with them. A
/// candidate's turn is its rank within its tenant plus the tenant's deliveries on live leases,
/// none past the tenant's concurrency `$6`; among equal turns the tenants take their places in
/// a rotation that each claim starts elsewhere (`$8`), so that a tenant whose backlog is older
/// never goes before a newcomer for long; then as many candidates as are not locked by another
/// instance's claim. Those are found and locked at the row versions the candidates were read
/// from (their `ctid`, a row version's address): a TID scan reads each at once, where looking
/// each up by id went down the primary key's index and through every version left there, for
/// every candidate (BENCHMARKS.md, eighth step). A row changed since by another instance's
/// claim or outcome is skipped, or (as PostgreSQL's version decides) locked at its newest
/// version if that one is still due (`state`, `due_at`); the version read stays in place
/// while this statement runs, since its own snapshot keeps it from being vacuumed. Only the
/// rows locked are then looked up by id, and leased. (The `coalesce`s keep the planner off
/// the index of states: without fresh statistics, a new table or a backlog grown since the
/// last `ANALYZE`, it read every due delivery to find the few it locks.) Each lease is
/// `{owner}:{attempt}`.
const CLAIM: &str = "
WITH RECURSIVE tenants AS (
    (SELECT tenant FROM countersign_inbox
      WHERE state = 'pending' AND tenant IS NOT NULL ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT i.tenant FROM countersign_inbox i
             WHERE i.state = 'pending' AND i.tenant > t.tenant ORDER BY i.tenant LIMIT 1)
      FROM tenants t WHERE t.tenant IS NOT NULL
),
candidates AS (
    SELECT c.ctid AS at, c.id, c.tenant, c.due_at FROM tenants t CROSS JOIN LATERAL (
        SELECT ctid, id, tenant, due_at FROM countersign_inbox
         WHERE state = 'pending' AND tenant = t.tenant AND due_at <= $3
         ORDER BY due_at, id LIMIT $7) c
    UNION ALL
    (SELECT ctid, id, tenant, due_at FROM countersign_inbox
      WHERE state = 'pending' AND tenant IS NULL AND due_at <= $3
      ORDER BY tenant, due_at, id LIMIT $7)
    UNION ALL
    SELECT ctid, id, tenant, due_at FROM countersign_inbox WHERE state = 'leased' AND due_at <= $3
),
busy AS (
    SELECT tenant, count(*) AS n FROM countersign_inbox
     WHERE state = 'leased' AND due_at > $3 GROUP BY tenant),
ranked AS (
    SELECT at, id, due_at, turn, spot FROM (
        SELECT at, id, due_at, turn, (place + $8) % max(place) OVER () AS spot FROM (
            SELECT c.at, c.id, c.due_at,
                   ROW_NUMBER() OVER (PARTITION BY c.tenant ORDER BY c.due_at, c.id)
                       + coalesce(b.n, 0) AS turn,
                   DENSE_RANK() OVER (ORDER BY c.tenant) AS place
              FROM candidates c
              LEFT JOIN busy b ON b.tenant IS NOT DISTINCT FROM c.tenant) numbered) placed
     WHERE turn <= $6
     ORDER BY turn, spot, due_at, id
     LIMIT $5),
ordered AS (
    SELECT ARRAY(SELECT at FROM ranked ORDER BY turn, spot, due_at, id) AS ats),
locked AS (
    SELECT i.id FROM countersign_inbox i
     WHERE i.ctid = ANY ((SELECT ats FROM ordered)::TID[])
       AND coalesce(i.state, '') IN ('pending', 'leased') AND coalesce(i.due_at, 0) <= $3
     ORDER BY array_position((SELECT ats FROM ordered)::TID[], i.ctid)
     LIMIT $4
     FOR UPDATE OF i SKIP LOCKED)
UPDATE countersign_inbox i
   SET state = 'leased', lease_owner = $1::TEXT || ':' || (i.attempts + 1), due_at = $2,
       attempts = i.attempts + 1
  FROM locked WHERE i.id = locked.id
RETURNING i.";

/// A new delivery of tenant `$3`, due at once, unless its tenant has `$8` deliveries waiting
/// or its id is there (answering its id when inserted): one statement. The count stops at the
/// limit, so only a tenant near its limit makes its own commits count that far. (Two commits
/// at once may both see room for one: the limit bounds a tenant's share, give or take the
/// requests in flight.)
const ADMIT: &str = "INSERT INTO countersign_inbox
    (id, provider, tenant, body, signed_headers, state, due_at, received_at, expires_at)
  SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::BYTEA, $5::TEXT, 'pending', $6::BIGINT, $6::BIGINT,
         $7::BIGINT
   WHERE (SELECT count(*) FROM (SELECT 1 FROM countersign_inbox
           WHERE tenant = $3::TEXT AND state IN ('pending', 'leased') LIMIT $8::BIGINT) w)
         < $8::BIGINT
  ON CONFLICT (id) DO NOTHING
RETURNING id";

/// [`ADMIT`] for a delivery of no tenant (`$3` null).
const ADMIT_UNTENANTED: &str = "INSERT INTO countersign_inbox
    (id, provider, tenant, body, signed_headers, state, due_at, received_at, expires_at)
  SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::BYTEA, $5::TEXT, 'pending', $6::BIGINT, $6::BIGINT,
         $7::BIGINT
   WHERE (SELECT count(*) FROM (SELECT 1 FROM countersign_inbox
           WHERE tenant IS NULL AND state IN ('pending', 'leased') LIMIT $8::BIGINT) w)
         < $8::BIGINT
  ON CONFLICT (id) DO NOTHING
RETURNING id";

/// [`ADMIT`] for an inbox with no limit per tenant: nothing to count.
const ADMIT_UNLIMITED: &str = "INSERT INTO countersign_inbox
    (id, provider, tenant, body, signed_headers, state, due_at, received_at, expires_at)
  VALUES ($1::TEXT, $2::TEXT, $3::TEXT, $4::BYTEA, $5::TEXT, 'pending', $6::BIGINT, $6::BIGINT,
          $7::BIGINT)
  ON CONFLICT (id) DO NOTHING
RETURNING id";

/// [`ADMIT`] with a lease offered (`$9`, ending at `$10`): the delivery goes in leased for its
/// first attempt when nothing is due at `$6` (pending and due, or on a lapsed lease) and its
/// tenant `$3` has fewer than `$11` deliveries on live leases; pending otherwise (as the group
/// commit decides, [`group`](super::group)). A limit `$8` of `i64::MAX` counts nothing (the
/// `OR` stops before the count). Answers the id and the state it went in with.
const ADMIT_LEASED: &str = "INSERT INTO countersign_inbox
    (id, provider, tenant, body, signed_headers, state, due_at, received_at, expires_at,
     lease_owner, attempts)
  SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::BYTEA, $5::TEXT,
         CASE WHEN l.go THEN 'leased' ELSE 'pending' END,
         CASE WHEN l.go THEN $10::BIGINT ELSE $6::BIGINT END, $6::BIGINT, $7::BIGINT,
         CASE WHEN l.go THEN $9::TEXT END, CASE WHEN l.go THEN 1 ELSE 0 END
    FROM (SELECT NOT EXISTS (SELECT 1 FROM countersign_inbox d
                              WHERE d.state IN ('pending', 'leased') AND d.due_at <= $6::BIGINT)
             AND (SELECT count(*) FROM (SELECT 1 FROM countersign_inbox w
                   WHERE w.tenant = $3::TEXT AND w.state = 'leased' AND w.due_at > $6::BIGINT
                   LIMIT $11::BIGINT) x) < $11::BIGINT AS go) l
   WHERE $8::BIGINT = 9223372036854775807
      OR (SELECT count(*) FROM (SELECT 1 FROM countersign_inbox w
           WHERE w.tenant = $3::TEXT AND w.state IN ('pending', 'leased') LIMIT $8::BIGINT) w)
         < $8::BIGINT
  ON CONFLICT (id) DO NOTHING
RETURNING id, state";

/// Handled, each `($1[n], $2[n])` whose lease is still its own ([`sql::COMPLETE`]). Each of
/// these three finds its rows by id alone: the `coalesce` keeps the planner off the index of
/// states, which a plan made on a new table read whole (every handled delivery) to find a few.
const COMPLETE_ALL: &str = "UPDATE countersign_inbox i
    SET state = 'done', due_at = i.expires_at, body = NULL, signed_headers = NULL,
        last_error = NULL
   FROM unnest($1::TEXT[], $2::TEXT[]) AS c(id, lease)
  WHERE i.id = ANY ($1::TEXT[]) AND i.id = c.id AND i.lease_owner = c.lease
    AND coalesce(i.state, '') IN ('leased', 'dead', 'done')
RETURNING i.id, c.lease";

/// Failed attempts, each `($1[n], $2[n])` whose lease is still its own ([`sql::FAIL`]): due
/// again at `$4[n]`, or (null) a dead letter kept until `$5[n]`.
const FAIL_ALL: &str = "UPDATE countersign_inbox i
    SET state = CASE WHEN c.retry_at IS NULL THEN 'dead' ELSE 'pending' END,
        due_at = coalesce(c.retry_at, c.dead_until), lease_owner = NULL, last_error = c.error,
        expires_at = CASE WHEN c.retry_at IS NULL THEN c.dead_until ELSE i.expires_at END
   FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[])
        AS c(id, lease, error, retry_at, dead_until)
  WHERE i.id = ANY ($1::TEXT[]) AND i.id = c.id AND i.lease_owner = c.lease
    AND coalesce(i.state, '') = 'leased'
RETURNING i.id, c.lease";

/// Leases extended to `$3`, each `($1[n], $2[n])` still its delivery's ([`sql::RENEW`]).
const RENEW_ALL: &str = "UPDATE countersign_inbox i SET due_at = $3
   FROM unnest($1::TEXT[], $2::TEXT[]) AS c(id, lease)
  WHERE i.id = ANY ($1::TEXT[]) AND i.id = c.id AND i.lease_owner = c.lease
    AND coalesce(i.state, '') = 'leased'
RETURNING i.id, c.lease";

/// Whether a delivery is due at `$1`: pending and due, or on a lease that lapsed (one row, or
/// none).
const DUE: &str = "SELECT 1 FROM countersign_inbox
  WHERE state IN ('pending', 'leased') AND due_at <= $1 LIMIT 1";

/// [`CLAIM`] with what it returns of each delivery.
pub(super) fn claim() -> String {
    format!("{CLAIM}{}", sql::CLAIMED.replace(", ", ", i."))
}

/// The one-statement commits of a delivery over a table, by what its tenant's limit asks.
pub(super) struct Admit {
    /// [`ADMIT`]: a delivery of a tenant, counted up to the limit.
    pub(super) tenanted: String,
    /// [`ADMIT_UNTENANTED`]: a delivery of no tenant, counted up to the limit.
    pub(super) untenanted: String,
    /// [`ADMIT_UNLIMITED`]: no limit, nothing counted.
    pub(super) unlimited: String,
    /// [`ADMIT_LEASED`]: a delivery of a tenant, with a lease offered.
    pub(super) leased: String,
    /// [`ADMIT_LEASED`] for a delivery of no tenant (`$3` null).
    pub(super) leased_untenanted: String,
}

impl Admit {
    /// The three over `table`.
    pub(super) fn over(table: &str) -> Self {
        let over = |statement| sql::for_table(statement, table, true);
        Self {
            tenanted: over(ADMIT),
            untenanted: over(ADMIT_UNTENANTED),
            unlimited: over(ADMIT_UNLIMITED),
            leased: over(ADMIT_LEASED),
            leased_untenanted: over(&ADMIT_LEASED.replace("tenant = $3::TEXT", "tenant IS NULL")),
        }
    }
}

/// Every statement PostgreSQL's inbox has of its own, over a table.
pub(super) struct Own {
    /// A delivery's commit, alone.
    pub(super) admit: Admit,
    /// A group's commit.
    pub(super) group: super::group::Statements,
    /// [`COMPLETE_ALL`].
    pub(super) complete_all: String,
    /// [`FAIL_ALL`].
    pub(super) fail_all: String,
    /// [`RENEW_ALL`].
    pub(super) renew_all: String,
    /// [`DUE`].
    pub(super) due: String,
}

impl Own {
    /// Those over `table`.
    pub(super) fn over(table: &str) -> Self {
        let over = |statement| sql::for_table(statement, table, true);
        Self {
            admit: Admit::over(table),
            group: super::group::Statements::over(table),
            complete_all: over(COMPLETE_ALL),
            fail_all: over(FAIL_ALL),
            renew_all: over(RENEW_ALL),
            due: over(DUE),
        }
    }
}
