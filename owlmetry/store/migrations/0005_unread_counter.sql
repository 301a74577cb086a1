-- Migration 5: each user's count of unread notifications, kept by every statement that changes
-- one, so that the badge of a push costs the same whatever the size of the inbox; filled here
-- from the rows there are. The index that counted them goes: every new row landed in it at its
-- user's place, which made a fan-out's cost grow with the inboxes. And the indexes the
-- retention's clean-up finds its rows by.

CREATE TABLE IF NOT EXISTS unread_counts (
    user_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    unread  BIGINT NOT NULL
);

INSERT INTO unread_counts (user_id, unread)
SELECT user_id, count(*) FROM notifications
WHERE read_at IS NULL AND deleted_at IS NULL
GROUP BY user_id;

DROP INDEX IF EXISTS notifications_unread;

CREATE INDEX IF NOT EXISTS notifications_read
    ON notifications (read_at) WHERE read_at IS NOT NULL AND deleted_at IS NULL;

CREATE INDEX IF NOT EXISTS notifications_deleted
    ON notifications (deleted_at) WHERE deleted_at IS NOT NULL;
