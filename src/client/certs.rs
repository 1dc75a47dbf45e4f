//! Certificate revocation, the SDK calls (admin key needed; the coordinator keeps the
//! deny-list). `dfsd cert revoke` / `dfsd cert revoked` print them (`cli::certs`).

use super::{Client, Result};
use crate::model::RevokedCert;
use crate::proto::pb;

impl Client {
    /// Puts a certificate on the deny-list, given as DER or by fingerprint. Returns the
    /// record and whether it was revoked already.
    pub async fn revoke_certificate(
        &self,
        certificate: Option<Vec<u8>>,
        fingerprint: &str,
        note: &str,
    ) -> Result<(RevokedCert, bool)> {
        let r = self
            .coordinator
            .clone()
            .revoke_certificate(self.request(pb::RevokeCertificateRequest {
                fingerprint: fingerprint.to_string(),
                certificate: certificate.unwrap_or_default().into(),
                note: note.to_string(),
            }))
            .await
            .map_err(|s| self.coord_err(s))?
            .into_inner();
        let cert = Self::required(r.cert, "RevokeCertificateResponse")?;
        Ok((cert.into(), r.already))
    }

    /// The deny-list, oldest revocation first.
    pub async fn revoked_certificates(&self) -> Result<Vec<RevokedCert>> {
        let r = self
            .coordinator
            .clone()
            .list_revoked_certificates(self.request(pb::ListRevokedCertificatesRequest {}))
            .await
            .map_err(|s| self.coord_err(s))?;
        Ok(r.into_inner().certs.into_iter().map(Into::into).collect())
    }
}
