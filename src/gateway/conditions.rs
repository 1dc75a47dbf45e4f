//! Conditional requests: the HTTP preconditions of reads (answered here from the entry),
//! and those of writes and deletes, which become a compare-and-swap the coordinator
//! checks in the transaction that writes (or deletes): the gateway reads the current
//! entry, decides the condition on it, and names the version it decided on. A write in
//! between moves the version on and the coordinator refuses the commit or delete, so two
//! callers racing with `If-Match` on the same ETag cannot both succeed.

use s3s::dto::{ETag, ETagCondition, Timestamp};
use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};

use super::mapping::{etag, last_modified};
use super::state::DfsS3;
use crate::client::{Client, PutOptions};
use crate::model::Entry;

/// Seconds since the epoch of an S3 timestamp (HTTP dates have whole seconds).
pub(super) fn unix_secs(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

fn tag_matches(c: &ETagCondition, e: &Entry) -> bool {
    c.is_any() || c.as_etag().is_some_and(|t| t.value() == etag(e).value())
}

/// The conditional headers of a read (or of a copy's source), as RFC 9110 orders them:
/// If-Match, else If-Unmodified-Since; then If-None-Match, else If-Modified-Since.
#[derive(Default)]
pub(super) struct ReadConditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
    /// A copy's source: a failed condition is PreconditionFailed, never NotModified.
    pub for_copy: bool,
}

impl ReadConditions<'_> {
    pub(super) fn check(&self, e: &Entry) -> S3Result<()> {
        let modified = e.mtime.as_ms().div_euclid(1000);
        let failed = |what: &str| Err(s3_error!(PreconditionFailed, "{what}"));
        match (self.if_match, self.if_unmodified_since) {
            (Some(c), _) if !tag_matches(c, e) => return failed("If-Match: the ETag differs"),
            (None, Some(t)) if modified > unix_secs(t) => {
                return failed("If-Unmodified-Since: modified since")
            }
            _ => {}
        }
        let not_modified = match (self.if_none_match, self.if_modified_since) {
            (Some(c), _) => tag_matches(c, e),
            (None, Some(t)) => modified <= unix_secs(t),
            _ => false,
        };
        match (not_modified, self.for_copy) {
            (false, _) => Ok(()),
            (true, true) => failed("the copy source's conditions did not hold"),
            (true, false) => Err(not_modified_error(e)),
        }
    }
}

/// 304 Not Modified, carrying the ETag and Last-Modified as RFC 9110 asks (caches and
/// clients revalidate with them).
fn not_modified_error(e: &Entry) -> S3Error {
    let mut err = S3Error::new(S3ErrorCode::NotModified);
    let mut h = http::HeaderMap::new();
    if let Ok(v) = etag(e).to_http_header() {
        h.insert(http::header::ETAG, v);
    }
    let mut date = Vec::new();
    if last_modified(e)
        .format(s3s::dto::TimestampFormat::HttpDate, &mut date)
        .is_ok()
    {
        if let Ok(v) = http::HeaderValue::from_bytes(&date) {
            h.insert(http::header::LAST_MODIFIED, v);
        }
    }
    err.set_headers(h);
    err
}

/// The compare-and-swap a conditional write asks of the coordinator.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct WriteCas {
    /// The key must not exist at commit (`If-None-Match: *`).
    pub no_clobber: bool,
    /// The object must still be this version at commit (`If-Match`).
    pub expected_version: Option<u64>,
}

/// Decides `If-Match` / `If-None-Match` of a PutObject or CompleteMultipartUpload against
/// `current` (the key's object now, if any), as S3 answers: If-Match on a missing key is
/// NoSuchKey, on another ETag PreconditionFailed; If-None-Match takes only `*` (S3 answers
/// any other value NotImplemented, and so does dfsd), and so does the pair of both.
pub(super) fn write_cas(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    current: Option<&Entry>,
) -> S3Result<WriteCas> {
    if let Some(c) = if_none_match {
        if !c.is_any() || if_match.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "A header you provided implies functionality that is not implemented: \
                 If-None-Match takes only '*' on writes, and not with If-Match"
            ));
        }
        if current.is_some() {
            return Err(s3_error!(
                PreconditionFailed,
                "If-None-Match: the key exists"
            ));
        }
        return Ok(WriteCas {
            no_clobber: true,
            expected_version: None,
        });
    }
    let Some(c) = if_match else {
        return Ok(WriteCas::default());
    };
    let Some(cur) = current else {
        return Err(s3_error!(NoSuchKey, "If-Match: the key does not exist"));
    };
    if !tag_matches(c, cur) {
        return Err(s3_error!(PreconditionFailed, "If-Match: the ETag differs"));
    }
    Ok(WriteCas {
        no_clobber: false,
        expected_version: Some(cur.version),
    })
}

impl DfsS3 {
    /// Turns If-None-Match / If-Match on a write into commit options the coordinator
    /// checks atomically (see [`write_cas`]): `no_clobber`, or
    /// `expected_version` (the version whose tag matched now; a write in between moves
    /// the version on and fails the commit).
    pub(super) async fn write_conditions(
        &self,
        c: &Client,
        bucket: &str,
        key: &str,
        if_match: Option<&ETagCondition>,
        if_none_match: Option<&ETagCondition>,
        opts: &mut PutOptions,
    ) -> S3Result<()> {
        if if_match.is_none() && if_none_match.is_none() {
            return Ok(());
        }
        let current = match self.object(c, bucket, key).await {
            Ok((_, e)) => Some(e),
            Err(e) if *e.code() == s3s::S3ErrorCode::NoSuchKey => None,
            Err(e) => return Err(e),
        };
        let cas = write_cas(if_match, if_none_match, current.as_ref())?;
        opts.no_clobber |= cas.no_clobber;
        opts.expected_version = cas.expected_version;
        Ok(())
    }
}

/// The conditions of a DeleteObject (or of one key of DeleteObjects).
#[derive(Debug, Default, Clone)]
pub(super) struct DeleteConditions {
    pub if_match: Option<ETagCondition>,
    pub last_modified: Option<Timestamp>,
    pub size: Option<i64>,
}

impl DeleteConditions {
    pub(super) fn any(&self) -> bool {
        self.if_match.is_some() || self.last_modified.is_some() || self.size.is_some()
    }

    /// The conditions of one DeleteObjects entry (its ETag, LastModifiedTime, Size).
    pub(super) fn of_entry(tag: Option<ETag>, lm: Option<Timestamp>, size: Option<i64>) -> Self {
        DeleteConditions {
            if_match: tag.map(ETagCondition::ETag),
            last_modified: lm,
            size,
        }
    }

    /// Checks the conditions against the object about to be deleted; `Some(version)` is
    /// the version the delete must still find (None: unconditional).
    pub(super) fn check(&self, e: &Entry) -> S3Result<Option<u64>> {
        if self.if_match.as_ref().is_some_and(|c| !tag_matches(c, e)) {
            return Err(s3_error!(PreconditionFailed, "If-Match: the ETag differs"));
        }
        if let Some(t) = &self.last_modified {
            if e.mtime.as_ms().div_euclid(1000) != unix_secs(t) {
                return Err(s3_error!(
                    PreconditionFailed,
                    "x-amz-if-match-last-modified-time: the object was modified at another time"
                ));
            }
        }
        if self.size.is_some_and(|s| s != e.size as i64) {
            return Err(s3_error!(
                PreconditionFailed,
                "x-amz-if-match-size: the object has another size ({})",
                e.size
            ));
        }
        Ok(self.any().then_some(e.version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: &str, version: u64) -> Entry {
        Entry {
            version,
            size: 5,
            mtime: crate::model::Timestamp::from_ms(10_500),
            attrs: [("etag".to_string(), tag.to_string())].into(),
            ..Entry::new(
                crate::path::DfsPath::parse("/b/o").unwrap(),
                crate::model::Kind::File,
            )
        }
    }

    fn cond(t: &str) -> ETagCondition {
        ETagCondition::parse_http_header(t.as_bytes()).unwrap()
    }

    #[test]
    fn write_conditions_as_s3_answers_them() {
        let cur = entry("abc", 7);
        let code = |r: S3Result<WriteCas>| r.unwrap_err().code().as_str().to_string();
        assert_eq!(
            write_cas(Some(&cond("\"abc\"")), None, Some(&cur)).unwrap(),
            WriteCas {
                no_clobber: false,
                expected_version: Some(7)
            }
        );
        assert_eq!(
            write_cas(Some(&cond("*")), None, Some(&cur))
                .unwrap()
                .expected_version,
            Some(7)
        );
        assert_eq!(code(write_cas(Some(&cond("*")), None, None)), "NoSuchKey");
        assert_eq!(
            code(write_cas(Some(&cond("\"x\"")), None, Some(&cur))),
            "PreconditionFailed"
        );
        assert_eq!(
            code(write_cas(None, Some(&cond("\"abc\"")), Some(&cur))),
            "NotImplemented"
        );
        assert_eq!(
            code(write_cas(None, Some(&cond("*")), Some(&cur))),
            "PreconditionFailed"
        );
        assert!(write_cas(None, Some(&cond("*")), None).unwrap().no_clobber);
    }

    #[test]
    fn delete_conditions() {
        let cur = entry("abc", 3);
        let ok = DeleteConditions {
            if_match: Some(cond("\"abc\"")),
            size: Some(5),
            ..Default::default()
        };
        assert_eq!(ok.check(&cur).unwrap(), Some(3));
        assert_eq!(DeleteConditions::default().check(&cur).unwrap(), None);
        let wrong_size = DeleteConditions {
            size: Some(4),
            ..Default::default()
        };
        assert!(wrong_size.check(&cur).is_err());
        let when =
            Timestamp::from(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10));
        let lm = DeleteConditions {
            last_modified: Some(when),
            ..Default::default()
        };
        assert_eq!(lm.check(&cur).unwrap(), Some(3));
    }
}
