//! Decoding requests into domain types and encoding answers, for both gRPC services:
//! the caller, paths, chunk references, attributes, replication factors, placements and
//! chunk locations, and the limits on what one call may carry. What must be checked
//! against the caller or the cluster's limits (and refused with a status) is decoded
//! here; the plain translations of domain types are `crate::proto::convert`.

use tonic::{Request, Status};

use super::access::Credentials;
use super::namespace::ChunkLocation;
use super::uploads::{ChunkClaim, Placement};
use crate::chunk::ChunkId;
use crate::model::{Attrs, ComposeRequest, NodeEndpoint};
use crate::path::DfsPath;
use crate::proto::pb;
use crate::security::keys::{Principal, KEY_ID_HEADER, ON_BEHALF_HEADER, SECRET_HEADER};
use crate::security::{peer_role, Role};

/// Most entries one List call returns.
pub const LIST_PAGE_MAX: usize = 1000;
/// Most chunks one GetFile call returns.
pub const GETFILE_PAGE_MAX: usize = 4096;
/// Most chunks one PlaceChunks or ReportReplicas call may name.
pub const BATCH_MAX: usize = 4096;

/// The caller, as the authentication interceptor found it. There is none when a gateway
/// certificate came without a key, which only GetS3Credential accepts.
pub fn who<T>(req: &Request<T>) -> Result<Principal, Status> {
    req.extensions().get::<Principal>().cloned().ok_or_else(|| {
        Status::unauthenticated(
            "no access key: a gateway certificate alone allows only GetS3Credential",
        )
    })
}

pub fn parse_path(s: &str) -> Result<DfsPath, Status> {
    crate::grpc_layer::record_path(s);
    Ok(DfsPath::parse(s)?)
}

pub fn parse_chunks(refs: &[pb::ChunkRef], max_size: u64) -> Result<Vec<(ChunkId, u64)>, Status> {
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
pub fn parse_claims(refs: Vec<pb::ChunkRef>, max_size: u64) -> Result<Vec<ChunkClaim>, Status> {
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
pub const COMPOSE_MAX_SOURCES: usize = 10_000;
/// Limits on a file version's attributes: S3 allows 2 KiB of user metadata.
const ATTRS_MAX_ENTRIES: usize = 64;
const ATTRS_MAX_BYTES: usize = 8 * 1024;

/// Checks attributes from the wire: bounded in count and size, names non-empty and free
/// of control characters.
pub fn parse_attrs(wire: std::collections::HashMap<String, String>) -> Result<Attrs, Status> {
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
pub fn replication_or_default(requested: u32, default: u32) -> Result<u32, Status> {
    let r = if requested == 0 { default } else { requested };
    if r > 16 {
        return Err(Status::invalid_argument(format!(
            "replication {r}: at most 16"
        )));
    }
    Ok(r)
}

/// A Compose call as a request of the caller's: it must read every source and write the
/// destination and whatever it deletes.
pub fn compose_request(
    who: &Principal,
    req: pb::ComposeRequest,
    default_replication: u32,
) -> Result<ComposeRequest, Status> {
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
    Ok(ComposeRequest {
        sources,
        dst,
        replication: replication_or_default(req.replication, default_replication)?,
        no_clobber: req.no_clobber,
        expected_version: req.expected_version,
        attrs: parse_attrs(req.attrs)?,
        delete_after,
    })
}

/// The caller's credentials as a call carries them, for `State::authenticate`.
pub fn credentials<T>(req: &Request<T>) -> Credentials<'_> {
    let header = |k: &str| {
        req.metadata()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
    };
    Credentials {
        key_id: header(KEY_ID_HEADER),
        secret: header(SECRET_HEADER),
        on_behalf_of: header(ON_BEHALF_HEADER),
        gateway_cert: peer_role(req) == Some(Role::Gateway),
    }
}

pub fn node_addr(n: NodeEndpoint) -> pb::NodeAddr {
    n.into()
}

pub fn placement_pb(p: Placement) -> pb::ChunkPlacement {
    pb::ChunkPlacement {
        chunk_id: p.id.to_hex(),
        existing: p.existing.iter().map(|n| n.id.clone()).collect(),
        existing_replicas: p.existing.into_iter().map(node_addr).collect(),
        targets: p.targets.into_iter().map(|c| node_addr(c.node)).collect(),
        token: p.write_token,
        read_token: p.read_token,
        receipt: p.grant.map(Into::into),
    }
}

pub fn location_pb(l: ChunkLocation) -> pb::ChunkLocation {
    pb::ChunkLocation {
        chunk_id: l.chunk.chunk_id.to_hex(),
        size: l.chunk.size,
        offset: l.chunk.offset,
        replicas: l.replicas.into_iter().map(node_addr).collect(),
        token: l.read_token,
    }
}
