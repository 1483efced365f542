-- The task journal on PostgreSQL: schema (version 1) and every statement rawbg sends.
-- Groundwork for issue 23. Runs as is in psql (`psql URL -f notes/pg_schema.sql`): the
-- statements with parameters are PREPAREd under the name the store would use, and
-- notes/pg_schema_try.sh exercises them (two claimers, a paused node's stale done-mark).
--
-- The model in six rules
--  1. A node is one rawbg process. It registers once and gets a *token* from a sequence:
--     never reused, increasing. A node that loses its lease registers again and gets a new
--     token; the token, not the node's name, is what owns entries. So "the owner" of an
--     entry is one registration of one process, and a node back from a pause cannot be
--     mistaken for its former self.
--  2. Every time is the database's clock (now()), never a node's: a lease is
--     `lease_until = now() + lease` at the renewal, and a lease has expired when
--     `lease_until < now()` for whoever looks. Node clocks may disagree; they only measure
--     durations (rule 5).
--  3. A live node takes over a dead node's pending entries in one statement (`rawbg_claim`):
--     it locks the dead node's row (FOR UPDATE SKIP LOCKED), fences it (lease_until =
--     '-infinity'), and moves the entries to its own token (FOR UPDATE SKIP LOCKED, in
--     batches). Two claimers never take the same entry: the node row and the entry rows
--     are locked, and a row another claimer holds is skipped, not waited for.
--  4. Renewal is refused once fenced (`lease_until <> '-infinity'`), and it takes the same
--     row lock a claim takes: whichever commits first wins. A renewal that finds nothing
--     tells the node it lost its lease: it runs none of the tasks it holds, registers again
--     and carries on with a new token.
--  5. A node starts a task (a first run, a retry, a recovered one) only while its lease
--     holds *by its own clock*: until (when it sent its last successful renewal) + lease -
--     margin. That instant is never later than the database's lease_until, so no claimer
--     can have fenced the node when it starts a task: a node back from a pause runs nothing
--     it no longer owns. It renews first, and if refused, drops them (rule 4).
--  6. Done-marks, attempt counts and failures are conditioned on the entry's token being
--     the node's current token (`AND token = $1`): the stale done-mark of a node back from
--     a pause deletes nothing, and the task runs on the node that took it over.
--     The only duplicates: a task that was *running* when its node died, paused past its
--     lease, or lost the database for longer than its lease.
--
-- Lease: 10 s (see notes/pg_research.md, "The lease"). Heartbeat every 2 s. A claim pass
-- runs with every heartbeat and also at the earliest other node's lease_until, so a dead
-- node's entries are taken 8-10 s after its death (10 s after its last renewal).
--
-- Parameter $1 is this node's token throughout.

\set ON_ERROR_STOP on

-- ------------------------------------------------------------------------------------------
-- 1. Create or check the schema: one transaction, under an advisory lock, so that nodes
--    starting together do not race (CREATE TABLE IF NOT EXISTS alone can still fail on a
--    concurrent creation's catalog rows). DDL is transactional in PostgreSQL: a migration
--    is all or nothing. The store reads rawbg_meta's version after taking the lock:
--    missing -> create (below); older -> run the MIGRATIONS from it (same transaction);
--    newer -> refuse with JournalError ("written by a newer rawbg").
-- ------------------------------------------------------------------------------------------

BEGIN;
SELECT pg_advisory_xact_lock(hashtext('rawbg-task-journal'));

CREATE TABLE IF NOT EXISTS rawbg_meta (key text PRIMARY KEY, value text NOT NULL);
-- a table of that name that is not ours must be refused: the store checks 'format'
INSERT INTO rawbg_meta VALUES ('format', 'rawbg-task-journal'), ('version', '1')
    ON CONFLICT (key) DO NOTHING;

-- Fencing tokens, and the high half of task ids (see rawbg_tasks.id)
CREATE SEQUENCE IF NOT EXISTS rawbg_token AS bigint;

CREATE TABLE IF NOT EXISTS rawbg_nodes (
    token       bigint PRIMARY KEY DEFAULT nextval('rawbg_token'),
    name        text NOT NULL,          -- host:pid:random, as today's owner; for log lines
    host        text NOT NULL,
    pid         integer NOT NULL,
    registered  timestamptz NOT NULL DEFAULT now(),
    lease       interval NOT NULL,      -- its --task-journal-lease: each node renews by its own
    -- until when the node is alive; '-infinity' once it is fenced (taken over) or it
    -- released its entries at a graceful stop
    lease_until timestamptz NOT NULL,
    fenced_at   timestamptz              -- when it became '-infinity': housekeeping's clock
);

CREATE TABLE IF NOT EXISTS rawbg_tasks (
    -- (token << 32) | n, n counted by the node from 1: made by the node, so that a group
    -- commit needs no RETURNING and can be one COPY or pipeline (measured: notes/
    -- pg_research.md). Unique because tokens are. 2^32 ids per registration: a node that
    -- uses them up registers again (3.4 days at 14 000 tasks/s; rare).
    id          bigint PRIMARY KEY,
    token       bigint NOT NULL,        -- the owner: the registration allowed to run it
    function    text NOT NULL,          -- module:qualname
    arguments   text NOT NULL,          -- JSON [args, kwargs], as rawbg wrote it (text: kept
                                        -- byte for byte; a corrupt one is set aside, as in SQLite)
    label       text NOT NULL,
    state       smallint NOT NULL DEFAULT 0,  -- 0 pending, 2 failed, 3 set aside (as SQLite)
    attempts    integer NOT NULL DEFAULT 0,
    takeovers   integer NOT NULL DEFAULT 0,   -- how often it was claimed from a dead node
    created     timestamptz NOT NULL DEFAULT now(),
    kept_since  timestamptz,            -- when it failed or was set aside: housekeeping's clock
    note        text
);
-- Claims look entries up by the dead node's token; the live node's own pending ones for
-- --trace. Partial: failed and set-aside rows stay out of it.
CREATE INDEX IF NOT EXISTS rawbg_tasks_pending ON rawbg_tasks (token) WHERE state = 0;
CREATE INDEX IF NOT EXISTS rawbg_tasks_kept ON rawbg_tasks (kept_since) WHERE state <> 0;
-- A queue table: rows live for a second and are deleted. Vacuum it after 1 000 dead rows,
-- not after 20 % of the table (the default): the table stays small and its pages reused.
ALTER TABLE rawbg_tasks SET (autovacuum_vacuum_scale_factor = 0,
                             autovacuum_vacuum_threshold = 1000,
                             autovacuum_vacuum_insert_scale_factor = 0,
                             autovacuum_vacuum_insert_threshold = 10000);
COMMIT;

-- Migrations (none yet). From version N to N+1: the statements, then
--   UPDATE rawbg_meta SET value = 'N+1' WHERE key = 'version';
-- in the transaction above, after the lock. A running node of the old version keeps
-- working as long as the change is additive (a new column with a default, a new index);
-- one that is not must bump the version so that old nodes refuse the schema at start-up
-- and their renewal is refused (the store checks the version with each renewal's answer:
-- `rawbg_renew` returns it).

-- Every session of a node (set at connect, as libpq options):
--   idle_in_transaction_session_timeout = 10s: a transaction never waits for the node
--     (each is one statement or one pipeline, sent whole), so one that does is a node that
--     stopped or vanished mid-send; it must not hold its locks (and block claims) for long.
--   lock_timeout = 5s: nothing waits for a lock that long unless something is stuck.
--   TCP keepalives (keepalives_idle=5, keepalives_interval=2, keepalives_count=3): a
--     database that vanished is noticed in ~11 s, not after the kernel's 2 h.
SET idle_in_transaction_session_timeout = '10s';
SET lock_timeout = '5s';

-- ------------------------------------------------------------------------------------------
-- 2. Register ($1 name, $2 host, $3 pid, $4 lease). At open, and again after losing the
--    lease. Returns the token.
-- ------------------------------------------------------------------------------------------
PREPARE rawbg_register(text, text, integer, interval) AS
    INSERT INTO rawbg_nodes (name, host, pid, lease, lease_until)
    VALUES ($1, $2, $3, $4, now() + $4)
    RETURNING token, lease_until;

-- ------------------------------------------------------------------------------------------
-- 3. Heartbeat: renew the lease, one per node every 2 s (never per task). Refused (no row)
--    once fenced: the node has lost its entries (rule 4). Returns the schema version too,
--    so that a node learns of a migration it cannot read.
-- ------------------------------------------------------------------------------------------
PREPARE rawbg_renew(bigint) AS
    UPDATE rawbg_nodes SET lease_until = now() + lease
    WHERE token = $1 AND lease_until <> '-infinity'
    RETURNING lease_until, (SELECT value FROM rawbg_meta WHERE key = 'version') AS version;

-- ------------------------------------------------------------------------------------------
-- 4. Group commit: one round trip. Entries are added under the node's token; the
--    done-marks, attempts and failures of the same loop iteration ride along, each
--    conditioned on the entry still being the node's (rule 6). As one statement (data-
--    modifying CTEs run in one snapshot, on disjoint rows here) the writer thread sends it
--    alone, in autocommit: one statement is one transaction. The insert side is written
--    here with unnest so that one PREPARE serves any group size; the store would send
--    it as a multi-row VALUES list with $n placeholders (psycopg's RawCursor), which
--    measured cheapest on the client for groups of 1 to 32 (notes/pg_research.md).
--    $1 token, $2 ids, $3 functions, $4 arguments, $5 labels, $6 ids done,
--    $7 ids failed, $8 ids retried, $9 their attempts. An id is in at most one of $6, $7,
--    $8 (a statement may change a row only once): the writer keeps an id's last word.
--    Returns the ids of the done-marks that counted: a node back from a pause learns which
--    of its marks did not (their tasks were taken over; it logs them).
-- ------------------------------------------------------------------------------------------
PREPARE rawbg_commit(bigint, bigint[], text[], text[], text[], bigint[], bigint[], bigint[],
                     integer[]) AS
    WITH added AS (
        INSERT INTO rawbg_tasks (id, token, function, arguments, label)
        SELECT id, $1, f, a, l FROM unnest($2, $3, $4, $5) AS u(id, f, a, l)
    ), done AS (
        DELETE FROM rawbg_tasks WHERE id = ANY($6) AND token = $1 RETURNING id
    ), failed AS (
        UPDATE rawbg_tasks SET state = 2, kept_since = now(), note = 'last attempt failed'
        WHERE id = ANY($7) AND token = $1
    ), retried AS (
        UPDATE rawbg_tasks t SET attempts = r.n
        FROM unnest($8, $9) AS r(id, n) WHERE t.id = r.id AND t.token = $1
    )
    SELECT id FROM done;

-- The done-mark batch alone (what the driver measurements time as "done-marks"):
PREPARE rawbg_done(bigint, bigint[]) AS
    DELETE FROM rawbg_tasks WHERE id = ANY($2) AND token = $1;

-- ------------------------------------------------------------------------------------------
-- 5. Takeover: claim a batch of dead nodes' pending entries ($1 token, $2 batch). One statement, one transaction, one round trip. Run with each heartbeat,
--    and at the earliest other node's lease_until (`rawbg_next_expiry`). While a batch
--    comes back full the node claims again at once (a dead node with 100 000 entries is
--    emptied in 100 statements of 1 000). The dead node's row lock makes one claimer at a
--    time work on a dead node; another skips it (SKIP LOCKED: it never waits) and takes
--    other dead nodes, or the next batch once the lock is free. Entries are locked with
--    SKIP LOCKED too, so that one held by a transaction still open (a node that stopped
--    mid-send, until idle_in_transaction_session_timeout ends it) is skipped this time.
--    * A node is dead when its lease_until is past by the database's clock.
--    * Not during the dead node's first lease after the database (re)started: every
--      node's renewals failed while it was down, and each must get a full lease to come
--      back before anyone takes its work (else the first node to reconnect takes
--      everybody's running tasks and runs them twice). pg_postmaster_start_time() is when
--      it started. A node that released or was fenced ('-infinity') is gone for sure.
--    * The dead node is fenced ('-infinity'): its renewal is refused from now on.
--    Returns what to run, and the dead node's name for the log line ("took over N tasks
--    from NODE").
-- ------------------------------------------------------------------------------------------
PREPARE rawbg_claim(bigint, integer) AS
    WITH dead AS (
        SELECT token, name FROM rawbg_nodes
        WHERE lease_until < now() AND token <> $1
          AND (lease_until = '-infinity' OR now() >= pg_postmaster_start_time() + lease)
        ORDER BY lease_until
        FOR UPDATE SKIP LOCKED
    ), fenced AS (
        UPDATE rawbg_nodes n SET lease_until = '-infinity', fenced_at = now()
        FROM dead WHERE n.token = dead.token AND n.lease_until <> '-infinity'
    ), claimed AS (
        UPDATE rawbg_tasks t SET token = $1, takeovers = t.takeovers + 1
        FROM (SELECT id, token AS was FROM rawbg_tasks
              -- = ANY(ARRAY(...)): an index scan of rawbg_tasks_pending by token; with
              -- IN (SELECT ...) and ORDER BY id the planner walked the primary key through
              -- every live node's entries (that scan: 214 ms for 1 000 of 200 000
              -- entries, against 0.8 ms by token)
              WHERE state = 0 AND token = ANY (ARRAY(SELECT token FROM dead))
              LIMIT $2
              FOR UPDATE SKIP LOCKED) c
        WHERE t.id = c.id
        RETURNING t.id, t.function, t.arguments, t.label, t.attempts, t.takeovers, c.was
    )
    SELECT claimed.*, dead.name AS taken_from
    FROM claimed JOIN dead ON dead.token = claimed.was;

-- When to look next: the earliest lease of another live node, by the database's clock
-- (the node sleeps that long, by its own clock, then claims).
PREPARE rawbg_next_expiry(bigint) AS
    SELECT min(lease_until) - now() FROM rawbg_nodes
    WHERE token <> $1 AND lease_until <> '-infinity';

-- ------------------------------------------------------------------------------------------
-- 6. Graceful stop (SIGTERM): once the node has let its running tasks finish (or cancelled
--    them at the shutdown timeout), it releases what it still holds: its own row is
--    fenced, so the next claim (another node's next heartbeat, 2 s at most; at once if it
--    LISTENs on rawbg_released) takes them without waiting out the lease.
-- ------------------------------------------------------------------------------------------
PREPARE rawbg_release(bigint) AS
    WITH released AS (
        UPDATE rawbg_nodes SET lease_until = '-infinity', fenced_at = now()
        WHERE token = $1 RETURNING token
    )
    SELECT pg_notify('rawbg_released', token::text) FROM released;

-- ------------------------------------------------------------------------------------------
-- 7. Set aside an entry that cannot run (its function is gone, its arguments corrupt):
--    kept, never run, deleted by housekeeping after the retention.
-- ------------------------------------------------------------------------------------------
PREPARE rawbg_set_aside(bigint, bigint, text) AS
    UPDATE rawbg_tasks SET state = 3, kept_since = now(), note = $3
    WHERE id = $2 AND token = $1;

-- ------------------------------------------------------------------------------------------
-- 8. Housekeeping, every few minutes from each node (idempotent; two at once do no harm):
--    no table grows without bound. Done entries are deleted at their done-mark already.
--    $1 retention of failed and set-aside entries (7 days), $2 how long a fenced node row
--    is kept once it holds nothing (1 hour: far longer than any node could go on using
--    its token unaware, rule 5).
-- ------------------------------------------------------------------------------------------
PREPARE rawbg_housekeeping(interval, interval) AS
    WITH kept AS (
        DELETE FROM rawbg_tasks WHERE state <> 0 AND kept_since < now() - $1
    )
    DELETE FROM rawbg_nodes n
    WHERE n.lease_until = '-infinity' AND n.fenced_at < now() - $2
      AND NOT EXISTS (SELECT 1 FROM rawbg_tasks t WHERE t.token = n.token AND t.state = 0);

-- Safety net, hourly: pending entries whose token has no node row at all (a row deleted
-- by hand, a bug) would never be claimed: give them to the caller. A scan of the pending
-- entries, so not with every heartbeat.
PREPARE rawbg_claim_ownerless(bigint) AS
    UPDATE rawbg_tasks t SET token = $1, takeovers = t.takeovers + 1
    WHERE t.state = 0
      AND NOT EXISTS (SELECT 1 FROM rawbg_nodes n WHERE n.token = t.token)
    RETURNING t.id, t.function, t.arguments, t.label, t.attempts, t.takeovers;

-- ------------------------------------------------------------------------------------------
-- 9. --trace counts (one query, on the heartbeat): pending and taken-over entries of this
--    node; the node keeps "running" itself.
-- ------------------------------------------------------------------------------------------
PREPARE rawbg_counts(bigint) AS
    SELECT count(*) AS pending, count(*) FILTER (WHERE takeovers > 0) AS taken_over
    FROM rawbg_tasks WHERE token = $1 AND state = 0;
