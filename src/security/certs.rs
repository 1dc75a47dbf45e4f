//! `dfsd cert init` and `dfsd cert issue`: a cluster CA and the certificates it signs.
//!
//! A certificate's role is a DNS name in its subject alternative names (see
//! [`Role::dns_name`]): peers are checked against the role they must have, never against
//! their address, so a node can move without a new certificate. Extra names (`--san`) can
//! be added for tools that check addresses, such as the host name S3 clients dial to reach
//! a gateway.
//!
//! Everything written is private (files 0600, a new directory 0700) but `ca.pem`: the CA
//! certificate is the trust anchor every client is handed, holds no secret, and must be
//! readable by users other than the one who made it (the Docker recipe makes it as the
//! image's user). Each certificate's SHA-256 fingerprint (of its DER) is printed, as
//! `dfsd cert revoke` takes it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::files::{create_new_private, create_private_dir_all};
use super::Role;

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const CA_NAME: &str = "dfsd cluster CA";

/// What `cert init` or `cert issue` wrote.
#[derive(Debug)]
pub struct Written {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// SHA-256 of the certificate's DER, hex (what `dfsd cert revoke --fingerprint` takes).
    pub fingerprint: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
}

/// How long a certificate `dfsd cert issue` makes is valid unless told otherwise. Gateway
/// and client certificates live on more hosts and in more hands (S3 front ends, laptops,
/// scripts), so they expire sooner; members' certificates are replaced less easily (a
/// restart of every node), and revocation covers a leaked one.
pub fn default_validity(role: Role) -> Duration {
    const DAY: u64 = 86_400;
    match role {
        Role::Gateway | Role::Client => Duration::from_secs(90 * DAY),
        Role::Coordinator | Role::Node => Duration::from_secs(5 * 365 * DAY),
    }
}

/// Creates a CA key and self-signed certificate in `dir` (refusing to overwrite one).
pub fn init_ca(dir: &Path, years: u32) -> anyhow::Result<Written> {
    create_private_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    if cert_path.exists() || key_path.exists() {
        bail!(
            "{} already holds a CA ({CA_CERT} / {CA_KEY}); remove them first to start over",
            dir.display()
        );
    }
    let key = KeyPair::generate().context("generate CA key")?;
    let mut params = ca_params();
    params.not_after = rcgen::date_time_ymd(this_year() + years as i32, 1, 1);
    let not_after = params.not_after;
    let cert = params.self_signed(&key).context("sign CA certificate")?;
    write_private(&key_path, &key.serialize_pem())?;
    write_new(&cert_path, &cert.pem(), 0o644)?;
    Ok(written(cert_path, key_path, cert.der(), not_after))
}

fn written(cert: PathBuf, key: PathBuf, der: &[u8], not_after: time::OffsetDateTime) -> Written {
    Written {
        cert,
        key,
        fingerprint: hex::encode(super::revoke::fingerprint(der)),
        not_after: crate::units::rfc3339_ms(not_after.unix_timestamp().saturating_mul(1000)),
    }
}

/// Issues a certificate for `role` named `name`, signed by the CA in `dir`, written as
/// `<name>.pem` and `<name>.key` in `dir`, valid until January 1st `years` from now.
pub fn issue(
    dir: &Path,
    role: Role,
    name: &str,
    extra_sans: &[String],
    years: u32,
) -> anyhow::Result<Written> {
    let until = rcgen::date_time_ymd(this_year() + years as i32, 1, 1);
    issue_until(dir, role, name, extra_sans, until)
}

/// [`issue`], valid for `validity` from now (e.g. [`default_validity`]).
pub fn issue_for(
    dir: &Path,
    role: Role,
    name: &str,
    extra_sans: &[String],
    validity: Duration,
) -> anyhow::Result<Written> {
    let validity = time::Duration::try_from(validity).context("validity out of range")?;
    let until = time::OffsetDateTime::now_utc()
        .checked_add(validity)
        .context("validity out of range")?;
    issue_until(dir, role, name, extra_sans, until)
}

fn issue_until(
    dir: &Path,
    role: Role,
    name: &str,
    extra_sans: &[String],
    not_after: time::OffsetDateTime,
) -> anyhow::Result<Written> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        || name.starts_with('.')
    {
        bail!(
            "certificate name {name:?}: expected 1 to 64 of [A-Za-z0-9._-], not starting with '.'"
        );
    }
    if name == "ca" {
        bail!("certificate name \"ca\" is taken by the CA itself");
    }
    let ca_key_pem = std::fs::read_to_string(dir.join(CA_KEY)).with_context(|| {
        format!(
            "read the CA key {} (run `dfsd cert init --dir {}` first)",
            dir.join(CA_KEY).display(),
            dir.display()
        )
    })?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).context("parse the CA key")?;
    // The issuer is the CA's name and key: a certificate signed with them chains to the
    // ca.pem written by `init_ca`.
    let issuer = Issuer::new(ca_params(), ca_key);

    let (cert_path, key_path) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    if cert_path.exists() || key_path.exists() {
        bail!("{} already exists; pick another name", cert_path.display());
    }
    let mut sans = vec![role.dns_name().to_string()];
    for san in extra_sans {
        let ok = !san.is_empty()
            && san.len() <= 253
            && san
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.*:".contains(&b));
        if !ok {
            bail!("--san {san:?}: expected a DNS name or an IP address");
        }
        // Role names are given by the role alone: one certificate, one role.
        if san.to_ascii_lowercase().ends_with(".dfsd.internal") {
            bail!("--san {san:?}: names under dfsd.internal mark roles and cannot be added");
        }
        sans.push(san.clone());
    }
    // rcgen makes names that parse as IP addresses IP SANs, the rest DNS names.
    let mut params = CertificateParams::new(sans).context("subject alternative names")?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationalUnitName, role.as_str());
    params.distinguished_name = dn;
    params.not_after = not_after;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match role {
        // Clients only ever connect; members both serve and connect to each other, and a
        // gateway connects to the cluster and serves S3.
        Role::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        _ => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().context("generate key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("sign certificate")?;
    write_private(&key_path, &key.serialize_pem())?;
    write_private(&cert_path, &cert.pem())?;
    Ok(written(cert_path, key_path, cert.der(), not_after))
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Writes a new file readable by its owner only.
fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    write_new(path, pem, super::files::FILE_MODE)
}

/// Writes a new file with `mode` (set explicitly: the umask does not apply).
fn write_new(path: &Path, pem: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mut f = create_new_private(path).with_context(|| format!("create {}", path.display()))?;
    if mode != super::files::FILE_MODE {
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    f.write_all(pem.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("write {}", path.display()))
}

/// The current year (UTC), near enough for an expiry date given in years.
fn this_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + (secs / 31_556_952) as i32
}
