-- Migration 8: a notification's content is stored once per producer request
-- (`notification_contents`), no longer copied into every recipient's row. Rows of one request
-- are the rows written at one time with the same content: they share one content, named
-- after the first of them. Nothing is lost: every row keeps its id, user, state and time, and
-- points at a content equal to the one it had.
--
-- The table is built anew and renamed, so the old columns' space is free at once
-- (PostgreSQL: the deliveries' foreign key goes with the old table, and comes back on the new).

CREATE TABLE IF NOT EXISTS notification_contents (
    id      TEXT PRIMARY KEY,
    type    TEXT NOT NULL,
    title   TEXT NOT NULL,
    body    TEXT,
    link    TEXT,
    data    TEXT,
    team_id TEXT
);

CREATE TABLE notifications_new (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content_id TEXT NOT NULL,
    read_at    BIGINT,
    deleted_at BIGINT,
    created_at BIGINT NOT NULL
);

INSERT INTO notifications_new (id, user_id, content_id, read_at, deleted_at, created_at)
SELECT id, user_id,
       min(id) OVER (PARTITION BY created_at, type, title, body, link, data, team_id),
       read_at, deleted_at, created_at
FROM notifications;

INSERT INTO notification_contents (id, type, title, body, link, data, team_id)
SELECT id, type, title, body, link, data, team_id FROM notifications
WHERE id IN (SELECT content_id FROM notifications_new);

DROP TABLE notifications CASCADE;
ALTER TABLE notifications_new RENAME TO notifications;
ALTER TABLE notifications RENAME CONSTRAINT notifications_new_pkey TO notifications_pkey;
ALTER TABLE notifications RENAME CONSTRAINT notifications_new_user_id_fkey
    TO notifications_user_id_fkey;
ALTER TABLE notification_deliveries ADD FOREIGN KEY (notification_id)
    REFERENCES notifications (id) ON DELETE CASCADE;

CREATE INDEX IF NOT EXISTS notifications_content ON notifications (content_id);

CREATE INDEX IF NOT EXISTS notifications_inbox
    ON notifications (user_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;

CREATE INDEX IF NOT EXISTS notifications_read
    ON notifications (read_at) WHERE read_at IS NOT NULL AND deleted_at IS NULL;

CREATE INDEX IF NOT EXISTS notifications_deleted
    ON notifications (deleted_at) WHERE deleted_at IS NOT NULL;
