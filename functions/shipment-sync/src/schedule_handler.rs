//! The schedule: every ERP shipment done since each channel's cursor becomes its shop
//! fulfilment (`erpsync_core::flows::fulfilment::run`: cursors per channel, paged ERP reads
//! within the invocation's time, failing shipments parked for a person after their attempts).

use std::time::SystemTime;

use erpsync_core::flows::fulfilment::ShipmentDeps;
use erpsync_core::flows::fulfilment::run::{ShipmentRun, ShipmentRunDeps, run_shipments};
use time::OffsetDateTime;
use tracing::instrument;

use crate::Deps;

#[instrument(skip_all)]
pub async fn handle(deps: &Deps, deadline: Option<SystemTime>) -> ShipmentRun {
    let deadline = erpsync_core::runtime::deadline::given(deadline);
    let now = OffsetDateTime::now_utc();
    let lease_until = deadline.map_or(now + time::Duration::minutes(5), OffsetDateTime::from);
    let run_deps = ShipmentRunDeps {
        shipment: ShipmentDeps {
            config: &deps.config,
            idempotency: &deps.store,
            state: &deps.store,
            tracking: &deps.store,
            shops: &deps.channels,
            lease_until,
        },
        erp: deps.erp.as_ref(),
        cursors: &deps.store,
        parked: &deps.runner.dead_letter,
    };
    run_shipments(&run_deps, now, deadline).await
}
