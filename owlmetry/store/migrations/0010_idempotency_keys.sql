-- Migration 10: producers' idempotency keys (POST /v1/notifications with an `Idempotency-Key`
-- header), one row per API key and key; see schema.sql.

CREATE TABLE IF NOT EXISTS idempotency_keys (
    api_key_id      TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    content_id      TEXT NOT NULL,
    holder          TEXT NOT NULL,
    leased_until    BIGINT NOT NULL,
    answer          TEXT,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (api_key_id, idempotency_key)
);

CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys (created_at);
