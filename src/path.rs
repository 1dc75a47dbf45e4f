//! Namespace paths: absolute, normalised UTF-8. [`DfsPath`] holds only valid paths, so the
//! metadata store never sees `..`, empty segments, NUL or over-long names.

use std::fmt;

/// Longest name of one path segment, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// Longest whole path, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Deepest path, in segments.
pub const MAX_DEPTH: usize = 256;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DfsPath(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("invalid path {0:?}: must be absolute (start with '/')")]
    NotAbsolute(String),
    #[error("invalid path {0:?}: empty segment ('//' or trailing '/')")]
    EmptySegment(String),
    #[error("invalid path {0:?}: '.' and '..' segments are not allowed")]
    DotSegment(String),
    #[error("invalid path {0:?}: contains a NUL or control character")]
    ControlChar(String),
    #[error("invalid path: a name is longer than {MAX_NAME_BYTES} bytes")]
    NameTooLong,
    #[error("invalid path: longer than {MAX_PATH_BYTES} bytes")]
    PathTooLong,
    #[error("invalid path: deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// A path argument of the SDK: a [`DfsPath`], or a string parsed strictly (as
/// [`DfsPath::parse`]: absolute, no trailing '/'). Lenient parsing of what people type is
/// the CLI's ([`DfsPath::parse_lenient`]).
pub trait ToDfsPath {
    fn to_dfs_path(&self) -> Result<DfsPath, PathError>;
}

impl ToDfsPath for DfsPath {
    fn to_dfs_path(&self) -> Result<DfsPath, PathError> {
        Ok(self.clone())
    }
}

impl ToDfsPath for str {
    fn to_dfs_path(&self) -> Result<DfsPath, PathError> {
        DfsPath::parse(self)
    }
}

impl ToDfsPath for String {
    fn to_dfs_path(&self) -> Result<DfsPath, PathError> {
        DfsPath::parse(self)
    }
}

impl<T: ToDfsPath + ?Sized> ToDfsPath for &T {
    fn to_dfs_path(&self) -> Result<DfsPath, PathError> {
        (**self).to_dfs_path()
    }
}

impl DfsPath {
    pub fn root() -> Self {
        DfsPath("/".to_string())
    }

    /// Parses a path exactly as given: no normalisation on the server side.
    pub fn parse(s: &str) -> Result<Self, PathError> {
        if s.len() > MAX_PATH_BYTES {
            return Err(PathError::PathTooLong);
        }
        let shown = || s.chars().take(120).collect::<String>();
        if s.chars().any(|c| c.is_control()) {
            return Err(PathError::ControlChar(shown()));
        }
        if !s.starts_with('/') {
            return Err(PathError::NotAbsolute(shown()));
        }
        if s == "/" {
            return Ok(Self::root());
        }
        let mut depth = 0;
        for seg in s[1..].split('/') {
            if seg.is_empty() {
                return Err(PathError::EmptySegment(shown()));
            }
            if seg == "." || seg == ".." {
                return Err(PathError::DotSegment(shown()));
            }
            if seg.len() > MAX_NAME_BYTES {
                return Err(PathError::NameTooLong);
            }
            depth += 1;
        }
        if depth > MAX_DEPTH {
            return Err(PathError::TooDeep);
        }
        Ok(DfsPath(s.to_string()))
    }

    /// Client-side convenience: accepts a missing leading '/' and a trailing '/', then
    /// validates strictly.
    pub fn parse_lenient(s: &str) -> Result<Self, PathError> {
        let mut owned = if s.starts_with('/') {
            s.to_string()
        } else {
            format!("/{s}")
        };
        while owned.len() > 1 && owned.ends_with('/') {
            owned.pop();
        }
        Self::parse(&owned)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The segments, root first; empty for the root.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// The last segment; empty for the root.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }

    pub fn parent(&self) -> Option<DfsPath> {
        if self.is_root() {
            return None;
        }
        let cut = self.0.rfind('/').unwrap_or(0);
        Some(if cut == 0 {
            Self::root()
        } else {
            DfsPath(self.0[..cut].to_string())
        })
    }

    pub fn join(&self, name: &str) -> Result<DfsPath, PathError> {
        if self.is_root() {
            Self::parse(&format!("/{name}"))
        } else {
            Self::parse(&format!("{}/{name}", self.0))
        }
    }

    /// True if `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &DfsPath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }
}

impl fmt::Display for DfsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so tables can align paths with `{:<30}`.
        f.pad(&self.0)
    }
}

impl fmt::Debug for DfsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_path_arguments_parse_strictly() {
        let p = DfsPath::parse("/a/b").unwrap();
        assert_eq!(p.to_dfs_path().unwrap(), p);
        let by_ref: &DfsPath = &p;
        assert_eq!(ToDfsPath::to_dfs_path(&by_ref).unwrap(), p);
        assert_eq!("/a/b".to_dfs_path().unwrap(), p);
        assert_eq!(String::from("/a/b").to_dfs_path().unwrap(), p);
        assert!(matches!(
            "a/b".to_dfs_path(),
            Err(PathError::NotAbsolute(_))
        ));
        assert!(matches!(
            "/a/b/".to_dfs_path(),
            Err(PathError::EmptySegment(_))
        ));
    }

    #[test]
    fn accepts_normalised_paths() {
        for ok in [
            "/",
            "/a",
            "/a/b.txt",
            "/ünïcødé/日本語",
            "/a b/c+d&e=f",
            "/a\\b",
            "/%2e%2e",
        ] {
            assert_eq!(DfsPath::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_bad_forms() {
        let long_name = format!("/{}", "x".repeat(256));
        let long_path = "/abcdefgh".repeat(500);
        let deep = "/a".repeat(300);
        let cases: Vec<(&str, PathError)> = vec![
            ("a/b", PathError::NotAbsolute("a/b".into())),
            ("", PathError::NotAbsolute("".into())),
            ("/a//b", PathError::EmptySegment("/a//b".into())),
            ("/a/", PathError::EmptySegment("/a/".into())),
            ("/a/../b", PathError::DotSegment("/a/../b".into())),
            ("/..", PathError::DotSegment("/..".into())),
            ("/./a", PathError::DotSegment("/./a".into())),
            ("/a\0b", PathError::ControlChar("/a\0b".into())),
            ("/a\nb", PathError::ControlChar("/a\nb".into())),
            (&long_name, PathError::NameTooLong),
            (&long_path, PathError::PathTooLong),
            (&deep, PathError::TooDeep),
        ];
        for (input, want) in cases {
            assert_eq!(DfsPath::parse(input), Err(want), "input {input:?}");
        }
        // A 255-byte name is fine.
        assert!(DfsPath::parse(&format!("/{}", "x".repeat(255))).is_ok());
    }

    #[test]
    fn lenient_parse_fixes_only_harmless_forms() {
        assert_eq!(DfsPath::parse_lenient("a/b/").unwrap().as_str(), "/a/b");
        assert_eq!(DfsPath::parse_lenient("/").unwrap().as_str(), "/");
        assert!(DfsPath::parse_lenient("/a/../b").is_err());
    }

    #[test]
    fn parent_name_join() {
        let p = DfsPath::parse("/a/b/c").unwrap();
        assert_eq!(p.name(), "c");
        assert_eq!(p.parent().unwrap().as_str(), "/a/b");
        assert_eq!(
            DfsPath::parse("/a").unwrap().parent().unwrap(),
            DfsPath::root()
        );
        assert_eq!(DfsPath::root().parent(), None);
        assert_eq!(DfsPath::root().join("x").unwrap().as_str(), "/x");
        assert!(p.starts_with(&DfsPath::parse("/a").unwrap()));
        assert!(!DfsPath::parse("/ab")
            .unwrap()
            .starts_with(&DfsPath::parse("/a").unwrap()));
    }

    /// Strings shaped like the attacks on other stores' keys: dot segments, encoded dots,
    /// backslashes, NUL, doubled slashes, very long and non-ASCII names.
    fn hostile() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just("..".to_string()),
            Just(".".to_string()),
            Just("%2e%2e".to_string()),
            Just("..\\..".to_string()),
            Just("\\".to_string()),
            Just("\0".to_string()),
            Just("".to_string()),
            Just("\u{202e}\u{1F4A9}ünï".to_string()),
            "[a-z]{1,8}",
            "\\PC{0,12}",
            "x{250,300}",
        ];
        (any::<bool>(), proptest::collection::vec(piece, 0..12))
            .prop_map(|(abs, parts)| format!("{}{}", if abs { "/" } else { "" }, parts.join("/")))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Whatever comes in, what is accepted is absolute, normalised and free of
        /// anything that could mean "elsewhere"; the lenient form is no looser.
        #[test]
        fn accepted_paths_are_normalised(s in hostile()) {
            for parsed in [DfsPath::parse(&s), DfsPath::parse_lenient(&s)] {
                let Ok(p) = parsed else { continue };
                let t = p.as_str();
                proptest::prop_assert!(t.starts_with('/'));
                proptest::prop_assert!(t.len() <= MAX_PATH_BYTES);
                proptest::prop_assert!(!t.contains('\0'));
                proptest::prop_assert!(p.is_root() || !t.ends_with('/'));
                for seg in p.segments() {
                    proptest::prop_assert!(!seg.is_empty() && seg != "." && seg != "..", "{t:?}");
                    proptest::prop_assert!(seg.len() <= MAX_NAME_BYTES);
                }
                // Parsing is idempotent: the accepted form parses to itself.
                proptest::prop_assert_eq!(DfsPath::parse(t).unwrap(), p.clone());
            }
        }
    }
}
