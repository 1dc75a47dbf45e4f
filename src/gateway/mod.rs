//! The S3-compatible gateway (`dfsd gateway`, issue 7): the S3 REST API over the dfsd
//! namespace, one bucket per top-level directory.
//!
//! | file | what it does |
//! |---|---|
//! | `mod.rs` | start-up: TLS material, the coordinator client, the S3 service |
//! | [`serve`] | the HTTP(S) server loop (hyper, one task per connection), every wait bounded |
//! | [`auth`] | S3 credentials: dfsd access keys whose secrets the coordinator hands out |
//! | [`front`] | around s3s: request ids, presigned-URL expiry, CORS preflight and headers |
//! | [`response`] | S3 error responses built before s3s sees a request |
//! | [`s3`] | the S3 handlers: check the caller, call one function, wrap the answer |
//! | [`state`] | `DfsS3`, the client acting for the caller, bucket and object lookups |
//! | [`mapping`] | bucket and key names to dfsd paths, SDK errors to S3 errors |
//! | [`body`] | request and response bodies: limits, checked puts, drains, downloads |
//! | [`digest`] | MD5 ETags, Content-MD5, `x-amz-checksum-*`, the multipart ETag |
//! | [`conditions`] | conditional reads; conditional writes and deletes as coordinator CAS |
//! | [`objects`] | Get/Head/PutObject (stored headers, partNumber), GetObjectAttributes |
//! | [`copy`] | CopyObject (chunks shared, no bytes moved), copy sources |
//! | [`delete`] | DeleteObject(s) with their conditions |
//! | [`list`] | ListObjects as an ordered walk of a bucket's directories |
//! | [`listing`] | ListObjects answers in S3's shapes |
//! | [`headers`] | stored headers and verified checksums kept with an object |
//! | [`parts`] | part layout of multipart objects |
//! | [`markers`] | directory markers (`key/`) |
//! | [`multipart`] | multipart uploads in the namespace: create, abort, list |
//! | [`upload_part`] | UploadPart, UploadPartCopy |
//! | [`complete`] | CompleteMultipartUpload as one Compose |
//! | [`buckets`] | Create/Delete/ListBuckets, location, CORS configuration |
//! | [`acl`] | owners, canned ACLs, anonymous reads of public-read buckets |
//! | [`cors`] | CORS rules, preflight and response headers |
//!
//! The gateway is stateless: s3s parses requests and checks SigV4 signatures against the
//! secrets [`auth::S3Keys`] fetches from the coordinator (GetS3Credential, for gateway
//! certificates only); [`state::DfsS3`] then calls the coordinator and datanodes through
//! [`crate::client::Client`]. The S3 port serves HTTPS unless plain HTTP is chosen
//! explicitly. Several gateways may serve the same cluster side by side.

pub mod acl;
pub mod auth;
pub mod body;
pub mod buckets;
pub mod complete;
pub mod conditions;
pub mod copy;
pub mod cors;
pub mod delete;
pub mod digest;
pub mod front;
pub mod headers;
pub mod list;
pub mod listing;
pub mod mapping;
pub mod markers;
pub mod multipart;
pub mod objects;
pub mod parts;
pub mod response;
pub mod s3;
pub mod serve;
pub mod state;
pub mod upload_part;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio_rustls::{rustls, TlsAcceptor};

use crate::client::{Client, ClientError};
use crate::config::Config;
use crate::security::Tls;

/// A well-formed key id no key has: asked for at start-up to learn whether the
/// coordinator lets this gateway read S3 secrets.
const PROBE_KEY_ID: &str = "DK000000000000000000";

/// Serves S3 on `listener` until `shutdown` resolves. `tls` is the cluster TLS material
/// (`None`: plaintext was chosen).
pub async fn run(
    listener: TcpListener,
    cfg: &Config,
    tls: Option<&Tls>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let acceptor = s3_tls(cfg)?;
    let mut client_cfg = cfg.client.clone();
    if !cfg.gateway.access_key.is_empty() {
        client_cfg.access_key = cfg.gateway.access_key.clone();
        client_cfg.secret_key = cfg.gateway.secret_key.clone();
    }
    let client = Client::connect(&client_cfg, tls).context("prepare the coordinator client")?;
    check_access(&client, &client_cfg.coordinator, tls.is_some()).await?;
    let keys = auth::S3Keys::new(client.clone(), cfg.gateway.key_cache_ttl);
    let service = {
        let mut b = S3ServiceBuilder::new(state::DfsS3 {
            client: client.clone(),
            keys: keys.clone(),
            region: cfg.gateway.region.clone(),
        });
        b.set_auth(keys);
        b.set_access(acl::AnonymousAccess);
        front::Front::new(b.build(), client)
    };
    let addr = listener.local_addr()?;
    if acceptor.is_none() {
        tracing::warn!(
            "the S3 endpoint serves plain HTTP: SigV4 authenticates requests but does not \
             encrypt them; put a TLS proxy in front beyond a trusted network"
        );
    }
    tracing::info!(
        listen = %addr,
        https = acceptor.is_some(),
        coordinator = %client_cfg.coordinator,
        "S3 gateway serving"
    );

    let admin = crate::admin_http::bind(&cfg.gateway.admin_listen)
        .await?
        .map(|l| crate::admin_http::spawn(l, axum::Router::new(), crate::admin_http::no_refresh()));
    serve::serve(listener, &cfg.gateway, acceptor, service, shutdown).await;
    if let Some(a) = admin {
        a.abort();
    }
    Ok(())
}

/// Whether the coordinator lets this gateway read S3 secrets, asked for a key id nobody
/// has: "no such key" means yes. A refusal stops the gateway with the reason; an
/// unreachable coordinator does not (stateless: requests get ServiceUnavailable until it
/// answers).
async fn check_access(client: &Client, coordinator: &str, tls: bool) -> anyhow::Result<()> {
    let Err(e) = client.s3_credential(PROBE_KEY_ID).await else {
        return Ok(());
    };
    match e {
        ClientError::NotFound(_) => Ok(()),
        ClientError::PermissionDenied(_) | ClientError::NotAuthenticated(_) => {
            let fix = if tls {
                "tls.cert and tls.key must be a gateway certificate"
            } else {
                "without TLS the gateway needs an admin key (gateway.access_key and secret_key)"
            };
            anyhow::bail!("the coordinator refuses this gateway S3 credentials ({e}); {fix}")
        }
        _ => {
            tracing::warn!(coordinator = %coordinator, error = %e, "coordinator not reachable yet");
            Ok(())
        }
    }
}

/// HTTPS material for the S3 port, or `None` for plain HTTP (docs/decisions.md, S3 gateway):
/// `gateway.tls_cert` if set; else plain HTTP if chosen (`gateway.plaintext_s3`, or a
/// plaintext cluster); else the gateway's cluster certificate (`tls.cert`).
fn s3_tls(cfg: &Config) -> anyhow::Result<Option<TlsAcceptor>> {
    let g = &cfg.gateway;
    let (cert, key, setting) = if !g.tls_cert.is_empty() {
        (&g.tls_cert, &g.tls_key, "gateway.tls_cert")
    } else if g.plaintext_s3 || cfg.tls.plaintext {
        return Ok(None);
    } else if !cfg.tls.cert.is_empty() {
        (&cfg.tls.cert, &cfg.tls.key, "tls.cert")
    } else {
        anyhow::bail!(
            "the S3 port has no certificate: set tls.cert and tls.key to a gateway certificate \
             (`dfsd cert issue --gateway NAME --san HOST`), or gateway.tls_cert and \
             gateway.tls_key, or choose plain HTTP with --plaintext-s3"
        );
    };
    let certs = CertificateDer::pem_file_iter(Path::new(cert))
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("config: {setting}: read certificates from {cert}"))?;
    let key = PrivateKeyDer::from_pem_file(Path::new(key))
        .with_context(|| format!("config: {setting}: read the private key {key}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("S3 TLS settings")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| format!("config: {setting}: certificate and key do not go together"))?;
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(sc))))
}
