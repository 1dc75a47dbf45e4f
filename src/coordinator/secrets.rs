//! The coordinator's private files: its data directory (0700, with `meta.db` and its
//! `-wal`/`-shm` 0600) and the secrets file.
//!
//! The secrets file (`secrets.toml` in the data directory unless
//! `coordinator.secrets_file` says otherwise, mode 0600) holds the chunk-token key, the
//! S3 seal key and a generated join secret. It is kept apart from the database on
//! purpose: the database holds the S3 secrets sealed under the seal key, so the two
//! together reveal every S3 secret, and a copy of the database alone reveals none.
//!
//! The two go together: the database records a fingerprint of each key of the file
//! (HMAC(key, label), which names a key without revealing it). A coordinator whose
//! database has fingerprints refuses to start when the file is missing or holds other
//! keys, rather than making new ones, which would leave every sealed S3 secret
//! unreadable (a restore of `meta.db` alone, a changed `coordinator.secrets_file`).
//!
//! Versions before issue 12 kept the two keys in the database (`cluster_secrets`), which
//! was world-readable, so anyone may hold a copy of them: they are replaced, not moved.
//! The rotation is crash-safe at every step and resumes wherever a restart finds it:
//!
//! 1. new token and seal keys go into the file, with the old seal key as
//!    `previous_s3_seal_key` (written durably: temporary file, fsync, rename, fsync of
//!    the directory);
//! 2. one transaction re-seals every S3 secret under the new seal key, deletes the old
//!    rows and records the new keys' fingerprints (`secure_delete`, then a WAL
//!    checkpoint, so no byte of the old rows stays in the database file or its WAL);
//! 3. the file is written again without `previous_s3_seal_key`.
//!
//! Old rows and a `previous_s3_seal_key` in the file mean step 2 is still to do; the
//! field without old rows, that step 3 is. Datanodes holding the old token key learn of
//! the new one at their next heartbeat (which carries a digest of their key: the
//! coordinator asks them to register again).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::CoordinatorConfig;
use crate::meta::MetaStore;
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
together they reveal every S3 secret, and meta.db cannot be used without it.\n";

/// Label of the fingerprints kept in the database.
const FINGERPRINT_LABEL: &[u8] = b"dfsd-secret-fingerprint-v1";
const TOKEN_KEY: &str = "token_key";
const SEAL_KEY: &str = "s3_seal_key";

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
    /// Present only while the keys an older version kept in the database are being
    /// replaced: the seal key the database's S3 secrets are sealed under until the
    /// rotation commits (empty if that database had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_s3_seal_key: Option<String>,
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

    /// Writes the file durably (temporary file, fsync, rename, fsync of the directory).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
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
        seal_key_bytes(&self.s3_seal_key).context("s3_seal_key is not 32 bytes of hex")
    }

    /// The key named `name` (`token_key` or `s3_seal_key`), as bytes.
    fn key(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        match name {
            TOKEN_KEY => Ok(self.token_key()?.as_bytes().to_vec()),
            SEAL_KEY => self.s3_seal_key(),
            other => bail!("no key named {other}"),
        }
    }

    /// The fingerprints of its keys, as the database keeps them.
    fn fingerprints(&self) -> anyhow::Result<Vec<(&'static str, Vec<u8>)>> {
        [TOKEN_KEY, SEAL_KEY]
            .into_iter()
            .map(|n| Ok((n, fingerprint(&self.key(n)?))))
            .collect()
    }
}

fn seal_key_bytes(text: &str) -> Option<Vec<u8>> {
    hex::decode(text)
        .ok()
        .filter(|b| SealKey::from_bytes(b).is_ok())
}

/// Names a key without revealing it.
fn fingerprint(key: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(FINGERPRINT_LABEL);
    m.finalize().into_bytes().to_vec()
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

/// The keys an older version kept in the database.
#[derive(Default)]
struct Legacy {
    /// Rows are present (to be deleted), whatever they hold.
    present: bool,
    token_key: Option<Vec<u8>>,
    s3_seal_key: Option<Vec<u8>>,
}

impl Legacy {
    async fn read(store: &dyn MetaStore) -> anyhow::Result<Legacy> {
        let rows = store
            .legacy_cluster_secrets()
            .await
            .context("read the cluster secrets of the database")?;
        let mut l = Legacy {
            present: !rows.is_empty(),
            ..Legacy::default()
        };
        for (name, value) in rows {
            match name.as_str() {
                TOKEN_KEY => l.token_key = Some(value),
                SEAL_KEY => l.s3_seal_key = Some(value),
                other => tracing::warn!(
                    name = other,
                    "unknown cluster secret in the database; dropped"
                ),
            }
        }
        Ok(l)
    }
}

/// Where the two files are, for messages.
struct Places {
    file: String,
    db: String,
}

/// Loads the secrets from the file, checked against the fingerprints in the database;
/// replaces the keys an older version kept in the database (see the module docs);
/// generates what a new cluster lacks (a join secret only when `need_join`: no TLS and
/// access keys on). A generated join secret is printed once on standard output.
pub async fn load(
    store: &dyn MetaStore,
    cfg: &CoordinatorConfig,
    need_join: bool,
) -> anyhow::Result<Secrets> {
    let path = path(cfg);
    let at = Places {
        file: path.display().to_string(),
        db: cfg.data_dir.join(DB_NAME).display().to_string(),
    };
    let legacy = Legacy::read(store).await?;
    let prints = store
        .secret_fingerprints()
        .await
        .context("read the fingerprints of the cluster secrets")?;
    let on_disk = SecretsFile::read(&path)?;
    let mut file = settle_keys(on_disk.as_ref(), &legacy, &prints, &at)?;
    let generated_join = need_join && cfg.join_secret.is_empty() && file.join_secret.is_empty();
    if generated_join {
        file.join_secret = JoinSecret::generate();
    }
    // Before the database records anything of them: a crash then leaves keys in the
    // file that the database does not know yet, which the next start adopts, never
    // fingerprints of keys that exist nowhere.
    if on_disk.as_ref() != Some(&file) {
        file.write(&path)?;
    }
    let token_key = file.token_key().with_context(|| at.file.clone())?;
    let s3_seal = SealKey::from_bytes(&file.s3_seal_key().with_context(|| at.file.clone())?)
        .context("S3 seal key")?;
    let new_prints = file.fingerprints().with_context(|| at.file.clone())?;
    if legacy.present {
        commit_rotation(store, &file, &s3_seal, &new_prints).await?;
    } else if prints.is_empty() {
        store
            .record_secret_fingerprints(&new_prints)
            .await
            .context("record the fingerprints of the cluster secrets")?;
    }
    if file.previous_s3_seal_key.is_some() {
        // The database is on the new keys (committed just now, or before a crash): the
        // old seal key is needed no more. The checkpoint again, in case the crash came
        // before it.
        store
            .checkpoint_truncate()
            .await
            .context("checkpoint the database")?;
        file.previous_s3_seal_key = None;
        file.write(&path)?;
        tracing::warn!(file = %at.file,
            "replaced the chunk-token and S3 seal keys that an older version kept in the \
             database; if a copy of that database may exist, replace the S3 and admin access \
             keys too (README, upgrading)");
    }
    if generated_join {
        println!(
            "dfsd: created the cluster join secret (kept in {}); datanodes need it to \
             join this coordinator, which runs without TLS:\n\
             DFSD_DATANODE__JOIN_SECRET={}",
            at.file, file.join_secret
        );
        tracing::info!(file = %at.file, "cluster join secret created");
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

/// The keys the file is to hold, before anything is written: the file as it is (checked
/// against the database's fingerprints), a rotation begun (legacy keys in the database),
/// or new keys for a new cluster. A missing file the database was set up with is refused.
fn settle_keys(
    on_disk: Option<&SecretsFile>,
    legacy: &Legacy,
    prints: &[(String, Vec<u8>)],
    at: &Places,
) -> anyhow::Result<SecretsFile> {
    if on_disk.is_none() && !prints.is_empty() && !legacy.present {
        bail!(
            "{}: the secrets file is missing, but the database {} was set up with one (its S3 \
             secrets are sealed under a key in it): restore the file from a backup, or set \
             coordinator.secrets_file to where it is; new keys would make every S3 secret \
             unreadable",
            at.file,
            at.db
        );
    }
    let mut file = on_disk.cloned().unwrap_or_default();
    if legacy.present {
        begin_rotation(&mut file, legacy, at)?;
    } else if prints.is_empty() {
        if file.previous_s3_seal_key.is_some() {
            bail!(
                "{}: it records a rotation of the cluster keys (previous_s3_seal_key) that the \
                 database {} knows nothing of: restore the secrets file that belongs with \
                 this database",
                at.file,
                at.db
            );
        }
        // A new cluster, or a database from before fingerprints: keys are made once.
        if file.token_key.is_empty() {
            file.token_key = hex::encode(TokenKey::generate().as_bytes());
        }
        if file.s3_seal_key.is_empty() {
            file.s3_seal_key = hex::encode(SealKey::generate());
        }
    } else {
        check_fingerprints(&file, prints, at)?;
    }
    Ok(file)
}

/// Refuses a file whose keys are not the ones the database was used with.
fn check_fingerprints(
    file: &SecretsFile,
    prints: &[(String, Vec<u8>)],
    at: &Places,
) -> anyhow::Result<()> {
    for (name, want) in prints {
        if name != TOKEN_KEY && name != SEAL_KEY {
            tracing::warn!(name = %name, "fingerprint of an unknown key in the database; ignored");
            continue;
        }
        if file.key(name).ok().map(|k| fingerprint(&k)).as_ref() != Some(want) {
            bail!(
                "{}: its {name} is not the one the database {} was set up with: restore the \
                 secrets file that belongs with this database (from a backup), or set \
                 coordinator.secrets_file to it",
                at.file,
                at.db
            );
        }
    }
    Ok(())
}

/// Step 1 of a rotation (see the module docs): new keys in `file`, which remembers the
/// old seal key. Resuming (the file already records the rotation), checks that it is this
/// database's.
fn begin_rotation(file: &mut SecretsFile, legacy: &Legacy, at: &Places) -> anyhow::Result<()> {
    let hand_edited = |name: &str| {
        anyhow::anyhow!(
            "{}: its {name} differs from the one in the database {}; one of them was \
             replaced by hand: keep the right one and remove the other",
            at.file,
            at.db
        )
    };
    let old_seal = legacy.s3_seal_key.as_deref().map(hex::encode);
    if let Some(previous) = &file.previous_s3_seal_key {
        if old_seal.as_ref().is_some_and(|old| old != previous) {
            return Err(hand_edited("previous_s3_seal_key"));
        }
        return Ok(());
    }
    // Equal values are a copy an interrupted start of an earlier version made.
    for (name, slot, old) in [
        (TOKEN_KEY, &file.token_key, &legacy.token_key),
        (SEAL_KEY, &file.s3_seal_key, &legacy.s3_seal_key),
    ] {
        if let Some(old) = old {
            if !slot.is_empty() && *slot != hex::encode(old) {
                return Err(hand_edited(name));
            }
        }
    }
    let previous = old_seal.unwrap_or_else(|| file.s3_seal_key.clone());
    file.previous_s3_seal_key = Some(previous);
    file.token_key = hex::encode(TokenKey::generate().as_bytes());
    file.s3_seal_key = hex::encode(SealKey::generate());
    Ok(())
}

/// Step 2: the database onto the new keys, in one transaction.
async fn commit_rotation(
    store: &dyn MetaStore,
    file: &SecretsFile,
    new_seal: &SealKey,
    prints: &[(&str, Vec<u8>)],
) -> anyhow::Result<()> {
    let old = file
        .previous_s3_seal_key
        .as_deref()
        .and_then(seal_key_bytes)
        .and_then(|b| SealKey::from_bytes(&b).ok());
    let mut unopened = Vec::new();
    let mut reseal = |id: &str, blob: &[u8]| {
        let secret = old.as_ref().and_then(|k| k.open(id, blob).ok());
        if secret.is_none() {
            unopened.push(id.to_string());
        }
        secret.map(|s| new_seal.seal(id, &s))
    };
    let done = store
        .rotate_cluster_secrets(&mut reseal, prints)
        .await
        .context("re-seal the S3 secrets under the new seal key")?;
    for id in &unopened {
        // It did not open before either: the key never had a usable S3 secret here.
        tracing::warn!(key = %id, "S3 secret that does not open with the old seal key; left as it was");
    }
    tracing::info!(
        resealed = done.resealed,
        left = done.left,
        "cluster keys rotated out of the database"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::SqliteStore as Store;
    use crate::path::DfsPath;
    use crate::security::keys::{AccessKey, KeyRole};
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

    async fn refusal(store: &Store, c: &CoordinatorConfig) -> String {
        format!("{:#}", load(store, c, false).await.err().expect("refused"))
    }

    /// An access key with an S3 secret sealed under `seal`: (id, secret).
    async fn add_key(store: &Store, seal: &[u8]) -> (String, String) {
        let (id, secret, salt, hash) = crate::security::keys::generate();
        let key = AccessKey {
            id: id.clone(),
            name: "k".into(),
            role: KeyRole::ReadWrite,
            prefix: DfsPath::root(),
            salt,
            secret_hash: hash,
            created_ms: 1,
            revoked_ms: None,
            s3_secret_sealed: Some(SealKey::from_bytes(seal).unwrap().seal(&id, &secret)),
        };
        store.insert_key(&key).await.unwrap();
        (id, secret)
    }

    async fn sealed_of(store: &Store, id: &str) -> Vec<u8> {
        let keys = store.list_keys().await.unwrap();
        let k = keys.into_iter().find(|k| k.id == id).unwrap();
        k.s3_secret_sealed.unwrap()
    }

    /// What a database of a version before issue 12 held.
    fn put_legacy(store: &Store, token: &[u8], seal: &[u8]) {
        for (n, v) in [(TOKEN_KEY, token), (SEAL_KEY, seal)] {
            store.insert_legacy_secret(n, v);
        }
        store.forget_secret_fingerprints();
    }

    fn db_bytes(c: &CoordinatorConfig) -> Vec<u8> {
        let mut bytes = std::fs::read(c.data_dir.join(DB_NAME)).unwrap();
        bytes.extend(std::fs::read(c.data_dir.join("meta.db-wal")).unwrap_or_default());
        bytes
    }

    #[tokio::test]
    async fn secrets_are_made_once_kept_in_a_private_file_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(&dir.path().join("coord"));
        let store = open(&c);
        let first = load(&store, &c, false).await.unwrap();
        assert!(first.join_secret.is_none());
        let p = path(&c);
        assert_eq!((mode(&c.data_dir), mode(&p)), (0o700, 0o600));
        assert_eq!(mode(&c.data_dir.join(DB_NAME)), 0o600);
        let again = load(&store, &c, true).await.unwrap();
        assert_eq!(first.token_key.as_bytes(), again.token_key.as_bytes());
        let join = again.join_secret.clone().unwrap();
        assert_eq!(
            load(&store, &c, true).await.unwrap().join_secret,
            Some(join)
        );
        // A configured join secret wins.
        let configured = CoordinatorConfig {
            join_secret: "configured-join-secret-0123".into(),
            ..c.clone()
        };
        assert_eq!(
            load(&store, &configured, true)
                .await
                .unwrap()
                .join_secret
                .as_deref(),
            Some("configured-join-secret-0123")
        );
        // The database names both keys, without holding them.
        let file = SecretsFile::read(&p).unwrap().unwrap();
        let prints = store.secret_fingerprints().await.unwrap();
        let names: Vec<&str> = prints.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [SEAL_KEY, TOKEN_KEY]);
        let bytes = db_bytes(&c);
        for k in [
            file.token_key().unwrap().as_bytes().to_vec(),
            file.s3_seal_key().unwrap(),
        ] {
            assert!(!bytes.windows(32).any(|w| w == k));
        }
    }

    #[tokio::test]
    async fn a_missing_or_foreign_secrets_file_is_refused_and_the_right_one_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(&dir.path().join("coord"));
        let store = open(&c);
        load(&store, &c, true).await.unwrap();
        let p = path(&c);
        let good = SecretsFile::read(&p).unwrap().unwrap();
        let (id, secret) = add_key(&store, &good.s3_seal_key().unwrap()).await;

        std::fs::remove_file(&p).unwrap();
        let e = refusal(&store, &c).await;
        assert!(
            e.contains("secrets file is missing")
                && e.contains("restore")
                && e.contains(&*p.to_string_lossy()),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(!p.exists(), "a new file was made");

        // Another cluster's file, or one key replaced: refused, naming the key.
        let other = dir.path().join("other");
        let oc = cfg(&other);
        load(&open(&oc), &oc, false).await.unwrap();
        std::fs::copy(path(&oc), &p).unwrap();
        let e = refusal(&store, &c).await;
        assert!(e.contains("is not the one the database"), "{e}");
        let mut edited = good.clone();
        edited.s3_seal_key = hex::encode(SealKey::generate());
        edited.write(&p).unwrap();
        assert!(refusal(&store, &c).await.contains("its s3_seal_key is not"));
        let mut edited = good.clone();
        edited.token_key.clear();
        edited.write(&p).unwrap();
        assert!(refusal(&store, &c).await.contains("its token_key is not"));

        // The right one back: it starts, and the S3 secret opens.
        good.write(&p).unwrap();
        let s = load(&store, &c, true).await.unwrap();
        assert_eq!(
            s.s3_seal.open(&id, &sealed_of(&store, &id).await).unwrap(),
            secret
        );
        // The join secret is not a key the database depends on: it may change.
        let mut joined = good.clone();
        joined.join_secret = "another-join-secret-0123456789".into();
        joined.write(&p).unwrap();
        load(&store, &c, true).await.unwrap();
    }

    #[tokio::test]
    async fn keys_in_an_old_database_are_replaced_and_leave_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(&dir.path().join("coord"));
        let store = open(&c);
        let (token, seal) = ([0xA5u8; 32], [0x5Au8; 32]);
        let (id, secret) = add_key(&store, &seal).await;
        let before = sealed_of(&store, &id).await;
        put_legacy(&store, &token, &seal);
        let s = load(&store, &c, false).await.unwrap();
        // New keys; the S3 secret re-sealed under the new seal key only.
        assert_ne!(s.token_key.as_bytes(), &token);
        let file = SecretsFile::read(&path(&c)).unwrap().unwrap();
        assert_ne!(file.s3_seal_key().unwrap(), seal);
        assert_eq!(file.previous_s3_seal_key, None);
        let after = sealed_of(&store, &id).await;
        assert_eq!(s.s3_seal.open(&id, &after).unwrap(), secret);
        let old = SealKey::from_bytes(&seal).unwrap();
        assert!(old.open(&id, &after).is_err());
        assert!(store.legacy_cluster_secrets().await.unwrap().is_empty());
        let bytes = db_bytes(&c);
        for gone in [&token[..], &seal[..], &before[..]] {
            assert!(
                !bytes.windows(gone.len()).any(|w| w == gone),
                "old bytes left behind"
            );
        }
        // The next start keeps the new keys.
        let again = load(&store, &c, false).await.unwrap();
        assert_eq!(again.token_key.as_bytes(), s.token_key.as_bytes());

        // Both places holding different values, with no rotation under way: refused.
        store.insert_legacy_secret(TOKEN_KEY, &[1u8; 32]);
        let e = refusal(&store, &c).await;
        assert!(e.contains("differs"), "{e}");
    }

    #[tokio::test]
    async fn a_copy_left_by_an_interrupted_move_is_rotated_too() {
        // The file already holds the database's keys (an earlier version copied them and
        // stopped before erasing the rows): they are as exposed as the rows.
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(&dir.path().join("coord"));
        let store = open(&c);
        let (token, seal) = ([3u8; 32], [4u8; 32]);
        let (id, secret) = add_key(&store, &seal).await;
        put_legacy(&store, &token, &seal);
        SecretsFile {
            token_key: hex::encode(token),
            s3_seal_key: hex::encode(seal),
            join_secret: "kept-join-secret-0123456789".into(),
            previous_s3_seal_key: None,
        }
        .write(&path(&c))
        .unwrap();
        let s = load(&store, &c, false).await.unwrap();
        assert_ne!(s.token_key.as_bytes(), &token);
        assert_eq!(
            s.s3_seal.open(&id, &sealed_of(&store, &id).await).unwrap(),
            secret
        );
        let file = SecretsFile::read(&path(&c)).unwrap().unwrap();
        assert_eq!(file.join_secret, "kept-join-secret-0123456789");
    }

    #[tokio::test]
    async fn a_rotation_resumes_after_a_crash_at_each_step() {
        let dir = tempfile::tempdir().unwrap();
        let (token, seal) = ([7u8; 32], [8u8; 32]);

        // Crash after step 1: the file has the new keys and the old seal key, the
        // database is untouched. The restart keeps those new keys and finishes.
        let c = cfg(&dir.path().join("after-1"));
        let store = open(&c);
        let (id, secret) = add_key(&store, &seal).await;
        put_legacy(&store, &token, &seal);
        let (new_token, new_seal) = (TokenKey::generate(), SealKey::generate());
        let step1 = SecretsFile {
            token_key: hex::encode(new_token.as_bytes()),
            s3_seal_key: hex::encode(&new_seal),
            join_secret: String::new(),
            previous_s3_seal_key: Some(hex::encode(seal)),
        };
        step1.write(&path(&c)).unwrap();
        let s = load(&store, &c, false).await.unwrap();
        assert_eq!(s.token_key.as_bytes(), new_token.as_bytes());
        assert_eq!(
            s.s3_seal.open(&id, &sealed_of(&store, &id).await).unwrap(),
            secret
        );
        let file = SecretsFile::read(&path(&c)).unwrap().unwrap();
        assert_eq!(file.previous_s3_seal_key, None);
        assert_eq!(file.s3_seal_key, hex::encode(&new_seal));

        // Crash after step 2: the database is on the new keys, the file still names
        // the old seal key. The restart drops it and changes nothing else.
        let c = cfg(&dir.path().join("after-2"));
        let store = open(&c);
        let (id, secret) = add_key(&store, &seal).await;
        put_legacy(&store, &token, &seal);
        step1.write(&path(&c)).unwrap();
        let new = SealKey::from_bytes(&new_seal).unwrap();
        let old = SealKey::from_bytes(&seal).unwrap();
        let prints = step1.fingerprints().unwrap();
        store
            .rotate_cluster_secrets(
                &mut |id, blob| old.open(id, blob).ok().map(|s| new.seal(id, &s)),
                &prints,
            )
            .await
            .unwrap();
        let s = load(&store, &c, false).await.unwrap();
        assert_eq!(s.token_key.as_bytes(), new_token.as_bytes());
        assert_eq!(
            s.s3_seal.open(&id, &sealed_of(&store, &id).await).unwrap(),
            secret
        );
        assert_eq!(
            SecretsFile::read(&path(&c))
                .unwrap()
                .unwrap()
                .previous_s3_seal_key,
            None
        );

        // A file recording a rotation of other keys than the database's: refused.
        let c = cfg(&dir.path().join("foreign"));
        let store = open(&c);
        put_legacy(&store, &token, &seal);
        SecretsFile {
            previous_s3_seal_key: Some(hex::encode([9u8; 32])),
            ..step1.clone()
        }
        .write(&path(&c))
        .unwrap();
        assert!(refusal(&store, &c).await.contains("differs"));
    }
}
