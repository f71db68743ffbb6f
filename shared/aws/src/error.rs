//! AWS errors as the flows see them. An AccessDenied is the deployment's IAM refusing the
//! call: no retry changes that, so it is permanent, and its message names the action and the
//! resource (AWS's own message does) so the missing grant can be added to the template.

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use erpsync_core::SyncError;

/// The kind of a call IAM refused.
pub const ACCESS_DENIED: &str = "access_denied";

/// Whether `error` is IAM refusing the call (`AccessDeniedException` on the JSON protocols,
/// `AccessDenied` on the query ones).
pub fn is_access_denied(error: &impl ProvideErrorMetadata) -> bool {
    matches!(error.code(), Some("AccessDeniedException" | "AccessDenied"))
}

/// A permanent `access_denied` error when `error` is IAM refusing `service` `operation`.
pub fn access_denied(
    service: &str,
    operation: &str,
    error: &impl ProvideErrorMetadata,
) -> Option<SyncError> {
    is_access_denied(error).then(|| {
        SyncError::permanent(
            ACCESS_DENIED,
            format!(
                "{service} {operation} was refused by IAM: {}. Grant the action on that resource to the function's role in infra/template.yaml, deploy, then redrive",
                error.message().unwrap_or("access denied")
            ),
        )
    })
}
