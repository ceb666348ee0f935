//! What the DynamoDB adapters (records store, tenant registry, token lease) share.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// Whether a DynamoDB call of any operation failed on its condition expression: the one
/// test every adapter uses.
pub(crate) fn is_conditional<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}
