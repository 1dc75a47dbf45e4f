//! gRPC services of the coordinator. They translate requests into metadata operations and
//! back; the decisions live in `meta`, `health` and `placement`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use tonic::{Request, Response, Status, Streaming};

use super::uploads::{ChunkClaim, UploadInfo};
use super::{admin, events, repair, trust, NodeState, NodeView, ScrubInfo, State};
use crate::chunk::ChunkId;
use crate::model::{
    now_ms, Attrs, CommitRequest, ComposeRequest, InventoryItem, Kind, MkdirOptions,
    NodeStatsRecord,
};
use crate::path::DfsPath;
use crate::proto::pb;
use crate::security::keys::{self, AccessKey, KeyRole, Principal};
use crate::security::token::Op;
use crate::security::{peer_role, Role};
use crate::status::check_node_id;
use events::EventKind::{FileCommitted, FileDeleted, FileMoved};
use tokio_stream::wrappers::ReceiverStream;

/// Most entries one List call returns.
const LIST_PAGE_MAX: usize = 1000;
/// Most chunks one GetFile call returns.
const GETFILE_PAGE_MAX: usize = 4096;
/// Most chunks one PlaceChunks or ReportReplicas call may name.
const BATCH_MAX: usize = 4096;

pub struct CoordinatorService {
    state: Arc<State>,
}

impl CoordinatorService {
    pub fn new(state: Arc<State>) -> Self {
        CoordinatorService { state }
    }
}

/// The caller, as the authentication interceptor found it. There is none when a gateway
/// certificate came without a key, which only GetS3Credential accepts.
fn who<T>(req: &Request<T>) -> Result<Principal, Status> {
    req.extensions().get::<Principal>().cloned().ok_or_else(|| {
        Status::unauthenticated(
            "no access key: a gateway certificate alone allows only GetS3Credential",
        )
    })
}

fn key_info(k: &AccessKey) -> pb::AccessKeyInfo {
    pb::AccessKeyInfo {
        key_id: k.id.clone(),
        name: k.name.clone(),
        role: k.role.as_str().into(),
        prefix: k.prefix.to_string(),
        created_ms: k.created_ms,
        revoked_ms: k.revoked_ms.unwrap_or(0),
    }
}

fn parse_path(s: &str) -> Result<DfsPath, Status> {
    crate::grpc_layer::record_path(s);
    Ok(DfsPath::parse(s)?)
}

fn parse_chunks(refs: &[pb::ChunkRef], max_size: u64) -> Result<Vec<(ChunkId, u64)>, Status> {
    refs.iter()
        .map(|c| {
            let id: ChunkId = c.chunk_id.parse()?;
            if c.size > max_size {
                return Err(Status::invalid_argument(format!(
                    "chunk {id}: size {} exceeds the maximum chunk size {max_size}",
                    c.size
                )));
            }
            Ok((id, c.size))
        })
        .collect()
}

/// Chunk references with the receipts they carry.
fn parse_claims(refs: Vec<pb::ChunkRef>, max_size: u64) -> Result<Vec<ChunkClaim>, Status> {
    let ids = parse_chunks(&refs, max_size)?;
    Ok(ids
        .into_iter()
        .zip(refs)
        .map(|((id, size), r)| ChunkClaim {
            id,
            size,
            receipt: r.receipt.map(Into::into),
        })
        .collect())
}

/// Most sources one Compose joins (S3 allows 10,000 parts per upload).
const COMPOSE_MAX_SOURCES: usize = 10_000;
/// Limits on a file version's attributes: S3 allows 2 KiB of user metadata.
const ATTRS_MAX_ENTRIES: usize = 64;
const ATTRS_MAX_BYTES: usize = 8 * 1024;

/// Checks attributes from the wire: bounded in count and size, names non-empty and free
/// of control characters.
fn parse_attrs(wire: std::collections::HashMap<String, String>) -> Result<Attrs, Status> {
    if wire.len() > ATTRS_MAX_ENTRIES {
        return Err(Status::invalid_argument(format!(
            "attrs: {} entries, at most {ATTRS_MAX_ENTRIES}",
            wire.len()
        )));
    }
    let bytes: usize = wire.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > ATTRS_MAX_BYTES {
        return Err(Status::invalid_argument(format!(
            "attrs: {bytes} bytes, at most {ATTRS_MAX_BYTES}"
        )));
    }
    if let Some(k) = wire
        .keys()
        .find(|k| k.is_empty() || k.chars().any(char::is_control))
    {
        return Err(Status::invalid_argument(format!(
            "attrs: invalid name {k:?} (empty or with control characters)"
        )));
    }
    Ok(wire.into_iter().collect())
}

/// A requested replication factor, 0 meaning the cluster default.
fn replication_or_default(requested: u32, default: u32) -> Result<u32, Status> {
    let r = if requested == 0 { default } else { requested };
    if r > 16 {
        return Err(Status::invalid_argument(format!(
            "replication {r}: at most 16"
        )));
    }
    Ok(r)
}

#[tonic::async_trait]
impl pb::coordinator_server::Coordinator for CoordinatorService {
    async fn stat(
        &self,
        req: Request<pb::StatRequest>,
    ) -> Result<Response<pb::StatResponse>, Status> {
        let who = who(&req)?;
        let path = parse_path(&req.into_inner().path)?;
        who.require_visible(&path)?;
        let info = self.state.store.stat(&path).await?;
        Ok(Response::new(pb::StatResponse {
            entry: Some((&info).into()),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let who = who(&req)?;
        let req = req.into_inner();
        let path = parse_path(&req.path)?;
        if let Some(next) = who.next_on_the_way(&path) {
            // A directory above the key's prefix: it sees only the way down to it.
            let child = path.join(next)?;
            let visible = if req.start_after.as_str() < next {
                self.state.store.stat(&child).await.ok()
            } else {
                None
            };
            return Ok(Response::new(pb::ListResponse {
                entries: visible.iter().map(Into::into).collect(),
                truncated: false,
            }));
        }
        who.require_read(&path)?;
        let limit = if req.limit == 0 {
            LIST_PAGE_MAX
        } else {
            (req.limit as usize).min(LIST_PAGE_MAX)
        };
        let (entries, truncated) = self
            .state
            .store
            .list(&path, &req.start_after, limit)
            .await?;
        Ok(Response::new(pb::ListResponse {
            entries: entries.iter().map(Into::into).collect(),
            truncated,
        }))
    }

    async fn mkdir(
        &self,
        req: Request<pb::MkdirRequest>,
    ) -> Result<Response<pb::MkdirResponse>, Status> {
        let who = who(&req)?;
        let req = req.into_inner();
        let path = parse_path(&req.path)?;
        who.require_write(&path)?;
        let opts = MkdirOptions {
            parents: req.parents,
            attrs: if req.set_attrs {
                Some(parse_attrs(req.attrs)?)
            } else {
                None
            },
            owner: who.key_id.clone(),
        };
        let info = self.state.store.mkdir(&path, opts, now_ms()).await?;
        tracing::info!(path = %info.path, "directory created");
        Ok(Response::new(pb::MkdirResponse {
            entry: Some((&info).into()),
        }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let who = who(&req)?;
        let req = req.into_inner();
        let path = parse_path(&req.path)?;
        who.require_write(&path)?;
        let (files, dirs) = (self.state.store)
            .delete(&path, req.recursive, req.expected_version)
            .await?;
        tracing::info!(%path, files, dirs, "deleted");
        self.state.after_namespace_change(&path).await;
        (self.state.events).file(FileDeleted, path.as_str(), 0, files, format!("{dirs} dirs"));
        Ok(Response::new(pb::DeleteResponse {
            files_deleted: files,
            dirs_deleted: dirs,
        }))
    }

    async fn rename(
        &self,
        req: Request<pb::RenameRequest>,
    ) -> Result<Response<pb::RenameResponse>, Status> {
        let who = who(&req)?;
        let req = req.into_inner();
        let src = parse_path(&req.src)?;
        let dst = parse_path(&req.dst)?;
        who.require_write(&src)?;
        who.require_write(&dst)?;
        let info = self.state.store.rename(&src, &dst, now_ms()).await?;
        tracing::info!(%src, dst = %info.path, "moved");
        self.state.after_namespace_change(&src).await;
        self.state.after_namespace_change(&info.path).await;
        (self.state.events).file(FileMoved, src.as_str(), 0, 1, info.path.to_string());
        Ok(Response::new(pb::RenameResponse {
            entry: Some((&info).into()),
        }))
    }

    async fn begin_upload(
        &self,
        req: Request<pb::BeginUploadRequest>,
    ) -> Result<Response<pb::BeginUploadResponse>, Status> {
        let who = who(&req)?;
        let req = req.into_inner();
        let path = parse_path(&req.path)?;
        who.require_write(&path)?;
        if path.is_root() {
            return Err(Status::failed_precondition("/: is a directory"));
        }
        let cfg = &self.state.cfg;
        let replication = replication_or_default(req.replication, cfg.replication)?;
        let default_quorum = if cfg.write_quorum == 0 {
            replication
        } else {
            cfg.write_quorum
        };
        let write_quorum = if req.write_quorum == 0 {
            default_quorum
        } else {
            req.write_quorum
        }
        .min(replication);

        // Fail fast on what would fail at commit; the commit checks again atomically.
        let existing = self.state.store.resolve(&path).await?;
        if let Some(inode) = existing {
            if inode.kind == Kind::Dir {
                return Err(Status::failed_precondition(format!(
                    "{path}: is a directory"
                )));
            }
            if req.no_clobber {
                return Err(Status::already_exists(format!("{path}: already exists")));
            }
        }

        let owner = who.key_id.clone();
        let id = self.state.uploads.begin(UploadInfo {
            path,
            replication,
            write_quorum,
            no_clobber: req.no_clobber,
            owner: owner.clone(),
        })?;
        crate::metrics::coordinator()
            .uploads_open
            .set(self.state.uploads.open() as i64);
        Ok(Response::new(pb::BeginUploadResponse {
            upload_id: id,
            replication,
            write_quorum,
            max_chunk_size: cfg.max_chunk_size,
            owner,
        }))
    }

    async fn place_chunks(
        &self,
        req: Request<pb::PlaceChunksRequest>,
    ) -> Result<Response<pb::PlaceChunksResponse>, Status> {
        let who = who(&req)?;
        let req = req.into_inner();
        if req.chunks.len() > BATCH_MAX || req.stored.len() > BATCH_MAX {
            return Err(Status::invalid_argument(format!(
                "at most {BATCH_MAX} chunks (and {BATCH_MAX} stored ones) per placement"
            )));
        }
        let max = self.state.cfg.max_chunk_size;
        let claims = parse_claims(req.chunks, max)?;
        let stored = parse_claims(req.stored, max)?;
        let exclude: HashSet<String> = req.exclude_nodes.into_iter().collect();
        let placements = self
            .state
            .place(&req.upload_id, &who, claims, stored, &exclude)
            .await?;
        let addr = |(node_id, addr): (String, String)| pb::NodeAddr { node_id, addr };
        let placements = placements
            .into_iter()
            .map(|p| pb::ChunkPlacement {
                chunk_id: p.id.to_hex(),
                existing: p.existing.iter().map(|(n, _)| n.clone()).collect(),
                existing_replicas: p.existing.into_iter().map(addr).collect(),
                targets: p
                    .targets
                    .into_iter()
                    .map(|c| addr((c.id, c.addr)))
                    .collect(),
                token: p.write_token,
                read_token: p.read_token,
                receipt: p.grant.map(Into::into),
            })
            .collect();
        Ok(Response::new(pb::PlaceChunksResponse { placements }))
    }

    async fn commit_upload(
        &self,
        req: Request<pb::CommitUploadRequest>,
    ) -> Result<Response<pb::CommitUploadResponse>, Status> {
        let who = who(&req)?;
        let req = req.into_inner();
        let upload = self.state.uploads.get(&req.upload_id, &who)?;
        let claims = parse_claims(req.chunks, self.state.cfg.max_chunk_size)?;
        // Before anything else: the chunks must be this key's to use (invariant 9). The
        // records are not consulted, so the refusal tells nothing about them.
        self.state.check_receipts(&claims, &upload.owner)?;
        let chunks = claims.iter().map(|c| (c.id, c.size)).collect();
        let attrs = parse_attrs(req.attrs)?;
        let commit = CommitRequest {
            path: upload.path.clone(),
            chunks,
            size: req.size,
            replication: upload.replication,
            write_quorum: upload.write_quorum,
            no_clobber: upload.no_clobber || req.no_clobber,
            expected_version: req.expected_version,
            live_nodes: self.state.nodes.live_set(now_ms()),
            attrs,
        };
        let info = self.state.store.commit(commit, now_ms()).await?;
        self.state.uploads.end(&req.upload_id);
        (self.state.uploads).committed(&upload.owner, claims.iter().map(|c| c.id));
        tracing::info!(path = %info.path, size = info.inode.size, version = info.inode.version, "file committed");
        let (path, size, v) = (info.path.as_str(), info.inode.size, info.inode.version);
        (self.state.events).file(FileCommitted, path, size, 1, format!("version {v}"));
        Ok(Response::new(pb::CommitUploadResponse {
            entry: Some((&info).into()),
        }))
    }

    async fn abort_upload(
        &self,
        req: Request<pb::AbortUploadRequest>,
    ) -> Result<Response<pb::AbortUploadResponse>, Status> {
        let who = who(&req)?;
        let id = req.into_inner().upload_id;
        self.state.uploads.get(&id, &who)?;
        self.state.uploads.end(&id);
        Ok(Response::new(pb::AbortUploadResponse {}))
    }

    async fn compose(
        &self,
        req: Request<pb::ComposeRequest>,
    ) -> Result<Response<pb::ComposeResponse>, Status> {
        let who = who(&req)?;
        let req = req.into_inner();
        if req.sources.is_empty() || req.sources.len() > COMPOSE_MAX_SOURCES {
            return Err(Status::invalid_argument(format!(
                "compose: {} sources, expected 1 to {COMPOSE_MAX_SOURCES}",
                req.sources.len()
            )));
        }
        let dst = parse_path(&req.dst)?;
        who.require_write(&dst)?;
        let mut sources = Vec::with_capacity(req.sources.len());
        for s in &req.sources {
            let p = parse_path(&s.path)?;
            who.require_read(&p)?;
            sources.push((p, s.expected_version));
        }
        let mut delete_after = Vec::with_capacity(req.delete_after.len());
        for d in &req.delete_after {
            let p = parse_path(d)?;
            who.require_write(&p)?;
            delete_after.push(p);
        }
        let compose = ComposeRequest {
            sources,
            dst,
            replication: replication_or_default(req.replication, self.state.cfg.replication)?,
            no_clobber: req.no_clobber,
            expected_version: req.expected_version,
            attrs: parse_attrs(req.attrs)?,
            delete_after,
        };
        let n = compose.sources.len();
        let info = self.state.store.compose(compose, now_ms()).await?;
        tracing::info!(path = %info.path, size = info.inode.size, version = info.inode.version, sources = n, "file composed");
        let (path, size, v) = (info.path.as_str(), info.inode.size, info.inode.version);
        let detail = format!("version {v}, composed of {n} file(s)");
        (self.state.events).file(FileCommitted, path, size, 1, detail);
        Ok(Response::new(pb::ComposeResponse {
            entry: Some((&info).into()),
        }))
    }

    async fn get_file(
        &self,
        req: Request<pb::GetFileRequest>,
    ) -> Result<Response<pb::GetFileResponse>, Status> {
        let who = who(&req)?;
        let req = req.into_inner();
        let path = parse_path(&req.path)?;
        who.require_read(&path)?;
        let (entry, all) = self.state.store.file_chunks(&path).await?;
        let start = (req.start_chunk as usize).min(all.len());
        let max = if req.max_chunks == 0 {
            GETFILE_PAGE_MAX
        } else {
            (req.max_chunks as usize).min(GETFILE_PAGE_MAX)
        };
        let end = (start + max).min(all.len());
        let page = all[start..end].to_vec();
        let ids: Vec<ChunkId> = page.iter().map(|c| c.chunk_id).collect();
        let on_record = self.state.store.replicas_of(ids).await?;

        let now = now_ms();
        let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
        let chunks = page
            .iter()
            .map(|c| {
                let mut alive = Vec::new();
                let mut suspect = Vec::new();
                for node in on_record.get(&c.chunk_id).into_iter().flatten() {
                    let Some(view) = self.state.nodes.get(node) else {
                        continue;
                    };
                    match self.state.nodes.state_of(&view, now) {
                        NodeState::Alive | NodeState::Draining => alive.push(view),
                        NodeState::Suspect => suspect.push(view),
                        NodeState::Dead => {}
                    }
                }
                // Spread reads over replicas; try the doubtful ones last.
                alive.shuffle(&mut rng);
                suspect.shuffle(&mut rng);
                let replicas = alive
                    .into_iter()
                    .chain(suspect)
                    .map(|v: NodeView| pb::NodeAddr {
                        node_id: v.id,
                        addr: v.addr,
                    })
                    .collect();
                pb::ChunkLocation {
                    chunk_id: c.chunk_id.to_hex(),
                    size: c.size,
                    offset: c.offset,
                    replicas,
                    token: self.state.token(Op::Read, &[c.chunk_id]),
                }
            })
            .collect();
        Ok(Response::new(pb::GetFileResponse {
            entry: Some((&entry).into()),
            chunks,
            truncated: end < all.len(),
        }))
    }

    async fn report_bad_replica(
        &self,
        req: Request<pb::ReportBadReplicaRequest>,
    ) -> Result<Response<pb::ReportBadReplicaResponse>, Status> {
        let who = who(&req)?;
        let req = req.into_inner();
        let chunk: ChunkId = req.chunk_id.parse()?;
        self.state
            .report_bad_replica(&who, chunk, &req.node_id, &req.reason)
            .await?;
        Ok(Response::new(pb::ReportBadReplicaResponse {}))
    }

    async fn list_nodes(
        &self,
        req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        who(&req)?.require_admin("listing datanodes")?;
        Ok(Response::new(pb::ListNodesResponse {
            nodes: admin::list_nodes(&self.state).await?,
        }))
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        who(&req)?.require_admin("cluster status")?;
        Ok(Response::new(admin::status(&self.state).await?))
    }

    async fn fsck(
        &self,
        req: Request<pb::FsckRequest>,
    ) -> Result<Response<pb::FsckResponse>, Status> {
        who(&req)?.require_admin("fsck")?;
        Ok(Response::new(
            admin::fsck(&self.state, req.into_inner()).await?,
        ))
    }

    async fn drain_node(
        &self,
        req: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeResponse>, Status> {
        who(&req)?.require_admin("draining a node")?;
        Ok(Response::new(
            admin::drain(&self.state, req.into_inner()).await?,
        ))
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        who(&req)?.require_admin("removing a node")?;
        Ok(Response::new(
            admin::remove(&self.state, req.into_inner()).await?,
        ))
    }

    async fn create_key(
        &self,
        req: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::CreateKeyResponse>, Status> {
        who(&req)?.require_admin("creating access keys")?;
        let req = req.into_inner();
        let name = req.name.trim().to_string();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(Status::invalid_argument(
                "key name: 1 to 64 characters, no control characters",
            ));
        }
        let role = KeyRole::parse(&req.role).map_err(Status::invalid_argument)?;
        let prefix = if req.prefix.is_empty() {
            DfsPath::root()
        } else {
            parse_path(&req.prefix)?
        };
        let (id, secret, salt, secret_hash) = keys::generate();
        let key = AccessKey {
            s3_secret_sealed: Some(self.state.s3_seal.seal(&id, &secret)),
            id,
            name,
            role,
            prefix,
            salt,
            secret_hash,
            created_ms: now_ms(),
            revoked_ms: None,
        };
        self.state.store.insert_key(&key).await?;
        tracing::info!(key = %key.id, name = %key.name, role = key.role.as_str(), prefix = %key.prefix, "access key created");
        let info = key_info(&key);
        self.state.cache_key(key);
        Ok(Response::new(pb::CreateKeyResponse {
            key: Some(info),
            secret,
        }))
    }

    async fn list_keys(
        &self,
        req: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        who(&req)?.require_admin("listing access keys")?;
        let keys = self.state.store.list_keys().await?;
        Ok(Response::new(pb::ListKeysResponse {
            keys: keys.iter().map(key_info).collect(),
        }))
    }

    async fn revoke_key(
        &self,
        req: Request<pb::RevokeKeyRequest>,
    ) -> Result<Response<pb::RevokeKeyResponse>, Status> {
        who(&req)?.require_admin("revoking access keys")?;
        let id = req.into_inner().key_id;
        keys::check_key_id(&id).map_err(|s| Status::invalid_argument(s.message().to_string()))?;
        if self.state.cfg.auth && self.state.other_admin_keys(&id) == 0 {
            return Err(Status::failed_precondition(format!(
                "{id} is the last valid admin key: create another admin key first"
            )));
        }
        let key = self.state.store.revoke_key(&id, now_ms()).await?;
        tracing::info!(key = %key.id, "access key revoked");
        let info = key_info(&key);
        self.state.cache_key(key);
        Ok(Response::new(pb::RevokeKeyResponse { key: Some(info) }))
    }

    type EventsStream = ReceiverStream<Result<pb::ClusterEvent, Status>>;

    async fn events(
        &self,
        req: Request<pb::EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        who(&req)?.require_admin("the event stream")?;
        Ok(Response::new(events::stream(
            self.state.clone(),
            req.into_inner(),
        )))
    }

    async fn get_s3_credential(
        &self,
        req: Request<pb::GetS3CredentialRequest>,
    ) -> Result<Response<pb::GetS3CredentialResponse>, Status> {
        if self.state.tls.is_some() {
            if peer_role(&req) != Some(Role::Gateway) {
                return Err(Status::permission_denied(
                    "GetS3Credential is for S3 gateways only: it needs a gateway certificate \
                     (`dfsd cert issue --gateway NAME`)",
                ));
            }
        } else {
            // Without TLS there is no certificate to check, only the key.
            who(&req)?.require_admin("GetS3Credential without TLS")?;
        }
        let id = req.into_inner().key_id;
        let c = self.state.s3_credential(&id)?;
        tracing::debug!(key = %id, "S3 credential handed to a gateway");
        Ok(Response::new(pb::GetS3CredentialResponse {
            secret: c.secret,
            role: c.role.as_str().into(),
            prefix: c.prefix.to_string(),
        }))
    }

    async fn revoke_certificate(
        &self,
        req: Request<pb::RevokeCertificateRequest>,
    ) -> Result<Response<pb::RevokeCertificateResponse>, Status> {
        who(&req)?.require_admin("revoking certificates")?;
        Ok(Response::new(
            trust::revoke(&self.state, req.into_inner()).await?,
        ))
    }

    async fn list_revoked_certificates(
        &self,
        req: Request<pb::ListRevokedCertificatesRequest>,
    ) -> Result<Response<pb::ListRevokedCertificatesResponse>, Status> {
        who(&req)?.require_admin("listing revoked certificates")?;
        Ok(Response::new(trust::list(&self.state).await?))
    }

    async fn get_bucket(
        &self,
        req: Request<pb::GetBucketRequest>,
    ) -> Result<Response<pb::GetBucketResponse>, Status> {
        let caller = req.extensions().get::<Principal>().cloned();
        let gateway = self.state.tls.is_some() && peer_role(&req) == Some(Role::Gateway);
        if caller.is_none() && !gateway {
            who(&req)?;
        }
        let r = self
            .state
            .get_bucket(caller.as_ref(), req.into_inner())
            .await?;
        Ok(Response::new(r))
    }

    async fn set_bucket(
        &self,
        req: Request<pb::SetBucketRequest>,
    ) -> Result<Response<pb::SetBucketResponse>, Status> {
        let who = who(&req)?;
        let r = self.state.set_bucket(&who, req.into_inner()).await?;
        Ok(Response::new(r))
    }
}

pub struct ClusterService {
    state: Arc<State>,
}

impl ClusterService {
    pub fn new(state: Arc<State>) -> Self {
        ClusterService { state }
    }

    /// A node that has not sent an inventory since this coordinator started is asked for
    /// one (again every 30 s until it arrives).
    fn wants_inventory(&self, node: &str) -> bool {
        if self
            .state
            .inventoried
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(node)
        {
            return false;
        }
        let mut asked = self
            .state
            .inventory_asked
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let due = asked
            .get(node)
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(30));
        if due {
            asked.insert(node.to_string(), Instant::now());
        }
        due
    }
}

/// A datanode listening on a wildcard address is reached at the address we see it from.
fn effective_addr(advertised: &str, peer: Option<SocketAddr>) -> Result<String, Status> {
    let uri = crate::config::endpoint_uri(advertised);
    let parsed: http::Uri = uri
        .parse()
        .map_err(|e| Status::invalid_argument(format!("invalid address {advertised:?}: {e}")))?;
    let host = parsed.host().unwrap_or("");
    let port = parsed
        .port_u16()
        .ok_or_else(|| Status::invalid_argument(format!("address {advertised:?} has no port")))?;
    let wildcard = host.is_empty() || host == "0.0.0.0" || host == "[::]" || host == "::";
    if !wildcard {
        return Ok(uri);
    }
    let ip = peer.map(|p| p.ip()).ok_or_else(|| {
        Status::invalid_argument(format!(
            "address {advertised:?} is a wildcard; set --advertise"
        ))
    })?;
    Ok(match ip {
        std::net::IpAddr::V4(v4) => format!("http://{v4}:{port}"),
        std::net::IpAddr::V6(v6) => format!("http://[{v6}]:{port}"),
    })
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let peer = req.remote_addr();
        let req = req.into_inner();
        check_node_id(&req.node_id)?;
        let addr = effective_addr(&req.addr, peer)?;
        let stats: NodeStatsRecord = req.stats.into();
        let now = now_ms();
        (self.state.store)
            .upsert_node(&req.node_id, &addr, stats, now)
            .await?;
        let previous = self.state.nodes.get(&req.node_id);
        self.state.nodes.upsert(NodeView {
            id: req.node_id.clone(),
            addr: addr.clone(),
            stats,
            last_seen_ms: now,
            draining: previous.as_ref().is_some_and(|v| v.draining),
            scrub: previous.map(|v| v.scrub).unwrap_or_default(),
        });
        tracing::info!(node = %req.node_id, %addr, "datanode registered");
        let trust = &self.state.trust;
        let (token_key, token_key_sealed) =
            trust.token_key_for(&req.node_id, &self.state.token_key);
        Ok(Response::new(pb::RegisterResponse {
            heartbeat_interval_ms: self.state.cfg.heartbeat_interval.as_millis() as u64,
            token_key,
            token_key_sealed,
            revoked: Some(trust.revoked_pb()),
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = req.into_inner();
        check_node_id(&req.node_id)?;
        let scrub = req.stats.as_ref().and_then(|s| s.scrub).map(|s| ScrubInfo {
            checked: s.checked,
            total: s.total,
            last_pass_ms: s.last_pass_ms,
            errors: s.errors,
        });
        let stats: NodeStatsRecord = req.stats.into();
        let now = now_ms();
        let before = self.state.nodes.get(&req.node_id);
        if !self
            .state
            .nodes
            .heartbeat(&req.node_id, stats, scrub.unwrap_or_default(), now)
        {
            return Ok(Response::new(pb::HeartbeatResponse {
                reregister: true,
                ..Default::default()
            }));
        }
        if let Some(prev) = before {
            let was = self.state.nodes.state_of(&prev, now);
            if matches!(was, NodeState::Suspect | NodeState::Dead) {
                tracing::info!(node = %req.node_id, was = was.as_str(), "datanode is back");
            }
        }
        (self.state.store)
            .update_node_stats(&req.node_id, stats, now)
            .await?;
        // A node holding another token key (this coordinator rotated it at start-up, see
        // secrets.rs) refuses every token we sign: it gets the current key by registering.
        // An empty digest is an older datanode's, which does not say.
        let stale_key = !req.token_key_digest.is_empty()
            && req.token_key_digest[..] != self.state.token_key.digest()[..];
        if stale_key {
            tracing::info!(node = %req.node_id, "datanode holds another token key; asked to register again");
            return Ok(Response::new(pb::HeartbeatResponse {
                reregister: true,
                ..Default::default()
            }));
        }
        let send_inventory = self.wants_inventory(&req.node_id);
        Ok(Response::new(pb::HeartbeatResponse {
            reregister: false,
            send_inventory,
            revoked: self.state.trust.revoked_update(&req.revoked_digest),
        }))
    }

    async fn report_replicas(
        &self,
        req: Request<pb::ReportReplicasRequest>,
    ) -> Result<Response<pb::ReportReplicasResponse>, Status> {
        let req = req.into_inner();
        check_node_id(&req.node_id)?;
        if req.chunks.len() > BATCH_MAX {
            return Err(Status::invalid_argument(format!(
                "at most {BATCH_MAX} chunks per report"
            )));
        }
        let chunks = parse_chunks(&req.chunks, self.state.cfg.max_chunk_size)?;
        if !req.owner.is_empty() {
            // Before the record, so a collection racing it either sees the chunks
            // protected or finds them touched by the record (see `uploads.rs`).
            let ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();
            self.state.uploads.stored(&req.owner, &ids);
        }
        let node = req.node_id;
        let n = chunks.len();
        (self.state.store)
            .record_replicas(&node, chunks, now_ms())
            .await?;
        tracing::debug!(%node, chunks = n, "replicas recorded");
        Ok(Response::new(pb::ReportReplicasResponse {}))
    }

    async fn report_inventory(
        &self,
        req: Request<Streaming<pb::InventoryBatch>>,
    ) -> Result<Response<pb::InventoryResponse>, Status> {
        let started = now_ms();
        let mut stream = req.into_inner();
        let mut node: Option<String> = None;
        let mut inventory: HashMap<ChunkId, InventoryItem> = HashMap::new();
        let mut complete = false;
        while let Some(batch) = stream.message().await? {
            if complete {
                return Err(Status::invalid_argument(
                    "inventory batch after the last one",
                ));
            }
            complete = batch.last;
            check_node_id(&batch.node_id)?;
            match &node {
                None => node = Some(batch.node_id.clone()),
                Some(n) if *n != batch.node_id => {
                    return Err(Status::invalid_argument("inventory names two nodes"))
                }
                Some(_) => {}
            }
            for c in batch.chunks {
                let id: ChunkId = c.chunk_id.parse()?;
                inventory.insert(
                    id,
                    InventoryItem {
                        size: c.size,
                        age_secs: c.age_secs,
                    },
                );
            }
        }
        let Some(node) = node else {
            return Err(Status::invalid_argument("empty inventory stream"));
        };
        // A cancelled stream also ends cleanly on the server: only the marker proves the
        // list is whole, and a partial list would make replicas look lost.
        if !complete {
            return Err(Status::aborted(format!(
                "inventory from {node} ended before its last batch"
            )));
        }
        let grace = self.state.cfg.gc_grace.as_secs();
        let total = inventory.len();
        let r = (self.state.store)
            .reconcile_inventory(&node, inventory, started, grace, now_ms())
            .await?;
        tracing::info!(%node, chunks = total, lost = r.lost.len(), added = r.added, orphans = r.orphans.len(), "inventory reconciled");
        self.state
            .inventoried
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.clone());
        let resp = pb::InventoryResponse {
            lost: r.lost.len() as u64,
            added: r.added,
            orphans: r.orphans.len() as u64,
        };
        // Orphans are deleted only once the coordinator trusts its own knowledge.
        if !r.orphans.is_empty() && !self.state.safe_mode_now() {
            let protect = repair::protect_secs(&self.state);
            repair::order_delete(self.state.clone(), node, r.orphans, protect);
        }
        self.state.maint.wake.notify_one();
        Ok(Response::new(resp))
    }

    async fn report_corruption(
        &self,
        req: Request<pb::ReportCorruptionRequest>,
    ) -> Result<Response<pb::ReportCorruptionResponse>, Status> {
        let req = req.into_inner();
        check_node_id(&req.node_id)?;
        let ids: Vec<ChunkId> = req
            .chunk_ids
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?;
        let node = req.node_id.clone();
        let n = ids.len();
        (self.state.events).corrupt(&node, &ids, "found by the datanode");
        let forget = ids.into_iter().map(|id| (id, node.clone())).collect();
        self.state.store.remove_replicas(forget).await?;
        tracing::warn!(node = %req.node_id, chunks = n, "datanode found corrupt or missing chunks; re-replicating");
        self.state.maint.wake.notify_one();
        Ok(Response::new(pb::ReportCorruptionResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_take_the_peer_ip() {
        let peer: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        assert_eq!(
            effective_addr("0.0.0.0:7071", Some(peer)).unwrap(),
            "http://10.1.2.3:7071"
        );
        assert_eq!(
            effective_addr("http://node4:7071", Some(peer)).unwrap(),
            "http://node4:7071"
        );
        assert!(effective_addr("0.0.0.0", Some(peer)).is_err());
    }
}
