//! `dfsd cert init` and `dfsd cert issue`: a cluster CA and the certificates it signs.
//!
//! A certificate's role is a DNS name in its subject alternative names (see
//! [`Role::dns_name`]): peers are checked against the role they must have, never against
//! their address, so a node can move without a new certificate. Extra names (`--san`) can
//! be added for tools that check addresses, such as the host name S3 clients dial to reach
//! a gateway.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::Role;

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const CA_NAME: &str = "dfsd cluster CA";

/// What `cert init` or `cert issue` wrote.
#[derive(Debug)]
pub struct Written {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Creates a CA key and self-signed certificate in `dir` (refusing to overwrite one).
pub fn init_ca(dir: &Path, years: u32) -> anyhow::Result<Written> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
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
    let cert = params.self_signed(&key).context("sign CA certificate")?;
    write_private(&key_path, &key.serialize_pem())?;
    std::fs::write(&cert_path, cert.pem())
        .with_context(|| format!("write {}", cert_path.display()))?;
    Ok(Written {
        cert: cert_path,
        key: key_path,
    })
}

/// Issues a certificate for `role` named `name`, signed by the CA in `dir`, written as
/// `<name>.pem` and `<name>.key` in `dir`.
pub fn issue(
    dir: &Path,
    role: Role,
    name: &str,
    extra_sans: &[String],
    years: u32,
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
    params.not_after = rcgen::date_time_ymd(this_year() + years as i32, 1, 1);
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
    std::fs::write(&cert_path, cert.pem())
        .with_context(|| format!("write {}", cert_path.display()))?;
    Ok(Written {
        cert: cert_path,
        key: key_path,
    })
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

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
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
