//! The coordinator's private files: its data directory (0700, with `meta.db` and its
//! `-wal`/`-shm` 0600) and the secrets file.
//!
//! The secrets file (`secrets.toml` in the data directory unless
//! `coordinator.secrets_file` says otherwise, mode 0600) holds the chunk-token key, the
//! S3 seal key and a generated join secret. It is kept apart from the database on
//! purpose: the database holds the S3 secrets sealed under the seal key, so the two
//! together reveal every S3 secret, and a copy of the database alone reveals none.
//!
//! Versions before issue 12 kept the two keys in the database (`cluster_secrets`). At
//! start-up they are copied into the file (written durably: temporary file, fsync,
//! rename, fsync of the directory) and only then erased from the database, with
//! `secure_delete` and a WAL checkpoint so that no copy of their bytes is left in the
//! database file or its WAL. A crash in between leaves them in both places, which the next
//! start tolerates (the same values) or refuses to resolve (different ones).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::config::CoordinatorConfig;
use crate::meta::{self, Store};
use crate::security::files::{self, Privacy};
use crate::security::join::JoinSecret;
use crate::security::seal::SealKey;
use crate::security::token::TokenKey;

/// Name of the secrets file in the data directory.
pub const FILE_NAME: &str = "secrets.toml";
/// Name of the metadata database in the data directory.
pub const DB_NAME: &str = "meta.db";

const HEADER: &str = "# dfsd coordinator secrets: the chunk-token key, the S3 seal key and the \
join secret.\n# Keep this file private (mode 0600) and back it up apart from meta.db: \
together they reveal every S3 secret.\n";

/// The file's content. Keys are hex; empty fields are absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsFile {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub s3_seal_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub join_secret: String,
}

impl SecretsFile {
    /// The file at `path`; `None` if there is none yet.
    pub fn read(path: &Path) -> anyhow::Result<Option<SecretsFile>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        toml::from_str(&text)
            .map(Some)
            .with_context(|| format!("secrets file {}", path.display()))
    }

    fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = format!("{HEADER}{}", toml::to_string(self)?);
        files::write_private_durably(path, text.as_bytes())
            .with_context(|| format!("write the secrets file {}", path.display()))
    }

    pub fn token_key(&self) -> anyhow::Result<TokenKey> {
        hex::decode(&self.token_key)
            .ok()
            .and_then(|b| TokenKey::from_bytes(&b))
            .context("token_key is not 32 bytes of hex")
    }

    pub fn s3_seal_key(&self) -> anyhow::Result<Vec<u8>> {
        hex::decode(&self.s3_seal_key)
            .ok()
            .filter(|b| SealKey::from_bytes(b).is_ok())
            .context("s3_seal_key is not 32 bytes of hex")
    }
}

/// Where the secrets file of a coordinator with `cfg` is.
pub fn path(cfg: &CoordinatorConfig) -> PathBuf {
    if cfg.secrets_file.is_empty() {
        cfg.data_dir.join(FILE_NAME)
    } else {
        PathBuf::from(&cfg.secrets_file)
    }
}

/// Creates the data directory (0700) and an empty database file (0600) if they are
/// missing, so SQLite, which gives its `-wal` and `-shm` the database's mode, makes them
/// private too; corrects what an older version left readable, with one warning.
pub fn prepare_data_dir(cfg: &CoordinatorConfig) -> anyhow::Result<()> {
    let dir = &cfg.data_dir;
    files::create_private_dir_all(dir)
        .with_context(|| format!("create coordinator data dir {}", dir.display()))?;
    let db = dir.join(DB_NAME);
    files::private_options()
        .append(true)
        .create(true)
        .open(&db)
        .with_context(|| format!("open {}", db.display()))?;
    let mut p = Privacy::default();
    p.check(dir);
    for name in [DB_NAME, "meta.db-wal", "meta.db-shm"] {
        p.check(&dir.join(name));
    }
    p.check(&path(cfg));
    p.report("coordinator");
    Ok(())
}

/// What the coordinator runs with.
pub struct Secrets {
    pub token_key: TokenKey,
    pub s3_seal: SealKey,
    /// `coordinator.join_secret`, else the one in the file (generated when `need_join`).
    pub join_secret: Option<String>,
}

/// Loads the secrets: from the file, moving in what an older version kept in the
/// database, generating what is missing (a join secret only when `need_join`: no TLS and
/// access keys on). A generated join secret is printed once on standard output.
pub fn load(store: &Store, cfg: &CoordinatorConfig, need_join: bool) -> anyhow::Result<Secrets> {
    let path = path(cfg);
    let shown = path.display().to_string();
    let before = SecretsFile::read(&path)?.unwrap_or_default();
    let mut file = before.clone();
    let legacy = store
        .with_writer(|c| meta::legacy_cluster_secrets(c))
        .context("read the cluster secrets of the database")?;
    for (name, value) in &legacy {
        let slot = match name.as_str() {
            "token_key" => &mut file.token_key,
            "s3_seal_key" => &mut file.s3_seal_key,
            other => {
                tracing::warn!(
                    name = other,
                    "unknown cluster secret in the database; dropped"
                );
                continue;
            }
        };
        let value = hex::encode(value);
        if slot.is_empty() {
            *slot = value;
        } else if *slot != value {
            bail!(
                "{shown}: its {name} differs from the one in the database {}; one of them \
                 was replaced by hand: keep the right one and remove the other",
                cfg.data_dir.join(DB_NAME).display()
            );
        }
    }
    if file.token_key.is_empty() {
        file.token_key = hex::encode(TokenKey::generate().as_bytes());
    }
    if file.s3_seal_key.is_empty() {
        file.s3_seal_key = hex::encode(SealKey::generate());
    }
    let generated_join = need_join && cfg.join_secret.is_empty() && file.join_secret.is_empty();
    if generated_join {
        file.join_secret = JoinSecret::generate();
    }
    if file != before {
        file.write(&path)?;
    }
    if !legacy.is_empty() {
        store
            .with_writer(meta::erase_cluster_secrets)
            .context("erase the cluster secrets from the database")?;
        tracing::info!(file = %shown, "moved the cluster secrets out of the database");
    }
    let token_key = file.token_key().with_context(|| shown.clone())?;
    let s3_seal = SealKey::from_bytes(&file.s3_seal_key().with_context(|| shown.clone())?)
        .context("S3 seal key")?;
    if generated_join {
        println!(
            "dfsd: created the cluster join secret (kept in {shown}); datanodes need it to \
             join this coordinator, which runs without TLS:\n\
             DFSD_DATANODE__JOIN_SECRET={}",
            file.join_secret
        );
        tracing::info!(file = %shown, "cluster join secret created");
    }
    let join_secret = if !cfg.join_secret.is_empty() {
        Some(cfg.join_secret.clone())
    } else {
        Some(file.join_secret).filter(|s| !s.is_empty())
    };
    Ok(Secrets {
        token_key,
        s3_seal,
        join_secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn cfg(dir: &Path) -> CoordinatorConfig {
        CoordinatorConfig {
            data_dir: dir.to_path_buf(),
            ..CoordinatorConfig::default()
        }
    }

    fn open(cfg: &CoordinatorConfig) -> Store {
        prepare_data_dir(cfg).unwrap();
        Store::open(&cfg.data_dir.join(DB_NAME), "normal").unwrap()
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn secrets_are_made_once_kept_in_a_private_file_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(&dir.path().join("coord"));
        let store = open(&c);
        let first = load(&store, &c, false).unwrap();
        assert!(first.join_secret.is_none());
        let p = path(&c);
        assert_eq!((mode(&c.data_dir), mode(&p)), (0o700, 0o600));
        assert_eq!(mode(&c.data_dir.join(DB_NAME)), 0o600);
        let again = load(&store, &c, true).unwrap();
        assert_eq!(first.token_key.as_bytes(), again.token_key.as_bytes());
        let join = again.join_secret.clone().unwrap();
        assert_eq!(load(&store, &c, true).unwrap().join_secret, Some(join));
        // A configured join secret wins.
        let configured = CoordinatorConfig {
            join_secret: "configured-join-secret-0123".into(),
            ..c.clone()
        };
        assert_eq!(
            load(&store, &configured, true)
                .unwrap()
                .join_secret
                .as_deref(),
            Some("configured-join-secret-0123")
        );
    }

    #[test]
    fn secrets_in_an_old_database_move_to_the_file_and_leave_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(&dir.path().join("coord"));
        let store = open(&c);
        let (token, seal) = ([0xA5u8; 32], [0x5Au8; 32]);
        store
            .with_writer(|conn| {
                for (n, v) in [("token_key", &token), ("s3_seal_key", &seal)] {
                    conn.execute(
                        "INSERT INTO cluster_secrets (name, value) VALUES (?1, ?2)",
                        rusqlite::params![n, &v[..]],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        let s = load(&store, &c, false).unwrap();
        assert_eq!(s.token_key.as_bytes(), &token);
        let file = SecretsFile::read(&path(&c)).unwrap().unwrap();
        assert_eq!(file.s3_seal_key().unwrap(), seal);
        assert!(store
            .with_writer(|conn| meta::legacy_cluster_secrets(conn))
            .unwrap()
            .is_empty());
        let mut bytes = std::fs::read(c.data_dir.join(DB_NAME)).unwrap();
        bytes.extend(std::fs::read(c.data_dir.join("meta.db-wal")).unwrap_or_default());
        for key in [token, seal] {
            assert!(
                !bytes.windows(32).any(|w| w == key),
                "key bytes left behind"
            );
        }
        // Both places holding different values: refused, not guessed.
        store
            .with_writer(|conn| {
                conn.execute(
                    "INSERT INTO cluster_secrets (name, value) VALUES ('token_key', ?1)",
                    [&[1u8; 32][..]],
                )?;
                Ok(())
            })
            .unwrap();
        let e = load(&store, &c, false).err().unwrap().to_string();
        assert!(e.contains("differs"), "{e}");
    }
}
