//! The one place where domain errors become gRPC statuses.

use tonic::{Code, Status};

use crate::chunk::InvalidChunkId;
use crate::coordinator::keys::KeyError;
use crate::coordinator::uploads::UploadError;
use crate::meta::MetaError;
use crate::path::PathError;

impl From<MetaError> for Status {
    fn from(e: MetaError) -> Status {
        let code = match &e {
            MetaError::NotFound(_) | MetaError::NoSuchKey(_) => Code::NotFound,
            MetaError::AlreadyExists(_) | MetaError::KeyExists(_) => Code::AlreadyExists,
            MetaError::NotADirectory(_) | MetaError::IsADirectory(_) | MetaError::NotEmpty(_) => {
                Code::FailedPrecondition
            }
            MetaError::VersionMismatch { .. } => Code::FailedPrecondition,
            MetaError::QuorumNotMet { .. } => Code::FailedPrecondition,
            MetaError::UnknownNode(_) => Code::FailedPrecondition,
            MetaError::Invalid(_) => Code::InvalidArgument,
            MetaError::Backend(_) => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(error = %e, "metadata store failed");
        }
        Status::new(code, e.to_string())
    }
}

impl From<PathError> for Status {
    fn from(e: PathError) -> Status {
        Status::invalid_argument(e.to_string())
    }
}

impl From<InvalidChunkId> for Status {
    fn from(e: InvalidChunkId) -> Status {
        Status::invalid_argument(e.to_string())
    }
}

/// Node ids are 1 to 64 characters of `[A-Za-z0-9_-]`.
pub fn check_node_id(id: &str) -> Result<(), Status> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "invalid node id {:?}: expected 1 to 64 of [A-Za-z0-9_-]",
            id.chars().take(80).collect::<String>()
        )))
    }
}

impl From<UploadError> for Status {
    fn from(e: UploadError) -> Status {
        let code = match &e {
            UploadError::Meta(_) => Code::Internal,
            UploadError::TooManyUploads { .. } | UploadError::TooManyChunks { .. } => {
                Code::ResourceExhausted
            }
            UploadError::Unknown(_) => Code::NotFound,
            UploadError::NotOwner(_) => Code::PermissionDenied,
            UploadError::NoReceipt(_) | UploadError::IsADirectory(_) => Code::FailedPrecondition,
            UploadError::StoredWithoutReceipt(_) => Code::InvalidArgument,
            UploadError::NoRoom { .. } => Code::Unavailable,
            UploadError::AlreadyExists(_) => Code::AlreadyExists,
        };
        match e {
            UploadError::Meta(m) => m.into(),
            e => Status::new(code, e.to_string()),
        }
    }
}

impl From<KeyError> for Status {
    fn from(e: KeyError) -> Status {
        match e {
            KeyError::Meta(m) => m.into(),
            KeyError::BadName => Status::invalid_argument(e.to_string()),
            KeyError::LastAdmin(_) => Status::failed_precondition(e.to_string()),
        }
    }
}
