-- Fingerprints of the keys in the coordinator's secrets file (issue 12, review finding 5):
-- HMAC-SHA256(key, "dfsd-secret-fingerprint-v1"), which names a key without revealing it.
-- A coordinator whose database has them refuses to start with a secrets file that is
-- missing or holds other keys, instead of generating new ones (which would make every
-- sealed S3 secret unreadable). Written together with the keys they name.
CREATE TABLE secret_fingerprints (
    name        TEXT PRIMARY KEY,
    fingerprint BLOB NOT NULL
);
