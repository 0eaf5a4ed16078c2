//! The one place where service errors become gRPC statuses.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{error::Error, storage::StoreError};

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        match error {
            Error::InvalidArgument(field) => {
                // Reasons name the field and the rule, never the value: an
                // address in a refused event must not reach the log.
                tracing::debug!(field = %field.field, reason = %field.reason, "invalid argument");
                Status::with_error_details(
                    Code::InvalidArgument,
                    field.to_string(),
                    ErrorDetails::with_bad_request_violation(field.field, field.reason),
                )
            }
            Error::NotFound(what) => Status::not_found(format!("{what} not found")),
            e @ Error::Contention(_) => Status::aborted(e.to_string()),
            e @ Error::NotReady => Status::unavailable(e.to_string()),
            e @ Error::BadTables(_) => Status::failed_precondition(e.to_string()),
            Error::Store(e) => store_status(e),
        }
    }
}

fn store_status(error: StoreError) -> Status {
    match error {
        e @ StoreError::Unavailable(_) => Status::unavailable(e.to_string()),
        e @ StoreError::Corrupt { .. } => {
            tracing::error!(error = %e, "corrupt record");
            Status::data_loss(e.to_string())
        }
        StoreError::Internal(detail) => {
            // Details are for the log, not for clients.
            tracing::error!(error = %detail, "store failure");
            Status::internal("internal store failure, see the server log")
        }
    }
}
