//! The one table that turns domain errors into gRPC statuses.

use tonic::Status;

use crate::feed::FeedError;
use crate::store::StoreError;

impl From<FeedError> for Status {
    fn from(e: FeedError) -> Status {
        match &e {
            FeedError::Trimmed { .. } | FeedError::Ahead { .. } => {
                Status::out_of_range(e.to_string())
            }
            FeedError::Closed(_) => Status::unavailable(e.to_string()),
            FeedError::Append { .. } => Status::internal(e.to_string()),
            FeedError::Store(inner) => store_status(inner),
        }
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        store_status(&e)
    }
}

fn store_status(e: &StoreError) -> Status {
    tracing::error!(error = %e, "storage failure");
    Status::internal(e.to_string())
}
