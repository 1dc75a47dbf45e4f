//! The client SDK: namespace operations, uploads (`upload.rs`) and downloads
//! (`download.rs`) against a dfsd cluster, with their progress as events (`progress.rs`).
//! The CLI (`crate::cli`) and the S3 gateway sit on top.
//!
//! The public API speaks domain types only: paths are [`DfsPath`]s (or strings parsed
//! strictly, see [`ToDfsPath`]), answers are `crate::model` types decoded by
//! `crate::proto::convert`. Protobuf messages stay inside this module's calls.

pub mod certs;
mod download;
pub mod events;
mod progress;
mod routes;
mod session;
mod upload;

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

pub use crate::path::{DfsPath, ToDfsPath};
pub use download::{GetReport, ReadRange};
pub use progress::{OnProgress, Progress};
pub use upload::{PutOptions, PutReport};

use crate::config::{endpoint_uri, ClientConfig};
use crate::model::{
    BucketRecord, BucketUpdate, ClusterStatus, ComposeRequest, Entry, FsckReport, KeyInfo,
    MkdirOptions, NodeId, NodeInfo, S3Credential,
};
use crate::net::{channel, ChannelCache, MAX_MESSAGE_BYTES};
use crate::path::PathError;
use crate::proto::convert::{mkdir_request, Malformed};
use crate::proto::pb;
use crate::security::keys::KeyRole;
use crate::security::keys::{KEY_ID_HEADER, ON_BEHALF_HEADER, SECRET_HEADER};
use crate::security::{Role, Tls};
use crate::wire_error::{failure, Failure, Reason, TransportCause};

/// Why an SDK call failed. Refusals a server sent are told apart by the machine-readable
/// reason on the wire ([`crate::wire_error::Reason`]), never by their message text; each
/// message names the path, node or value that was wrong and reads as one line.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No such path (or key, node, bucket, chunk).
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// A compare-and-swap lost: the version of `path` is not the one the caller expected
    /// (an expected version, an S3 conditional write; for a compose, `path` is the
    /// destination or the source that moved).
    #[error("{message}")]
    VersionMismatch { path: String, message: String },
    /// Fewer durable replicas than the write quorum: on record at the coordinator at
    /// commit time, or written by this client.
    #[error("{0}")]
    QuorumNotMet(String),
    /// The coordinator does not know the upload (expired, swept, or it restarted).
    #[error("{0}")]
    UploadGone(String),
    #[error("{0}")]
    NotADirectory(String),
    #[error("{0}")]
    IsADirectory(String),
    #[error("{0}")]
    NotEmpty(String),
    /// The caller's key may not do this (role, prefix).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The caller could not be identified (no, unknown, wrong or revoked credentials).
    #[error("not authenticated: {0}")]
    NotAuthenticated(String),
    /// A server refused the request itself as malformed or out of bounds.
    #[error("{0}")]
    Rejected(String),
    /// A per-key or cluster limit refused the call.
    #[error("{0}")]
    LimitExceeded(String),
    /// The cluster cannot serve the call now (safe mode, too few nodes): retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The cluster's state does not allow the call (other than the cases above).
    #[error("{0}")]
    Precondition(String),
    /// Something changed underneath the call (the file moved on mid-read): start again.
    #[error("{0}")]
    Aborted(String),
    /// A server failed; its log says why.
    #[error("{0}")]
    Server(String),
    /// No answer: the connection could not be made or broke, or the deadline passed.
    #[error("cannot reach {what} at {addr}: {reason}")]
    Unreachable {
        what: &'static str,
        addr: String,
        reason: String,
    },
    #[error(transparent)]
    InvalidPath(#[from] PathError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Bytes did not match their chunk id, or a file did not match its recorded size.
    #[error("{0}")]
    Integrity(String),
    /// The caller's own request is unusable before anything is sent.
    #[error("{0}")]
    Invalid(String),
    /// A server's answer did not make a domain value (a required field missing, a path or
    /// node id out of shape): client and server disagree about the protocol.
    #[error(transparent)]
    Malformed(#[from] Malformed),
    /// The caller's own check before a commit (see [`Client::put_with`]) refused it.
    #[error("{0}")]
    Refused(String),
}

impl ClientError {
    /// Turns a failed call's status into an error. Transport failures name the peer that
    /// could not be reached.
    fn from_status(status: Status, what: &'static str, addr: &str) -> ClientError {
        ClientError::from_failure(failure(&status), what, addr)
    }

    fn from_failure(f: Failure, what: &'static str, addr: &str) -> ClientError {
        let (reason, subject, message) = match f {
            Failure::Transport { detail, .. } => {
                return ClientError::Unreachable {
                    what,
                    addr: addr.to_string(),
                    reason: detail,
                }
            }
            Failure::Refused {
                reason,
                subject,
                message,
            } => (reason, subject, message),
        };
        match reason {
            Reason::NotFound => ClientError::NotFound(message),
            Reason::AlreadyExists => ClientError::AlreadyExists(message),
            Reason::VersionMismatch => ClientError::VersionMismatch {
                path: subject,
                message,
            },
            Reason::QuorumNotMet => ClientError::QuorumNotMet(message),
            Reason::UploadUnknown => ClientError::UploadGone(message),
            Reason::NotADirectory => ClientError::NotADirectory(message),
            Reason::IsADirectory => ClientError::IsADirectory(message),
            Reason::NotEmpty => ClientError::NotEmpty(message),
            Reason::PermissionDenied => ClientError::PermissionDenied(message),
            Reason::NotAuthenticated => ClientError::NotAuthenticated(message),
            Reason::InvalidArgument => ClientError::Rejected(message),
            Reason::Integrity => ClientError::Integrity(message),
            Reason::LimitExceeded => ClientError::LimitExceeded(message),
            Reason::Unavailable => ClientError::Unavailable(message),
            Reason::Precondition => ClientError::Precondition(message),
            Reason::Aborted => ClientError::Aborted(message),
            Reason::Internal | Reason::Unspecified => ClientError::Server(message),
        }
    }

    /// True when the peer could not be reached or said it cannot serve: its cached
    /// connection is worth dropping.
    fn peer_gone(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::Unavailable(_)
        )
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A connection to a dfsd cluster. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    coordinator: pb::coordinator_client::CoordinatorClient<Channel>,
    coordinator_addr: String,
    peers: ChannelCache,
    /// Which address of a datanode with a public one this client dials.
    routes: routes::Routes,
    cfg: ClientConfig,
    /// Access key id and secret, sent with every coordinator call.
    credentials: Option<(MetadataValue<Ascii>, MetadataValue<Ascii>)>,
    /// The key this client acts for (`on_behalf_of`), sent with every coordinator call.
    on_behalf_of: Option<MetadataValue<Ascii>>,
    /// Whether connections use TLS.
    tls: bool,
}

impl Client {
    /// Prepares a plaintext client; the connection is made on the first call.
    pub fn new(cfg: &ClientConfig) -> Result<Client> {
        Self::connect(cfg, None)
    }

    /// Prepares a client, over TLS when `tls` is given (the `[tls]` settings).
    pub fn connect(cfg: &ClientConfig, tls: Option<&Tls>) -> Result<Client> {
        let mut addr = endpoint_uri(&cfg.coordinator);
        if tls.is_some() {
            if let Some(rest) = addr.strip_prefix("http://") {
                addr = format!("https://{rest}");
            }
        }
        let ch = channel(
            &addr,
            cfg.connect_timeout,
            tls.map(|t| t.client(Role::Coordinator)),
        )
        .map_err(|s| ClientError::Invalid(format!("coordinator address: {}", s.message())))?;
        let credentials = if cfg.access_key.is_empty() && cfg.secret_key.is_empty() {
            None
        } else {
            let bad =
                |what: &str| ClientError::Invalid(format!("{what}: not a valid metadata value"));
            Some((
                MetadataValue::try_from(cfg.access_key.as_str()).map_err(|_| bad("access key"))?,
                MetadataValue::try_from(cfg.secret_key.as_str()).map_err(|_| bad("secret key"))?,
            ))
        };
        Ok(Client {
            coordinator: pb::coordinator_client::CoordinatorClient::new(ch)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            coordinator_addr: addr,
            peers: ChannelCache::new(cfg.connect_timeout, tls),
            routes: routes::Routes::default(),
            cfg: cfg.clone(),
            credentials,
            on_behalf_of: None,
            tls: tls.is_some(),
        })
    }

    /// The same client acting for the access key `key_id` (an S3 gateway, for the key that
    /// signed an S3 request): every coordinator call carries `x-dfsd-on-behalf-of`, and the
    /// coordinator applies that key's role and prefix, refusing the call once the key is
    /// revoked. It honours the header only from a gateway certificate or, without TLS,
    /// with an admin key. Cheap: the clone shares the connections.
    pub fn on_behalf_of(&self, key_id: &str) -> Client {
        // An id that cannot be a header value is sent as one no key has, so the calls are
        // refused rather than made with this client's own permissions.
        let v = MetadataValue::try_from(key_id).unwrap_or(MetadataValue::from_static("-"));
        Client {
            on_behalf_of: Some(v),
            ..self.clone()
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// A coordinator call: the deadline and the credentials.
    fn request<T>(&self, msg: T) -> Request<T> {
        let mut r = self.request_untimed(msg);
        r.set_timeout(self.cfg.request_timeout);
        r
    }

    /// A coordinator call without a deadline (a followed stream): the credentials and the
    /// request id.
    fn request_untimed<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some((id, secret)) = &self.credentials {
            r.metadata_mut().insert(KEY_ID_HEADER, id.clone());
            r.metadata_mut().insert(SECRET_HEADER, secret.clone());
        }
        if let Some(key) = &self.on_behalf_of {
            r.metadata_mut().insert(ON_BEHALF_HEADER, key.clone());
        }
        crate::grpc_layer::tag(&mut r);
        r
    }

    fn coord_err(&self, s: Status) -> ClientError {
        let f = failure(&s);
        // A plaintext client talking to a TLS server sees only a broken HTTP/2 exchange
        // (neither a refused connection nor a timeout): say what it most likely means.
        let garbled = !self.tls
            && matches!(
                f,
                Failure::Transport {
                    cause: TransportCause::Broken,
                    ..
                }
            );
        match ClientError::from_failure(f, "coordinator", &self.coordinator_addr) {
            ClientError::Unreachable { what, addr, reason } if garbled => {
                ClientError::Unreachable {
                    what,
                    addr,
                    reason: format!(
                        "{reason} (does it use TLS? set DFSD_TLS__CA to the cluster CA certificate)"
                    ),
                }
            }
            e => e,
        }
    }

    fn datanode(&self, addr: &str) -> Result<pb::datanode_client::DatanodeClient<Channel>> {
        let ch = self
            .peers
            .get(addr)
            .map_err(|s| ClientError::Invalid(s.message().to_string()))?;
        Ok(pb::datanode_client::DatanodeClient::new(ch)
            .max_decoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// A client for datanode `node`, at the address this client can reach it at (see
    /// `routes.rs`), and that address.
    async fn datanode_at(
        &self,
        node: &pb::NodeAddr,
    ) -> Result<(pb::datanode_client::DatanodeClient<Channel>, String)> {
        let addr = self
            .routes
            .pick(&node.addr, &node.public_addr, self.cfg.connect_timeout)
            .await;
        Ok((self.datanode(&addr)?, addr))
    }

    /// A field a well-formed answer always has.
    fn required<T>(field: Option<T>, message: &'static str) -> Result<T> {
        field.ok_or_else(|| {
            ClientError::Malformed(Malformed {
                message,
                reason: "the answer is empty".into(),
            })
        })
    }

    fn transfer_timeout(&self) -> Duration {
        self.cfg.transfer_timeout
    }

    pub async fn stat(&self, path: impl ToDfsPath) -> Result<Entry> {
        let path = path.to_dfs_path()?;
        let resp = self
            .coordinator
            .clone()
            .stat(self.request(pb::StatRequest {
                path: path.to_string(),
            }))
            .await
            .map_err(|s| self.coord_err(s))?;
        Ok(Self::required(resp.into_inner().entry, "StatResponse")?.try_into()?)
    }

    /// All entries of a directory (or the file itself), fetched page by page.
    pub async fn list(&self, path: impl ToDfsPath) -> Result<Vec<Entry>> {
        let path = path.to_dfs_path()?;
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let (entries, more) = self.list_page(&path, &after, 0).await?;
            if let Some(last) = entries.last() {
                after = last.name().to_string();
            }
            out.extend(entries);
            if !more {
                return Ok(out);
            }
        }
    }

    /// One page of a directory listing: at most `limit` entries (0 = the server's page
    /// size) named after `start_after`, and whether more follow.
    pub async fn list_page(
        &self,
        path: impl ToDfsPath,
        start_after: &str,
        limit: u32,
    ) -> Result<(Vec<Entry>, bool)> {
        let path = path.to_dfs_path()?;
        let page = self
            .coordinator
            .clone()
            .list(self.request(pb::ListRequest {
                path: path.to_string(),
                start_after: start_after.to_string(),
                limit,
            }))
            .await
            .map_err(|s| self.coord_err(s))?
            .into_inner();
        let entries = page
            .entries
            .into_iter()
            .map(Entry::try_from)
            .collect::<std::result::Result<_, _>>()?;
        Ok((entries, page.truncated))
    }

    pub async fn mkdir(&self, path: impl ToDfsPath, parents: bool) -> Result<Entry> {
        let opts = MkdirOptions {
            parents,
            ..Default::default()
        };
        self.mkdir_with(path, &opts).await
    }

    /// Mkdir with every option: `attrs` replaces the directory's attributes (a directory
    /// marker). `opts.owner` is not sent: the coordinator records the caller's key.
    pub async fn mkdir_with(&self, path: impl ToDfsPath, opts: &MkdirOptions) -> Result<Entry> {
        let path = path.to_dfs_path()?;
        let resp = self
            .coordinator
            .clone()
            .mkdir(self.request(mkdir_request(&path, opts)))
            .await
            .map_err(|s| self.coord_err(s))?;
        Ok(Self::required(resp.into_inner().entry, "MkdirResponse")?.try_into()?)
    }

    /// Deletes a file or directory; returns (files, directories) removed.
    pub async fn delete(&self, path: impl ToDfsPath, recursive: bool) -> Result<(u64, u64)> {
        self.delete_if(path, recursive, None).await
    }

    /// Deletes `path` only if its version is still `expected_version` (when given): the
    /// coordinator checks it in the delete's transaction.
    pub async fn delete_if(
        &self,
        path: impl ToDfsPath,
        recursive: bool,
        expected_version: Option<u64>,
    ) -> Result<(u64, u64)> {
        let path = path.to_dfs_path()?;
        let r = self
            .coordinator
            .clone()
            .delete(self.request(pb::DeleteRequest {
                path: path.to_string(),
                recursive,
                expected_version,
            }))
            .await
            .map_err(|s| self.coord_err(s))?
            .into_inner();
        Ok((r.files_deleted, r.dirs_deleted))
    }

    /// The settings of bucket (top-level directory) `path`.
    pub async fn get_bucket(&self, path: impl ToDfsPath) -> Result<BucketRecord> {
        let path = path.to_dfs_path()?;
        let r = self
            .coordinator
            .clone()
            .get_bucket(self.request(pb::GetBucketRequest {
                path: path.to_string(),
            }))
            .await
            .map_err(|s| self.coord_err(s))?;
        Ok(Self::required(r.into_inner().bucket, "GetBucketResponse")?.try_into()?)
    }

    /// Changes the settings of bucket `path` that `update` names.
    pub async fn set_bucket(
        &self,
        path: impl ToDfsPath,
        update: &BucketUpdate,
    ) -> Result<BucketRecord> {
        let path = path.to_dfs_path()?;
        let r = self
            .coordinator
            .clone()
            .set_bucket(self.request(pb::SetBucketRequest {
                path: path.to_string(),
                public_read: update.public_read,
                cors: update.cors.clone(),
            }))
            .await
            .map_err(|s| self.coord_err(s))?;
        Ok(Self::required(r.into_inner().bucket, "SetBucketResponse")?.try_into()?)
    }

    /// Commits `req.dst` as the chunks of `req.sources` joined in order, without moving
    /// a byte (see the Compose RPC). A replication of 0 is the cluster default.
    pub async fn compose(&self, req: &ComposeRequest) -> Result<Entry> {
        let resp = self
            .coordinator
            .clone()
            .compose(self.request(pb::ComposeRequest::from(req)))
            .await
            .map_err(|s| self.coord_err(s))?;
        Ok(Self::required(resp.into_inner().entry, "ComposeResponse")?.try_into()?)
    }

    pub async fn rename(&self, src: impl ToDfsPath, dst: impl ToDfsPath) -> Result<Entry> {
        let src = src.to_dfs_path()?;
        let dst = dst.to_dfs_path()?;
        let resp = self
            .coordinator
            .clone()
            .rename(self.request(pb::RenameRequest {
                src: src.to_string(),
                dst: dst.to_string(),
            }))
            .await
            .map_err(|s| self.coord_err(s))?;
        Ok(Self::required(resp.into_inner().entry, "RenameResponse")?.try_into()?)
    }

    /// Creates an access key (admin): its description and its secret, shown only now.
    pub async fn create_key(
        &self,
        name: &str,
        role: KeyRole,
        prefix: impl ToDfsPath,
    ) -> Result<(KeyInfo, String)> {
        let prefix = prefix.to_dfs_path()?;
        let r = self
            .coordinator
            .clone()
            .create_key(self.request(pb::CreateKeyRequest {
                name: name.to_string(),
                role: role.as_str().to_string(),
                prefix: prefix.to_string(),
            }))
            .await
            .map_err(|s| self.coord_err(s))?
            .into_inner();
        let key = Self::required(r.key, "CreateKeyResponse")?.try_into()?;
        Ok((key, r.secret))
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let r = self
            .coordinator
            .clone()
            .list_keys(self.request(pb::ListKeysRequest {}))
            .await
            .map_err(|s| self.coord_err(s))?;
        Ok(r.into_inner()
            .keys
            .into_iter()
            .map(KeyInfo::try_from)
            .collect::<std::result::Result<_, _>>()?)
    }

    pub async fn revoke_key(&self, key_id: &str) -> Result<KeyInfo> {
        let r = self
            .coordinator
            .clone()
            .revoke_key(self.request(pb::RevokeKeyRequest {
                key_id: key_id.to_string(),
            }))
            .await
            .map_err(|s| self.coord_err(s))?
            .into_inner();
        Ok(Self::required(r.key, "RevokeKeyResponse")?.try_into()?)
    }

    /// The S3 secret, role and prefix of an access key (S3 gateways only: a gateway
    /// certificate, or an admin key without TLS).
    pub async fn s3_credential(&self, key_id: &str) -> Result<S3Credential> {
        let r = self
            .coordinator
            .clone()
            .get_s3_credential(self.request(pb::GetS3CredentialRequest {
                key_id: key_id.to_string(),
            }))
            .await
            .map_err(|s| self.coord_err(s))?;
        Ok(r.into_inner().try_into()?)
    }

    pub async fn status(&self) -> Result<ClusterStatus> {
        let r = self
            .coordinator
            .clone()
            .status(self.request(pb::StatusRequest {}))
            .await
            .map_err(|s| self.coord_err(s))?;
        Ok(r.into_inner().into())
    }

    pub async fn fsck(&self, path: impl ToDfsPath, all: bool) -> Result<FsckReport> {
        let path = path.to_dfs_path()?;
        let r = self
            .coordinator
            .clone()
            .fsck(self.request(pb::FsckRequest {
                path: path.to_string(),
                all,
            }))
            .await
            .map_err(|s| self.coord_err(s))?;
        Ok(r.into_inner().try_into()?)
    }

    /// Starts (or with `cancel`, stops) draining a node; the node as it is now, when the
    /// coordinator still knows it.
    pub async fn drain_node(&self, node: &NodeId, cancel: bool) -> Result<Option<NodeInfo>> {
        let r = self
            .coordinator
            .clone()
            .drain_node(self.request(pb::DrainNodeRequest {
                node_id: node.to_string(),
                cancel,
            }))
            .await
            .map_err(|s| self.coord_err(s))?;
        Ok(r.into_inner().node.map(NodeInfo::try_from).transpose()?)
    }

    pub async fn remove_node(&self, node: &NodeId) -> Result<()> {
        self.coordinator
            .clone()
            .remove_node(self.request(pb::RemoveNodeRequest {
                node_id: node.to_string(),
            }))
            .await
            .map_err(|s| self.coord_err(s))?;
        Ok(())
    }

    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let r = self
            .coordinator
            .clone()
            .list_nodes(self.request(pb::ListNodesRequest {}))
            .await
            .map_err(|s| self.coord_err(s))?;
        Ok(r.into_inner()
            .nodes
            .into_iter()
            .map(NodeInfo::try_from)
            .collect::<std::result::Result<_, _>>()?)
    }

    /// Whether the coordinator answers a cheap call (ListNodes) within `timeout`.
    pub async fn ping_coordinator(&self, timeout: Duration) -> Result<()> {
        let mut r = self.request(pb::ListNodesRequest {});
        r.set_timeout(timeout);
        match self.coordinator.clone().list_nodes(r).await {
            Ok(_) => Ok(()),
            // Refusing us is answering: the server is up.
            Err(s) if matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied) => Ok(()),
            Err(s) => Err(self.coord_err(s)),
        }
    }

    /// Whether a datanode answers within `timeout`: it is asked to verify an all-zero
    /// chunk id (well formed, never stored in practice); any reply that is not a transport
    /// failure (or "unimplemented": another kind of server) means the node is serving.
    pub async fn ping_datanode(&self, addr: &str, timeout: Duration) -> Result<()> {
        let uri = endpoint_uri(addr);
        let mut r = Request::new(pb::VerifyChunkRequest {
            chunk_id: "0".repeat(64),
            token: String::new(),
        });
        r.set_timeout(timeout);
        match self.datanode(&uri)?.verify_chunk(r).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::Unimplemented => {
                Err(ClientError::Invalid(format!("{uri} is not a datanode")))
            }
            Err(s) => match ClientError::from_status(s, "datanode", &uri) {
                e @ ClientError::Unreachable { .. } => Err(e),
                ClientError::Unavailable(reason) | ClientError::Server(reason) => {
                    Err(ClientError::Unreachable {
                        what: "datanode",
                        addr: uri,
                        reason,
                    })
                }
                _ => Ok(()),
            },
        }
    }
}
