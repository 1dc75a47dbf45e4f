//! ListObjects (v1 and v2) answers: the walk of [`list`](super::list) turned into S3's
//! shapes. A Prefix is a pure string filter (any prefix works, `/` and `//` included);
//! an empty Delimiter is no delimiter and is not echoed; v1 always answers `<Marker>` and
//! encodes names only with `EncodingType=url`; the Owner is the bucket's (v1 always, v2
//! with FetchOwner), shown to signed callers only: an anonymous reader of a public bucket
//! does not learn the owner's access key id.

use s3s::dto::*;
use s3s::{s3_error, S3Result};

use super::list::{list_page, Item, ListParams, Page};
use super::mapping::{etag, last_modified, s3_err, Subject};
use super::state::DfsS3;
use crate::client::Client;
use crate::model::Entry;

/// Most keys one listing page returns, as in S3.
const MAX_KEYS: usize = 1000;

fn object_of(key: String, e: &Entry, owner: Option<&Owner>) -> Object {
    let size = if e.is_dir() { 0 } else { e.size };
    Object {
        e_tag: Some(etag(e)),
        key: Some(key),
        last_modified: Some(last_modified(e)),
        size: Some(size as i64),
        owner: owner.cloned(),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

/// Percent-encodes a key for `encoding-type=url` (everything but unreserved and '/').
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Listing items as S3 objects and common prefixes, encoded as the caller asked.
fn split_items(
    items: Vec<Item>,
    url: bool,
    owner: Option<&Owner>,
) -> (Vec<Object>, Vec<CommonPrefix>) {
    let enc = |s: String| if url { url_encode(&s) } else { s };
    let mut objects = Vec::new();
    let mut prefixes = Vec::new();
    for i in items {
        match i {
            Item::Object { key, entry } => objects.push(object_of(enc(key), &entry, owner)),
            Item::Prefix(p) => prefixes.push(CommonPrefix {
                prefix: Some(enc(p)),
            }),
        }
    }
    (objects, prefixes)
}

fn max_keys(v: Option<i32>) -> usize {
    v.map_or(MAX_KEYS, |n| (n.max(0) as usize).min(MAX_KEYS))
}

fn wants_url(e: Option<&EncodingType>) -> bool {
    e.is_some_and(|e| e.as_str() == EncodingType::URL)
}

/// An empty Delimiter means none.
fn delimiter(d: Option<String>) -> Option<String> {
    d.filter(|d| !d.is_empty())
}

async fn page(s3: &DfsS3, c: &Client, bucket: &str, p: &ListParams) -> S3Result<Page> {
    tracing::debug!(bucket, prefix = %p.prefix, delimiter = ?p.delimiter, marker = %p.marker, max_keys = p.max_keys, "list");
    let dir = s3.bucket(c, bucket).await?;
    list_page(c, &dir.to_string(), p)
        .await
        .map_err(|e| s3_err(e, Subject::Object))
}

pub(super) async fn list_v2(
    s3: &DfsS3,
    c: &Client,
    input: ListObjectsV2Input,
    signed: bool,
) -> S3Result<ListObjectsV2Output> {
    // Continuation tokens are the hex of the last name returned: opaque to callers, and
    // safe in XML whatever the key holds.
    let marker = match &input.continuation_token {
        Some(t) => hex::decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| s3_error!(InvalidArgument, "invalid continuation token"))?,
        None => input.start_after.clone().unwrap_or_default(),
    };
    let delim = delimiter(input.delimiter);
    let params = ListParams {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: delim.clone(),
        marker,
        max_keys: max_keys(input.max_keys),
    };
    let page = page(s3, c, &input.bucket, &params).await?;
    let owner = match input.fetch_owner {
        Some(true) if signed => Some(s3.owner(c, &input.bucket).await?),
        _ => None,
    };
    let next = page
        .truncated
        .then(|| page.items.last().map(|i| hex::encode(i.name())))
        .flatten();
    let url = wants_url(input.encoding_type.as_ref());
    let count = page.items.len() as i32;
    let (objects, prefixes) = split_items(page.items, url, owner.as_ref());
    let enc = |s: Option<String>| s.map(|s| if url { url_encode(&s) } else { s });
    Ok(ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: enc(Some(params.prefix.clone())),
        delimiter: enc(delim),
        start_after: enc(input.start_after),
        max_keys: Some(params.max_keys as i32),
        key_count: Some(count),
        continuation_token: input.continuation_token,
        is_truncated: Some(page.truncated),
        next_continuation_token: next,
        contents: Some(objects),
        common_prefixes: Some(prefixes),
        encoding_type: input.encoding_type,
        ..Default::default()
    })
}

pub(super) async fn list_v1(
    s3: &DfsS3,
    c: &Client,
    input: ListObjectsInput,
    signed: bool,
) -> S3Result<ListObjectsOutput> {
    let delim = delimiter(input.delimiter);
    let params = ListParams {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: delim.clone(),
        marker: input.marker.clone().unwrap_or_default(),
        max_keys: max_keys(input.max_keys),
    };
    let page = page(s3, c, &input.bucket, &params).await?;
    let owner = match signed {
        true => Some(s3.owner(c, &input.bucket).await?),
        false => None,
    };
    let url = wants_url(input.encoding_type.as_ref());
    // v1 returns NextMarker only with a delimiter; without one the caller uses the last
    // key, which is the same thing.
    let next = (page.truncated && delim.is_some())
        .then(|| page.items.last().map(|i| i.name().to_string()))
        .flatten();
    let (objects, prefixes) = split_items(page.items, url, owner.as_ref());
    let enc = |s: Option<String>| s.map(|s| if url { url_encode(&s) } else { s });
    Ok(ListObjectsOutput {
        name: Some(input.bucket),
        prefix: enc(Some(params.prefix.clone())),
        delimiter: enc(delim),
        marker: enc(Some(params.marker.clone())),
        max_keys: Some(params.max_keys as i32),
        is_truncated: Some(page.truncated),
        next_marker: enc(next),
        contents: Some(objects),
        common_prefixes: Some(prefixes),
        encoding_type: input.encoding_type,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_slashes_and_unreserved() {
        assert_eq!(url_encode("a b/c+d%é"), "a%20b/c%2Bd%25%C3%A9");
        assert_eq!(url_encode("A-z_0.~"), "A-z_0.~");
        assert_eq!(delimiter(Some(String::new())), None);
    }
}
