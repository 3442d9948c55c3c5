//! Client errors: each names the operation, the path and the errno.

use crate::wire::{Op, WireError, errno};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Xenstored answered `XS_ERROR`.
    #[error("xenstore {op} {path}: {} (errno {errno})", errno::name(*errno))]
    Xs { op: Op, path: String, errno: i32 },
    /// Socket or device I/O failed.
    #[error("xenstore {op} {path}: I/O error: {source}")]
    Io {
        op: Op,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("xenstore connection to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("xenstore {op} {path}: protocol error: {source}")]
    Wire {
        op: Op,
        path: String,
        #[source]
        source: WireError,
    },
    #[error("xenstore {op} {path}: unexpected reply (type {ty}, req_id {req_id})")]
    Unexpected {
        op: Op,
        path: String,
        ty: u32,
        req_id: u32,
    },
    #[error("xenstore {op} not supported by the {dialect:?} dialect")]
    Unsupported {
        op: Op,
        dialect: crate::wire::Dialect,
    },
    #[error("xenstore {path}: value is not UTF-8")]
    NotUtf8 { path: String },
}

impl Error {
    /// The Xenstore errno, if the daemon answered with an error.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Xs { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    pub fn is_enoent(&self) -> bool {
        self.errno() == Some(errno::ENOENT)
    }

    pub fn is_eexist(&self) -> bool {
        self.errno() == Some(errno::EEXIST)
    }

    pub fn is_eagain(&self) -> bool {
        self.errno() == Some(errno::EAGAIN)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
