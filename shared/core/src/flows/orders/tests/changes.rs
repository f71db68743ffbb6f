//! Versions, edits, cancellations and ownership: an order that changes after its create.

use super::*;

#[tokio::test]
async fn two_versions_of_one_second_are_both_versions_and_the_later_trigger_wins_in_either_order() {
    let second = "2026-11-29T10:05:00Z";
    let at = |millis: i64| {
        Some(time::macros::datetime!(2026-11-29 10:05:00 UTC) + Duration::milliseconds(millis))
    };
    let first = version_of(second, |o| set_quantity(o, 0, 2));
    let then = version_of(second, |o| set_quantity(o, 0, 3));
    for flipped in [false, true] {
        let world = World::new();
        let deliveries = if flipped {
            [(&then, at(800)), (&first, at(200))]
        } else {
            [(&first, at(200)), (&then, at(800))]
        };
        let mut outcomes = Vec::new();
        for (body, triggered) in deliveries {
            outcomes.push(
                world
                    .deliver_through(&world.store, OrderTopic::Updated, body, triggered)
                    .await,
            );
        }
        // In order, the second is applied (before this change it was "replayed": the same
        // second was the same version); out of order, the earlier trigger is stale.
        let last = outcomes.pop();
        if flipped {
            assert!(
                matches!(last, Some(Ok(OrderOutcome::Skipped { .. }))),
                "{last:?}"
            );
        } else {
            assert!(
                matches!(last, Some(Ok(OrderOutcome::Amended { .. }))),
                "{last:?}"
            );
        }
        assert_eq!(
            green_units(&world),
            rust_decimal::Decimal::from(3),
            "flipped: {flipped}"
        );
    }
    // Without trigger times the content decides, the same whatever the order of arrival.
    let mut ends = Vec::new();
    for bodies in [[&first, &then], [&then, &first]] {
        let world = World::new();
        for body in bodies {
            let outcome = world
                .deliver_through(&world.store, OrderTopic::Updated, body, None)
                .await;
            assert!(outcome.is_ok(), "{outcome:?}");
        }
        ends.push(green_units(&world));
    }
    assert_eq!(ends[0], ends[1]);
}

#[tokio::test]
async fn the_same_content_delivered_again_in_its_second_is_replayed_not_applied_again() {
    let world = World::new();
    let at = |millis: i64| {
        Some(time::macros::datetime!(2026-11-29 10:05:00 UTC) + Duration::milliseconds(millis))
    };
    let body = version_of("2026-11-29T10:05:00Z", |o| set_quantity(o, 0, 2));
    // orders/create, then orders/paid for the same change, triggered apart.
    let first = world
        .deliver_through(&world.store, OrderTopic::Create, &body, at(100))
        .await;
    assert!(
        matches!(first, Ok(OrderOutcome::Synced { .. })),
        "{first:?}"
    );
    let writes = world.erp.writes();
    let again = world
        .deliver_through(&world.store, OrderTopic::Updated, &body, at(400))
        .await;
    assert!(
        matches!(again, Ok(OrderOutcome::Replayed { .. })),
        "{again:?}"
    );
    assert_eq!(world.erp.writes(), writes, "nothing written again");
}

#[tokio::test]
async fn a_stale_update_after_a_newer_one_is_skipped_and_never_regresses_the_erp() {
    let world = World::new();
    let newer = version_of("2026-11-29T10:05:00Z", |o| set_quantity(o, 0, 3));
    let older = version_of("2026-11-29T10:01:00Z", |_| {});
    assert!(matches!(
        world.deliver_topic(OrderTopic::Updated, &newer).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    let stale = world.deliver_topic(OrderTopic::Updated, &older).await;
    assert!(
        matches!(stale, Ok(OrderOutcome::Skipped { .. })),
        "{stale:?}"
    );
    let lines = world
        .erp
        .lines
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    let green: rust_decimal::Decimal = lines
        .values()
        .flatten()
        .filter(|l| l.sku.as_ref().map(Sku::as_str) == Some("IPOD2008GREEN"))
        .map(|l| l.quantity)
        .sum();
    assert_eq!(
        green,
        rust_decimal::Decimal::from(3),
        "the newer quantity stays"
    );
}

#[tokio::test]
async fn an_update_before_its_create_creates_the_latest_version_and_the_late_create_is_skipped() {
    let world = World::new();
    let update = version_of("2026-11-29T10:05:00Z", |o| set_quantity(o, 1, 2));
    let create = version_of("2026-11-29T10:00:00Z", |_| {});
    assert!(matches!(
        world.deliver_topic(OrderTopic::Updated, &update).await,
        Ok(OrderOutcome::Synced { created: true, .. })
    ));
    assert!(matches!(
        world.deliver_topic(OrderTopic::Create, &create).await,
        Ok(OrderOutcome::Skipped { .. })
    ));
    assert_eq!(world.erp.sales().len(), 1);
}

#[tokio::test]
async fn a_cancel_that_overtakes_the_create_ends_cancelled_with_no_sale() {
    let world = World::new();
    let cancel = version_of("2026-11-29T10:05:00Z", |o| {
        o["cancelled_at"] = "2026-11-29T10:05:00Z".into()
    });
    let create = version_of("2026-11-29T10:00:00Z", |_| {});
    let cancelled = world.deliver_topic(OrderTopic::Cancelled, &cancel).await;
    assert!(
        matches!(cancelled, Ok(OrderOutcome::Cancelled { erp_id: None, .. })),
        "{cancelled:?}"
    );
    assert!(matches!(
        world.deliver_topic(OrderTopic::Create, &create).await,
        Ok(OrderOutcome::Skipped { .. })
    ));
    assert!(world.erp.sales().is_empty());
}

#[tokio::test]
async fn an_edit_before_dispatch_amends_the_sale() {
    let world = World::new();
    let create = version_of("2026-11-29T10:00:00Z", |_| {});
    let edit = version_of("2026-11-29T10:05:00Z", |o| set_quantity(o, 0, 2));
    assert!(matches!(
        world.deliver(&create).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    let amended = world.deliver_topic(OrderTopic::Updated, &edit).await;
    match amended {
        Ok(OrderOutcome::Amended { changes, .. }) => assert_eq!(
            changes,
            vec!["IPOD2008GREEN: 1 x 195.66 -> 2 x 197.33".to_owned()]
        ),
        other => panic!("expected an amendment, got {other:?}"),
    }
    assert_eq!(world.erp.sales().len(), 1);
}

#[tokio::test]
async fn an_edit_of_a_sale_left_confirmed_but_not_processed_processes_it_then_amends() {
    let world = World::new();
    let create = version_of("2026-11-29T10:00:00Z", |_| {});
    let edit = version_of("2026-11-29T10:05:00Z", |o| set_quantity(o, 0, 2));
    let Ok(OrderOutcome::Synced { erp_id, .. }) = world.deliver(&create).await else {
        panic!("expected the create to sync");
    };
    // The ERP failed after the confirmation, before processing the sale.
    assert!(world.erp.set_state(erp_id, ErpSaleState::Confirmed).is_ok());
    let amended = world.deliver_topic(OrderTopic::Updated, &edit).await;
    assert!(
        matches!(amended, Ok(OrderOutcome::Amended { .. })),
        "{amended:?}"
    );
    let states: Vec<ErpSaleState> = world
        .erp
        .sales()
        .into_iter()
        .map(|(_, s)| s.state)
        .collect();
    assert_eq!(states, vec![ErpSaleState::Processing]);
}

/// The N = 2,000 outage run: an older version's amendment, its answer lost and its message
/// parked, was still applying when the newer version read the sale, found it up to date and
/// was recorded synced; then the late amendment left the ERP at the older version.
#[tokio::test]
async fn a_version_waits_while_an_earlier_attempt_s_amendment_may_still_be_applying() {
    let world = World::new();
    let create = version_of("2026-11-29T10:00:00Z", |_| {});
    assert!(matches!(
        world.deliver(&create).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    if let Ok(mut since) = world.erp.draft_amendment_since.lock() {
        *since = Some(time::OffsetDateTime::now_utc() - Duration::seconds(3));
    }
    let edit = version_of("2026-11-29T10:05:00Z", |o| set_quantity(o, 0, 2));
    let waiting = world
        .deliver_topic(OrderTopic::Updated, &edit)
        .await
        .err()
        .map(|f| (f.error.kind, f.error.retry_after));
    assert_eq!(
        waiting,
        Some((
            "amendment_in_flight".to_owned(),
            Some(std::time::Duration::from_secs(30))
        ))
    );
    // A draft older than any request can last is a dead attempt's: the edit goes ahead.
    if let Ok(mut since) = world.erp.draft_amendment_since.lock() {
        *since = Some(time::OffsetDateTime::now_utc() - Duration::seconds(31));
    }
    assert!(matches!(
        world.deliver_topic(OrderTopic::Updated, &edit).await,
        Ok(OrderOutcome::Amended { .. })
    ));
}

#[tokio::test]
async fn an_edit_after_dispatch_needs_attention_saying_what_to_do() {
    let world = World::new();
    let create = version_of("2026-11-29T10:00:00Z", |_| {});
    assert!(matches!(
        world.deliver(&create).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    if let Ok(mut dispatched) = world.erp.dispatched.lock() {
        *dispatched = true;
    }
    let edit = version_of("2026-11-29T10:05:00Z", |o| set_quantity(o, 0, 2));
    let failure = world
        .deliver_topic(OrderTopic::Updated, &edit)
        .await
        .err()
        .map(|f| f.error);
    let failure = failure.unwrap_or_else(|| panic!("expected needs-attention"));
    assert_eq!(failure.kind, "changed_after_dispatch");
    assert!(failure.message.contains("by hand"), "{}", failure.message);
}

#[tokio::test]
async fn a_cancel_before_dispatch_cancels_and_after_dispatch_needs_attention() {
    let world = World::new();
    let create = version_of("2026-11-29T10:00:00Z", |_| {});
    let cancel = version_of("2026-11-29T10:05:00Z", |o| {
        o["cancelled_at"] = "2026-11-29T10:05:00Z".into()
    });
    assert!(matches!(
        world.deliver(&create).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    let cancelled = world.deliver_topic(OrderTopic::Cancelled, &cancel).await;
    assert!(
        matches!(
            cancelled,
            Ok(OrderOutcome::Cancelled {
                erp_id: Some(_),
                ..
            })
        ),
        "{cancelled:?}"
    );

    let other = World::new();
    assert!(matches!(
        other.deliver(&create).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    if let Ok(mut dispatched) = other.erp.dispatched.lock() {
        *dispatched = true;
    }
    let failure = other
        .deliver_topic(OrderTopic::Cancelled, &cancel)
        .await
        .err()
        .map(|f| f.error.kind);
    assert_eq!(failure.as_deref(), Some("cancelled_after_dispatch"));
}

#[tokio::test]
async fn an_edit_that_needs_a_penny_split_folds_into_the_existing_line() {
    let world = World::new();
    let create = version_of("2026-11-29T10:00:00Z", |_| {});
    let edit = version_of("2026-11-29T10:05:00Z", |o| set_quantity(o, 0, 3));
    assert!(matches!(
        world.deliver(&create).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    let amended = world.deliver_topic(OrderTopic::Updated, &edit).await;
    match amended {
        // 3 x 199.00 less 3.34 = 593.66, at 197.8867 a unit in one line.
        Ok(OrderOutcome::Amended { changes, .. }) => assert_eq!(
            changes,
            vec!["IPOD2008GREEN: 1 x 195.66 -> 3 x 197.8867".to_owned()]
        ),
        other => panic!("expected an amendment, got {other:?}"),
    }
}

#[tokio::test]
async fn a_shop_side_change_to_an_erp_owned_customer_is_refused_and_recorded() {
    let world = World::new();
    if let Ok(mut customers) = world.erp.customers.lock() {
        customers.push((
            Email::parse("bob.norman@mail.example.com").ok(),
            ErpCustomer {
                id: 42,
                name: Some("Robert Norman".to_owned()),
                addresses: Vec::new(),
            },
        ));
    }
    let outcome = world.deliver(ORDER).await;
    match outcome {
        Ok(OrderOutcome::Synced {
            refused: Some(note),
            ..
        }) => assert!(note.contains("owned by the ERP"), "{note}"),
        other => panic!("expected a recorded refusal, got {other:?}"),
    }
    let completed = world
        .store
        .completed
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    assert!(
        completed[0]
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("Robert Norman")
    );
}

#[tokio::test]
async fn a_channel_owned_customer_takes_the_shops_name() {
    let mut world = World::new();
    world.config.ownership.customers = crate::config::Owner::Channel;
    if let Ok(mut customers) = world.erp.customers.lock() {
        customers.push((
            Email::parse("bob.norman@mail.example.com").ok(),
            ErpCustomer {
                id: 42,
                name: Some("Robert Norman".to_owned()),
                addresses: Vec::new(),
            },
        ));
    }
    let outcome = world.deliver(ORDER).await;
    assert!(
        matches!(outcome, Ok(OrderOutcome::Synced { refused: None, .. })),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn when_the_erp_owns_orders_a_shop_edit_is_refused_and_recorded() {
    let mut world = World::new();
    world.config.ownership.orders = crate::config::Owner::Erp;
    let create = version_of("2026-11-29T10:00:00Z", |_| {});
    let edit = version_of("2026-11-29T10:05:00Z", |o| set_quantity(o, 0, 2));
    assert!(matches!(
        world.deliver(&create).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    let refused = world.deliver_topic(OrderTopic::Updated, &edit).await;
    match refused {
        Ok(OrderOutcome::Skipped { reason }) => {
            assert!(reason.starts_with("ownership:"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
