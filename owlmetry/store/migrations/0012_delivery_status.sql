-- Migration 12: delivery status for producers. Each device's answer keeps the provider's
-- message id and when its attempt began; a delivery's end keeps its devices by outcome;
-- devices waiting for another attempt are kept; every device removed because of a provider's
-- answer leaves an audit row. Rows written before have NULL in the new columns (the status
-- then counts the answers).

ALTER TABLE notification_deliveries ADD COLUMN delivered INTEGER;
ALTER TABLE notification_deliveries ADD COLUMN removed INTEGER;
ALTER TABLE notification_deliveries ADD COLUMN failed INTEGER;
ALTER TABLE notification_deliveries ADD COLUMN skipped INTEGER;

ALTER TABLE notification_pushes ADD COLUMN apns_id TEXT;
ALTER TABLE notification_pushes ADD COLUMN attempted_at BIGINT;

-- A device whose send got a transient answer (429, 5xx, no answer) and waits to be sent
-- again with its delivery's next attempt: how many attempts it has had, the first one's time
-- and the last answer. Written only when a delivery goes back to the queue, never per answer
-- on a fan-out's way; read by the status route (owlmetry/store/delivery_status.py), which
-- counts a device's attempts as this row's plus the final one. Removed with its notification.
CREATE TABLE IF NOT EXISTS notification_push_retries (
    notification_id  TEXT NOT NULL,
    device_id        TEXT NOT NULL,
    channel          TEXT NOT NULL,
    platform         TEXT,
    environment      TEXT,
    attempts         INTEGER NOT NULL,
    first_attempt_at BIGINT NOT NULL,
    status           INTEGER,
    reason           TEXT,
    answered_at      BIGINT NOT NULL,
    PRIMARY KEY (notification_id, device_id)
);

-- Why a device is gone: one row per device removed because of a provider's answer (APNs 410
-- or BadDeviceToken, FCM UNREGISTERED, ...), written in the transaction that deletes it. The
-- token only as `token_hint`, its first characters (owlmetry/redact.py). `provider_at` is the
-- provider's own timestamp where it gives one (APNs' 410). Kept RETENTION_DELETED_DAYS.
CREATE TABLE IF NOT EXISTS device_removals (
    device_id       TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    channel         TEXT NOT NULL,
    platform        TEXT NOT NULL,
    environment     TEXT NOT NULL,
    token_hint      TEXT NOT NULL,
    notification_id TEXT NOT NULL,
    status          INTEGER,
    reason          TEXT,
    provider_at     BIGINT,
    removed_at      BIGINT NOT NULL
);

-- `owlmetry devices removed --since` and the retention's clean-up.
CREATE INDEX IF NOT EXISTS device_removals_time ON device_removals (removed_at, device_id);
