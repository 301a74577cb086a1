-- Migration 2: versions are recorded from now on, one row per migration run; the digest of
-- schema.sql that releases before kept in `settings` goes.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at BIGINT NOT NULL
);

DELETE FROM settings WHERE key = 'schema_sha256';
