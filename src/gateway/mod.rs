//! The S3-compatible gateway (`dfsd gateway`, issue 7): the S3 REST API over the dfsd
//! namespace, one bucket per top-level directory.
//!
//! | file | what it does |
//! |---|---|
//! | `mod.rs` | start-up and the HTTP server loop (hyper, one task per connection) |
//! | [`auth`] | S3 credentials: dfsd access keys whose secrets the coordinator hands out |
//! | [`s3`] | the S3 operations, as calls on the client SDK |
//! | [`mapping`] | bucket and key names to dfsd paths, SDK errors to S3 errors |
//! | [`list`] | ListObjects as an ordered walk of a bucket's directories |
//!
//! The gateway is stateless: s3s parses requests and checks SigV4 signatures against the
//! secrets [`auth::S3Keys`] fetches from the coordinator (GetS3Credential, for gateway
//! certificates only); [`s3::DfsS3`] then calls the coordinator and datanodes through
//! [`crate::client::Client`]. Several gateways may serve the same cluster side by side.

pub mod auth;
pub mod list;
pub mod mapping;
pub mod s3;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tonic::Code;

use crate::client::Client;
use crate::config::Config;
use crate::security::Tls;

/// How long open connections get to finish when the gateway shuts down.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A well-formed key id no key has: asked for at start-up to learn whether the
/// coordinator lets this gateway read S3 secrets.
const PROBE_KEY_ID: &str = "DK000000000000000000";

/// Serves S3 on `listener` until `shutdown` resolves. `tls` is the cluster TLS material
/// (`None`: plaintext).
pub async fn run(
    listener: TcpListener,
    cfg: &Config,
    tls: Option<&Tls>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut client_cfg = cfg.client.clone();
    if !cfg.gateway.access_key.is_empty() {
        client_cfg.access_key = cfg.gateway.access_key.clone();
        client_cfg.secret_key = cfg.gateway.secret_key.clone();
    }
    let client = Client::connect(&client_cfg, tls).context("prepare the coordinator client")?;
    check_access(&client, &client_cfg.coordinator, tls.is_some()).await?;
    let keys = auth::S3Keys::new(client.clone(), cfg.gateway.key_cache_ttl);
    let service = {
        let mut b = S3ServiceBuilder::new(s3::DfsS3 {
            client,
            keys: keys.clone(),
        });
        b.set_auth(keys);
        b.build()
    };
    let addr = listener.local_addr()?;
    tracing::warn!(
        "the S3 endpoint serves plain HTTP: SigV4 authenticates requests but does not \
         encrypt them; put a TLS proxy in front beyond a trusted network"
    );
    tracing::info!(listen = %addr, coordinator = %client_cfg.coordinator, "S3 gateway serving");

    let http = ConnBuilder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn = http.serve_connection(TokioIo::new(stream), service.clone());
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
        }
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
    match e.code() {
        Some(Code::NotFound) => Ok(()),
        Some(Code::PermissionDenied | Code::Unauthenticated) => {
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
