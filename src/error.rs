//! The service's error type: what the engine reports to any transport. The
//! gRPC layer maps it to `tonic::Status` in exactly one place.

use crate::{domain::InvalidField, storage::StoreError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the field path says where.
    #[error("invalid argument: {0}")]
    InvalidArgument(#[from] InvalidField),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// Concurrent writers to one contact kept conflicting; nothing was written.
    #[error("contact {0:?} is being updated concurrently, retry")]
    Contention(String),
    /// The mapping tables on disk do not load; the tables in force stay.
    #[error("provider tables not reloaded: {0}")]
    BadTables(String),
    /// The store is still opening.
    #[error("the store is not open yet")]
    NotReady,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
