//! The part layout of multipart objects, for GetObject/HeadObject with `partNumber` and
//! GetObjectAttributes. CompleteMultipartUpload records the part sizes in the attribute
//! [`ATTR_PARTS`] as runs, `SIZE*COUNT,...` (every SDK uploads equal parts and a shorter
//! last one, so this is two runs), when they fit in [`MAX_PARTS_TEXT`] bytes.

use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};

use super::mapping::etag;
use crate::model::Entry;

pub const ATTR_PARTS: &str = "s3-parts";
/// Longest part layout kept (attributes are small; the ETag still gives the count).
const MAX_PARTS_TEXT: usize = 2048;

/// The layout text of `sizes`, or None if it is too long to keep.
pub fn encode(sizes: &[u64]) -> Option<String> {
    let mut runs: Vec<(u64, usize)> = Vec::new();
    for &s in sizes {
        match runs.last_mut() {
            Some((size, n)) if *size == s => *n += 1,
            _ => runs.push((s, 1)),
        }
    }
    let text = runs
        .iter()
        .map(|(s, n)| format!("{s}*{n}"))
        .collect::<Vec<_>>()
        .join(",");
    (text.len() <= MAX_PARTS_TEXT).then_some(text)
}

fn decode(text: &str) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for run in text.split(',') {
        let (s, n) = run.split_once('*')?;
        let (s, n): (u64, usize) = (s.parse().ok()?, n.parse().ok()?);
        out.extend(std::iter::repeat_n(s, n.min(10_000)));
    }
    Some(out)
}

/// The number of parts of a multipart object (from its `MD5-N` ETag), None otherwise.
pub fn count(e: &Entry) -> Option<i32> {
    let t = etag(e);
    let (_, n) = t.value().rsplit_once('-')?;
    n.parse().ok()
}

/// The part sizes of `e`, if recorded.
pub fn sizes(e: &Entry) -> Option<Vec<u64>> {
    decode(e.attrs.get(ATTR_PARTS)?)
}

fn invalid_part_number() -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::Custom("InvalidPartNumber".into()),
        "The requested partnumber is not satisfiable",
    );
    e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
    e
}

/// The byte range of part `n` of `e` (of `size` bytes) and the part count to report. An
/// object that is not multipart is one part.
pub fn part_range(e: &Entry, size: u64, n: i32) -> S3Result<(std::ops::Range<u64>, Option<i32>)> {
    if !(1..=10_000).contains(&n) {
        return Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ));
    }
    let Some(total) = count(e) else {
        return if n == 1 {
            Ok((0..size, None))
        } else {
            Err(invalid_part_number())
        };
    };
    if n > total {
        return Err(invalid_part_number());
    }
    let Some(sizes) = sizes(e).filter(|s| s.len() == total as usize) else {
        return Err(s3_error!(
            NotImplemented,
            "this object's part layout was not recorded (too many distinct part sizes)"
        ));
    };
    let start: u64 = sizes[..(n - 1) as usize].iter().sum();
    Ok((start..start + sizes[(n - 1) as usize], Some(total)))
}

/// The parts of a multipart object for GetObjectAttributes (None: not multipart).
pub fn listing(
    e: &Entry,
    marker: Option<i32>,
    max: Option<i32>,
) -> Option<s3s::dto::GetObjectAttributesParts> {
    let total = count(e)?;
    let after = marker.unwrap_or(0).max(0) as usize;
    let max = max.map_or(1000, |m| m.clamp(0, 1000) as usize);
    let listed: Vec<s3s::dto::ObjectPart> = sizes(e)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .skip(after)
        .take(max)
        .map(|(i, s)| s3s::dto::ObjectPart {
            part_number: Some(i as i32 + 1),
            size: Some(s as i64),
            ..Default::default()
        })
        .collect();
    let last = listed.last().and_then(|p| p.part_number);
    let truncated = last.is_some_and(|l| l < total);
    Some(s3s::dto::GetObjectAttributesParts {
        total_parts_count: Some(total),
        part_number_marker: marker,
        next_part_number_marker: truncated.then_some(last).flatten(),
        max_parts: Some(max as i32),
        is_truncated: Some(truncated),
        parts: Some(listed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip() {
        let sizes = [5, 5, 5, 2];
        assert_eq!(encode(&sizes).unwrap(), "5*3,2*1");
        assert_eq!(decode("5*3,2*1").unwrap(), sizes);
        assert!(decode("x").is_none());
        let many: Vec<u64> = (0..10_000).collect();
        assert!(encode(&many).is_none());
    }

    #[test]
    fn part_ranges() {
        let e = Entry {
            size: 17,
            attrs: [
                ("etag".to_string(), "abc-4".to_string()),
                (ATTR_PARTS.to_string(), "5*3,2*1".to_string()),
            ]
            .into(),
            ..Entry::new(
                crate::path::DfsPath::parse("/b/o").unwrap(),
                crate::model::Kind::File,
            )
        };
        assert_eq!(part_range(&e, 17, 2).unwrap(), (5..10, Some(4)));
        assert_eq!(part_range(&e, 17, 4).unwrap(), (15..17, Some(4)));
        let err = part_range(&e, 17, 5).unwrap_err();
        assert_eq!(
            err.status_code(),
            Some(http::StatusCode::RANGE_NOT_SATISFIABLE)
        );
        let single = Entry {
            size: 3,
            attrs: [("etag".to_string(), "abc".to_string())].into(),
            ..Entry::new(
                crate::path::DfsPath::parse("/b/o").unwrap(),
                crate::model::Kind::File,
            )
        };
        assert_eq!(part_range(&single, 3, 1).unwrap(), (0..3, None));
        assert!(part_range(&single, 3, 2).is_err());
    }
}
