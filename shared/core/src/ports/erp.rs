//! The ERP: sales (and the confirm and keep-one steps every flow that books a sale shares),
//! the sales review of shadow running, stock, prices, shipments and the change feed.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::error::SyncError;
use crate::mapping::{CustomerDraft, SaleDraft};
use crate::model::ids::{CountryCode, CurrencyCode, Email, Sku};
use crate::model::order::Address;
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErpSaleState {
    Draft,
    Quotation,
    Confirmed,
    Processing,
    Done,
    Cancelled,
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErpSale {
    pub id: i64,
    pub number: Option<String>,
    pub state: ErpSaleState,
}

/// A sale line as the ERP holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErpSaleLine {
    pub id: i64,
    pub sku: Option<Sku>,
    pub product_id: Option<i64>,
    pub unit_id: Option<i64>,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub description: Option<String>,
    /// The rates of its percentage taxes (0.20 for 20 %), to predict the ERP's tax on it.
    pub tax_rates: Vec<Decimal>,
}

/// What the flows need to know about a sale before changing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErpSaleDetails {
    pub sale: ErpSale,
    pub customer_id: i64,
    pub invoice_address_id: i64,
    pub shipment_address: ErpAddress,
    pub lines: Vec<ErpSaleLine>,
    /// A shipment has gone past waiting (assigned, picked, packed, shipped, done): the
    /// warehouse is working on it, so the sale is no longer the shop's to change.
    pub fulfilment_started: bool,
    /// An invoice is validated, posted or paid.
    pub invoiced: bool,
    /// When the youngest amendment still in draft was made: an attempt whose answer was lost
    /// may still be applying it.
    pub draft_amendment_since: Option<time::OffsetDateTime>,
}

/// A change to a confirmed sale, applied by the ERP as one amendment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleAmendment {
    pub description: String,
    pub lines: Vec<AmendedLine>,
    /// New shipment address (already created on the customer), if it changed.
    pub shipment_address_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmendedLine {
    pub line_id: i64,
    pub product_id: i64,
    pub unit_id: i64,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErpProduct {
    pub id: i64,
    pub unit_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErpAddress {
    pub id: i64,
    pub street: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub country: Option<CountryCode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErpCustomer {
    pub id: i64,
    pub name: Option<String>,
    pub addresses: Vec<ErpAddress>,
}

/// A sale ready to be written: the draft plus the ERP ids it refers to.
#[derive(Debug, Clone)]
pub struct NewSale<'a> {
    pub draft: &'a SaleDraft,
    pub customer_id: i64,
    pub invoice_address_id: i64,
    pub shipment_address_id: i64,
    pub products: &'a HashMap<Sku, ErpProduct>,
}

#[async_trait]
pub trait SalesErp: Send + Sync {
    /// The sale with this reference: the one furthest along (confirmed or later, then
    /// quotation, then draft; cancelled last), the oldest among equals.
    async fn find_sale_by_reference(&self, reference: &str) -> Result<Option<ErpSale>, SyncError>;
    /// Deletes the draft sales with this reference other than `keep`: left by a create whose
    /// answer was lost while the ERP was still working on it. Answers the ids deleted.
    async fn drop_duplicate_drafts(
        &self,
        reference: &str,
        keep: i64,
    ) -> Result<Vec<i64>, SyncError>;

    /// The products known under these SKUs; unknown SKUs are simply absent.
    async fn products_by_sku(&self, skus: &[Sku]) -> Result<HashMap<Sku, ErpProduct>, SyncError>;

    /// The customer with this e-mail (compared case-insensitively); the oldest if several.
    async fn find_customer_by_email(&self, email: &Email)
    -> Result<Option<ErpCustomer>, SyncError>;

    /// Creates the customer with its e-mail and its invoice address, plus the shipment
    /// address when it differs; the addresses come back in that order.
    async fn create_customer(&self, customer: &CustomerDraft) -> Result<ErpCustomer, SyncError>;

    async fn add_address(
        &self,
        customer_id: i64,
        address: &Address,
    ) -> Result<ErpAddress, SyncError>;

    async fn rename_customer(&self, customer_id: i64, name: &str) -> Result<(), SyncError>;

    async fn create_sale(&self, sale: &NewSale<'_>) -> Result<ErpSale, SyncError>;

    async fn quote_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError>;

    async fn confirm_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError>;

    /// Runs the ERP's processing of a confirmed sale (shipments, invoices) now: safe to repeat.
    async fn process_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError>;

    async fn sale_details(&self, sale_id: i64) -> Result<ErpSaleDetails, SyncError>;

    /// Cancels a sale that is not yet processing (draft, quotation or confirmed).
    async fn cancel_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError>;

    /// Applies an amendment to a processing sale; the ERP re-plans its shipments and
    /// invoices from the amended lines.
    async fn amend_sale(
        &self,
        sale_id: i64,
        amendment: &SaleAmendment,
    ) -> Result<ErpSale, SyncError>;
}

/// A create whose answer was lost (a timeout while the ERP was still at work) can commit
/// after the retry looked the reference up and made its own sale. Whenever a sale is about to
/// move on, the one furthest along is kept and the other drafts are deleted, so two attempts
/// never leave two sales (orders and return sales alike).
pub async fn keep_one_sale(
    erp: &dyn SalesErp,
    reference: &str,
    ours: ErpSale,
) -> Result<ErpSale, SyncError> {
    let kept = match erp.find_sale_by_reference(reference).await? {
        Some(oldest) if oldest.id != ours.id => oldest,
        _ => ours,
    };
    let dropped = erp.drop_duplicate_drafts(reference, kept.id).await?;
    if !dropped.is_empty() {
        tracing::warn!(
            reference,
            kept = kept.id,
            ?dropped,
            "duplicate draft sales from lost creates deleted"
        );
    }
    Ok(kept)
}

/// Moves the sale on to confirmed from wherever an earlier, interrupted attempt left it.
pub async fn confirm(
    erp: &dyn SalesErp,
    sale: ErpSale,
    reference: &str,
) -> Result<ErpSale, SyncError> {
    let sale = match sale.state {
        ErpSaleState::Draft => erp.quote_sale(sale.id).await?,
        _ => sale,
    };
    match &sale.state {
        ErpSaleState::Quotation => erp.confirm_sale(sale.id).await,
        ErpSaleState::Confirmed | ErpSaleState::Processing | ErpSaleState::Done => Ok(sale),
        ErpSaleState::Cancelled => Err(SyncError::permanent(
            "erp_sale_cancelled",
            format!(
                "the ERP sale {} for {reference} is cancelled: reinstate it in the ERP or discard this message",
                sale.number.as_deref().unwrap_or("(no number)")
            ),
        )),
        ErpSaleState::Draft | ErpSaleState::Other(_) => Err(SyncError::permanent(
            "erp_sale_state",
            format!(
                "the ERP sale {} for {reference} is in state {:?}, which this flow cannot move on",
                sale.id, sale.state
            ),
        )),
    }
}

/// A sale as the ERP holds it, for comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErpSaleView {
    pub id: i64,
    pub number: Option<String>,
    pub reference: Option<String>,
    pub customer_name: String,
    pub customer_emails: Vec<Email>,
    pub currency: String,
    pub sale_date: Option<Date>,
    /// (SKU, quantity, unit price) of each product line.
    pub lines: Vec<(Sku, Decimal, Decimal)>,
    pub untaxed_amount: Decimal,
    /// With the ERP's taxes (none: the ERP did not say).
    pub total_amount: Option<Decimal>,
    /// The ERP's state (draft, quotation, confirmed, processing, done, cancelled).
    pub state: String,
}

#[async_trait]
pub trait SalesReview: Send + Sync {
    async fn sales_by_reference(&self, reference: &str) -> Result<Vec<ErpSaleView>, SyncError>;
    /// The sales of many references (each asked for is in the answer, maybe with none); an
    /// ERP that can search for them together answers in fewer requests.
    async fn sales_by_references(
        &self,
        references: &[String],
    ) -> Result<BTreeMap<String, Vec<ErpSaleView>>, SyncError> {
        let mut found = BTreeMap::new();
        for reference in references {
            found.insert(reference.clone(), self.sales_by_reference(reference).await?);
        }
        Ok(found)
    }
    /// Sales of the customer with this e-mail dated within [from, to].
    async fn sales_of_customer(
        &self,
        email: &Email,
        from: Date,
        to: Date,
    ) -> Result<Vec<ErpSaleView>, SyncError>;
}

#[async_trait]
pub trait ErpStock: Send + Sync {
    /// Available to sell (on hand less what open sales reserve) per SKU in a warehouse.
    async fn available(
        &self,
        skus: &[Sku],
        warehouse: &str,
    ) -> Result<HashMap<Sku, i64>, SyncError>;
}

#[async_trait]
pub trait ErpPrices: Send + Sync {
    /// Sale prices of one unit, in `currency`, under the price list named (or list prices);
    /// `gross`: the prices must include tax (a price list whose prices do, else an error).
    async fn prices(
        &self,
        skus: &[Sku],
        currency: &CurrencyCode,
        price_list: Option<&str>,
        gross: bool,
    ) -> Result<HashMap<Sku, Decimal>, SyncError>;
}

/// A shipment the ERP has marked done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErpShipment {
    pub id: i64,
    pub number: String,
    /// The sale's reference: `channel/order id` for orders erpsync brought in.
    pub sale_reference: String,
    /// ERP SKU -> quantity shipped.
    pub moves: Vec<(Sku, u32)>,
    /// What the warehouse entered as the shipment's reference: the courier's tracking number.
    pub tracking_number: Option<String>,
    /// The ERP carrier's party name.
    pub carrier: Option<String>,
    /// The sale's shipment state after this dispatch (`partially shipped`: a back order waits).
    pub sale_shipment_state: String,
    /// When the ERP last changed it (for a done shipment: when it was done).
    pub changed_at: OffsetDateTime,
}

impl ErpShipment {
    pub fn back_order_pending(&self) -> bool {
        self.sale_shipment_state == "partially shipped" || self.sale_shipment_state == "waiting"
    }
}

/// Where a page of shipments ends: the next page starts after this change stamp and id, so
/// a shipment changed or undone meanwhile shifts nothing (as an offset would).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShipmentKey {
    pub changed_at: OffsetDateTime,
    pub id: i64,
}

/// One page of the ERP's done customer shipments, oldest change first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipmentPage {
    /// Those of sales (a manual shipment has nothing for a shop to show).
    pub shipments: Vec<ErpShipment>,
    /// Rows the page read, sales' or not: fewer than asked is the last page.
    pub rows: usize,
    /// The page's last row, sales' or not: where the next page starts.
    pub last: Option<ShipmentKey>,
}

#[async_trait]
pub trait ErpShipments: Send + Sync {
    /// Customer shipments done (created or changed) at or after `since`, ordered by their
    /// change and id: at most `limit` rows after `after` (the first page: none).
    async fn shipments_done_since(
        &self,
        since: OffsetDateTime,
        after: Option<ShipmentKey>,
        limit: usize,
    ) -> Result<ShipmentPage, SyncError>;
    /// One done customer shipment (a parked one, redriven); none when it is not done or gone.
    async fn shipment(&self, id: i64) -> Result<Option<ErpShipment>, SyncError>;
}

/// What the ERP changed since a moment: the SKUs whose stock moved, and the latest stamp
/// seen (the next cursor).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErpChanges {
    pub skus: BTreeSet<Sku>,
    pub latest: Option<OffsetDateTime>,
}

#[async_trait]
pub trait ErpChangeFeed: Send + Sync {
    /// SKUs whose stock moves were created or changed at or after `since`.
    async fn stock_moved_since(&self, since: OffsetDateTime) -> Result<ErpChanges, SyncError>;
    /// The latest change at or after `since` to what sale prices depend on (list prices,
    /// price lists, currency rates); none when nothing changed.
    async fn prices_changed_since(
        &self,
        since: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, SyncError>;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErpContact {
    pub party_id: i64,
    pub party_name: String,
    pub email: String,
}

#[async_trait]
pub trait ErpCatalogue: Send + Sync {
    /// Every product's code (the ERP SKU), one entry per product.
    async fn product_codes(&self) -> Result<Vec<String>, SyncError>;
    /// Every customer e-mail, with its party.
    async fn customer_emails(&self) -> Result<Vec<ErpContact>, SyncError>;
    /// Every tax by name, with its rate as a fraction (none: not a percentage tax).
    async fn tax_rates(&self) -> Result<HashMap<String, Option<Decimal>>, SyncError>;
    /// Every currency by ISO code, with the amount the ERP rounds it to (0.01, 1, 0.001).
    async fn currency_roundings(&self) -> Result<HashMap<String, Decimal>, SyncError>;
}

/// A line of the return sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnLine {
    /// Goods coming back: the original line's product; otherwise a service product.
    pub product: ReturnProduct,
    /// Negative: a return.
    pub quantity: Decimal,
    pub unit_price: Decimal,
    /// The original sale line whose taxes (and, for goods, product and unit) it takes.
    pub like_line: Option<i64>,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReturnProduct {
    Goods,
    Service(Sku),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnDraft {
    pub reference: String,
    pub description: String,
    pub original_sale: i64,
    pub lines: Vec<ReturnLine>,
}

impl ReturnDraft {
    pub fn restocks(&self) -> bool {
        self.lines.iter().any(|l| l.product == ReturnProduct::Goods)
    }
}

/// What the ERP booked: the return sale and its credit note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettledReturn {
    pub credit_note: Option<String>,
    /// Negative: money owed back to the customer.
    pub credit_total: Decimal,
    pub restocked: bool,
}

/// Which way a payment moves money: in from the customer (a sale, a capture) or back out
/// (a refund).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentKind {
    Receivable,
    Payable,
}

/// A payment to record against a sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment<'a> {
    /// Unique per channel and transaction (`payment_reference`): the payment is found by it,
    /// never made twice.
    pub reference: &'a str,
    pub sale_id: i64,
    /// The ERP payment journal's name (`[channels.payments]`).
    pub journal: &'a str,
    pub kind: PaymentKind,
    /// Positive, in the sale's currency.
    pub amount: Decimal,
    pub date: time::Date,
    /// The posted invoice's (or credit note's) line to pay it settles. None: the sale's
    /// invoice takes it when posted.
    pub line: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErpPaymentState {
    Draft,
    Submitted,
    Approved,
    Processing,
    Succeeded,
    Failed,
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErpPayment {
    pub id: i64,
    pub reference: Option<String>,
    pub kind: PaymentKind,
    pub amount: Decimal,
    pub state: ErpPaymentState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvoiceState {
    Draft,
    Validated,
    Posted,
    Paid,
    Cancelled,
    Other(String),
}

/// A customer invoice (positive total) or credit note (negative) of a sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErpInvoice {
    pub id: i64,
    pub number: Option<String>,
    pub state: InvoiceState,
    pub total: Decimal,
    /// What is still to be paid (Tryton's `amount_to_pay`), signed as the total.
    pub amount_to_pay: Decimal,
    /// The receivable line a payment settles, once posted.
    pub line_to_pay: Option<i64>,
}

/// A sale's invoices and the payments recorded against it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleMoney {
    /// The sale's currency (ISO code), which its payments must be in.
    pub currency: Option<String>,
    pub invoices: Vec<ErpInvoice>,
    pub payments: Vec<ErpPayment>,
}

#[async_trait]
pub trait PaymentsErp: SalesErp {
    /// Records the payment and takes it to succeeded; one found under its reference is
    /// moved on from where it is, never made twice.
    async fn record_payment(&self, payment: &NewPayment<'_>) -> Result<ErpPayment, SyncError>;
    async fn sale_money(&self, sale_id: i64) -> Result<SaleMoney, SyncError>;
    /// Posts a draft invoice or credit note (the ERP then settles it with the sale's
    /// payments).
    async fn post_invoice(&self, invoice_id: i64) -> Result<(), SyncError>;
}

/// A sale (an order's, or one of its return sales) with its money, as the ERP holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleWithMoney {
    /// The sale's reference (`<channel>/<order id>`, a return's `.../refund/<refund id>`).
    pub reference: String,
    pub number: Option<String>,
    pub money: SaleMoney,
}

/// What the finance report reads.
#[async_trait]
pub trait FinanceErp: Send + Sync {
    /// A channel's sales (orders and return sales) dated within `from..=to`, with their
    /// invoices and payments.
    async fn sales_with_money(
        &self,
        channel: &str,
        from: time::Date,
        to: time::Date,
    ) -> Result<Vec<SaleWithMoney>, SyncError>;
}

#[async_trait]
pub trait ReturnsErp: PaymentsErp {
    /// Creates the return sale (draft).
    async fn create_return(&self, draft: &ReturnDraft) -> Result<ErpSale, SyncError>;
    /// After confirmation: receives the goods coming back (when `restock`) and posts the
    /// credit note.
    async fn settle_return(&self, sale_id: i64, restock: bool) -> Result<SettledReturn, SyncError>;
}
