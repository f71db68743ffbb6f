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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use erpsync_core::ErrorClass;

    #[test]
    fn an_access_denied_is_permanent_and_names_what_was_refused() {
        let refused = ErrorMetadata::builder()
            .code("AccessDeniedException")
            .message("User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: dynamodb:BatchGetItem on resource: arn:aws:dynamodb:eu-west-1:1:table/t")
            .build();
        let error = access_denied("DynamoDB", "BatchGetItem", &refused)
            .unwrap_or_else(|| panic!("not recognised as a refusal"));
        assert_eq!(error.class, ErrorClass::Permanent);
        assert_eq!(error.kind, ACCESS_DENIED);
        assert!(!error.dependency_down);
        assert!(
            error.message.contains("dynamodb:BatchGetItem") && error.message.contains("table/t")
        );
        let query_protocol = ErrorMetadata::builder().code("AccessDenied").build();
        assert!(is_access_denied(&query_protocol));
    }

    #[test]
    fn other_errors_are_left_to_their_own_class() {
        let throttled = ErrorMetadata::builder()
            .code("ProvisionedThroughputExceededException")
            .build();
        assert!(access_denied("DynamoDB", "GetItem", &throttled).is_none());
    }
}
