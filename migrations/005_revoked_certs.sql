-- Certificate revocation (issue 12): certificates refused on every call to the
-- coordinator and, once they heard of it, to every datanode, named by the SHA-256 of
-- their DER (64 lowercase hex characters). Rows are never deleted.
CREATE TABLE revoked_certs (
    fingerprint TEXT PRIMARY KEY CHECK (length(fingerprint) = 64),
    -- The role the certificate was issued for, when the certificate itself was given.
    role        TEXT NOT NULL DEFAULT '',
    -- Free text for humans, e.g. the file the certificate came from.
    note        TEXT NOT NULL DEFAULT '',
    revoked_ms  INTEGER NOT NULL
);

-- cluster_secrets (migration 002) is no longer written: the secrets live in the
-- coordinator's secrets file, and a database that still holds them is emptied at start-up
-- once they are copied there (see coordinator::secrets). The table stays so that an old
-- database can be read.
