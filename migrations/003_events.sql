-- dfsd metadata schema, version 2: the cluster event log behind `dfsd events`.

-- Recent cluster events, newest last. Only the latest `coordinator.events_kept` rows are
-- kept (older ones are pruned on insert). AUTOINCREMENT: ids are never reused, so a reader
-- resuming after id N never misses or repeats an event.
CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms  INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    node_id  TEXT    NOT NULL DEFAULT '',
    path     TEXT    NOT NULL DEFAULT '',
    chunk_id TEXT    NOT NULL DEFAULT '',
    bytes    INTEGER NOT NULL DEFAULT 0,
    count    INTEGER NOT NULL DEFAULT 0,
    detail   TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX events_by_time ON events (time_ms);
