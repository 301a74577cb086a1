-- Migration 7: login under attack. A code is sealed (so it can be mailed again, and mailed
-- later by the queue) and its row is its mail's queue entry; per-client-address counts of the
-- login routes; consecutive wrong codes per email. Codes made before have no seal: they still
-- log in, and are never mailed again.

ALTER TABLE login_codes ADD COLUMN code_sealed TEXT;
ALTER TABLE login_codes ADD COLUMN mail_at BIGINT;
ALTER TABLE login_codes ADD COLUMN mail_claimed_by TEXT;
ALTER TABLE login_codes ADD COLUMN mail_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE login_codes ADD COLUMN mails_sent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE login_codes ADD COLUMN last_mailed_at BIGINT;

CREATE INDEX IF NOT EXISTS login_codes_mail ON login_codes (mail_at) WHERE mail_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS login_limits (
    bucket       TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    hits         INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS login_failures (
    email          TEXT PRIMARY KEY,
    failures       INTEGER NOT NULL,
    not_before     BIGINT NOT NULL,
    last_failed_at BIGINT NOT NULL
);
