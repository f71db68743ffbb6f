//! Customers as the ERP keeps them: guests, businesses, and addresses it cannot take.

use erpsync_aws::sqs::attr;
use erpsync_core::model::state::SyncStatus;
use erpsync_e2e::{World, attribute, fresh_order, parked_reasons};
use serde_json::json;

async fn party_of(world: &World, reference: &str) -> serde_json::Value {
    let sales = world.erp_sales(reference).await;
    assert_eq!(sales.len(), 1, "{:?}", parked_reasons(world).await);
    let party = sales[0]["party"].clone();
    world
        .erp_search(
            "party.party",
            json!([["id", "=", party]]),
            &["name", "contact_mechanisms.value", "addresses.party_name"],
        )
        .await
        .unwrap_or_default()
        .first()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_guest_checkout_is_matched_or_created_by_its_order_email() {
    let world = World::start().await;
    let (mut order, id) = fresh_order("shopify-orders-create-discount-code.json");
    let email = format!("guest.{id}@example.com");
    order["customer"] = serde_json::Value::Null;
    order["email"] = email.clone().into();
    world
        .deliver("uk-shop", "orders/create", "wh-guest", &order)
        .await;
    let party = party_of(&world, &format!("uk-shop/{id}")).await;
    let emails: Vec<_> = party["contact_mechanisms"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        emails.iter().any(|m| m["value"] == email.as_str()),
        "{party}"
    );

    // The same guest again, another order: the same ERP customer.
    let (mut again, again_id) = fresh_order("shopify-orders-create-discount-code.json");
    again["customer"] = serde_json::Value::Null;
    again["email"] = email.to_uppercase().into();
    world
        .deliver("uk-shop", "orders/create", "wh-guest-2", &again)
        .await;
    assert_eq!(
        party_of(&world, &format!("uk-shop/{again_id}")).await["id"],
        party["id"]
    );
}

#[tokio::test]
async fn a_business_customer_is_the_company_with_the_person_as_contact() {
    let world = World::start().await;
    let (mut order, id) = fresh_order("shopify-orders-create-discount-code.json");
    let email = format!("buyer.{id}@norman-trading.example");
    order["email"] = email.clone().into();
    order["customer"]["email"] = email.into();
    order["billing_address"]["company"] = "Norman Trading Ltd".into();
    world
        .deliver("uk-shop", "orders/create", "wh-b2b", &order)
        .await;
    let party = party_of(&world, &format!("uk-shop/{id}")).await;
    assert_eq!(party["name"], "Norman Trading Ltd");
    let contacts: Vec<_> = party["addresses"].as_array().cloned().unwrap_or_default();
    assert!(
        contacts.iter().any(|a| a["party_name"] == "John Smith"),
        "{party}"
    );
}

#[tokio::test]
async fn an_address_without_the_postcode_its_country_needs_needs_attention_naming_the_field() {
    let world = World::start().await;
    let (mut order, id) = fresh_order("shopify-orders-create-discount-code.json");
    order["shipping_address"]["zip"] = serde_json::Value::Null;
    world
        .deliver("uk-shop", "orders/create", "wh-zip", &order)
        .await;
    let parked = world.dead_letters().await;
    assert_eq!(parked.len(), 1);
    assert!(
        attribute(&parked[0], attr::REASON).starts_with("shipping_address.zip"),
        "{}",
        attribute(&parked[0], attr::REASON)
    );
    assert_eq!(
        world.state("uk-shop", &id).await.map(|s| s.status),
        Some(SyncStatus::NeedsAttention)
    );
}

#[tokio::test]
async fn a_shop_side_billing_address_change_to_an_erp_owned_customer_is_refused_and_recorded() {
    let world = World::start().await;
    let (mut order, id) = fresh_order("shopify-orders-create-discount-code.json");
    let email = format!("owned.{id}@example.com");
    let canada = world
        .erp_search("country.country", json!([["code", "=", "CA"]]), &["id"])
        .await
        .unwrap_or_default();
    let party = world
        .erp_create(
            "party.party",
            json!({"name": "John Smith", "contact_mechanisms": [["create", [{"type": "email", "value": email}]]],
                   "addresses": [["create", [{"street_unstructured": "1 Wellington Street", "postal_code": "K1A 0A9",
                   "city": "Ottawa", "country": canada[0]["id"]}]]]}),
        )
        .await;
    let erp_address = world
        .erp_search("party.address", json!([["party", "=", party]]), &["id"])
        .await
        .unwrap_or_default()[0]["id"]
        .clone();
    order["email"] = email.clone().into();
    order["customer"]["email"] = email.into();
    world
        .deliver("uk-shop", "orders/create", "wh-owned", &order)
        .await;

    let sales = world.erp_sales(&format!("uk-shop/{id}")).await;
    assert_eq!(sales.len(), 1, "{:?}", parked_reasons(&world).await);
    assert_eq!(sales[0]["party"], json!(party));
    assert_eq!(
        sales[0]["invoice_address"], erp_address,
        "the ERP's billing address is kept"
    );
    assert_ne!(
        sales[0]["shipment_address"], erp_address,
        "the order's delivery address is the order's"
    );
    let state = world
        .state("uk-shop", &id)
        .await
        .unwrap_or_else(|| panic!("no state"));
    assert_eq!(state.status, SyncStatus::Synced);
    assert!(state.note.unwrap_or_default().starts_with("ownership:"));
}
