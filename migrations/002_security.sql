-- Access keys: only a salted hash of each secret is kept.
CREATE TABLE access_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'readwrite', 'readonly')),
    prefix      TEXT NOT NULL,
    salt        BLOB NOT NULL,
    secret_hash BLOB NOT NULL,
    created_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER
);

-- Cluster-wide secrets generated once, e.g. the key chunk tokens are signed with.
CREATE TABLE cluster_secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
