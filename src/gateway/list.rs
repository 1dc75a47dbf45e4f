//! Object listings (ListObjectsV2 and v1) as a walk of the bucket's directory tree.
//!
//! S3 lists keys in byte order. A directory walk yields that order when each directory's
//! children are visited sorted by `name` for files and `name/` for directories (`a/b`
//! sorts after `a-c` because `/` > `-`): every key below a directory `d/` then comes
//! between the siblings that sort before and after `d/`. The walk starts at the deepest
//! directory the prefix names, skips subtrees that lie wholly at or before the marker
//! (continuation token or start-after), and does not descend into a directory that the
//! delimiter folds into one common prefix. Each visited directory is listed whole, so
//! memory follows the largest directory, not the bucket.

use std::future::Future;

use crate::client::{Client, ClientError};
use crate::model::Entry;

/// One listing request, in key space (keys relative to the bucket).
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Only keys (and common prefixes) after this one.
    pub marker: String,
    pub max_keys: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Object { key: String, entry: Entry },
    Prefix(String),
}

impl Item {
    pub fn name(&self) -> &str {
        match self {
            Item::Object { key, .. } => key,
            Item::Prefix(p) => p,
        }
    }
}

#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<Item>,
    /// More items follow the last one.
    pub truncated: bool,
}

/// Directory listings, as the walk needs them.
pub trait Lister {
    /// The entries of directory `path`; `None` if it does not exist or is a file.
    fn list_dir(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Option<Vec<Entry>>, ClientError>> + Send;

    /// The entry of directory `path`, if it is one (for its directory marker).
    fn stat_dir(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Option<Entry>, ClientError>> + Send;
}

impl Lister for Client {
    async fn list_dir(&self, path: &str) -> Result<Option<Vec<Entry>>, ClientError> {
        match self.list(path).await {
            Ok(entries) => {
                // Listing a file returns the file itself.
                let is_file = matches!(entries.as_slice(), [e] if e.path.as_str() == path
                    && !e.is_dir());
                Ok((!is_file).then_some(entries))
            }
            Err(ClientError::NotFound(_) | ClientError::NotADirectory(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn stat_dir(&self, path: &str) -> Result<Option<Entry>, ClientError> {
        match self.stat(path).await {
            Ok(e) => Ok(e.is_dir().then_some(e)),
            Err(ClientError::NotFound(_) | ClientError::NotADirectory(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The directory (as a key prefix ending in '/', "" for the bucket) where the walk for
/// `prefix` starts, or None when no key can start with `prefix`: keys are clean paths, so
/// a prefix whose directory part has an empty, `.` or `..` segment (a leading `/`, `//`),
/// or names the uploads directory, matches nothing.
fn walk_start(prefix: &str) -> Option<String> {
    let Some(i) = prefix.rfind('/') else {
        return Some(String::new());
    };
    let dir = &prefix[..i];
    let clean = dir
        .split('/')
        .all(|s| !s.is_empty() && s != "." && s != ".." && !s.chars().any(char::is_control));
    let reserved = dir.split('/').next() == Some(super::mapping::UPLOADS_DIR);
    (clean && !reserved).then(|| prefix[..=i].to_string())
}

enum Node {
    /// A directory, as a key prefix ending in '/' ("" for the bucket itself), with its
    /// entry when it is a directory marker (an object of its own).
    Dir(String, Option<Entry>),
    File(String, Entry),
}

/// The common prefix `name` folds into under `delimiter`, if any.
fn group(prefix: &str, delimiter: Option<&str>, name: &str) -> Option<String> {
    let d = delimiter.filter(|d| !d.is_empty())?;
    let rest = name.strip_prefix(prefix)?;
    let i = rest.find(d)?;
    Some(format!("{prefix}{}", &rest[..i + d.len()]))
}

/// One page's walk so far: the items and the last common prefix emitted (a prefix is
/// emitted once however many keys fold into it).
struct Walk<'a> {
    p: &'a ListParams,
    page: Page,
    last_prefix: Option<String>,
}

/// What the walk does after a directory's own item (if any).
enum Step {
    /// Skip the directory's contents.
    Skip,
    /// List the directory and visit its children.
    Descend,
    /// The page is full.
    Full,
}

impl Walk<'_> {
    /// Adds an item; false once the page is full (the item proves there is more).
    fn emit(&mut self, item: Item) -> bool {
        if self.page.items.len() == self.p.max_keys {
            self.page.truncated = true;
            return false;
        }
        self.page.items.push(item);
        true
    }

    /// The common prefix `cp` as an item, unless it is at or before the marker or was
    /// just emitted.
    fn fresh_prefix(&mut self, cp: String) -> Option<Item> {
        if cp.as_str() <= self.p.marker.as_str() || self.last_prefix.as_ref() == Some(&cp) {
            return None;
        }
        self.last_prefix = Some(cp.clone());
        Some(Item::Prefix(cp))
    }

    /// A file: its key, or the common prefix it folds into. False once the page is full.
    fn file(&mut self, key: String, entry: Entry) -> bool {
        let p = self.p;
        if !key.starts_with(&p.prefix) {
            return true;
        }
        let item = match group(&p.prefix, p.delimiter.as_deref(), &key) {
            Some(cp) => match self.fresh_prefix(cp) {
                Some(item) => item,
                None => return true,
            },
            None if key.as_str() <= p.marker.as_str() => return true,
            None => Item::Object { key, entry },
        };
        self.emit(item)
    }

    /// A directory `d`: the common prefix it folds into (its contents then skipped), or
    /// its marker as an object, listed before the keys below it; then whether any key
    /// below it can still be on the page.
    fn dir(&mut self, d: &str, marker: Option<Entry>) -> Step {
        let p = self.p;
        if !(d.starts_with(&p.prefix) || p.prefix.starts_with(d)) {
            return Step::Skip;
        }
        if d.starts_with(&p.prefix) {
            if let Some(cp) = group(&p.prefix, p.delimiter.as_deref(), d) {
                return match self.fresh_prefix(cp).map(|item| self.emit(item)) {
                    Some(false) => Step::Full,
                    _ => Step::Skip,
                };
            }
            if let Some(entry) = marker.filter(|_| d > p.marker.as_str()) {
                let key = d.to_string();
                if !self.emit(Item::Object { key, entry }) {
                    return Step::Full;
                }
            }
        }
        // Every key below d/ sorts before a marker that is past d/ without being in it.
        if d < p.marker.as_str() && !p.marker.starts_with(d) {
            return Step::Skip;
        }
        Step::Descend
    }
}

/// The children of directory `d` (a key prefix) as walk nodes, in reverse key order (the
/// walk pops them from a stack).
fn children(d: &str, entries: Vec<Entry>) -> Vec<Node> {
    let mut out: Vec<Node> = entries
        .into_iter()
        // Multipart uploads in progress are not objects.
        .filter(|e| !(d.is_empty() && e.name() == super::mapping::UPLOADS_DIR))
        .map(|e| {
            if e.is_dir() {
                let key = format!("{d}{}/", e.name());
                Node::Dir(key, Some(e).filter(super::markers::is_marked))
            } else {
                Node::File(format!("{d}{}", e.name()), e)
            }
        })
        .collect();
    let key = |n: &Node| match n {
        Node::Dir(k, _) | Node::File(k, _) => k.clone(),
    };
    out.sort_by_key(|n| std::cmp::Reverse(key(n)));
    out
}

/// One page of the listing of `bucket` (a directory path such as `/photos`).
pub async fn list_page<L: Lister>(
    lister: &L,
    bucket_dir: &str,
    p: &ListParams,
) -> Result<Page, ClientError> {
    if p.max_keys == 0 {
        return Ok(Page::default());
    }
    let Some(start) = walk_start(&p.prefix) else {
        return Ok(Page::default());
    };
    // The starting directory's own marker lists when the prefix names it exactly.
    let start_marker = if !start.is_empty() && start == p.prefix {
        let path = format!("{bucket_dir}/{}", start.trim_end_matches('/'));
        lister
            .stat_dir(&path)
            .await?
            .filter(super::markers::is_marked)
    } else {
        None
    };
    let mut walk = Walk {
        p,
        page: Page::default(),
        last_prefix: None,
    };
    let mut stack = vec![Node::Dir(start, start_marker)];
    while let Some(node) = stack.pop() {
        let d = match node {
            Node::File(key, entry) => {
                if walk.file(key, entry) {
                    continue;
                }
                break;
            }
            Node::Dir(d, marker) => match walk.dir(&d, marker) {
                Step::Skip => continue,
                Step::Full => break,
                Step::Descend => d,
            },
        };
        let path = format!("{bucket_dir}/{d}");
        if let Some(entries) = lister.list_dir(path.trim_end_matches('/')).await? {
            stack.extend(children(&d, entries));
        }
    }
    Ok(walk.page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;
    use crate::path::DfsPath;
    use std::collections::BTreeSet;

    /// A namespace in memory: the set of file paths; directories are implied, and a
    /// path ending in '/' is a directory marker.
    struct Tree(BTreeSet<String>);

    fn dir_entry(path: &str, marked: bool) -> Entry {
        let mut e = Entry::new(DfsPath::parse(path).unwrap(), Kind::Dir);
        if marked {
            e.attrs.insert(
                super::super::markers::ATTR_DIR_MARKER.to_string(),
                "1".into(),
            );
        }
        e
    }

    impl Lister for Tree {
        async fn stat_dir(&self, path: &str) -> Result<Option<Entry>, ClientError> {
            let dir = format!("{path}/");
            let marked = self.0.contains(&dir);
            let exists = self.0.iter().any(|f| f.starts_with(&dir));
            Ok(exists.then(|| dir_entry(path, marked)))
        }

        async fn list_dir(&self, path: &str) -> Result<Option<Vec<Entry>>, ClientError> {
            let dir = format!("{path}/");
            let mut names = std::collections::BTreeMap::new();
            for f in self
                .0
                .iter()
                .filter_map(|f| f.strip_prefix(&dir))
                .filter(|f| !f.is_empty())
            {
                match f.split_once('/') {
                    Some((d, _)) => names.insert(d.to_string(), Kind::Dir),
                    None => names.insert(f.to_string(), Kind::File),
                };
            }
            Ok((!names.is_empty()).then(|| {
                names
                    .into_iter()
                    .map(|(name, kind)| match kind {
                        Kind::Dir => {
                            let p = format!("{dir}{name}");
                            let marked = self.0.contains(&format!("{p}/"));
                            dir_entry(&p, marked)
                        }
                        Kind::File => {
                            Entry::new(DfsPath::parse(&format!("{dir}{name}")).unwrap(), Kind::File)
                        }
                    })
                    .collect()
            }))
        }
    }

    fn tree(keys: &[&str]) -> Tree {
        Tree(keys.iter().map(|k| format!("/b/{k}")).collect())
    }

    fn names(t: &Tree, p: &ListParams) -> (Vec<String>, bool) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let page = rt.block_on(list_page(t, "/b", p)).unwrap();
        (
            page.items.iter().map(|i| i.name().to_string()).collect(),
            page.truncated,
        )
    }

    /// Every page, following the marker, as S3 clients do.
    fn all_pages(t: &Tree, mut p: ListParams) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let (items, more) = names(t, &p);
            out.extend(items.iter().cloned());
            if !more {
                return out;
            }
            p.marker = items.last().unwrap().clone();
        }
    }

    const KEYS: &[&str] = &["a-c", "a/b", "a/c/d", "a/c/e", "ab", "z/y/x", "z0"];

    #[test]
    fn flat_listing_is_in_byte_order() {
        let t = tree(KEYS);
        let mut sorted: Vec<&str> = KEYS.to_vec();
        sorted.sort();
        let p = ListParams {
            max_keys: 1000,
            ..Default::default()
        };
        assert_eq!(names(&t, &p).0, sorted);
        for n in 1..=7 {
            let p = ListParams {
                max_keys: n,
                ..Default::default()
            };
            assert_eq!(all_pages(&t, p), sorted, "pages of {n}");
        }
    }

    #[test]
    fn delimiter_folds_directories_into_prefixes() {
        let t = tree(KEYS);
        let p = ListParams {
            delimiter: Some("/".into()),
            max_keys: 1000,
            ..Default::default()
        };
        assert_eq!(names(&t, &p).0, ["a-c", "a/", "ab", "z/", "z0"]);
        let p = ListParams {
            prefix: "a/".into(),
            delimiter: Some("/".into()),
            max_keys: 1000,
            ..Default::default()
        };
        assert_eq!(names(&t, &p).0, ["a/b", "a/c/"]);
        let p = ListParams {
            prefix: "a/c/".into(),
            max_keys: 1,
            ..Default::default()
        };
        assert_eq!(all_pages(&t, p), ["a/c/d", "a/c/e"]);
        let p = ListParams {
            prefix: "a".into(),
            delimiter: Some("/".into()),
            max_keys: 2,
            ..Default::default()
        };
        assert_eq!(all_pages(&t, p), ["a-c", "a/", "ab"]);
        // A delimiter other than '/' works on whole keys.
        let p = ListParams {
            delimiter: Some("c".into()),
            max_keys: 1000,
            ..Default::default()
        };
        assert_eq!(names(&t, &p).0, ["a-c", "a/b", "a/c", "ab", "z/y/x", "z0"]);
    }

    #[test]
    fn prefix_within_a_name_and_missing_directories() {
        let t = tree(KEYS);
        let p = ListParams {
            prefix: "a/c/".into(),
            max_keys: 1000,
            ..Default::default()
        };
        assert_eq!(names(&t, &p).0, ["a/c/d", "a/c/e"]);
        let p = ListParams {
            prefix: "nope/x".into(),
            max_keys: 1000,
            ..Default::default()
        };
        assert_eq!(names(&t, &p), (vec![], false));
        let p = ListParams {
            marker: "a/c/d".into(),
            max_keys: 1000,
            ..Default::default()
        };
        assert_eq!(names(&t, &p).0, ["a/c/e", "ab", "z/y/x", "z0"]);
        let p = ListParams {
            prefix: "a".into(),
            max_keys: 1000,
            ..Default::default()
        };
        assert_eq!(names(&t, &p).0, ["a-c", "a/b", "a/c/d", "a/c/e", "ab"]);
    }

    #[test]
    fn any_prefix_is_a_string_filter() {
        let t = tree(&["g", "a/b", "a/c"]);
        for weird in [
            "/",
            "//",
            "/a",
            "a//",
            "a//b",
            "./a",
            "a/../",
            ".dfsd-uploads/",
        ] {
            let p = ListParams {
                prefix: weird.into(),
                max_keys: 1000,
                ..Default::default()
            };
            assert_eq!(names(&t, &p), (vec![], false), "{weird:?}");
        }
    }

    #[test]
    fn directory_markers_list_as_keys() {
        // "e/" is an empty marked directory, "a/" a marked one with keys below it.
        let t = tree(&["a/", "a/b", "e/", "z"]);
        let all = ListParams {
            max_keys: 1000,
            ..Default::default()
        };
        assert_eq!(names(&t, &all).0, ["a/", "a/b", "e/", "z"]);
        for n in 1..=4 {
            let p = ListParams {
                max_keys: n,
                ..Default::default()
            };
            assert_eq!(all_pages(&t, p), ["a/", "a/b", "e/", "z"], "pages of {n}");
        }
        let delim = ListParams {
            delimiter: Some("/".into()),
            max_keys: 1000,
            ..Default::default()
        };
        assert_eq!(names(&t, &delim).0, ["a/", "e/", "z"]);
        let inside = ListParams {
            prefix: "a/".into(),
            delimiter: Some("/".into()),
            max_keys: 1000,
            ..Default::default()
        };
        assert_eq!(names(&t, &inside).0, ["a/", "a/b"]);
    }
}
