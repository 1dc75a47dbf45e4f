-- S3 gateway (issue 7).

-- Per-file attributes set at commit: a JSON object of strings (S3 keeps the content MD5
-- as the ETag, Content-Type and x-amz-meta-* there). NULL: none. Replaced with each
-- version, kept by rename, copied by compose.
ALTER TABLE inodes ADD COLUMN attrs TEXT;

-- The secret of a key that may sign S3 requests (SigV4 needs the secret itself),
-- sealed with AEAD under the cluster secret 's3_seal_key'. NULL for keys created before
-- this migration: they keep working for dfsd calls but cannot sign S3 requests.
ALTER TABLE access_keys ADD COLUMN s3_secret_sealed BLOB;
