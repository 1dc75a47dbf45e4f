//! The wire error contract: the one place where domain errors become gRPC statuses and
//! statuses become something a caller can branch on.
//!
//! A refusal travels as a gRPC code (for any gRPC tool), a message (for people) and an
//! [`ErrorDetail`](pb::ErrorDetail) in the status details whose [`Reason`] is what programs
//! branch on. [`status`] builds such a status; [`failure`] reads one back, telling a
//! server's answer from a local transport failure (refused connection, timeout, reset) by
//! the error source tonic attaches to the latter, never by the message text.

use std::error::Error as StdError;

use prost::Message;
use tonic::{Code, Status};

use crate::chunk::InvalidChunkId;
use crate::coordinator::access::CredentialError;
use crate::coordinator::admin::AdminError;
use crate::coordinator::bad_replicas::ReportError;
use crate::coordinator::buckets::BucketError;
use crate::coordinator::keys::KeyError;
use crate::coordinator::trust::RevokeError;
use crate::coordinator::uploads::UploadError;
use crate::datanode::acks::DeleteError;
use crate::datanode::cluster::CallError;
use crate::datanode::peer::PeerError;
use crate::datanode::pipeline::PipelineError;
use crate::datanode::replicate::ReplicateError;
use crate::datanode::store::StoreError;
use crate::meta::MetaError;
use crate::path::PathError;
use crate::proto::pb;

pub use crate::proto::pb::ErrorReason as Reason;

/// A refusal with a machine-readable reason; the gRPC code follows from the reason.
pub fn status(reason: Reason, message: impl Into<String>) -> Status {
    status_about(reason, String::new(), message)
}

/// A refusal about one path (see [`pb::ErrorDetail::subject`]).
pub fn status_about(reason: Reason, subject: String, message: impl Into<String>) -> Status {
    let detail = pb::ErrorDetail {
        reason: reason as i32,
        subject,
    };
    Status::with_details(code_of(reason), message, detail.encode_to_vec().into())
}

/// The gRPC code each reason travels with, so that tools which know only codes still
/// read the refusal the right way.
pub fn code_of(reason: Reason) -> Code {
    match reason {
        Reason::NotFound => Code::NotFound,
        Reason::AlreadyExists => Code::AlreadyExists,
        Reason::VersionMismatch
        | Reason::QuorumNotMet
        | Reason::NotADirectory
        | Reason::IsADirectory
        | Reason::NotEmpty
        | Reason::Precondition => Code::FailedPrecondition,
        Reason::UploadUnknown => Code::NotFound,
        Reason::PermissionDenied => Code::PermissionDenied,
        Reason::NotAuthenticated => Code::Unauthenticated,
        Reason::InvalidArgument => Code::InvalidArgument,
        Reason::Integrity => Code::DataLoss,
        Reason::LimitExceeded => Code::ResourceExhausted,
        Reason::Unavailable => Code::Unavailable,
        Reason::Aborted => Code::Aborted,
        Reason::Internal | Reason::Unspecified => Code::Internal,
    }
}

/// The reason a status carries: its detail when a dfsd server sent one, else what its
/// code alone can say.
pub fn reason(s: &Status) -> Reason {
    detail(s).0
}

/// The reason and subject of a status.
fn detail(s: &Status) -> (Reason, String) {
    let d = pb::ErrorDetail::decode(s.details()).unwrap_or_default();
    match Reason::try_from(d.reason) {
        Ok(r) if r != Reason::Unspecified => (r, d.subject),
        _ => (reason_from_code(s.code()), String::new()),
    }
}

fn reason_from_code(code: Code) -> Reason {
    match code {
        Code::NotFound => Reason::NotFound,
        Code::AlreadyExists => Reason::AlreadyExists,
        Code::PermissionDenied => Reason::PermissionDenied,
        Code::Unauthenticated => Reason::NotAuthenticated,
        Code::InvalidArgument | Code::OutOfRange => Reason::InvalidArgument,
        Code::FailedPrecondition => Reason::Precondition,
        Code::ResourceExhausted => Reason::LimitExceeded,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => Reason::Unavailable,
        Code::Aborted => Reason::Aborted,
        Code::DataLoss => Reason::Integrity,
        Code::Ok | Code::Unknown | Code::Unimplemented | Code::Internal => Reason::Internal,
    }
}

/// How a call failed, as read from its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server answered with a refusal (`subject`: see [`pb::ErrorDetail::subject`]).
    Refused {
        reason: Reason,
        subject: String,
        message: String,
    },
    /// The call never got an answer: the connection could not be made or broke, or the
    /// call's deadline passed on the way.
    Transport {
        cause: TransportCause,
        detail: String,
    },
}

/// What went wrong on the way to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportCause {
    /// Nothing listens there (or a firewall said so).
    Refused,
    /// The connection or the call timed out.
    TimedOut,
    /// Anything else: a reset, a broken HTTP/2 exchange (often TLS on one side only), DNS.
    Broken,
}

/// Reads a failed call's status. tonic attaches the underlying error as the status's
/// source when it made the status itself (connect failure, timeout, broken stream); a
/// status decoded from a server's answer has none.
pub fn failure(s: &Status) -> Failure {
    let Some(source) = StdError::source(s) else {
        let (reason, subject) = detail(s);
        return Failure::Refused {
            reason,
            subject,
            message: s.message().to_string(),
        };
    };
    let mut cause = TransportCause::Broken;
    let mut last: &(dyn StdError + 'static) = source;
    let mut next = Some(source);
    while let Some(e) = next {
        if e.is::<tonic::TimeoutExpired>() {
            cause = TransportCause::TimedOut;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => cause = TransportCause::Refused,
                std::io::ErrorKind::TimedOut => cause = TransportCause::TimedOut,
                _ => {}
            }
        }
        last = e;
        next = e.source();
    }
    Failure::Transport {
        cause,
        detail: last.to_string(),
    }
}

impl From<MetaError> for Status {
    fn from(e: MetaError) -> Status {
        if let MetaError::VersionMismatch { path, .. } = &e {
            return status_about(Reason::VersionMismatch, path.to_string(), e.to_string());
        }
        let reason = match &e {
            MetaError::NotFound(_) | MetaError::NoSuchKey(_) => Reason::NotFound,
            MetaError::AlreadyExists(_) | MetaError::KeyExists(_) => Reason::AlreadyExists,
            MetaError::NotADirectory(_) => Reason::NotADirectory,
            MetaError::IsADirectory(_) => Reason::IsADirectory,
            MetaError::NotEmpty(_) => Reason::NotEmpty,
            MetaError::VersionMismatch { .. } => Reason::VersionMismatch,
            MetaError::QuorumNotMet { .. } => Reason::QuorumNotMet,
            MetaError::UnknownNode(_) => Reason::Precondition,
            MetaError::Invalid(_) => Reason::InvalidArgument,
            MetaError::Backend(_) => Reason::Internal,
        };
        if reason == Reason::Internal {
            tracing::error!(error = %e, "metadata store failed");
        }
        status(reason, e.to_string())
    }
}

impl From<PathError> for Status {
    fn from(e: PathError) -> Status {
        status(Reason::InvalidArgument, e.to_string())
    }
}

impl From<InvalidChunkId> for Status {
    fn from(e: InvalidChunkId) -> Status {
        status(Reason::InvalidArgument, e.to_string())
    }
}

/// Node ids are 1 to 64 characters of `[A-Za-z0-9_-]` (`model::NodeId`).
pub fn check_node_id(id: &str) -> Result<(), Status> {
    crate::model::NodeId::parse(id)
        .map(drop)
        .map_err(|e| status(Reason::InvalidArgument, e.to_string()))
}

impl From<crate::security::Denied> for Status {
    fn from(d: crate::security::Denied) -> Status {
        use crate::security::Denied;
        match d {
            Denied::Unauthenticated(m) => status(Reason::NotAuthenticated, m),
            Denied::Forbidden(m) => status(Reason::PermissionDenied, m),
        }
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        match &e {
            StoreError::TooLong { .. }
            | StoreError::SizeMismatch { .. }
            | StoreError::HashMismatch { .. }
            | StoreError::ChunkTooLarge { .. } => status(Reason::InvalidArgument, e.to_string()),
            StoreError::NoSpace { .. } => status(Reason::LimitExceeded, e.to_string()),
            StoreError::NotFound(_) => status(Reason::NotFound, e.to_string()),
            StoreError::Io { .. } => {
                tracing::error!(error = %e, "chunk store I/O failed");
                status(Reason::Internal, e.to_string())
            }
        }
    }
}

impl From<DeleteError> for Status {
    fn from(e: DeleteError) -> Status {
        status(Reason::Internal, e.to_string())
    }
}

impl From<Status> for PeerError {
    fn from(s: Status) -> PeerError {
        let message = s.message().to_string();
        match s.code() {
            Code::NotFound => PeerError::NotFound(message),
            Code::Unavailable => PeerError::Unreachable(message),
            Code::InvalidArgument => PeerError::Invalid(message),
            _ => PeerError::Failed(message),
        }
    }
}

impl From<PeerError> for Status {
    fn from(e: PeerError) -> Status {
        match e {
            PeerError::NotFound(m) => status(Reason::NotFound, m),
            PeerError::Unreachable(m) => status(Reason::Unavailable, m),
            PeerError::Invalid(m) => status(Reason::InvalidArgument, m),
            PeerError::Failed(m) => status(Reason::Internal, m),
        }
    }
}

impl From<PipelineError> for Status {
    fn from(e: PipelineError) -> Status {
        match e {
            PipelineError::FrameTooLarge { .. } => status(Reason::InvalidArgument, e.to_string()),
            PipelineError::Store(e) => e.into(),
            PipelineError::Downstream(e) => e.into(),
        }
    }
}

impl From<ReplicateError> for Status {
    fn from(e: ReplicateError) -> Status {
        match e {
            ReplicateError::Store(e) => e.into(),
            ReplicateError::SourceCount { .. } | ReplicateError::SizeConflict { .. } => {
                status(Reason::InvalidArgument, e.to_string())
            }
            ReplicateError::NoSource {
                all_not_found: true,
                ..
            } => status(Reason::NotFound, e.to_string()),
            ReplicateError::NoSource { .. }
            | ReplicateError::NotAcknowledged { .. }
            | ReplicateError::ShuttingDown => status(Reason::Unavailable, e.to_string()),
            ReplicateError::WriterStopped { .. } => status(Reason::Internal, e.to_string()),
        }
    }
}

/// The coordinator's answers to a datanode's background calls worth calling again for: it
/// is unreachable, or not ready for this node (restarting, or not yet knowing it).
impl From<Status> for CallError {
    fn from(s: Status) -> CallError {
        match failure(&s) {
            // No answer (the connection broke, e.g. to a coordinator that just restarted):
            // the next call opens a new one.
            Failure::Transport { .. } => CallError::NotReady(s.message().to_string()),
            Failure::Refused {
                reason, message, ..
            } => match reason {
                Reason::Unavailable
                | Reason::NotFound
                | Reason::Precondition
                | Reason::NotAuthenticated => CallError::NotReady(message),
                _ => CallError::Refused(message),
            },
        }
    }
}

impl From<UploadError> for Status {
    fn from(e: UploadError) -> Status {
        let reason = match &e {
            UploadError::Meta(_) => Reason::Internal,
            UploadError::TooManyUploads { .. } | UploadError::TooManyChunks { .. } => {
                Reason::LimitExceeded
            }
            UploadError::Unknown(_) => Reason::UploadUnknown,
            UploadError::NotOwner(_) => Reason::PermissionDenied,
            UploadError::NoReceipt(_) => Reason::Precondition,
            UploadError::IsADirectory(_) => Reason::IsADirectory,
            UploadError::StoredWithoutReceipt(_) => Reason::InvalidArgument,
            UploadError::NoRoom { .. } => Reason::Unavailable,
            UploadError::AlreadyExists(_) => Reason::AlreadyExists,
        };
        match e {
            UploadError::Meta(m) => m.into(),
            e => status(reason, e.to_string()),
        }
    }
}

impl From<AdminError> for Status {
    fn from(e: AdminError) -> Status {
        let reason = match &e {
            AdminError::BadNodeId(_) => Reason::InvalidArgument,
            AdminError::UnknownNode(_) => Reason::NotFound,
            AdminError::NotRemovable { .. } | AdminError::SoleReplicas { .. } => {
                Reason::Precondition
            }
            AdminError::Path(_) => Reason::InvalidArgument,
            AdminError::Meta(_) => Reason::Internal,
        };
        match e {
            AdminError::Meta(m) => m.into(),
            e => status(reason, e.to_string()),
        }
    }
}

impl From<CredentialError> for Status {
    fn from(e: CredentialError) -> Status {
        let reason = match &e {
            CredentialError::BadKeyId(_) => Reason::InvalidArgument,
            CredentialError::NoSuchKey(_) => Reason::NotFound,
            CredentialError::Revoked(_) => Reason::PermissionDenied,
            CredentialError::NoS3Secret(_) => Reason::Precondition,
            CredentialError::Unsealable { .. } => Reason::Internal,
        };
        status(reason, e.to_string())
    }
}

impl From<BucketError> for Status {
    fn from(e: BucketError) -> Status {
        match e {
            BucketError::Denied(d) => d.into(),
            BucketError::Meta(m) => m.into(),
            e => status(Reason::InvalidArgument, e.to_string()),
        }
    }
}

impl From<RevokeError> for Status {
    fn from(e: RevokeError) -> Status {
        match e {
            RevokeError::Meta(m) => m.into(),
            e @ RevokeError::OwnCertificate(_) => status(Reason::Precondition, e.to_string()),
            e => status(Reason::InvalidArgument, e.to_string()),
        }
    }
}

impl From<ReportError> for Status {
    fn from(e: ReportError) -> Status {
        match e {
            ReportError::Denied(d) => d.into(),
            ReportError::Meta(m) => m.into(),
            e @ ReportError::BadNodeId(_) => status(Reason::InvalidArgument, e.to_string()),
            e => status(Reason::NotFound, e.to_string()),
        }
    }
}

impl From<KeyError> for Status {
    fn from(e: KeyError) -> Status {
        match e {
            KeyError::Meta(m) => m.into(),
            KeyError::BadName => status(Reason::InvalidArgument, e.to_string()),
            KeyError::LastAdmin(_) => status(Reason::Precondition, e.to_string()),
        }
    }
}
