//! Dispatches from the ERP to the shop: each shipment the warehouse marks done becomes one
//! fulfilment of the shop order's fulfilment-order lines, with its quantities (a partial
//! dispatch fulfils part of the lines; the back order's dispatch is a second fulfilment)
//! and its tracking. Exactly one fulfilment per ERP shipment, however often a run repeats.

pub mod run;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::config::{ChannelConfig, Config};
use crate::error::SyncError;
use crate::model::ids::{ChannelId, Sku};
use crate::model::state::{EntityRef, Flow, IdempotencyKey, PayloadHash, SyncRecord, SyncStatus};
use crate::ports::{
    ChannelFulfilment, ErpShipment, FulfilLine, FulfilmentChannels, FulfilmentRef, OpenLine,
    Tracking, TrackingIndex,
};
use crate::ports::{IdempotencyStore, Once, SyncStateStore, once};

/// Where one shipment's sync is recorded: under its order, one row per shipment, so a failing
/// shipment's attempts and reason are its own.
pub fn shipment_entity(channel: &ChannelId, order_id: &str, shipment_number: &str) -> EntityRef {
    EntityRef {
        flow: Flow::ShipmentSync,
        channel: channel.clone(),
        entity_id: format!("{order_id}/{shipment_number}"),
    }
}

/// Splits a sale reference made by order-sync back into channel and order id.
pub fn parse_sale_reference(reference: &str) -> Option<(ChannelId, String)> {
    let (channel, order) = reference.split_once('/')?;
    let channel = ChannelId::parse(channel).ok()?;
    (!order.trim().is_empty()).then(|| (channel, order.to_owned()))
}

/// Which open lines a shipment fulfils, and by how much: a plain line takes its ERP SKU's
/// shipped quantity (after aliases); a bundle line takes as many sets as every component
/// shipped. Whatever the shop does not expect (any more) is answered as left over.
pub fn plan_fulfilment(
    channel: &ChannelConfig,
    shipped: &[(Sku, u32)],
    open: &[OpenLine],
) -> (Vec<FulfilLine>, Vec<(Sku, u32)>) {
    let mut left: HashMap<Sku, u32> = HashMap::new();
    for (sku, quantity) in shipped {
        *left.entry(sku.clone()).or_default() += quantity;
    }
    let mut plan = Vec::new();
    let (bundles, plain): (Vec<&OpenLine>, Vec<&OpenLine>) =
        open.iter().filter(|l| l.remaining > 0).partition(|l| {
            l.sku
                .as_ref()
                .is_some_and(|s| channel.bundles.contains_key(s))
        });
    for line in plain {
        let Some(sku) = &line.sku else { continue };
        let available = left.entry(channel.erp_sku(sku).clone()).or_default();
        let quantity = line.remaining.min(*available);
        if quantity > 0 {
            *available -= quantity;
            plan.push(FulfilLine {
                fulfilment_order: line.fulfilment_order.clone(),
                line_item: line.line_item.clone(),
                quantity,
            });
        }
    }
    for line in bundles {
        let Some(bundle) = line.sku.as_ref().and_then(|s| channel.bundles.get(s)) else {
            continue;
        };
        let sets = bundle
            .components
            .iter()
            .map(|c| left.get(&c.sku).copied().unwrap_or(0) / c.quantity.max(1))
            .min()
            .unwrap_or(0)
            .min(line.remaining);
        if sets > 0 {
            for component in &bundle.components {
                if let Some(available) = left.get_mut(&component.sku) {
                    *available -= sets * component.quantity.max(1);
                }
            }
            plan.push(FulfilLine {
                fulfilment_order: line.fulfilment_order.clone(),
                line_item: line.line_item.clone(),
                quantity: sets,
            });
        }
    }
    let mut leftover: Vec<(Sku, u32)> = left.into_iter().filter(|(_, q)| *q > 0).collect();
    leftover.sort();
    (plan, leftover)
}

pub struct ShipmentDeps<'a> {
    pub config: &'a Config,
    pub idempotency: &'a dyn IdempotencyStore,
    /// Where the order's back-order status is kept up to date.
    pub state: &'a dyn SyncStateStore,
    pub tracking: &'a dyn TrackingIndex,
    pub shops: &'a dyn FulfilmentChannels,
    pub lease_until: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum ShipmentOutcome {
    Fulfilled {
        fulfilment_id: String,
        quantity: u32,
        back_order_pending: bool,
    },
    /// The shop already shows this dispatch (same tracking number, or nothing left open).
    AlreadyFulfilled,
    /// An earlier run did it.
    Replayed,
    /// Not an order from a channel erpsync serves (an ERP-only sale).
    NotFromAChannel,
}

/// One ERP shipment to its shop order, once.
pub async fn sync_shipment(
    deps: &ShipmentDeps<'_>,
    shipment: &ErpShipment,
) -> Result<ShipmentOutcome, SyncError> {
    let Some((channel_id, order_id)) = parse_sale_reference(&shipment.sale_reference) else {
        return Ok(ShipmentOutcome::NotFromAChannel);
    };
    let (Some(channel), Some(shop)) = (
        deps.config.channel(&channel_id),
        deps.shops.shop(&channel_id),
    ) else {
        return Ok(ShipmentOutcome::NotFromAChannel);
    };
    let key = IdempotencyKey::new(
        Flow::ShipmentSync,
        &channel_id,
        &format!("shipment-{}", shipment.id),
    );
    let hash = PayloadHash::of(&shipment.id);
    let entity = shipment_entity(&channel_id, &order_id, &shipment.number);
    let work = async {
        let outcome = fulfil(deps, channel, shop, &order_id, shipment).await?;
        let note = match &outcome {
            ShipmentOutcome::Fulfilled {
                quantity,
                back_order_pending,
                ..
            } => format!(
                "shipment {}: {quantity} item(s) fulfilled{}",
                shipment.number,
                if *back_order_pending {
                    "; backordered: the rest ships later"
                } else {
                    ""
                }
            ),
            _ => format!("shipment {}: the shop already showed it", shipment.number),
        };
        let record = SyncRecord {
            basis: None,
            entity,
            status: SyncStatus::Synced,
            erp_id: Some(shipment.id),
            erp_number: Some(shipment.number.clone()),
            version: None,
            note: Some(note),
        };
        Ok((outcome, record))
    };
    let what = format!("shipment {}", shipment.number);
    let outcome = match once(deps.idempotency, &key, &hash, deps.lease_until, &what, work).await? {
        Once::Ran(outcome) => outcome,
        Once::Replayed => return Ok(ShipmentOutcome::Replayed),
    };
    if let ShipmentOutcome::Fulfilled {
        back_order_pending, ..
    } = &outcome
    {
        follow_back_order(deps, &channel_id, &order_id, shipment, *back_order_pending).await;
    }
    Ok(outcome)
}

/// The order's status follows its dispatches: backordered while a back order waits,
/// synced again once the rest has shipped. Only a label for people: a failure is logged.
async fn follow_back_order(
    deps: &ShipmentDeps<'_>,
    channel: &ChannelId,
    order_id: &str,
    shipment: &ErpShipment,
    back_order_pending: bool,
) {
    let entity = EntityRef::order(channel, order_id);
    let current = match deps.state.get(&entity).await {
        Ok(current) => current,
        Err(error) => {
            warn!(error = %error, "could not read the order's state");
            return;
        }
    };
    let was_backordered = current
        .as_ref()
        .is_some_and(|s| s.status == SyncStatus::Backordered);
    let (status, note) = match (back_order_pending, was_backordered) {
        (true, _) => (
            SyncStatus::Backordered,
            format!(
                "backordered: shipment {} dispatched part of the order; the rest ships when stock arrives",
                shipment.number
            ),
        ),
        (false, true) => (
            SyncStatus::Synced,
            format!(
                "back order cleared: shipment {} dispatched the rest",
                shipment.number
            ),
        ),
        (false, false) => return,
    };
    let record = SyncRecord {
        basis: None,
        entity,
        status,
        erp_id: None,
        erp_number: None,
        version: None,
        note: Some(note),
    };
    if let Err(error) = deps.state.record(&record).await {
        warn!(error = %error, "could not record the order's back-order status");
    }
}

async fn fulfil(
    deps: &ShipmentDeps<'_>,
    channel: &ChannelConfig,
    shop: &dyn ChannelFulfilment,
    order_id: &str,
    shipment: &ErpShipment,
) -> Result<ShipmentOutcome, SyncError> {
    let current = shop.fulfilment(order_id).await?.ok_or_else(|| {
        SyncError::permanent(
            "order_not_in_shop",
            format!(
                "ERP shipment {} is for order {order_id} of {}, which the shop does not have: check the sale's reference",
                shipment.number, channel.id
            ),
        )
    })?;
    let tracking = shipment.tracking_number.as_ref().map(|number| {
        let carrier = shipment
            .carrier
            .as_ref()
            .and_then(|c| deps.config.carriers.get(c));
        Tracking {
            company: carrier
                .map(|c| c.company.clone())
                .or_else(|| shipment.carrier.clone()),
            url: carrier.and_then(|c| c.tracking_url(number)),
            number: number.clone(),
        }
    });
    // A fulfilment made by a run that stopped before it could record it carries the number.
    if let Some(tracking) = &tracking
        && current.tracking_numbers.contains(&tracking.number)
    {
        return Ok(ShipmentOutcome::AlreadyFulfilled);
    }
    let (plan, leftover) = plan_fulfilment(channel, &shipment.moves, &current.lines);
    if !leftover.is_empty() {
        warn!(shipment = %shipment.number, ?leftover, "shipped items the shop order does not have open");
    }
    if plan.is_empty() {
        return Ok(ShipmentOutcome::AlreadyFulfilled);
    }
    let fulfilment_id = shop.fulfil(&plan, tracking.as_ref()).await?;
    if let Some(tracking) = &tracking {
        deps.tracking
            .remember(
                &tracking.number,
                &FulfilmentRef {
                    channel: channel.id.clone(),
                    order_id: order_id.to_owned(),
                    fulfilment_id: fulfilment_id.clone(),
                    shipment: shipment.number.clone(),
                },
            )
            .await?;
    }
    info!(shipment = %shipment.number, order = order_id, fulfilment = %fulfilment_id, "fulfilled");
    Ok(ShipmentOutcome::Fulfilled {
        fulfilment_id,
        quantity: plan.iter().map(|l| l.quantity).sum(),
        back_order_pending: shipment.back_order_pending(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku(text: &str) -> Sku {
        Sku::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn line(id: &str, text: &str, remaining: u32) -> OpenLine {
        OpenLine {
            fulfilment_order: "fo1".to_owned(),
            line_item: id.to_owned(),
            sku: Some(sku(text)),
            remaining,
        }
    }

    fn channel() -> ChannelConfig {
        let config = Config::from_toml(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/erpsync.example.toml"
        )))
        .unwrap_or_else(|e| panic!("{e}"));
        config.channels[0].clone()
    }

    #[test]
    fn a_partial_dispatch_fulfils_part_of_the_lines() {
        let open = [line("a", "IPOD2008RED", 3), line("b", "IPOD2008GREEN", 1)];
        let (plan, leftover) = plan_fulfilment(&channel(), &[(sku("IPOD2008RED"), 2)], &open);
        assert_eq!(plan.len(), 1);
        assert_eq!((plan[0].line_item.as_str(), plan[0].quantity), ("a", 2));
        assert!(leftover.is_empty());
    }

    #[test]
    fn aliases_and_bundles_are_fulfilled_from_their_erp_products() {
        let open = [
            line("alias", "IPOD-BLACK-LEGACY", 1),
            line("trio", "IPOD-TRIO", 2),
        ];
        // One trio is 1 green, 1 red and 2 socks: enough was shipped for one set only.
        let shipped = [
            (sku("IPOD2008BLACK"), 1),
            (sku("IPOD2008GREEN"), 2),
            (sku("IPOD2008RED"), 1),
            (sku("WOOL-SOCKS"), 2),
        ];
        let (plan, leftover) = plan_fulfilment(&channel(), &shipped, &open);
        let quantities: Vec<(&str, u32)> = plan
            .iter()
            .map(|l| (l.line_item.as_str(), l.quantity))
            .collect();
        assert_eq!(quantities, [("alias", 1), ("trio", 1)]);
        assert_eq!(leftover, [(sku("IPOD2008GREEN"), 1)]);
    }

    #[test]
    fn nothing_open_means_nothing_to_fulfil() {
        let open = [line("a", "IPOD2008RED", 0)];
        let (plan, leftover) = plan_fulfilment(&channel(), &[(sku("IPOD2008RED"), 1)], &open);
        assert!(plan.is_empty());
        assert_eq!(leftover, [(sku("IPOD2008RED"), 1)]);
    }

    #[test]
    fn sale_references_split_into_channel_and_order() {
        let (channel, order) =
            parse_sale_reference("uk-shop/450789469").unwrap_or_else(|| panic!("parses"));
        assert_eq!((channel.as_str(), order.as_str()), ("uk-shop", "450789469"));
        assert!(parse_sale_reference("PO-1234").is_none());
    }
}
