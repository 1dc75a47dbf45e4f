//! ARCHITECTURE.md's module map names every source file under src/, and nothing else: a
//! new module without a line in the map, or a line for a file that is gone, fails here.

use std::collections::BTreeSet;
use std::path::Path;

/// The `src/...` files the map's code block names. A line `src/dir/` opens a directory;
/// indented `name.rs` lines below it are its files.
fn files_in_map(map: &str) -> BTreeSet<String> {
    let block = map
        .split("```")
        .nth(1)
        .expect("ARCHITECTURE.md has a fenced map block");
    let mut out = BTreeSet::new();
    let mut dir: Option<String> = None;
    for line in block.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if line.starts_with("src/") {
            if first.ends_with('/') {
                dir = Some(first.to_string());
            } else {
                dir = None;
                if first.ends_with(".rs") {
                    out.insert(first.to_string());
                }
            }
        } else if line.starts_with("  ") && first.ends_with(".rs") && !first.contains('/') {
            if let Some(d) = &dir {
                out.insert(format!("{d}{first}"));
            }
        } else if !line.starts_with(' ') {
            dir = None;
        }
    }
    out
}

fn files_on_disk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_on_disk(root, &p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.insert(rel);
        }
    }
}

#[test]
fn the_architecture_map_names_every_source_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mapped = files_in_map(&map);
    let mut real = BTreeSet::new();
    files_on_disk(root, &root.join("src"), &mut real);
    let missing: Vec<_> = real.difference(&mapped).collect();
    let stale: Vec<_> = mapped.difference(&real).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "ARCHITECTURE.md's map is out of date: not in the map {missing:?}; in the map but gone {stale:?}"
    );
}
