//! Private files: data directories are 0700 and every file dfsd creates is 0600, so no
//! other local user can read metadata, secrets, chunks or keys.
//!
//! Three lines of defence: files and directories are created with explicit modes; server
//! roles run with umask 077 (anything created without an explicit mode, such as SQLite's
//! `-wal` and `-shm`, is private too); and each server checks its data directory and
//! named files at start-up and corrects what group or others could reach, with one
//! warning naming what it fixed. A file that cannot be changed (a certificate on a
//! read-only mount) gets a warning, never a failed start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every directory dfsd creates for its data.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file dfsd creates.
pub const FILE_MODE: u32 = 0o600;

/// Makes files created without an explicit mode private. For server roles only: the
/// output of `dfsd get` keeps the user's umask.
pub fn private_umask() {
    // SAFETY: umask only changes this process's file creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates `dir` and its missing parents, new ones 0700.
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Creates `path` (0600) for writing; fails if it exists.
pub fn create_new_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Options that create a file 0600 if it is missing (nothing else is set).
pub fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Replaces `path` with `bytes` durably: a 0600 temporary file beside it, fsync, rename,
/// fsync of the directory. A crash leaves the old file or the new one, never a mix.
pub fn write_private_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let result = (|| {
        let mut f = create_new_private(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Takes group and other permissions off `path` (0700 for a directory, 0600 for a file)
/// when it has any. `Some(old mode)` when it changed something.
pub fn make_private(path: &Path) -> io::Result<Option<u32>> {
    let meta = fs::metadata(path)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    let want = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
    fs::set_permissions(path, fs::Permissions::from_mode(want))?;
    Ok(Some(mode))
}

/// [`make_private`] for a walk that already has the `mode`: true if it changed it.
pub fn make_private_if_open(path: &Path, mode: u32) -> bool {
    mode & 0o077 != 0 && matches!(make_private(path), Ok(Some(_)))
}

/// What a start-up check corrected, and what it could not.
#[derive(Debug, Default)]
pub struct Privacy {
    fixed: Vec<String>,
    failed: Vec<String>,
}

impl Privacy {
    /// Checks `path` if it exists (see [`make_private`]).
    pub fn check(&mut self, path: &Path) {
        match make_private(path) {
            Ok(Some(old)) => self.fixed.push(format!("{} (was {old:o})", path.display())),
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => self.failed.push(format!("{}: {e}", path.display())),
        }
    }

    /// Records a correction made elsewhere, e.g. "12 chunk files".
    pub fn note(&mut self, what: String) {
        self.fixed.push(what);
    }

    pub fn fixed(&self) -> &[String] {
        &self.fixed
    }

    /// One warning for what was corrected, one for what could not be.
    pub fn report(&self, role: &str) {
        if !self.fixed.is_empty() {
            tracing::warn!(role, fixed = %self.fixed.join(", "),
                "made files private (directories 0700, files 0600): other users could read them");
        }
        if !self.failed.is_empty() {
            tracing::warn!(role, files = %self.failed.join(", "),
                "could not make files private; restrict their permissions by hand");
        }
    }
}

/// Checks the private key files a server was given (`tls.key`, `gateway.tls_key`).
pub fn check_key_files(paths: &[&str]) {
    let mut p = Privacy::default();
    for path in paths.iter().filter(|p| !p.is_empty()) {
        p.check(Path::new(path));
    }
    p.report("tls");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn open_files_and_directories_are_corrected_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("data");
        create_private_dir_all(&d.join("a/b")).unwrap();
        assert_eq!((mode(&d), mode(&d.join("a/b"))), (0o700, 0o700));
        let f = d.join("f");
        write_private_durably(&f, b"one").unwrap();
        write_private_durably(&f, b"two").unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"two");
        assert_eq!(mode(&f), 0o600);
        assert_eq!(fs::read_dir(&d).unwrap().count(), 2, "no temp file left");

        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        let mut p = Privacy::default();
        for x in [&d, &f, &d.join("a"), &d.join("missing")] {
            p.check(x);
        }
        assert_eq!((mode(&d), mode(&f)), (0o700, 0o600));
        assert_eq!(p.fixed().len(), 2, "{:?}", p.fixed());
        assert!(p.fixed()[0].contains("was 755"), "{:?}", p.fixed());
        assert!(p.failed.is_empty());
        // Already private: nothing to say.
        let mut again = Privacy::default();
        again.check(&d);
        again.check(&f);
        assert!(again.fixed().is_empty());
    }
}
