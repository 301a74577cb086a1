-- The one schema of the Owlmetry push service, for SQLite and PostgreSQL alike.
--
-- Every statement is idempotent: `owlmetry migrate` (and every server start) runs this file
-- whole. Types are the portable subset of both engines: ids are uuid strings, timestamps are
-- BIGINT milliseconds since the Unix epoch (UTC) -- the unit of APNs' 410 `timestamp`, so
-- "was this token registered again after Apple gave up on it?" is a plain integer comparison.

CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS users (
    id         TEXT PRIMARY KEY,
    email      TEXT NOT NULL UNIQUE,          -- stored lower-case
    created_at BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS api_keys (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('agent', 'server')),
    name       TEXT,
    key_hash   TEXT NOT NULL UNIQUE,          -- sha256 hex of the secret; the secret is never stored
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE IF NOT EXISTS user_devices (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel      TEXT NOT NULL,
    token        TEXT NOT NULL,                -- lower-case hex for ios_push; never leaves the server
    environment  TEXT NOT NULL CHECK (environment IN ('production', 'sandbox')),
    app_version  TEXT,
    device_model TEXT,
    os_version   TEXT,
    last_seen_at BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);

-- The token is the registry's key: one row per token, whoever registered it last owns it.
CREATE UNIQUE INDEX IF NOT EXISTS user_devices_token ON user_devices (token);

-- A user's devices in list order (GET /v1/devices), and every fan-out's device lookup.
CREATE INDEX IF NOT EXISTS user_devices_user
    ON user_devices (user_id, last_seen_at DESC, created_at DESC, id);
