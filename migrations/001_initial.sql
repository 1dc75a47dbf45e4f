-- dfsd metadata schema, version 1.

-- The namespace: one row per directory or file. The root has id 1 and no parent.
CREATE TABLE inodes (
    id          INTEGER PRIMARY KEY,
    parent      INTEGER REFERENCES inodes(id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    kind        INTEGER NOT NULL,            -- 1 = directory, 2 = file
    size        INTEGER NOT NULL DEFAULT 0,
    mtime_ms    INTEGER NOT NULL,
    version     INTEGER NOT NULL DEFAULT 0,
    replication INTEGER NOT NULL DEFAULT 0,
    UNIQUE (parent, name)
);
INSERT INTO inodes (id, parent, name, kind, mtime_ms) VALUES (1, NULL, '', 1, 0);

-- Chunks known to the cluster (id = SHA-256 hex of the bytes).
CREATE TABLE chunks (
    id         TEXT    PRIMARY KEY,
    size         INTEGER NOT NULL,
    created_ms   INTEGER NOT NULL,
    -- Last time an upload placed or reused this chunk. Garbage collection waits a grace
    -- period after it, so an upload in flight never loses a chunk it may still commit.
    last_used_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- The committed version of each file: its ordered chunk list.
CREATE TABLE file_chunks (
    inode    INTEGER NOT NULL REFERENCES inodes(id) ON DELETE CASCADE,
    idx      INTEGER NOT NULL,
    chunk_id TEXT    NOT NULL REFERENCES chunks(id),
    size     INTEGER NOT NULL,
    PRIMARY KEY (inode, idx)
) WITHOUT ROWID;
CREATE INDEX file_chunks_by_chunk ON file_chunks (chunk_id);

-- Datanodes, with their last report.
CREATE TABLE nodes (
    id             TEXT    PRIMARY KEY,
    addr           TEXT    NOT NULL,
    capacity_bytes INTEGER NOT NULL DEFAULT 0,
    used_bytes     INTEGER NOT NULL DEFAULT 0,
    free_bytes     INTEGER NOT NULL DEFAULT 0,
    chunk_count    INTEGER NOT NULL DEFAULT 0,
    registered_ms  INTEGER NOT NULL,
    last_seen_ms   INTEGER NOT NULL,
    draining       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Replica locations, recorded only on the word of the datanode holding them.
CREATE TABLE replicas (
    chunk_id    TEXT    NOT NULL REFERENCES chunks(id),
    node_id     TEXT    NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    recorded_ms INTEGER NOT NULL,
    PRIMARY KEY (chunk_id, node_id)
) WITHOUT ROWID;
CREATE INDEX replicas_by_node ON replicas (node_id);

-- Applied migrations, for humans; PRAGMA user_version is what the runner checks.
CREATE TABLE schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_ms INTEGER NOT NULL
);
