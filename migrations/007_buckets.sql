-- Bucket settings for the S3 gateway (issue 13). A bucket is a top-level directory; its
-- row lives as long as the directory (ON DELETE CASCADE), follows it through a rename,
-- and is absent for directories made before this migration or never given settings.
CREATE TABLE buckets (
    inode       INTEGER PRIMARY KEY REFERENCES inodes(id) ON DELETE CASCADE,
    -- The access key that created the directory ('' when unknown or auth is off).
    owner       TEXT NOT NULL DEFAULT '',
    -- 1: anonymous S3 callers may list it and read its objects (canned ACL public-read).
    public_read INTEGER NOT NULL DEFAULT 0 CHECK (public_read IN (0, 1)),
    -- The CORS rules, JSON as the gateway writes them; NULL: none.
    cors        TEXT
);
