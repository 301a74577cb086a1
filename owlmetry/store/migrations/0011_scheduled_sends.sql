-- Migration 11: scheduled sends (`send_at` on POST /v1/notifications): the requests held until
-- their time, and their recipients with pre-assigned notification ids. New tables only.

CREATE TABLE IF NOT EXISTS scheduled_sends (
    content_id   TEXT PRIMARY KEY,
    send_at      BIGINT NOT NULL,
    available_at BIGINT NOT NULL,
    claimed_by   TEXT,
    created_at   BIGINT NOT NULL,
    released_at  BIGINT
);

CREATE INDEX IF NOT EXISTS scheduled_sends_due
    ON scheduled_sends (available_at) WHERE released_at IS NULL;

CREATE TABLE IF NOT EXISTS scheduled_recipients (
    notification_id TEXT PRIMARY KEY,
    content_id      TEXT NOT NULL REFERENCES scheduled_sends (content_id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    cancelled_at    BIGINT
);

CREATE INDEX IF NOT EXISTS scheduled_recipients_send ON scheduled_recipients (content_id);
