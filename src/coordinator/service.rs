//! The Coordinator gRPC service (clients and gateways): each call decoded into domain
//! types (`wire.rs`), the caller's permission checked, one domain call (`namespace.rs`,
//! `uploads/`, `keys.rs`, `admin.rs`, ...), the answer encoded. No decision is made here.

use std::collections::HashSet;
use std::sync::Arc;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::uploads::{Commit, NewUpload};
use super::wire::{
    compose_request, location_pb, parse_attrs, parse_claims, parse_path, placement_pb,
    replication_or_default, who, BATCH_MAX, GETFILE_PAGE_MAX, LIST_PAGE_MAX,
};
use super::{admin, events, trust, State};
use crate::chunk::ChunkId;
use crate::model::MkdirOptions;
use crate::path::DfsPath;
use crate::proto::pb;
use crate::security::keys::{self, KeyRole, Principal};
use crate::security::{peer_role, Role};

pub struct CoordinatorService {
    state: Arc<State>,
}

impl CoordinatorService {
    pub fn new(state: Arc<State>) -> Self {
        CoordinatorService { state }
    }
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
        let info = self.state.mkdir(&path, opts).await?;
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
        let (files, dirs) = (self.state)
            .delete(&path, req.recursive, req.expected_version)
            .await?;
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
        let info = self.state.rename(&src, &dst).await?;
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
        let cfg = &self.state.cfg;
        let new = NewUpload {
            path,
            replication: replication_or_default(req.replication, cfg.replication)?,
            write_quorum: req.write_quorum,
            no_clobber: req.no_clobber,
        };
        let (upload_id, info) = self.state.begin_upload(&who, new).await?;
        Ok(Response::new(pb::BeginUploadResponse {
            upload_id,
            replication: info.replication,
            write_quorum: info.write_quorum,
            max_chunk_size: cfg.max_chunk_size,
            owner: info.owner,
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
        Ok(Response::new(pb::PlaceChunksResponse {
            placements: placements.into_iter().map(placement_pb).collect(),
        }))
    }

    async fn commit_upload(
        &self,
        req: Request<pb::CommitUploadRequest>,
    ) -> Result<Response<pb::CommitUploadResponse>, Status> {
        let who = who(&req)?;
        let req = req.into_inner();
        let commit = Commit {
            chunks: parse_claims(req.chunks, self.state.cfg.max_chunk_size)?,
            attrs: parse_attrs(req.attrs)?,
            upload_id: req.upload_id,
            size: req.size,
            no_clobber: req.no_clobber,
            expected_version: req.expected_version,
        };
        let info = self.state.commit_upload(&who, commit).await?;
        Ok(Response::new(pb::CommitUploadResponse {
            entry: Some((&info).into()),
        }))
    }

    async fn abort_upload(
        &self,
        req: Request<pb::AbortUploadRequest>,
    ) -> Result<Response<pb::AbortUploadResponse>, Status> {
        let who = who(&req)?;
        self.state.abort_upload(&who, &req.into_inner().upload_id)?;
        Ok(Response::new(pb::AbortUploadResponse {}))
    }

    async fn compose(
        &self,
        req: Request<pb::ComposeRequest>,
    ) -> Result<Response<pb::ComposeResponse>, Status> {
        let who = who(&req)?;
        let compose = compose_request(&who, req.into_inner(), self.state.cfg.replication)?;
        let info = self.state.compose(compose).await?;
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
        let max = match req.max_chunks {
            0 => GETFILE_PAGE_MAX,
            n => (n as usize).min(GETFILE_PAGE_MAX),
        };
        let page = (self.state)
            .file_page(&path, req.start_chunk as usize, max)
            .await?;
        Ok(Response::new(pb::GetFileResponse {
            entry: Some((&page.entry).into()),
            chunks: page.chunks.into_iter().map(location_pb).collect(),
            truncated: page.truncated,
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
            nodes: admin::list_nodes(&self.state)
                .await?
                .into_iter()
                .map(Into::into)
                .collect(),
        }))
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        who(&req)?.require_admin("cluster status")?;
        Ok(Response::new(admin::status(&self.state).await?.into()))
    }

    async fn fsck(
        &self,
        req: Request<pb::FsckRequest>,
    ) -> Result<Response<pb::FsckResponse>, Status> {
        who(&req)?.require_admin("fsck")?;
        let req = req.into_inner();
        let path = DfsPath::parse(if req.path.is_empty() { "/" } else { &req.path })?;
        let report = admin::fsck(&self.state, &path, req.all).await?;
        Ok(Response::new(report.into()))
    }

    async fn drain_node(
        &self,
        req: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeResponse>, Status> {
        who(&req)?.require_admin("draining a node")?;
        let req = req.into_inner();
        let node = admin::drain(&self.state, &req.node_id, req.cancel).await?;
        Ok(Response::new(pb::DrainNodeResponse {
            node: node.map(Into::into),
        }))
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        who(&req)?.require_admin("removing a node")?;
        admin::remove(&self.state, &req.into_inner().node_id).await?;
        Ok(Response::new(pb::RemoveNodeResponse {}))
    }

    async fn create_key(
        &self,
        req: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::CreateKeyResponse>, Status> {
        who(&req)?.require_admin("creating access keys")?;
        let req = req.into_inner();
        let role = KeyRole::parse(&req.role).map_err(Status::invalid_argument)?;
        let prefix = if req.prefix.is_empty() {
            DfsPath::root()
        } else {
            parse_path(&req.prefix)?
        };
        let (key, secret) = self.state.create_key(&req.name, role, prefix).await?;
        Ok(Response::new(pb::CreateKeyResponse {
            key: Some((&key).into()),
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
            keys: keys.iter().map(Into::into).collect(),
        }))
    }

    async fn revoke_key(
        &self,
        req: Request<pb::RevokeKeyRequest>,
    ) -> Result<Response<pb::RevokeKeyResponse>, Status> {
        who(&req)?.require_admin("revoking access keys")?;
        let id = req.into_inner().key_id;
        keys::check_key_id(&id).map_err(|d| {
            crate::wire_error::status(crate::wire_error::Reason::InvalidArgument, d.to_string())
        })?;
        let key = self.state.revoke_key(&id).await?;
        Ok(Response::new(pb::RevokeKeyResponse {
            key: Some((&key).into()),
        }))
    }

    type EventsStream =
        std::pin::Pin<Box<dyn Stream<Item = Result<pb::ClusterEvent, Status>> + Send>>;

    async fn events(
        &self,
        req: Request<pb::EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        who(&req)?.require_admin("the event stream")?;
        let req = req.into_inner();
        let events = events::stream(self.state.clone(), req.after_id, req.since_ms, req.follow);
        Ok(Response::new(Box::pin(events.map(|r| {
            r.map(pb::ClusterEvent::from).map_err(Status::from)
        }))))
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
