use super::*;
use crate::ports::{ErpInvoice, ErpPayment};

fn dec(text: &str) -> Decimal {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn invoice(id: i64, state: InvoiceState, total: &str) -> ErpInvoice {
    ErpInvoice {
        id,
        number: Some(format!("INV{id}")),
        state,
        total: dec(total),
        amount_to_pay: Decimal::ZERO,
        line_to_pay: None,
    }
}

fn payment(id: i64, kind: PaymentKind, amount: &str) -> ErpPayment {
    ErpPayment {
        id,
        reference: Some(format!("uk-shop/txn-{id}")),
        kind,
        amount: dec(amount),
        state: ErpPaymentState::Succeeded,
    }
}

fn sale(reference: &str, invoices: Vec<ErpInvoice>, payments: Vec<ErpPayment>) -> SaleWithMoney {
    SaleWithMoney {
        reference: reference.to_owned(),
        number: Some(format!("S-{reference}")),
        money: SaleMoney {
            currency: Some("USD".to_owned()),
            invoices,
            payments,
        },
    }
}

fn settled_order() -> Vec<SaleWithMoney> {
    vec![
        sale(
            "uk-shop/1",
            vec![invoice(1, InvoiceState::Paid, "598.94")],
            vec![
                payment(1, PaymentKind::Receivable, "30.00"),
                payment(2, PaymentKind::Receivable, "568.94"),
            ],
        ),
        sale(
            "uk-shop/1/refund/9",
            vec![invoice(2, InvoiceState::Paid, "-207.41")],
            vec![payment(3, PaymentKind::Payable, "207.41")],
        ),
    ]
}

#[test]
fn a_paid_order_and_its_settled_refund_read_clean_with_their_totals() {
    let mut report = FinanceReport::default();
    report_channel("uk-shop", &settled_order(), &[], &mut report);
    assert_eq!(report.variances(), 0, "{report:#?}");
    assert_eq!(report.orders.len(), 1);
    let totals = &report.totals["uk-shop USD"];
    assert_eq!(
        (
            totals.invoiced,
            totals.received,
            totals.credited,
            totals.paid_back
        ),
        (dec("598.94"), dec("598.94"), dec("207.41"), dec("207.41"))
    );
}

#[test]
fn each_variance_is_named_for_its_order() {
    let kinds = |sales: Vec<SaleWithMoney>| {
        let mut report = FinanceReport::default();
        report_channel("uk-shop", &sales, &[], &mut report);
        report
            .orders
            .iter()
            .flat_map(|o| o.variances.iter().map(|v| (o.order.clone(), v.kind)))
            .collect::<Vec<_>>()
    };
    let order = "1".to_owned();
    let unpaid = vec![sale(
        "uk-shop/1",
        vec![invoice(1, InvoiceState::Draft, "100.00")],
        vec![],
    )];
    assert_eq!(
        kinds(unpaid),
        vec![(order.clone(), VarianceKind::MissingPayment)]
    );
    let short = vec![sale(
        "uk-shop/1",
        vec![invoice(1, InvoiceState::Posted, "100.00")],
        vec![payment(1, PaymentKind::Receivable, "99.99")],
    )];
    assert_eq!(
        kinds(short),
        vec![(order.clone(), VarianceKind::AmountDiffers)]
    );
    let unsettled = vec![sale(
        "uk-shop/1",
        vec![invoice(1, InvoiceState::Posted, "100.00")],
        vec![payment(1, PaymentKind::Receivable, "100.00")],
    )];
    assert_eq!(
        kinds(unsettled),
        vec![(order.clone(), VarianceKind::Unsettled)]
    );
    let draft = vec![sale(
        "uk-shop/1",
        vec![invoice(1, InvoiceState::Draft, "100.00")],
        vec![payment(1, PaymentKind::Receivable, "100.00")],
    )];
    assert_eq!(
        kinds(draft),
        vec![(order.clone(), VarianceKind::InvoiceNotPosted)]
    );
    let mut refund_unpaid = settled_order();
    refund_unpaid[1].money.payments.clear();
    assert_eq!(
        kinds(refund_unpaid),
        vec![(order.clone(), VarianceKind::RefundNotPaid)]
    );
    let mut processing = settled_order();
    processing[0].money.payments[1].state = ErpPaymentState::Processing;
    let found = kinds(processing);
    assert!(
        found.contains(&(order.clone(), VarianceKind::PaymentNotSucceeded)),
        "{found:?}"
    );
    assert!(
        found.contains(&(order, VarianceKind::AmountDiffers)),
        "{found:?}"
    );
}

#[test]
fn money_erpsync_could_not_book_is_reported_even_without_a_sale() {
    use crate::model::ids::ChannelId;
    use crate::model::state::{EntityRef, Flow, SyncStatus};
    let state = SyncState {
        entity: EntityRef {
            flow: Flow::PaymentSync,
            channel: ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}")),
            entity_id: "77/txn-5".to_owned(),
        },
        status: SyncStatus::NeedsAttention,
        erp_id: None,
        erp_number: None,
        version: None,
        note: Some("payment gateway \"paypal_express\" of uk-shop is not mapped".to_owned()),
        attempts: 1,
        last_error: None,
        updated_at: time::OffsetDateTime::UNIX_EPOCH,
        basis: None,
    };
    let mut report = FinanceReport::default();
    report_channel("uk-shop", &settled_order(), &[state], &mut report);
    let flagged: Vec<_> = report
        .orders
        .iter()
        .filter(|o| !o.variances.is_empty())
        .map(|o| (o.order.clone(), o.variances[0].kind))
        .collect();
    assert_eq!(
        flagged,
        vec![("77".to_owned(), VarianceKind::NeedsAttention)]
    );
}
