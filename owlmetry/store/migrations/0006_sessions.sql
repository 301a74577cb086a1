-- Migration 6: the signing secret leaves the database, and sessions can be ended.
--
-- Without JWT_SECRET the server used to keep its HS256 secret in `settings`, so anyone with a
-- copy of the database (the file, a backup, a pg_dump, a read-only role) could mint a session
-- for any user. It now lives in a key file beside the SQLite database (or SECRET_KEY_FILE).
-- The old one goes: the sessions signed with it end, and their users log in again.
DELETE FROM settings WHERE key = 'jwt_secret';

CREATE TABLE IF NOT EXISTS session_revocations (
    seq         BIGINT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    session_key TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT
);

CREATE INDEX IF NOT EXISTS session_revocations_expiry ON session_revocations (expires_at);
