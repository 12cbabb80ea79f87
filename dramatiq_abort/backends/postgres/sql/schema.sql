-- The namespace's tables and their indexes, created once, under an
-- advisory lock.
CREATE TABLE IF NOT EXISTS {events} (
    key text PRIMARY KEY,
    params text NOT NULL,
    ttl bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS {events_expiry} ON {events} (expires_at);
CREATE TABLE IF NOT EXISTS {outcomes} (
    message_id text PRIMARY KEY,
    outcome text NOT NULL,
    reason text,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS {outcomes_expiry} ON {outcomes} (expires_at);
CREATE TABLE IF NOT EXISTS {states} (
    message_id text PRIMARY KEY,
    state text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS {states_expiry} ON {states} (expires_at);
CREATE TABLE IF NOT EXISTS {answers} (
    id bigserial PRIMARY KEY,
    reply_to text NOT NULL,
    payload text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS {answers_reply_to} ON {answers} (reply_to);
CREATE INDEX IF NOT EXISTS {answers_expiry} ON {answers} (expires_at);
