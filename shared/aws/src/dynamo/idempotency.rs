//! Idempotency claims: taken, completed together with the entity's state, or released.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem};
use erpsync_core::SyncError;
use erpsync_core::model::state::{Claim, ClaimToken, IdempotencyKey, PayloadHash, SyncRecord};
use erpsync_core::ports::{Completion, IdempotencyStore};
use time::OffsetDateTime;

use super::state::record_update;
use super::{DynamoStore, build_error, idempotency_pk, n, s, store_error};

const IN_PROGRESS: &str = "INPROGRESS";
const COMPLETED: &str = "COMPLETED";

/// How long a completed claim is replayed. Shopify retries a delivery for 4 hours; past
/// this the flow still finds the sale by reference, so expiry never causes a duplicate.
const COMPLETED_TTL: Duration = Duration::from_secs(24 * 3600);

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim(
        &self,
        key: &IdempotencyKey,
        hash: &PayloadHash,
        in_progress_until: OffsetDateTime,
    ) -> Result<Claim, SyncError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let lease = in_progress_until.unix_timestamp();
        let token = ClaimToken::new(format!("{:032x}", rand::random::<u128>()));
        let mut item = Self::key(idempotency_pk(key), "IDEMPOTENCY");
        item.insert("status".to_owned(), s(IN_PROGRESS));
        item.insert("owner".to_owned(), s(token.as_str()));
        item.insert("hash".to_owned(), s(hash.as_str()));
        item.insert("in_progress_expiry".to_owned(), n(lease));
        item.insert(
            "expires_at".to_owned(),
            n(lease.max(now) + COMPLETED_TTL.as_secs() as i64),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // New, expired (TTL deletes late, so expiry is checked here), or a lease that ran out.
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at < :now OR (#status = :in_progress AND in_progress_expiry < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Start(token)),
            Err(error) => match error.into_service_error() {
                PutItemError::ConditionalCheckFailedException(failed) => {
                    let old = failed.item().cloned().unwrap_or_default();
                    let text = |name: &str| old.get(name).and_then(|v| v.as_s().ok()).cloned();
                    if text("status").as_deref() == Some(COMPLETED) {
                        let outcome = text("outcome")
                            .and_then(|o| serde_json::from_str(&o).ok())
                            .unwrap_or(serde_json::Value::Null);
                        Ok(Claim::AlreadyDone {
                            outcome,
                            same_payload: text("hash").as_deref() == Some(hash.as_str()),
                        })
                    } else {
                        Ok(Claim::InProgress)
                    }
                }
                other => Err(store_error("PutItem (claim)", other)),
            },
        }
    }

    async fn complete(
        &self,
        key: &IdempotencyKey,
        token: &ClaimToken,
        hash: &PayloadHash,
        outcome: &serde_json::Value,
        record: &SyncRecord,
    ) -> Result<Completion, SyncError> {
        let now = OffsetDateTime::now_utc();
        let mut item = Self::key(idempotency_pk(key), "IDEMPOTENCY");
        item.insert("status".to_owned(), s(COMPLETED));
        item.insert("owner".to_owned(), s(token.as_str()));
        item.insert("hash".to_owned(), s(hash.as_str()));
        item.insert("outcome".to_owned(), s(outcome.to_string()));
        item.insert(
            "expires_at".to_owned(),
            n(now.unix_timestamp() + COMPLETED_TTL.as_secs() as i64),
        );
        // Only our own claim (or one TTL deleted, which nobody took over) is completed.
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(OWN_CLAIM)
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(token.as_str()))
            .build()
            .map_err(|e| build_error("TransactWriteItems (build)", e))?;
        let update = record_update(&self.table, record, now)
            .build()
            .map_err(|e| build_error("TransactWriteItems (build)", e))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put.clone()).build())
            .transact_items(TransactWriteItem::builder().update(update).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Completion::Recorded),
            Err(error) => match error.into_service_error() {
                // Only the state's version guard refused: a newer version is recorded (an
                // attempt at an older one finished late). The claim is still completed, so
                // the work is never redone; the state is left as it is.
                TransactWriteItemsError::TransactionCanceledException(cancelled)
                    if refused_by_claim_owner(&cancelled) =>
                {
                    tracing::warn!(entity = %record.entity, "the claim ran out and another worker took it over; nothing written");
                    Ok(Completion::TakenOver)
                }
                TransactWriteItemsError::TransactionCanceledException(cancelled)
                    if refused_only_by_version_guard(&cancelled) =>
                {
                    tracing::info!(entity = %record.entity, "a newer version is recorded; the claim is completed without touching the state");
                    let result = self
                        .client
                        .put_item()
                        .table_name(&self.table)
                        .set_item(Some(put.item().clone()))
                        .condition_expression(OWN_CLAIM)
                        .expression_attribute_names("#owner", "owner")
                        .expression_attribute_values(":owner", s(token.as_str()))
                        .send()
                        .await;
                    match result {
                        Ok(_) => Ok(Completion::StateNewer),
                        Err(error) => match error.into_service_error() {
                            PutItemError::ConditionalCheckFailedException(_) => {
                                Ok(Completion::TakenOver)
                            }
                            other => Err(store_error("PutItem (complete)", other)),
                        },
                    }
                }
                other => Err(store_error("TransactWriteItems (complete)", other)),
            },
        }
    }

    async fn release(&self, key: &IdempotencyKey, token: &ClaimToken) -> Result<(), SyncError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(idempotency_pk(key), "IDEMPOTENCY")))
            // Never delete a completed record, nor a claim another worker took over.
            .condition_expression(
                "attribute_not_exists(pk) OR (#status = :in_progress AND #owner = :owner)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":owner", s(token.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => match error.into_service_error() {
                // Someone took it over or completed it after our lease ran out: nothing of
                // ours to give up.
                DeleteItemError::ConditionalCheckFailedException(_) => Ok(()),
                other => Err(store_error("DeleteItem (release)", other)),
            },
        }
    }
}

/// A claim is this worker's to complete: its token, or gone (TTL deleted it) and so taken by
/// nobody. Claims written before tokens existed have no owner: theirs completes as before.
const OWN_CLAIM: &str =
    "attribute_not_exists(pk) OR attribute_not_exists(#owner) OR #owner = :owner";

/// The transaction was cancelled by the claim's owner condition (item 0): another worker took
/// the claim over.
fn refused_by_claim_owner(
    cancelled: &aws_sdk_dynamodb::types::error::TransactionCanceledException,
) -> bool {
    cancelled
        .cancellation_reasons()
        .first()
        .is_some_and(|reason| reason.code() == Some("ConditionalCheckFailed"))
}

/// The transaction was cancelled by the state update's condition (item 1) alone, not by
/// a conflict or a capacity error.
fn refused_only_by_version_guard(
    cancelled: &aws_sdk_dynamodb::types::error::TransactionCanceledException,
) -> bool {
    let codes: Vec<Option<&str>> = cancelled
        .cancellation_reasons()
        .iter()
        .map(|reason| reason.code())
        .collect();
    matches!(
        codes.as_slice(),
        [None | Some("None"), Some("ConditionalCheckFailed")]
    )
}
