//! The schedule: every ERP shipment done since the cursor becomes its shop fulfilment.
//! A shipment the shop refuses (order unknown, nothing of it open) needs a person and does
//! not hold the others up; a shop or ERP outage leaves the cursor where it was, so the next
//! run sees the same shipments again (each is fulfilled once, by its claim).

use std::time::SystemTime;

use erpsync_core::ErrorClass;
use erpsync_core::changes::{Cursors, next_cursor, window_start};
use erpsync_core::fulfilment::{
    ShipmentDeps, ShipmentOutcome, parse_sale_reference, sync_shipment,
};
use erpsync_core::ports::note_failure;
use erpsync_core::state::{EntityRef, Flow};
use serde::Serialize;
use time::OffsetDateTime;
use tracing::{info, instrument, warn};

use crate::Deps;

pub const SHIPMENT_CURSOR: &str = "shipments-done";

#[derive(Debug, Default, Serialize)]
pub struct ShipmentRun {
    pub shipments: usize,
    pub fulfilled: usize,
    pub already: usize,
    pub needs_attention: Vec<String>,
    /// A dependency failed: the cursor stays and the next run retries.
    pub error: Option<String>,
}

#[instrument(skip_all)]
pub async fn handle(deps: &Deps, deadline: Option<SystemTime>) -> ShipmentRun {
    let mut run = ShipmentRun::default();
    let cursor = match deps.store.cursor(SHIPMENT_CURSOR).await {
        Ok(cursor) => cursor,
        Err(e) => {
            run.error = Some(e.to_string());
            return run;
        }
    };
    let now = OffsetDateTime::now_utc();
    let start = window_start(cursor, now);
    let (shipments, latest) = match deps.erp.shipments_done_since(start).await {
        Ok(found) => found,
        Err(e) => {
            run.error = Some(e.to_string());
            return run;
        }
    };
    run.shipments = shipments.len();
    let lease_until = deadline.map_or(now + time::Duration::minutes(5), OffsetDateTime::from);
    let shipment_deps = ShipmentDeps {
        config: &deps.config,
        idempotency: &deps.store,
        state: &deps.store,
        tracking: &deps.store,
        shops: &deps.channels,
        lease_until,
    };
    let mut blocked = false;
    for shipment in &shipments {
        match sync_shipment(&shipment_deps, shipment).await {
            Ok(ShipmentOutcome::Fulfilled { .. }) => run.fulfilled += 1,
            Ok(ShipmentOutcome::NotFromAChannel) => {}
            Ok(_) => run.already += 1,
            Err(failure) if failure.class == ErrorClass::Permanent => {
                warn!(shipment = %shipment.number, error = %failure, "shipment needs attention");
                run.needs_attention
                    .push(format!("{}: {}", shipment.number, failure.message));
                if let Some((channel, order_id)) = parse_sale_reference(&shipment.sale_reference) {
                    let entity = EntityRef {
                        flow: Flow::ShipmentSync,
                        channel,
                        entity_id: order_id,
                    };
                    note_failure(
                        &deps.store,
                        &entity,
                        &failure,
                        None,
                        OffsetDateTime::now_utc(),
                    )
                    .await;
                }
            }
            Err(failure) => {
                warn!(shipment = %shipment.number, error = %failure, "shipment not synced; the next run retries");
                run.error = Some(failure.to_string());
                blocked = true;
            }
        }
    }
    if !blocked
        && let Err(e) = deps
            .store
            .set_cursor(SHIPMENT_CURSOR, next_cursor(cursor, latest, start))
            .await
    {
        run.error = Some(e.to_string());
    }
    info!(
        shipments = run.shipments,
        fulfilled = run.fulfilled,
        "shipment run done"
    );
    run
}
