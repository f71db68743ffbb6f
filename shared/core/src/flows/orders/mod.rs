//! The order intake flow: a channel's order message -> exactly one confirmed ERP sale.
//!
//! Exactly once rests on three things, each covering the others' gaps: the idempotency claim
//! (replays and concurrent duplicates), the look-up of the sale by its reference before
//! creating it (a crash between the ERP write and the state write), and the confirm step
//! that resumes from whatever state the sale is in.

mod customers;
pub mod edits;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::channels;
use crate::config::{ChannelConfig, Config, Mode, Owner};
use crate::error::SyncError;
use crate::mapping::{self, SaleDraft};
use crate::model::ids::{ChannelId, Sku};
use crate::model::order::{ChannelOrder, OrderTopic};
use crate::model::state::{
    Claim, ClaimToken, EntityRef, Flow, IdempotencyKey, PayloadHash, SyncRecord, SyncState,
    SyncStatus, payload_version,
};
use crate::ports::ErpStock;
use crate::ports::confirm;
use crate::ports::{
    ArchivedPayload, Completion, ErpCustomer, ErpSale, ErpSaleState, IdempotencyStore, NewSale,
    PayloadArchive, SaleAmendment, SalesErp, StockSignal, SyncStateStore, keep_one_sale,
    note_failure,
};
use crate::runtime::batch::MessageFailure;
use customers::{address_for, ensure_customer};

/// An order message as it comes off the orders queue.
#[derive(Debug, Clone)]
pub struct OrderMessage {
    pub channel: ChannelId,
    pub topic: OrderTopic,
    pub body: Vec<u8>,
    /// When the platform triggered the delivery (Shopify's `X-Shopify-Triggered-At`;
    /// reconciliation's fetch): orders two versions of one second.
    pub triggered_at: Option<OffsetDateTime>,
}

impl OrderMessage {
    /// Which version of the order this payload is ([`payload_version`]).
    fn version(&self, order: &ChannelOrder) -> OffsetDateTime {
        payload_version(order.updated_at, self.triggered_at, &self.body)
    }

    /// Its version without processing it (a message parked unattempted records which version
    /// failed, so an older one applied later cannot clear the failure); None: unreadable.
    pub fn version_in(&self, config: &Config) -> Option<OffsetDateTime> {
        let channel = config.channels.iter().find(|c| c.id == self.channel)?;
        let order = channels::parse_order(channel.platform, &channel.id, &self.body).ok()?;
        Some(self.version(&order))
    }
}

pub struct OrderSyncDeps<'a> {
    pub config: &'a Config,
    pub idempotency: &'a dyn IdempotencyStore,
    pub state: &'a dyn SyncStateStore,
    pub erp: &'a dyn SalesErp,
    /// Where to say that a sale moved stock; none when no channel wants it real-time.
    pub stock: Option<&'a dyn StockSignal>,
    /// The ERP's available stock, to tell a new sale that is short (a back order); none:
    /// not checked.
    pub availability: Option<&'a dyn ErpStock>,
    /// Where a failed order's latest payload is kept for `erpsync replay`; none: not kept.
    pub archive: Option<&'a dyn PayloadArchive>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OrderOutcome {
    /// The ERP holds the confirmed sale. `created` is false when it was found by reference.
    Synced {
        erp_id: i64,
        erp_number: Option<String>,
        created: bool,
        /// Changes the shop wanted that ownership refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
        /// What the sale is short of: it ships in part now, the rest later.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backordered: Option<String>,
    },
    /// The ERP sale was amended to the shop's new version of the order.
    Amended {
        erp_id: i64,
        erp_number: Option<String>,
        changes: Vec<String>,
    },
    /// Cancelled in the shop: the ERP sale cancelled, or none was ever made.
    Cancelled {
        erp_id: Option<i64>,
        erp_number: Option<String>,
    },
    /// Shadow mode: what would have been sent.
    Shadow { request: Box<SaleDraft> },
    /// Nothing to do, and why.
    Skipped { reason: String },
    /// Already done by an earlier delivery; its outcome.
    Replayed { previous: Box<OrderOutcome> },
}

impl OrderOutcome {
    /// What happened, for a log line: the outcome's name and the ERP sale it concerns, never
    /// the order's content (a shadow outcome holds the customer's name and addresses).
    pub fn summary(&self) -> String {
        match self {
            Self::Synced {
                erp_id, created, ..
            } => format!(
                "synced: sale {erp_id} {}",
                if *created { "created" } else { "found" }
            ),
            Self::Amended {
                erp_id, changes, ..
            } => {
                format!("amended: sale {erp_id}, {} change(s)", changes.len())
            }
            Self::Cancelled { erp_id, .. } => match erp_id {
                Some(id) => format!("cancelled: sale {id}"),
                None => "cancelled before it reached the ERP".to_owned(),
            },
            Self::Shadow { request } => format!("shadow: would send {}", request.reference),
            Self::Skipped { .. } => "skipped".to_owned(),
            Self::Replayed { previous } => format!("replayed ({})", previous.summary()),
        }
    }
}

pub async fn sync_order(
    deps: &OrderSyncDeps<'_>,
    message: &OrderMessage,
    now: OffsetDateTime,
    lease_until: OffsetDateTime,
) -> Result<OrderOutcome, MessageFailure> {
    let unattributed = MessageFailure::unattributed;
    let channel = deps.config.channel(&message.channel).ok_or_else(|| {
        unattributed(SyncError::permanent(
            "unknown_channel",
            format!(
                "channel {:?} is not in the config; add it or discard the message",
                message.channel.as_str()
            ),
        ))
    })?;
    let order_id =
        channels::order_id(channel.platform, &message.body).map_err(|e| unattributed(e.into()))?;
    let entity = EntityRef::order(&channel.id, order_id.as_str());
    let order = channels::parse_order(channel.platform, &channel.id, &message.body);
    let version = order.as_ref().ok().map(|o| message.version(o));
    match run(deps, channel, message, &order, &entity, lease_until).await {
        Ok(outcome) => Ok(outcome),
        Err(error) => {
            note_failure(deps.state, &entity, &error, version, now).await;
            if let Ok(order) = &order {
                keep_for_replay(deps, message, order, &entity).await;
            }
            Err(MessageFailure {
                error,
                entity: Some(entity),
                version,
            })
        }
    }
}

/// A failed order's payload is kept so a person can replay it once the cause is fixed
/// (`erpsync replay`), even after its message is discarded. Only failures pay for it: a
/// version that took effect has nothing to replay. Losing it must not hold the order up.
async fn keep_for_replay(
    deps: &OrderSyncDeps<'_>,
    message: &OrderMessage,
    order: &ChannelOrder,
    entity: &EntityRef,
) {
    let Some(archive) = deps.archive else {
        return;
    };
    let payload = ArchivedPayload {
        topic: message.topic.as_str().to_owned(),
        version: message.version(order),
        triggered_at: message.triggered_at,
        body: String::from_utf8_lossy(&message.body).into_owned(),
    };
    if let Err(error) = archive.keep(entity, &payload).await {
        warn!(entity = %entity, error = %error, "could not keep the payload for replays");
    }
}

/// What the shop wants the ERP to hold for this version of the order.
#[derive(Debug, Clone, PartialEq, Serialize)]
enum Wanted {
    Sale(Box<SaleDraft>),
    Cancelled { reference: String },
}

async fn run(
    deps: &OrderSyncDeps<'_>,
    channel: &ChannelConfig,
    message: &OrderMessage,
    order: &Result<ChannelOrder, crate::error::ParseError>,
    entity: &EntityRef,
    lease_until: OffsetDateTime,
) -> Result<OrderOutcome, SyncError> {
    if channel.mode == Mode::Off {
        return skip(deps, entity, None, format!("channel {} is off", channel.id)).await;
    }
    let order = order.as_ref().map_err(|e| SyncError::from(e.clone()))?;
    let version = message.version(order);
    // Shopify neither orders nor guarantees deliveries: a version older than the one the
    // ERP reflects must never regress it.
    let current = deps.state.get(entity).await?;
    if let Some(applied) = current.as_ref().and_then(|state| state.version)
        && version < applied
    {
        let reason = format!(
            "{} {} is older than the version already applied ({}); not applied",
            order.name,
            rfc3339(version),
            rfc3339(applied)
        );
        info!(entity = %entity, reason = %reason, "stale version skipped");
        return Ok(OrderOutcome::Skipped { reason });
    }
    let wanted = if order.cancelled || message.topic == OrderTopic::Cancelled {
        Wanted::Cancelled {
            reference: mapping::sale_reference(&channel.id, &order.external_id),
        }
    } else {
        Wanted::Sale(Box::new(mapping::sale_draft(
            order,
            channel,
            &deps.config.erp,
        )?))
    };
    // One claim per second of `updated_at` and content: the same content delivered again
    // in its second (orders/create, orders/paid, a retry, each triggered apart) is replayed,
    // not applied again; other content of that second is a version of its own.
    let hash = PayloadHash::of(&wanted);
    let key = IdempotencyKey::new(
        Flow::OrderSync,
        &channel.id,
        &format!(
            "{}@{}#{}",
            order.external_id,
            order.updated_at.unix_timestamp(),
            hash.as_str().get(..16).unwrap_or(hash.as_str())
        ),
    );
    match deps.idempotency.claim(&key, &hash, lease_until).await? {
        Claim::InProgress => Err(SyncError::in_flight(format!(
            "order {} is being synced by another worker",
            order.name
        ))),
        Claim::AlreadyDone { outcome, .. } => {
            let previous: OrderOutcome = serde_json::from_value(outcome).map_err(|e| {
                SyncError::permanent(
                    "corrupt_state",
                    format!("stored outcome for {key} does not read back: {e}"),
                )
            })?;
            info!(order = %order.name, "this version is already applied; replaying the stored outcome");
            restore_lagging_state(
                deps,
                current.as_ref(),
                &record_of(entity, &previous, version),
            )
            .await;
            Ok(OrderOutcome::Replayed {
                previous: Box::new(previous),
            })
        }
        Claim::Start(token) => {
            let result = match &wanted {
                Wanted::Sale(draft) => apply(deps, channel, &order.name, draft, entity).await,
                Wanted::Cancelled { reference } => cancel(deps, &order.name, reference).await,
            };
            match result {
                Ok(outcome) => {
                    let stored = serde_json::to_value(&outcome).unwrap_or_default();
                    let mut record = record_of(entity, &outcome, version);
                    // How its refunds read (return-sync follows it) and the totals booked
                    // (reconciliation compares the ERP's with them).
                    record.basis = Some(crate::model::state::OrderBasis {
                        taxes_included: order.taxes_included,
                        refunded_before_fulfilment: Some(refund_split(
                            order,
                            &outcome,
                            current.as_ref(),
                        )),
                        booked: booked_totals(order, &wanted, &outcome),
                    });
                    match deps
                        .idempotency
                        .complete(&key, &token, &hash, &stored, &record)
                        .await
                    {
                        Ok(Completion::Recorded) => {}
                        Ok(Completion::TakenOver) => {
                            warn!(entity = %entity, "this attempt's claim ran out and another worker took it over; its outcome stands");
                        }
                        Ok(Completion::StateNewer) => {
                            superseded(deps, entity, &order.name, &outcome, version).await;
                        }
                        Err(error) => {
                            release(deps, &key, &token).await;
                            return Err(error);
                        }
                    }
                    signal_stock(deps, &wanted, &outcome).await;
                    Ok(outcome)
                }
                Err(error) => {
                    release(deps, &key, &token).await;
                    Err(error)
                }
            }
        }
    }
}

/// What the ERP must now hold for the order, when this outcome put it there.
fn booked_totals(
    order: &ChannelOrder,
    wanted: &Wanted,
    outcome: &OrderOutcome,
) -> Option<crate::model::state::BookedTotals> {
    if matches!(
        outcome,
        OrderOutcome::Skipped { .. } | OrderOutcome::Shadow { .. }
    ) {
        return None;
    }
    Some(match wanted {
        Wanted::Sale(draft) => crate::model::state::BookedTotals {
            currency: draft.currency.clone(),
            net: draft.currency.round(draft.total()),
            gross: order.total(),
            cancelled: false,
        },
        Wanted::Cancelled { .. } => crate::model::state::BookedTotals {
            currency: order.currency.clone(),
            net: rust_decimal::Decimal::ZERO,
            gross: rust_decimal::Decimal::ZERO,
            cancelled: true,
        },
    })
}

/// The units each refund took off the sale, for return-sync. An outcome that left the sale as
/// it was (the ERP owns orders, shadow mode) took none off, so every unit is credited. A
/// refund's entry, once recorded, stays as it was: return-sync may have booked by it, and a
/// fulfilment cancelled since must not move a unit it credited off the sale as well.
fn refund_split(
    order: &ChannelOrder,
    outcome: &OrderOutcome,
    current: Option<&SyncState>,
) -> crate::model::order::RefundedBeforeFulfilment {
    let applied = !matches!(
        outcome,
        OrderOutcome::Skipped { .. } | OrderOutcome::Shadow { .. }
    );
    let mut split: crate::model::order::RefundedBeforeFulfilment = order
        .refunded_before_fulfilment
        .iter()
        .map(|(refund, lines)| {
            let lines = if applied {
                lines.clone()
            } else {
                Default::default()
            };
            (refund.clone(), lines)
        })
        .collect();
    let recorded = current
        .and_then(|s| s.basis.as_ref())
        .and_then(|b| b.refunded_before_fulfilment.as_ref());
    for (refund, lines) in recorded.into_iter().flatten() {
        split.insert(refund.clone(), lines.clone());
    }
    split
}

/// This version was applied while a newer one was already recorded: only possible when two
/// attempts at one order overlap (FIFO groups prevent it; a replay beside the queue does not).
/// If this attempt changed the ERP it may have put an older version over the newer one: a
/// person checks, never silence. A newer version's failure recorded instead is left to it.
async fn superseded(
    deps: &OrderSyncDeps<'_>,
    entity: &EntityRef,
    order_name: &str,
    outcome: &OrderOutcome,
    version: OffsetDateTime,
) {
    let changed_the_erp = matches!(
        outcome,
        OrderOutcome::Synced { created: true, .. }
            | OrderOutcome::Amended { .. }
            | OrderOutcome::Cancelled {
                erp_id: Some(_),
                ..
            }
    );
    let recorded = match deps.state.get(entity).await {
        Ok(state) => state.and_then(|s| s.version),
        Err(error) => {
            warn!(entity = %entity, error = %error, "could not read the state of a superseded version");
            None
        }
    };
    let Some(newer) = recorded.filter(|newer| *newer > version && changed_the_erp) else {
        return;
    };
    let error = SyncError::permanent(
        "superseded_while_applied",
        format!(
            "{order_name} {} was applied to the ERP ({}) after the newer {} was: the ERP sale may hold the older version; compare it with the shop and replay the latest version (erpsync replay)",
            rfc3339(version),
            outcome.summary(),
            rfc3339(newer)
        ),
    );
    warn!(entity = %entity, kind = %error.kind, "an older version was applied after a newer one");
    note_failure(deps.state, entity, &error, None, OffsetDateTime::now_utc()).await;
}

/// A version already applied whose state row says otherwise (left behind by a write that
/// lost a race, or by an older release that did not guard its writes) is put right, so
/// status and reconciliation agree with the idempotency record. Best effort: the replay
/// itself stands either way.
async fn restore_lagging_state(
    deps: &OrderSyncDeps<'_>,
    current: Option<&SyncState>,
    applied: &SyncRecord,
) {
    let lags = match current {
        None => true,
        Some(state) => {
            state.version < applied.version
                || (state.version == applied.version && state.status != applied.status)
        }
    };
    if !lags {
        return;
    }
    match deps.state.record(applied).await {
        Ok(()) => {
            info!(entity = %applied.entity, status = applied.status.as_str(), "sync state restored to the applied version")
        }
        Err(error) => {
            warn!(entity = %applied.entity, error = %error, "could not restore the sync state of an applied version")
        }
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A new or amended sale reserves stock differently: real-time channels hear of it now.
/// A failure here loses nothing (the scheduled run catches up), so it is only logged.
async fn signal_stock(deps: &OrderSyncDeps<'_>, wanted: &Wanted, outcome: &OrderOutcome) {
    let (Some(stock), Wanted::Sale(draft)) = (deps.stock, wanted) else {
        return;
    };
    let moved = matches!(
        outcome,
        OrderOutcome::Synced { created: true, .. } | OrderOutcome::Amended { .. }
    );
    if moved && let Err(error) = stock.stock_moved(&draft.skus()).await {
        warn!(error = %error, "could not signal the stock change; the scheduled run will catch up");
    }
}

/// After a sale is confirmed its reservation is counted: a SKU whose available stock is now
/// below zero is short by that much. A failed check only loses the flag, never the order.
async fn shortage(stock: &dyn ErpStock, warehouse: &str, skus: &[Sku]) -> Option<String> {
    match stock.available(skus, warehouse).await {
        Ok(available) => {
            let mut short: Vec<String> = available
                .iter()
                .filter(|(_, quantity)| **quantity < 0)
                .map(|(sku, quantity)| format!("{sku} short by {}", -quantity))
                .collect();
            short.sort();
            (!short.is_empty()).then(|| {
                format!(
                    "backordered: {}; the rest ships when stock arrives",
                    short.join(", ")
                )
            })
        }
        Err(error) => {
            warn!(error = %error, "could not check the sale's stock; back order not flagged");
            None
        }
    }
}

async fn release(deps: &OrderSyncDeps<'_>, key: &IdempotencyKey, token: &ClaimToken) {
    // If the release fails too, the claim's lease runs out and the retry takes it over.
    if let Err(error) = deps.idempotency.release(key, token).await {
        warn!(key = %key, error = %error, "could not release the idempotency claim");
    }
}

fn record_of(entity: &EntityRef, outcome: &OrderOutcome, version: OffsetDateTime) -> SyncRecord {
    let mut record = SyncRecord {
        basis: None,
        entity: entity.clone(),
        status: SyncStatus::Synced,
        erp_id: None,
        erp_number: None,
        version: Some(version),
        note: None,
    };
    match outcome {
        OrderOutcome::Synced {
            erp_id,
            erp_number,
            created,
            refused,
            backordered,
        } => {
            record.erp_id = Some(*erp_id);
            record.erp_number = erp_number.clone();
            record.note = match (created, refused) {
                (_, Some(refused)) => Some(refused.clone()),
                (false, None) => Some("found in the ERP by its reference".to_owned()),
                (true, None) => None,
            };
            if let Some(short) = backordered {
                record.status = SyncStatus::Backordered;
                record.note = Some(match record.note.take() {
                    Some(note) => format!("{short}; {note}"),
                    None => short.clone(),
                });
            }
        }
        OrderOutcome::Amended {
            erp_id,
            erp_number,
            changes,
        } => {
            record.erp_id = Some(*erp_id);
            record.erp_number = erp_number.clone();
            record.note = Some(format!("amended: {}", changes.join("; ")));
        }
        OrderOutcome::Cancelled { erp_id, erp_number } => {
            record.erp_id = *erp_id;
            record.erp_number = erp_number.clone();
            record.note = Some(match erp_id {
                Some(_) => "cancelled in the shop; ERP sale cancelled".to_owned(),
                None => "cancelled in the shop before it reached the ERP; no sale made".to_owned(),
            });
        }
        OrderOutcome::Shadow { request } => {
            record.status = SyncStatus::Shadow;
            record.note = serde_json::to_string(request).ok();
        }
        OrderOutcome::Skipped { reason } => {
            record.status = SyncStatus::Skipped;
            record.note = Some(reason.clone());
        }
        OrderOutcome::Replayed { .. } => {}
    }
    record
}

async fn skip(
    deps: &OrderSyncDeps<'_>,
    entity: &EntityRef,
    version: Option<OffsetDateTime>,
    reason: String,
) -> Result<OrderOutcome, SyncError> {
    info!(entity = %entity, reason = %reason, "skipped");
    deps.state
        .record(&SyncRecord {
            basis: None,
            entity: entity.clone(),
            status: SyncStatus::Skipped,
            erp_id: None,
            erp_number: None,
            version,
            note: Some(reason.clone()),
        })
        .await?;
    Ok(OrderOutcome::Skipped { reason })
}

/// A sale this attempt created (and kept): confirmed, and flagged if short of stock.
async fn synced_new(
    deps: &OrderSyncDeps<'_>,
    sale: ErpSale,
    reference: &str,
    skus: &[Sku],
    refused: Option<String>,
) -> Result<OrderOutcome, SyncError> {
    let sale = confirm(deps.erp, sale, reference).await?;
    let backordered = match deps.availability {
        Some(stock) => shortage(stock, &deps.config.erp.warehouse, skus).await,
        None => None,
    };
    Ok(OrderOutcome::Synced {
        erp_id: sale.id,
        erp_number: sale.number,
        created: true,
        refused,
        backordered,
    })
}

async fn apply(
    deps: &OrderSyncDeps<'_>,
    channel: &ChannelConfig,
    order_name: &str,
    draft: &SaleDraft,
    entity: &EntityRef,
) -> Result<OrderOutcome, SyncError> {
    let erp = deps.erp;
    let skus = draft.skus();
    let existing = erp.find_sale_by_reference(&draft.reference).await?;
    let products = erp.products_by_sku(&skus).await?;
    let missing: Vec<&Sku> = skus.iter().filter(|s| !products.contains_key(*s)).collect();
    if !missing.is_empty() {
        return Err(unknown_skus(channel, &missing));
    }
    if channel.mode == Mode::Shadow {
        return Ok(OrderOutcome::Shadow {
            request: Box::new(draft.clone()),
        });
    }
    let sale = match existing {
        Some(sale) => sale,
        None => {
            let customer =
                ensure_customer(erp, &draft.customer, deps.config.ownership.customers).await?;
            let created = erp
                .create_sale(&NewSale {
                    draft,
                    customer_id: customer.id,
                    invoice_address_id: customer.invoice_address_id,
                    shipment_address_id: customer.shipment_address_id,
                    products: &products,
                })
                .await?;
            info!(entity = %entity, erp_id = created.id, "sale created in the ERP");
            let kept = keep_one_sale(erp, &draft.reference, created.clone()).await?;
            if kept.id != created.id {
                // Another attempt's sale was kept, perhaps made from another version of the
                // order: bring it up to this version below, as any existing sale.
                kept
            } else {
                return synced_new(deps, kept, &draft.reference, &skus, customer.refused).await;
            }
        }
    };
    // A sale left by an interrupted attempt is moved on first, then brought up to date.
    let sale = keep_one_sale(erp, &draft.reference, sale).await?;
    let sale = confirm(erp, sale, &draft.reference).await?;
    // Tryton processes a sale after its confirmation commits; when that did not run (the
    // ERP failed between the two), the sale stays confirmed and cannot be amended: process it.
    let sale = match sale.state {
        ErpSaleState::Confirmed => erp.process_sale(sale.id).await?,
        _ => sale,
    };
    let details = erp.sale_details(sale.id).await?;
    let Some(plan) = edits::plan_edit(order_name, &details, draft, &products)? else {
        info!(entity = %entity, erp_id = sale.id, "sale already in the ERP and up to date");
        return Ok(OrderOutcome::Synced {
            erp_id: sale.id,
            erp_number: sale.number,
            created: false,
            refused: None,
            backordered: None,
        });
    };
    if deps.config.ownership.orders == Owner::Erp {
        return Ok(OrderOutcome::Skipped {
            reason: format!(
                "ownership: {order_name} changed in the shop ({}); orders are owned by the ERP, so sale {} was not changed",
                plan.changes.join("; "),
                sale.number.as_deref().unwrap_or("?")
            ),
        });
    }
    let shipment_address_id = if plan.shipment_address_changed {
        let customer = ErpCustomer {
            id: details.customer_id,
            name: None,
            addresses: Vec::new(),
        };
        Some(address_for(erp, &customer, &draft.customer.shipment_address).await?)
    } else {
        None
    };
    let amended = erp
        .amend_sale(
            sale.id,
            &SaleAmendment {
                description: format!(
                    "{order_name} changed in the shop: {}",
                    plan.changes.join("; ")
                ),
                lines: plan.lines,
                shipment_address_id,
            },
        )
        .await?;
    info!(entity = %entity, erp_id = sale.id, changes = ?plan.changes, "sale amended");
    Ok(OrderOutcome::Amended {
        erp_id: amended.id,
        erp_number: amended.number.or(sale.number),
        changes: plan.changes,
    })
}

/// Cancels the ERP sale while nothing has left the warehouse nor been invoiced; after that
/// a person must decide (return, credit note).
async fn cancel(
    deps: &OrderSyncDeps<'_>,
    order_name: &str,
    reference: &str,
) -> Result<OrderOutcome, SyncError> {
    let erp = deps.erp;
    let Some(sale) = erp.find_sale_by_reference(reference).await? else {
        return Ok(OrderOutcome::Cancelled {
            erp_id: None,
            erp_number: None,
        });
    };
    let sale = keep_one_sale(erp, reference, sale).await?;
    let number = sale.number.clone().unwrap_or_else(|| sale.id.to_string());
    if deps.config.ownership.orders == Owner::Erp && sale.state != ErpSaleState::Cancelled {
        return Ok(OrderOutcome::Skipped {
            reason: format!(
                "ownership: {order_name} was cancelled in the shop; orders are owned by the ERP, so sale {number} was not cancelled"
            ),
        });
    }
    let cancelled = match sale.state {
        ErpSaleState::Cancelled => sale.clone(),
        ErpSaleState::Draft | ErpSaleState::Quotation | ErpSaleState::Confirmed => {
            erp.cancel_sale(sale.id).await?
        }
        ErpSaleState::Processing => {
            let details = erp.sale_details(sale.id).await?;
            if details.fulfilment_started || details.invoiced {
                return Err(SyncError::permanent(
                    "cancelled_after_dispatch",
                    format!(
                        "{order_name} was cancelled in the shop after the ERP started {} sale {number}: \
                         stop the shipment if you still can, otherwise book the return and credit note, then discard this message",
                        if details.fulfilment_started {
                            "dispatching"
                        } else {
                            "invoicing"
                        }
                    ),
                ));
            }
            // Tryton has no cancel for a processing sale; an amendment to zero withdraws
            // its shipments and draft invoices, which is what cancelling means here.
            let lines = details
                .lines
                .iter()
                .filter(|l| l.quantity > rust_decimal::Decimal::ZERO)
                .map(|l| crate::ports::AmendedLine {
                    line_id: l.id,
                    product_id: l.product_id.unwrap_or_default(),
                    unit_id: l.unit_id.unwrap_or_default(),
                    quantity: rust_decimal::Decimal::ZERO,
                    unit_price: l.unit_price,
                    description: l.description.clone().unwrap_or_default(),
                })
                .collect();
            erp.amend_sale(
                sale.id,
                &SaleAmendment {
                    description: format!("{order_name} cancelled in the shop"),
                    lines,
                    shipment_address_id: None,
                },
            )
            .await?
        }
        // Done with every line at zero: an earlier attempt's amendment to zero went
        // through (its answer was lost). The cancellation is made; nothing more to do.
        ErpSaleState::Done
            if erp
                .sale_details(sale.id)
                .await?
                .lines
                .iter()
                .all(|l| l.quantity.is_zero()) =>
        {
            sale.clone()
        }
        ErpSaleState::Done | ErpSaleState::Other(_) => {
            return Err(SyncError::permanent(
                "cancelled_after_dispatch",
                format!(
                    "{order_name} was cancelled in the shop but ERP sale {number} is already {:?}: book the return and credit note, then discard this message",
                    sale.state
                ),
            ));
        }
    };
    Ok(OrderOutcome::Cancelled {
        erp_id: Some(cancelled.id),
        erp_number: cancelled.number.or(sale.number),
    })
}

fn unknown_skus(channel: &ChannelConfig, missing: &[&Sku]) -> SyncError {
    let list = missing
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    SyncError::permanent(
        "unknown_sku",
        format!(
            "SKU {list} (channel {}) is not a product in the ERP: create it in the ERP or map it under [channels.sku_aliases] for {}, then redrive",
            channel.id, channel.id
        ),
    )
}

#[cfg(test)]
mod tests;
