//! The DynamoDB adapter's claim-or-replay and sync-state semantics, on moto.

use erpsync_core::ErrorClass;
use erpsync_core::SyncError;
use erpsync_core::model::ids::ChannelId;
use erpsync_core::model::state::{
    Claim, ClaimToken, EntityRef, ErrorReport, Flow, IdempotencyKey, PayloadHash, SyncRecord,
    SyncStatus,
};
use erpsync_core::ports::{Completion, IdempotencyStore, SyncStateStore};
use erpsync_e2e::World;
use serde_json::json;
use time::{Duration, OffsetDateTime};

fn channel() -> ChannelId {
    ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}"))
}

fn record(entity: &EntityRef) -> SyncRecord {
    SyncRecord {
        basis: None,
        entity: entity.clone(),
        status: SyncStatus::Synced,
        erp_id: Some(41),
        erp_number: Some("SO41".to_owned()),
        version: Some(time::macros::datetime!(2026-11-29 10:00 UTC)),
        note: None,
    }
}

/// The token of a claim that was granted; anything else fails the test.
fn granted(claim: Result<Claim, SyncError>) -> ClaimToken {
    match claim {
        Ok(Claim::Start(token)) => token,
        other => panic!("expected the claim to be granted, got {other:?}"),
    }
}

#[tokio::test]
async fn a_claim_is_held_then_replayed_and_a_different_payload_is_told_apart() {
    let world = World::start().await;
    let store = &world.orders.store;
    let key = IdempotencyKey::new(Flow::OrderSync, &channel(), "1001");
    let hash = PayloadHash::of(&json!({"lines": 3}));
    let lease = OffsetDateTime::now_utc() + Duration::minutes(5);

    let token = granted(store.claim(&key, &hash, lease).await);
    assert_eq!(store.claim(&key, &hash, lease).await, Ok(Claim::InProgress));

    let entity = EntityRef::order(&channel(), "1001");
    let outcome = json!({"outcome": "synced", "erp_id": 41});
    assert_eq!(
        store
            .complete(&key, &token, &hash, &outcome, &record(&entity))
            .await,
        Ok(Completion::Recorded)
    );
    assert_eq!(
        store.claim(&key, &hash, lease).await,
        Ok(Claim::AlreadyDone {
            outcome: outcome.clone(),
            same_payload: true
        })
    );
    let other = PayloadHash::of(&json!({"lines": 4}));
    assert_eq!(
        store.claim(&key, &other, lease).await,
        Ok(Claim::AlreadyDone {
            outcome,
            same_payload: false
        })
    );
    // A completed claim is never given up by a late release.
    assert_eq!(store.release(&key, &token).await, Ok(()));
    assert!(matches!(
        store.claim(&key, &hash, lease).await,
        Ok(Claim::AlreadyDone { .. })
    ));

    let state = store
        .get(&entity)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no state"));
    assert_eq!(state.status, SyncStatus::Synced);
    assert_eq!(state.erp_id, Some(41));
    assert_eq!(state.erp_number.as_deref(), Some("SO41"));
}

#[tokio::test]
async fn a_claim_whose_lease_ran_out_is_taken_over_and_a_released_one_is_free() {
    let world = World::start().await;
    let store = &world.orders.store;
    let key = IdempotencyKey::new(Flow::OrderSync, &channel(), "1002");
    let hash = PayloadHash::of(&"order");
    let expired = OffsetDateTime::now_utc() - Duration::seconds(5);
    let first = granted(store.claim(&key, &hash, expired).await);
    // The first worker stalled: its lease is over, so the next one may run.
    let lease = OffsetDateTime::now_utc() + Duration::minutes(5);
    let second = granted(store.claim(&key, &hash, lease).await);
    assert_ne!(first, second);
    // The stalled worker wakes: its release and its completion leave the claim it lost
    // alone (before claims had owners, its release freed the claim under the second worker).
    assert_eq!(store.release(&key, &first).await, Ok(()));
    assert_eq!(store.claim(&key, &hash, lease).await, Ok(Claim::InProgress));
    let entity = EntityRef::order(&channel(), "1002");
    let stale = SyncRecord {
        note: Some("the stalled worker's".to_owned()),
        ..record(&entity)
    };
    assert_eq!(
        store
            .complete(&key, &first, &hash, &json!({"by": "first"}), &stale)
            .await,
        Ok(Completion::TakenOver)
    );
    assert_eq!(store.get(&entity).await, Ok(None), "nothing written");
    assert_eq!(store.claim(&key, &hash, lease).await, Ok(Claim::InProgress));
    // The owner's release frees it.
    assert_eq!(store.release(&key, &second).await, Ok(()));
    let third = granted(store.claim(&key, &hash, lease).await);
    assert_eq!(
        store
            .complete(
                &key,
                &third,
                &hash,
                &json!({"by": "third"}),
                &record(&entity)
            )
            .await,
        Ok(Completion::Recorded)
    );
    assert!(matches!(
        store.claim(&key, &hash, lease).await,
        Ok(Claim::AlreadyDone { outcome, .. }) if outcome == json!({"by": "third"})
    ));
}

#[tokio::test]
async fn failures_count_attempts_and_needs_attention_is_listed_until_resolved() {
    let world = World::start().await;
    let store = &world.orders.store;
    let entity = EntityRef::order(&channel(), "1003");
    let now = OffsetDateTime::now_utc();
    let outage = ErrorReport::new(
        &SyncError::dependency_down("erp_unavailable", "connection refused"),
        now,
    );
    assert_eq!(
        store
            .record_failure(&entity, SyncStatus::Retrying, &outage, None)
            .await,
        Ok(())
    );
    let sku = ErrorReport::new(
        &SyncError::permanent("unknown_sku", "SKU X is not in the ERP"),
        now,
    );
    assert_eq!(
        store
            .record_failure(&entity, SyncStatus::NeedsAttention, &sku, None)
            .await,
        Ok(())
    );

    let state = store
        .get(&entity)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no state"));
    assert_eq!(state.status, SyncStatus::NeedsAttention);
    assert_eq!(state.attempts, 2);
    let last = state.last_error.unwrap_or_else(|| panic!("no last error"));
    assert_eq!(
        (last.class, last.kind.as_str()),
        (ErrorClass::Permanent, "unknown_sku")
    );
    // What `erpsync exceptions` lists, read as the operator (order-sync may not query).
    let listed = world
        .store_of(erpsync_tools::roles::OPERATOR)
        .needing_attention(Flow::OrderSync)
        .await
        .unwrap_or_default();
    assert!(listed.iter().any(|s| s.entity == entity));

    let key = IdempotencyKey::new(Flow::OrderSync, &channel(), "1003");
    let hash = PayloadHash::of(&"fixed");
    let lease = now + Duration::minutes(5);
    let token = granted(store.claim(&key, &hash, lease).await);
    assert_eq!(
        store
            .complete(&key, &token, &hash, &json!({}), &record(&entity))
            .await,
        Ok(Completion::Recorded)
    );
    let listed = world
        .store_of(erpsync_tools::roles::OPERATOR)
        .needing_attention(Flow::OrderSync)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !listed.iter().any(|s| s.entity == entity),
        "resolved entities leave the attention list"
    );
    let state = store
        .get(&entity)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no state"));
    assert_eq!(state.status, SyncStatus::Synced);
    assert_eq!(state.attempts, 2, "the history of attempts is kept");
}

#[tokio::test]
async fn a_batch_read_returns_each_entity_with_its_state_or_none() {
    let world = World::start().await;
    let store = &world.orders.store;
    let synced = EntityRef::order(&channel(), "2001");
    let failing = EntityRef::order(&channel(), "2002");
    let unseen = EntityRef::order(&channel(), "2003");
    assert_eq!(store.record(&record(&synced)).await, Ok(()));
    let error = ErrorReport::new(
        &SyncError::permanent("unknown_sku", "no product X"),
        OffsetDateTime::now_utc(),
    );
    assert_eq!(
        store
            .record_failure(&failing, SyncStatus::NeedsAttention, &error, None)
            .await,
        Ok(())
    );
    // A batch names an entity once per message: duplicates are read once.
    let read = store
        .get_many(&[
            synced.clone(),
            failing.clone(),
            unseen.clone(),
            synced.clone(),
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read.len(), 3);
    let synced_state = read.get(&synced).cloned().flatten();
    assert_eq!(synced_state.as_ref().and_then(|s| s.erp_id), Some(41));
    assert_eq!(
        synced_state.and_then(|s| s.version),
        Some(time::macros::datetime!(2026-11-29 10:00 UTC))
    );
    assert_eq!(
        read.get(&failing).cloned().flatten().map(|s| s.status),
        Some(SyncStatus::NeedsAttention)
    );
    assert_eq!(read.get(&unseen), Some(&None), "read, and has no state");
}

#[tokio::test]
async fn sync_state_never_moves_back_to_an_older_version() {
    let world = World::start().await;
    let store = &world.orders.store;
    let entity = EntityRef::order(&channel(), "3001");
    let older = time::macros::datetime!(2026-11-29 10:05 -05:00);
    let newer = time::macros::datetime!(2026-11-29 15:10 UTC);
    let lease = OffsetDateTime::now_utc() + Duration::minutes(5);
    let at = |version| SyncRecord {
        basis: None,
        version: Some(version),
        ..record(&entity)
    };
    let read = || async {
        store
            .get(&entity)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no state"))
    };

    // The newer version's claim completes first, the older one's after it.
    let newer_key = IdempotencyKey::new(Flow::OrderSync, &channel(), "3001@newer");
    let older_key = IdempotencyKey::new(Flow::OrderSync, &channel(), "3001@older");
    let hash = PayloadHash::of(&json!({"lines": 3}));
    let outcome = json!({"outcome": "synced", "erp_id": 41});
    let newer_token = granted(store.claim(&newer_key, &hash, lease).await);
    let older_token = granted(store.claim(&older_key, &hash, lease).await);
    assert_eq!(
        store
            .complete(&newer_key, &newer_token, &hash, &outcome, &at(newer))
            .await,
        Ok(Completion::Recorded)
    );
    let skipped = SyncRecord {
        basis: None,
        status: SyncStatus::Skipped,
        note: Some("older".to_owned()),
        ..at(older)
    };
    assert_eq!(
        store
            .complete(&older_key, &older_token, &hash, &outcome, &skipped)
            .await,
        Ok(Completion::StateNewer),
        "the claim of the older version completes"
    );
    assert!(
        matches!(
            store.claim(&older_key, &hash, lease).await,
            Ok(Claim::AlreadyDone { .. })
        ),
        "and is replayed"
    );
    // Neither an outcome nor a failure of the older version reaches the state.
    assert_eq!(store.record(&skipped).await, Ok(()));
    let outage = ErrorReport::new(
        &SyncError::retryable("erp_unavailable", "connection refused"),
        OffsetDateTime::now_utc(),
    );
    assert_eq!(
        store
            .record_failure(&entity, SyncStatus::Retrying, &outage, Some(older))
            .await,
        Ok(())
    );
    let state = read().await;
    assert_eq!(
        (state.status, state.version, state.attempts),
        (SyncStatus::Synced, Some(newer), 0),
        "{state:?}"
    );
    // A failure of the recorded version or a newer one is recorded; the version stays the
    // last one applied.
    let later = newer + Duration::minutes(5);
    assert_eq!(
        store
            .record_failure(&entity, SyncStatus::Retrying, &outage, Some(later))
            .await,
        Ok(())
    );
    let state = read().await;
    assert_eq!(
        (state.status, state.version, state.attempts),
        (SyncStatus::Retrying, Some(newer), 1)
    );
    // An outcome of an older version (a replay) cannot clear the newer one's failure.
    assert_eq!(store.record(&at(newer)).await, Ok(()));
    assert_eq!(read().await.status, SyncStatus::Retrying);
    assert_eq!(store.record(&at(later)).await, Ok(()));
    let state = read().await;
    assert_eq!(
        (state.status, state.version),
        (SyncStatus::Synced, Some(later))
    );
}

/// A newer version parked (needing attention), then an older one of the same order failing
/// and at last applied (the outage chaos run met it: the update parked, its create booked
/// after the ERP came back): the older one's failure neither hides the newer one's nor lowers
/// the failed version, so its outcome cannot mark the order synced while the newer version
/// waits in the dead-letter queue; the newer one's can.
#[tokio::test]
async fn an_older_version_failing_or_applied_after_a_newer_one_was_parked_leaves_it_needing_attention()
 {
    let world = World::start().await;
    let store = &world.orders.store;
    let entity = EntityRef::order(&channel(), "3002");
    let older = time::macros::datetime!(2026-11-29 15:05 UTC);
    let newer = time::macros::datetime!(2026-11-29 15:10 UTC);
    let failure = |message: &str| ErrorReport {
        class: ErrorClass::Retryable,
        kind: "erp_unavailable".to_owned(),
        message: message.to_owned(),
        at: OffsetDateTime::now_utc(),
    };
    let status = || async {
        store
            .get(&entity)
            .await
            .ok()
            .flatten()
            .map(|s| (s.status, s.version))
    };
    assert_eq!(
        store
            .record_failure(
                &entity,
                SyncStatus::NeedsAttention,
                &failure("the update, parked"),
                Some(newer)
            )
            .await,
        Ok(())
    );
    // The create fails after it: nothing is written over the update's failure.
    assert_eq!(
        store
            .record_failure(
                &entity,
                SyncStatus::Retrying,
                &failure("the create, retrying"),
                Some(older)
            )
            .await,
        Ok(())
    );
    assert_eq!(status().await, Some((SyncStatus::NeedsAttention, None)));
    // The create is booked once the ERP is back: its outcome is not recorded.
    let applied = |version| SyncRecord {
        basis: None,
        version: Some(version),
        ..record(&entity)
    };
    assert_eq!(store.record(&applied(older)).await, Ok(()));
    assert_eq!(status().await, Some((SyncStatus::NeedsAttention, None)));
    // As `erpsync exceptions` lists it (under the operator's role).
    let listed = world
        .store_of(erpsync_tools::roles::OPERATOR)
        .needing_attention(Flow::OrderSync)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(listed.iter().any(|s| s.entity == entity), "{listed:?}");
    // The redriven update is: the order is synced at its latest version.
    assert_eq!(store.record(&applied(newer)).await, Ok(()));
    assert_eq!(status().await, Some((SyncStatus::Synced, Some(newer))));
}

#[tokio::test]
async fn a_payload_over_the_item_limit_even_compressed_is_refused_with_the_reason() {
    use base64::Engine;
    use erpsync_core::ports::{ArchivedPayload, PayloadArchive};
    let world = World::start().await;
    let store = &world.orders.store;
    let entity = EntityRef::order(&channel(), "4001");
    // Random bytes as base64 hardly compress: 600 KB stays over 400 KB.
    let noise: Vec<u8> = (0..450_000).map(|_| rand::random::<u8>()).collect();
    let body = base64::engine::general_purpose::STANDARD.encode(noise);
    let payload = ArchivedPayload {
        topic: "orders/create".to_owned(),
        version: OffsetDateTime::now_utc(),
        triggered_at: None,
        body,
    };
    let refused = store
        .keep(&entity, &payload)
        .await
        .err()
        .unwrap_or_else(|| panic!("kept"));
    assert_eq!(refused.kind, "payload_too_large_to_keep");
    assert!(refused.message.contains("400 KB"), "{refused}");
    assert_eq!(store.latest(&entity).await, Ok(None));
}
