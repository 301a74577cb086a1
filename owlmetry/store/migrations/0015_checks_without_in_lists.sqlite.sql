-- Migration 15: the rules of a delivery's status and a push's outcome as comparisons, not
-- `IN (...)` lists. SQLite codes a CHECK's `IN` list as a temporary b-tree built again for every
-- row it checks (a page cleared and four keys inserted), and a fan-out checks one for each
-- delivery it enqueues and ends and each push it records: ~5% of the server's instructions per
-- device (benchmarks/RESULTS.md, session 13). Same rule, same rows. SQLite changes a CHECK only
-- by building the table anew.

CREATE TABLE notification_deliveries_new (
    notification_id TEXT NOT NULL,
    channel         TEXT NOT NULL,
    status          TEXT NOT NULL
        CHECK (status = 'pending' OR status = 'sent' OR status = 'failed' OR status = 'skipped'),
    reason          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    claimed_by      TEXT,
    available_at    BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    finished_at     BIGINT,
    delivered       INTEGER,
    removed         INTEGER,
    failed          INTEGER,
    skipped         INTEGER,
    PRIMARY KEY (notification_id, channel)
);
INSERT INTO notification_deliveries_new
SELECT notification_id, channel, status, reason, attempts, claimed_by, available_at, created_at,
       finished_at, delivered, removed, failed, skipped
FROM notification_deliveries;
DROP TABLE notification_deliveries;
ALTER TABLE notification_deliveries_new RENAME TO notification_deliveries;

CREATE INDEX IF NOT EXISTS notification_deliveries_queue
    ON notification_deliveries (available_at) WHERE status = 'pending';

CREATE TABLE notification_pushes_new (
    notification_id TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    channel         TEXT NOT NULL,
    outcome         TEXT NOT NULL
        CHECK (outcome = 'delivered' OR outcome = 'removed' OR outcome = 'failed'
               OR outcome = 'skipped'),
    status          INTEGER,
    reason          TEXT,
    answered_at     BIGINT NOT NULL,
    apns_id         TEXT,
    attempted_at    BIGINT,
    PRIMARY KEY (notification_id, device_id)
);
INSERT INTO notification_pushes_new
SELECT notification_id, device_id, channel, outcome, status, reason, answered_at, apns_id,
       attempted_at
FROM notification_pushes;
DROP TABLE notification_pushes;
ALTER TABLE notification_pushes_new RENAME TO notification_pushes;
