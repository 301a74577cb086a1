-- Migration 14: the enqueue's rows lose the foreign keys their one writer already guarantees
-- (every row a chunk writes is joined with `users`, or with the rows it wrote, under SQLite's
-- one writer); the deletion of a user (`Store.delete_user`) or of a notification (the
-- retention) removes the rows that pointed at it in the same transaction. SQLite drops a
-- foreign key only by building the table anew (foreign keys are off while a migration runs).

CREATE TABLE notifications_new (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    content_id TEXT NOT NULL,
    read_at    BIGINT,
    deleted_at BIGINT,
    created_at BIGINT NOT NULL
);
INSERT INTO notifications_new (id, user_id, content_id, read_at, deleted_at, created_at)
SELECT id, user_id, content_id, read_at, deleted_at, created_at FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_new RENAME TO notifications;

CREATE INDEX IF NOT EXISTS notifications_content ON notifications (content_id);
CREATE INDEX IF NOT EXISTS notifications_inbox
    ON notifications (user_id, (read_at IS NULL), created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS notifications_read
    ON notifications (read_at) WHERE read_at IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS notifications_deleted
    ON notifications (deleted_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE unread_counts_new (
    user_id TEXT PRIMARY KEY,
    unread  BIGINT NOT NULL
);
INSERT INTO unread_counts_new (user_id, unread) SELECT user_id, unread FROM unread_counts;
DROP TABLE unread_counts;
ALTER TABLE unread_counts_new RENAME TO unread_counts;

CREATE TABLE notification_deliveries_new (
    notification_id TEXT NOT NULL,
    channel         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
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
