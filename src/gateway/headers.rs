//! What S3 keeps with an object besides its bytes and user metadata: the stored headers
//! Cache-Control, Content-Disposition, Content-Encoding, Content-Language and Expires
//! (returned on GET and HEAD, overridable per GET with `response-*` query parameters), and
//! the `x-amz-checksum-*` value a PutObject verified (echoed in its answer, returned by
//! GetObjectAttributes). All live in the file version's attributes, like the ETag.

use s3s::dto::{Timestamp, TimestampFormat};

use crate::model::Attrs;
use crate::model::Entry;

pub const ATTR_CACHE_CONTROL: &str = "cache-control";
pub const ATTR_CONTENT_DISPOSITION: &str = "content-disposition";
pub const ATTR_CONTENT_ENCODING: &str = "content-encoding";
pub const ATTR_CONTENT_LANGUAGE: &str = "content-language";
pub const ATTR_EXPIRES: &str = "expires";
/// `checksum:ALGO` (e.g. `checksum:crc32`): the base64 value verified at PutObject.
pub const ATTR_CHECKSUM: &str = "checksum:";

/// Every stored-header attribute (kept by CopyObject's COPY directive).
pub const STORED: [&str; 5] = [
    ATTR_CACHE_CONTROL,
    ATTR_CONTENT_DISPOSITION,
    ATTR_CONTENT_ENCODING,
    ATTR_CONTENT_LANGUAGE,
    ATTR_EXPIRES,
];

/// The stored headers a write sets.
#[derive(Debug, Default, Clone)]
pub struct StoredHeaders {
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub expires: Option<Timestamp>,
}

/// Content-Encoding without `aws-chunked`, the transfer framing of a signed streaming
/// upload, which S3 does not keep.
fn stored_encoding(v: &str) -> Option<String> {
    let kept: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

fn http_date(t: &Timestamp) -> Option<String> {
    let mut b = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut b).ok()?;
    String::from_utf8(b).ok()
}

impl StoredHeaders {
    /// Adds the headers given to `attrs`.
    pub fn store(&self, attrs: &mut Attrs) {
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                attrs.insert(k.into(), v);
            }
        };
        put(ATTR_CACHE_CONTROL, self.cache_control.clone());
        put(ATTR_CONTENT_DISPOSITION, self.content_disposition.clone());
        put(
            ATTR_CONTENT_ENCODING,
            self.content_encoding.as_deref().and_then(stored_encoding),
        );
        put(ATTR_CONTENT_LANGUAGE, self.content_language.clone());
        put(ATTR_EXPIRES, self.expires.as_ref().and_then(http_date));
    }

    /// The headers stored with `e`.
    pub fn of(e: &Entry) -> StoredHeaders {
        let get = |k: &str| e.attrs.get(k).cloned();
        StoredHeaders {
            cache_control: get(ATTR_CACHE_CONTROL),
            content_disposition: get(ATTR_CONTENT_DISPOSITION),
            content_encoding: get(ATTR_CONTENT_ENCODING),
            content_language: get(ATTR_CONTENT_LANGUAGE),
            expires: get(ATTR_EXPIRES)
                .and_then(|t| Timestamp::parse(TimestampFormat::HttpDate, &t).ok()),
        }
    }
}

/// The `response-*` overrides of a GetObject.
#[derive(Debug, Default)]
pub struct Overrides {
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub content_type: Option<String>,
    pub expires: Option<Timestamp>,
}

impl Overrides {
    /// `h` with the overrides applied, and the Content-Type to send.
    pub fn apply(self, mut h: StoredHeaders, content_type: String) -> (StoredHeaders, String) {
        h.cache_control = self.cache_control.or(h.cache_control);
        h.content_disposition = self.content_disposition.or(h.content_disposition);
        h.content_encoding = self.content_encoding.or(h.content_encoding);
        h.content_language = self.content_language.or(h.content_language);
        h.expires = self.expires.or(h.expires);
        (h, self.content_type.unwrap_or(content_type))
    }
}

/// The verified checksum stored with `e`, as (algorithm name, base64 value).
pub fn checksum(e: &Entry) -> Option<(&str, &str)> {
    e.attrs
        .iter()
        .find_map(|(k, v)| Some((k.strip_prefix(ATTR_CHECKSUM)?, v.as_str())))
}

/// `e`'s verified checksum in the shape of S3's output structures.
pub fn checksum_fields(e: &Entry) -> s3s::dto::Checksum {
    let mut c = s3s::dto::Checksum::default();
    if let Some((algo, v)) = checksum(e) {
        let v = Some(v.to_string());
        match algo {
            "crc32" => c.checksum_crc32 = v,
            "crc32c" => c.checksum_crc32c = v,
            "crc64nvme" => c.checksum_crc64nvme = v,
            "sha1" => c.checksum_sha1 = v,
            "sha256" => c.checksum_sha256 = v,
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_headers_round_trip_without_aws_chunked() {
        let when =
            Timestamp::parse(TimestampFormat::HttpDate, "Wed, 21 Oct 2026 07:28:00 GMT").unwrap();
        let h = StoredHeaders {
            cache_control: Some("max-age=60".into()),
            content_encoding: Some("aws-chunked,gzip".into()),
            expires: Some(when.clone()),
            ..Default::default()
        };
        let mut attrs = Attrs::new();
        h.store(&mut attrs);
        assert_eq!(attrs[ATTR_CONTENT_ENCODING], "gzip");
        let e = Entry {
            attrs: attrs.into_iter().collect(),
            ..Entry::new(
                crate::path::DfsPath::parse("/b/o").unwrap(),
                crate::model::Kind::File,
            )
        };
        let back = StoredHeaders::of(&e);
        assert_eq!(back.cache_control.as_deref(), Some("max-age=60"));
        assert_eq!(back.expires, Some(when));
        let mut only_chunked = Attrs::new();
        StoredHeaders {
            content_encoding: Some("aws-chunked".into()),
            ..Default::default()
        }
        .store(&mut only_chunked);
        assert!(only_chunked.is_empty());
    }
}
