//! Money into the ERP: signed `order_transactions/create` webhooks through shop-webhook onto
//! the returns queue (grouped by order), return-sync behind the emulated event source
//! mapping, payments in a Tryton of each test's own with `account_payment`,
//! `account_payment_clearing` and `sale_payment`.

use std::sync::Arc;
use std::time::Duration;

use erpsync_aws::sqs::attr;
use erpsync_core::model::state::SyncStatus;
use erpsync_e2e::{
    ReturnSync, Tryton, World, attribute, fixture, fresh_order, priced, transaction,
};
use erpsync_tools::queues;
use rust_decimal::Decimal;
use serde_json::{Value, json};

struct PaymentWorld {
    world: World,
    tryton: Tryton,
    money: Arc<ReturnSync>,
}

impl PaymentWorld {
    async fn start() -> Self {
        let built = World::builder().own_tryton("payments").start().await;
        let (world, tryton) = built.with_tryton();
        let money = world.return_sync();
        Self {
            world,
            tryton,
            money,
        }
    }

    async fn order(&self) -> (String, Decimal) {
        let (order, order_id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
        self.world
            .deliver(
                "uk-shop",
                "orders/create",
                &format!("wh-{order_id}"),
                &order,
            )
            .await;
        let sale = self.sale(&order_id).await;
        let total = erpsync_e2e::decimal(&sale["total_amount"])
            .parse()
            .unwrap_or_default();
        (order_id, total)
    }

    async fn sale(&self, order_id: &str) -> Value {
        let sales = self
            .world
            .erp_search(
                "sale.sale",
                json!([["reference", "=", format!("uk-shop/{order_id}")]]),
                &["total_amount", "invoices.state", "invoices.total_amount"],
            )
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(sales.len(), 1, "{sales:?}");
        sales[0].clone()
    }

    /// The payments recorded against a sale or return sale, oldest first.
    async fn payments(&self, reference: &str) -> Vec<Value> {
        let sale = self
            .world
            .erp_search("sale.sale", json!([["reference", "=", reference]]), &["id"])
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let id = sale[0]["id"].as_i64().unwrap_or_default();
        self.world
            .erp_search(
                "account.payment",
                json!([["origin", "=", format!("sale.sale,{id}")]]),
                &["reference", "kind", "amount", "state", "journal.name"],
            )
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    async fn pay(&self, order_id: &str, id: u64, kind: &str, gateway: &str, amount: &str) {
        let body = transaction(order_id, id, kind, gateway, amount, "USD");
        self.world
            .deliver_transaction(&self.money, "uk-shop", &body, &format!("wh-txn-{id}"))
            .await;
    }
}

fn fresh_id() -> u64 {
    (uuid::Uuid::new_v4().as_u128() % 9_000_000_000 + 1_000_000_000) as u64
}

#[tokio::test]
async fn an_order_paid_by_gift_card_and_card_reads_paid_each_payment_once_and_its_refund_settles_its_credit_note()
 {
    let mut payments = PaymentWorld::start().await;
    let (order_id, total) = payments.order().await;
    let gift = Decimal::new(3000, 2);
    let card = total - gift;
    let (authorization, gift_card, sale) = (fresh_id(), fresh_id(), fresh_id());

    // An authorisation moves no money; the gift card pays part: the invoice waits.
    payments
        .pay(
            &order_id,
            authorization,
            "authorization",
            "shopify_payments",
            &total.to_string(),
        )
        .await;
    payments
        .pay(&order_id, gift_card, "sale", "gift_card", "30.00")
        .await;
    let waiting = payments.sale(&order_id).await;
    assert_eq!(waiting["invoices"][0]["state"], "draft", "{waiting:?}");
    // The card pays the rest, delivered twice as Shopify may: recorded once, and the invoice
    // is posted and reads paid.
    payments
        .pay(
            &order_id,
            sale,
            "capture",
            "shopify_payments",
            &card.to_string(),
        )
        .await;
    payments
        .pay(
            &order_id,
            sale,
            "capture",
            "shopify_payments",
            &card.to_string(),
        )
        .await;
    let paid = payments.sale(&order_id).await;
    assert_eq!(paid["invoices"][0]["state"], "paid", "{paid:?}");
    let recorded = payments.payments(&format!("uk-shop/{order_id}")).await;
    let summary: Vec<(String, String, String, String)> = recorded
        .iter()
        .map(|p| {
            (
                p["reference"].as_str().unwrap_or_default().to_owned(),
                erpsync_e2e::decimal(&p["amount"]),
                p["state"].as_str().unwrap_or_default().to_owned(),
                p["journal"]["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                format!("uk-shop/txn-{gift_card}"),
                "30.00".to_owned(),
                "succeeded".to_owned(),
                "Gift cards USD".to_owned()
            ),
            (
                format!("uk-shop/txn-{sale}"),
                card.to_string(),
                "succeeded".to_owned(),
                "Shopify Payments USD".to_owned()
            ),
        ]
    );
    let state = payments
        .world
        .payment_state("uk-shop", &order_id, &sale.to_string())
        .await;
    assert_eq!(
        state.as_ref().map(|s| s.status),
        Some(SyncStatus::Synced),
        "{state:?}"
    );
    let authorised = payments
        .world
        .payment_state("uk-shop", &order_id, &authorization.to_string())
        .await;
    assert!(
        authorised
            .as_ref()
            .and_then(|s| s.note.as_deref())
            .is_some_and(|n| n.contains("moves no money")),
        "{authorised:?}"
    );

    // The red iPod comes back: its credit note is posted and settled by the refund's money.
    payments
        .world
        .dispatch(&format!("uk-shop/{order_id}"))
        .await;
    let mut refund = fixture("shopify-refunds-create.json");
    let refund_id = fresh_id();
    refund["id"] = json!(refund_id);
    refund["order_id"] = json!(order_id.parse::<u64>().unwrap_or_default());
    refund["transactions"][0]["id"] = json!(refund_id + 1);
    refund["transactions"][0]["gateway"] = json!("shopify_payments");
    priced(&mut refund, 0, "return", "195.67", "11.74", "207.41");
    payments
        .world
        .deliver_refund(&payments.money, "uk-shop", &refund, "wh-refund")
        .await;
    let returned = payments
        .world
        .return_sales("uk-shop", &order_id, &refund_id.to_string())
        .await;
    assert_eq!(returned.len(), 1, "{returned:?}");
    assert_eq!(returned[0]["invoices"][0]["state"], "paid", "{returned:?}");
    let back = payments
        .payments(&format!("uk-shop/{order_id}/refund/{refund_id}"))
        .await;
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0]["kind"], "payable");
    assert_eq!(erpsync_e2e::decimal(&back[0]["amount"]), "207.41");
    payments.tryton.stop().await;
}

#[tokio::test]
async fn money_through_an_unmapped_gateway_waits_for_a_person_naming_it() {
    let mut payments = PaymentWorld::start().await;
    let (order_id, total) = payments.order().await;
    let id = fresh_id();
    payments
        .pay(&order_id, id, "sale", "paypal_express", &total.to_string())
        .await;
    payments
        .world
        .drain_returns(&payments.money, Duration::from_secs(60))
        .await;
    let sqs = aws_sdk_sqs::Client::new(&payments.world.sdk);
    let parked = queues::peek(&sqs, &payments.world.queue("ReturnsDeadLetterQueue"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(parked.len(), 1);
    assert_eq!(attribute(&parked[0], attr::ERROR_KIND), "unmapped_gateway");
    assert!(attribute(&parked[0], attr::REASON).contains("paypal_express"));
    let state = payments
        .world
        .payment_state("uk-shop", &order_id, &id.to_string())
        .await
        .unwrap_or_else(|| panic!("no payment state"));
    assert_eq!(state.status, SyncStatus::NeedsAttention);
    assert!(
        payments
            .payments(&format!("uk-shop/{order_id}"))
            .await
            .is_empty()
    );
    payments.tryton.stop().await;
}

#[tokio::test]
async fn a_payment_that_overtakes_its_order_waits_for_it_then_pays_the_invoice() {
    let mut payments = PaymentWorld::start().await;
    let (order, order_id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let id = fresh_id();
    // What the ERP will total for this order (the shop's lines, taxed by the ERP).
    payments
        .pay(&order_id, id, "sale", "shopify_payments", "622.22")
        .await;
    let waiting = payments
        .world
        .payment_state("uk-shop", &order_id, &id.to_string())
        .await;
    assert_eq!(
        waiting
            .as_ref()
            .and_then(|s| s.last_error.as_ref())
            .map(|e| e.kind.as_str()),
        Some("order_not_in_erp_yet"),
        "{waiting:?}"
    );
    payments
        .world
        .deliver("uk-shop", "orders/create", "wh-late-order", &order)
        .await;
    payments
        .world
        .drain_returns(&payments.money, Duration::from_secs(60))
        .await;
    let sale = payments.sale(&order_id).await;
    assert_eq!(erpsync_e2e::decimal(&sale["total_amount"]), "622.22");
    assert_eq!(sale["invoices"][0]["state"], "paid", "{sale:?}");
    payments.tryton.stop().await;
}

/// A paid order (its invoice posted and paid) cancelled before dispatch, with Shopify's
/// refund of everything: the sale goes to zero, Tryton credits the posted invoice, and the
/// refund's money settles that credit note.
#[tokio::test]
async fn a_paid_order_cancelled_before_dispatch_is_credited_and_its_refund_settles_the_credit() {
    let mut payments = PaymentWorld::start().await;
    let (order, order_id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let created = erpsync_e2e::at_version(&order, "2026-11-29T10:00:00Z");
    payments
        .world
        .deliver("uk-shop", "orders/create", "wh-create", &created)
        .await;
    let total = erpsync_e2e::decimal(&payments.sale(&order_id).await["total_amount"]);
    payments
        .pay(&order_id, fresh_id(), "sale", "shopify_payments", &total)
        .await;
    assert_eq!(
        payments.sale(&order_id).await["invoices"][0]["state"],
        "paid"
    );

    let refund_id = fresh_id();
    let lines: Vec<Value> = order["line_items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|line| {
            json!({
                "id": line["id"], "line_item_id": line["id"], "quantity": line["quantity"],
                "restock_type": "cancel",
                "subtotal_set": {"shop_money": {"amount": "0.00", "currency_code": "USD"}},
                "total_tax_set": {"shop_money": {"amount": "0.00", "currency_code": "USD"}},
                "line_item": {"sku": line["sku"], "fulfillment_status": null}
            })
        })
        .collect();
    let mut refund = fixture("shopify-refunds-create.json");
    refund["id"] = json!(refund_id);
    refund["order_id"] = json!(order_id.parse::<u64>().unwrap_or_default());
    refund["refund_line_items"] = json!(lines);
    refund["transactions"][0]["id"] = json!(refund_id + 1);
    refund["transactions"][0]["gateway"] = json!("shopify_payments");
    refund["transactions"][0]["amount"] = json!(total);
    let mut cancelled = erpsync_e2e::at_version(&order, "2026-11-29T10:05:00Z");
    cancelled["cancelled_at"] = json!("2026-11-29T10:05:00Z");
    for line in cancelled["line_items"].as_array_mut().into_iter().flatten() {
        line["current_quantity"] = json!(0);
    }
    cancelled["refunds"] = json!([refund.clone()]);
    payments
        .world
        .deliver("uk-shop", "orders/cancelled", "wh-cancel", &cancelled)
        .await;
    payments
        .world
        .deliver_refund(&payments.money, "uk-shop", &refund, "wh-refund")
        .await;

    let sale = payments.sale(&order_id).await;
    let invoices: Vec<(String, String)> = sale["invoices"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                erpsync_e2e::decimal(&i["total_amount"]),
                i["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        invoices,
        vec![
            (total.clone(), "paid".to_owned()),
            (format!("-{total}"), "paid".to_owned())
        ],
        "{sale:?}"
    );
    let recorded = payments.payments(&format!("uk-shop/{order_id}")).await;
    let kinds: Vec<&str> = recorded.iter().filter_map(|p| p["kind"].as_str()).collect();
    assert_eq!(kinds, vec!["receivable", "payable"], "{recorded:?}");
    payments.tryton.stop().await;
}
