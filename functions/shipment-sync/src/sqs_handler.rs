//! The shipments queue: courier tracking events, one at a time, partial failures reported.
//! A tracking number no fulfilment carries yet is retried with backoff (the dispatch may not
//! have synced) and parked with its reason when the queue's receives run out. ERP shipments
//! the schedule parked come back here when a person redrives them: each is read from the ERP
//! again and synced, once.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use erpsync_aws::batch::MessageProcessor;
use erpsync_aws::sqs::{ShipmentMessage, attr, string_attribute};
use erpsync_core::SyncError;
use erpsync_core::flows::fulfilment::{
    ShipmentDeps, parse_sale_reference, shipment_entity, sync_shipment,
};
use erpsync_core::flows::tracking::{TrackingDeps, apply_tracking, unknown_tracking_entity};
use erpsync_core::model::state::EntityRef;
use erpsync_core::ports::note_failure;
use erpsync_core::runtime::batch::MessageFailure;
use time::OffsetDateTime;
use tracing::{info, instrument};

use crate::Deps;
use erpsync_core::channels::easypost::parse_easypost;

/// Lease on a claim when the invocation carries no deadline (local runs).
const DEFAULT_LEASE: Duration = Duration::from_secs(60);

struct TrackingProcessor<'a> {
    deps: &'a Deps,
    lease_until: OffsetDateTime,
}

impl TrackingProcessor<'_> {
    /// A failure recorded in its entity's sync state (when known), for the runner.
    async fn failed(&self, error: SyncError, entity: Option<EntityRef>) -> MessageFailure {
        if let Some(entity) = &entity {
            note_failure(
                &self.deps.store,
                entity,
                &error,
                None,
                OffsetDateTime::now_utc(),
            )
            .await;
        }
        MessageFailure {
            error,
            entity,
            version: None,
        }
    }

    /// A parked ERP shipment, redriven: synced as the schedule would have.
    async fn redriven_shipment(&self, body: &str) -> Result<(), MessageFailure> {
        let parked: ShipmentMessage = serde_json::from_str(body).map_err(|e| {
            MessageFailure::unattributed(SyncError::permanent(
                "invalid_message",
                format!("not a parked ERP shipment: {e}"),
            ))
        })?;
        let entity = parse_sale_reference(&parked.sale_reference)
            .map(|(channel, order_id)| shipment_entity(&channel, &order_id, &parked.number));
        let failed = |error: SyncError| MessageFailure {
            error,
            entity: entity.clone(),
            version: None,
        };
        let shipment = self
            .deps
            .erp
            .shipment(parked.erp_shipment)
            .await
            .map_err(failed)?
            .ok_or_else(|| {
                failed(SyncError::permanent(
                    "shipment_not_done",
                    format!(
                        "shipment {} is no longer done in the ERP (cancelled or deleted): nothing to fulfil; discard this message",
                        parked.number
                    ),
                ))
            })?;
        let deps = ShipmentDeps {
            config: &self.deps.config,
            idempotency: &self.deps.store,
            state: &self.deps.store,
            tracking: &self.deps.store,
            shops: &self.deps.channels,
            lease_until: self.lease_until,
        };
        match sync_shipment(&deps, &shipment).await {
            Ok(outcome) => {
                info!(shipment = %shipment.number, ?outcome, "redriven shipment done");
                Ok(())
            }
            Err(error) => Err(self.failed(error, entity).await),
        }
    }
}

#[async_trait]
impl MessageProcessor for TrackingProcessor<'_> {
    async fn process(&self, message: &SqsMessage) -> Result<(), MessageFailure> {
        let body = message.body.as_deref().unwrap_or_default();
        if string_attribute(message, attr::KIND) == Some(attr::ERP_SHIPMENT) {
            return self.redriven_shipment(body).await;
        }
        let update = parse_easypost(body.as_bytes())
            .map_err(|e| {
                MessageFailure::unattributed(SyncError::permanent(
                    "invalid_message",
                    format!("not an EasyPost event: {e}"),
                ))
            })?
            .ok_or_else(|| {
                MessageFailure::unattributed(SyncError::permanent(
                    "invalid_message",
                    "not a tracker.updated event; courier-webhook enqueues only those",
                ))
            })?;
        let deps = TrackingDeps {
            idempotency: &self.deps.store,
            index: &self.deps.store,
            shops: &self.deps.channels,
            lease_until: self.lease_until,
        };
        let entity = unknown_tracking_entity(&update);
        let outcome = match apply_tracking(&deps, &update).await {
            Ok(outcome) => outcome,
            // Filed under the parcel: people see it waiting (retrying), then stuck.
            Err(error) => return Err(self.failed(error, entity).await),
        };
        info!(tracking_code = %update.tracking_code, ?outcome, "tracking event done");
        Ok(())
    }
}

#[instrument(skip_all, fields(messages = event.records.len()))]
pub async fn handle(
    deps: &Deps,
    event: SqsEvent,
    deadline: Option<SystemTime>,
) -> SqsBatchResponse {
    let lease = deadline
        .filter(|d| *d > SystemTime::now())
        .unwrap_or_else(|| SystemTime::now() + DEFAULT_LEASE);
    let processor = TrackingProcessor {
        deps,
        lease_until: OffsetDateTime::from(lease),
    };
    deps.runner.run(event, &processor, deadline).await
}
