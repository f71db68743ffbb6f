use super::*;
use crate::config::Config;
use crate::model::ids::ExternalOrderId;
use crate::ports::ErpPayment;

fn config() -> Config {
    Config::from_toml(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/erpsync.example.toml"
    )))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn uk(config: &Config) -> &ChannelConfig {
    config
        .channels
        .iter()
        .find(|c| c.id.as_str() == "uk-shop")
        .unwrap_or_else(|| panic!("no uk-shop"))
}

fn dec(text: &str) -> Decimal {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The REST transaction resource as `order_transactions/create` sends it
/// (https://shopify.dev/docs/api/admin-rest/latest/resources/transaction).
fn body(kind: &str, status: &str, gateway: &str, amount: &str) -> Vec<u8> {
    serde_json::json!({
        "id": 389404469, "order_id": 450789469, "kind": kind, "gateway": gateway,
        "status": status, "message": null, "created_at": "2026-12-01T11:00:00-05:00",
        "test": false, "authorization": "authorization-key", "location_id": null,
        "user_id": null, "parent_id": null, "processed_at": "2026-12-01T11:00:00-05:00",
        "device_id": null, "error_code": null, "source_name": "web", "receipt": {},
        "amount": amount, "currency": "GBP", "payment_id": "c901414060.1",
        "manual_payment_gateway": false,
        "admin_graphql_api_id": "gid://shopify/OrderTransaction/389404469"
    })
    .to_string()
    .into_bytes()
}

fn transaction(kind: &str, status: &str, gateway: &str, amount: &str) -> Transaction {
    crate::channels::shopify::parse_transaction(&body(kind, status, gateway, amount))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_transaction_body_reads_into_the_model() {
    let read = transaction("sale", "success", "shopify_payments", "409.94");
    assert_eq!(read.id, "389404469");
    assert_eq!(
        read.order_id,
        ExternalOrderId::parse("450789469").unwrap_or_else(|e| panic!("{e}"))
    );
    assert_eq!(read.kind, TransactionKind::Sale);
    assert_eq!(read.status, TransactionStatus::Success);
    assert_eq!(read.amount, dec("409.94"));
    assert_eq!(
        read.processed_at.map(|t| t.date().to_string()),
        Some("2026-12-01".to_owned())
    );
    let mut broken: serde_json::Value =
        serde_json::from_slice(&body("sale", "success", "x", "1")).unwrap_or_default();
    broken["amount"] = "ten".into();
    let error = crate::channels::shopify::parse_transaction(broken.to_string().as_bytes())
        .err()
        .map(|e| e.field);
    assert_eq!(error.as_deref(), Some("amount"));
}

#[test]
fn only_successful_sales_and_captures_take_money_each_on_its_gateway_s_journal() {
    let config = config();
    let channel = uk(&config);
    let plan = |kind, status, gateway| {
        plan_transaction(channel, &transaction(kind, status, gateway, "10.05"))
    };
    assert_eq!(
        plan("sale", "success", "shopify_payments").ok(),
        Some(TransactionPlan::Receive {
            gateway: "shopify_payments".to_owned(),
            amount: dec("10.05"),
        })
    );
    let gbp = CurrencyCode::parse("GBP").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        journal_of(channel, "gift_card", &gbp).ok().as_deref(),
        Some("Gift cards GBP")
    );
    assert!(matches!(
        plan("capture", "success", "gift_card"),
        Ok(TransactionPlan::Receive { .. })
    ));
    for (kind, status) in [
        ("authorization", "success"),
        ("void", "success"),
        ("refund", "success"),
        ("sale", "pending"),
        ("sale", "failure"),
        ("sale", "error"),
    ] {
        assert!(
            matches!(
                plan(kind, status, "shopify_payments"),
                Ok(TransactionPlan::Nothing { .. })
            ),
            "{kind} {status}"
        );
    }
    let change = plan("change", "success", "cash").err().map(|e| e.kind);
    assert_eq!(change.as_deref(), Some("unsupported_transaction"));
}

#[test]
fn an_unmapped_gateway_or_a_foreign_currency_is_a_person_s_naming_it() {
    let config = config();
    let channel = uk(&config);
    let error = plan_transaction(
        channel,
        &transaction("sale", "success", "paypal_express", "5"),
    )
    .err()
    .unwrap_or_else(|| panic!("mapped"));
    assert_eq!(error.kind, "unmapped_gateway");
    assert_eq!(error.class, crate::error::ErrorClass::Permanent);
    assert!(
        error.message.contains("\"paypal_express\"")
            && error.message.contains("[channels.payments]")
    );
    let gbp = CurrencyCode::parse("GBP").unwrap_or_else(|e| panic!("{e}"));
    let kind = |amount: &str, currency: &str| {
        bookable(dec(amount), Some(currency), &gbp, "payment")
            .err()
            .map(|e| e.kind)
    };
    assert_eq!(kind("5.00", "CAD").as_deref(), Some("payment_currency"));
    // Finer than a penny is never rounded away.
    assert_eq!(
        kind("10.005", "GBP").as_deref(),
        Some("payment_amount_precision")
    );
    assert_eq!(kind("10.05", "gbp"), None);
}

#[test]
fn a_channel_without_payments_records_none() {
    let config = config();
    let eu = config
        .channels
        .iter()
        .find(|c| c.payments.is_empty())
        .unwrap_or_else(|| panic!("every channel records payments"));
    let plan = plan_transaction(eu, &transaction("sale", "success", "shopify_payments", "5"));
    assert!(matches!(plan, Ok(TransactionPlan::Nothing { .. })));
}

fn invoice(id: i64, state: InvoiceState, total: &str, to_pay: &str) -> ErpInvoice {
    ErpInvoice {
        id,
        number: Some(format!("INV{id}")),
        state,
        total: dec(total),
        amount_to_pay: dec(to_pay),
        line_to_pay: Some(id * 100),
    }
}

fn received(id: i64, amount: &str, state: ErpPaymentState) -> ErpPayment {
    ErpPayment {
        id,
        reference: None,
        kind: PaymentKind::Receivable,
        amount: dec(amount),
        state,
    }
}

#[test]
fn the_invoice_is_posted_once_its_payments_cover_it_to_the_minor_unit() {
    let gbp = CurrencyCode::parse("GBP").unwrap_or_else(|e| panic!("{e}"));
    let draft = invoice(1, InvoiceState::Draft, "100.00", "0");
    let money = |payments: Vec<ErpPayment>| SaleMoney {
        currency: Some("GBP".to_owned()),
        invoices: vec![draft.clone()],
        payments,
    };
    // Gift card first, card after: posted on the second.
    let partial = invoice_step(
        &money(vec![received(1, "30.00", ErpPaymentState::Succeeded)]),
        &gbp,
    );
    assert!(
        matches!(
            partial,
            InvoiceStep::Wait {
                attention: false,
                ..
            }
        ),
        "{partial:?}"
    );
    let whole = money(vec![
        received(1, "30.00", ErpPaymentState::Succeeded),
        received(2, "70.00", ErpPaymentState::Succeeded),
    ]);
    assert_eq!(invoice_step(&whole, &gbp), InvoiceStep::Post { invoice: 1 });
    // A payment still processing does not count.
    let processing = money(vec![
        received(1, "30.00", ErpPaymentState::Succeeded),
        received(2, "70.00", ErpPaymentState::Processing),
    ]);
    assert!(matches!(
        invoice_step(&processing, &gbp),
        InvoiceStep::Wait {
            attention: false,
            ..
        }
    ));
    // A penny over is a person's.
    let over = money(vec![received(1, "100.01", ErpPaymentState::Succeeded)]);
    assert!(matches!(
        invoice_step(&over, &gbp),
        InvoiceStep::Wait {
            attention: true,
            ..
        }
    ));
    // No invoice yet: the payments wait on the sale.
    let none = SaleMoney {
        currency: None,
        invoices: vec![],
        payments: vec![received(1, "100.00", ErpPaymentState::Succeeded)],
    };
    assert!(matches!(
        invoice_step(&none, &gbp),
        InvoiceStep::Wait {
            attention: false,
            ..
        }
    ));
    // A credit note of the sale does not count as invoiced.
    let with_credit = SaleMoney {
        currency: None,
        invoices: vec![
            draft.clone(),
            invoice(2, InvoiceState::Posted, "-20.00", "-20.00"),
        ],
        payments: vec![received(1, "100.00", ErpPaymentState::Succeeded)],
    };
    assert_eq!(
        invoice_step(&with_credit, &gbp),
        InvoiceStep::Post { invoice: 1 }
    );
}

#[test]
fn a_posted_invoice_takes_a_payment_on_its_line_when_it_can_take_it_whole() {
    let gbp = CurrencyCode::parse("GBP").unwrap_or_else(|e| panic!("{e}"));
    let posted = vec![invoice(3, InvoiceState::Posted, "100.00", "100.00")];
    assert_eq!(open_invoice_line(&posted, dec("100.00"), &gbp), Some(300));
    assert_eq!(open_invoice_line(&posted, dec("100.01"), &gbp), None);
    let draft = vec![invoice(3, InvoiceState::Draft, "100.00", "0")];
    assert_eq!(open_invoice_line(&draft, dec("50"), &gbp), None);
}
