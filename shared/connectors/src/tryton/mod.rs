//! The ERP port on Tryton's REST API (`/<db>/rest/model/...`, bearer application key).
//! Reference data (company, warehouse, payment term, currencies, countries) is looked up on
//! first use and cached for the life of the container.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use erpsync_core::SyncError;
use erpsync_core::audit::{ErpCatalogue, ErpContact};
use erpsync_core::changes::{ErpChangeFeed, ErpChanges};
use erpsync_core::config::ErpConfig;
use erpsync_core::fulfilment::{ErpShipment, ErpShipments, ShipmentKey, ShipmentPage};
use erpsync_core::ids::{CountryCode, CurrencyCode, Email, Sku};
use erpsync_core::mapping::CustomerDraft;
use erpsync_core::order::Address;
use erpsync_core::ports::{
    CredentialSource, ErpAddress, ErpCustomer, ErpProduct, ErpSale, ErpSaleDetails, ErpSaleLine,
    ErpSaleState, NewSale, SaleAmendment, SalesErp,
};
use erpsync_core::prices::ErpPrices;
use erpsync_core::returns::{ReturnDraft, ReturnProduct, ReturnsErp, SettledReturn};
use erpsync_core::shadow::{ErpSaleView as ReviewedSale, SalesReview};
use erpsync_core::stock::ErpStock;
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use std::str::FromStr;
use tokio::sync::{Mutex, OnceCell};
use tracing::{debug, info, warn};

use crate::http::retry_after;

pub struct TrytonClient {
    http: reqwest::Client,
    /// `http://host:port/<database>/rest`
    base: String,
    key: std::sync::RwLock<SecretString>,
    /// Where the key is read again when Tryton refuses it (a rotation), at most once a
    /// minute.
    key_source: Option<KeySource>,
    erp: ErpConfig,
    refs: OnceCell<References>,
    /// Countries, carriers and taxes by the codes and names the orders and config use.
    names: Mutex<HashMap<(&'static str, String), i64>>,
}

/// Where the key is read again, and when it last was.
type KeySource = (Arc<dyn CredentialSource>, Mutex<Option<Instant>>);

#[derive(Debug, Clone)]
struct References {
    company: i64,
    warehouse: i64,
    payment_term: i64,
    currencies: HashMap<String, i64>,
    /// `X-Tryton-Context`: base64url JSON with the company, which writes need.
    context: String,
}

#[derive(Debug, Deserialize)]
struct Record {
    id: i64,
}

fn text_of(value: &Value, field: &str) -> Option<String> {
    value.get(field).and_then(Value::as_str).map(str::to_owned)
}

/// `model/<name>/<id>` (and its buttons): a path naming one record.
fn names_a_record(path: &str) -> bool {
    let mut parts = path.split('/');
    parts.next() == Some("model")
        && parts.next().is_some()
        && parts
            .next()
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

fn id_of(value: &Value, field: &str) -> Option<i64> {
    let field = value.get(field)?;
    field
        .as_i64()
        .or_else(|| field.get("id").and_then(Value::as_i64))
}

fn encode(value: &Value) -> String {
    URL_SAFE.encode(value.to_string())
}

/// Tryton's `ilike` treats `%` and `_` as wildcards; an e-mail must match literally.
fn like_literal(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn sale_state(text: &str) -> ErpSaleState {
    match text {
        "draft" => ErpSaleState::Draft,
        "quotation" => ErpSaleState::Quotation,
        "confirmed" => ErpSaleState::Confirmed,
        "processing" => ErpSaleState::Processing,
        "done" => ErpSaleState::Done,
        "cancelled" => ErpSaleState::Cancelled,
        other => ErpSaleState::Other(other.to_owned()),
    }
}

/// Tryton sends decimals as `{"__class__": "Decimal", "decimal": "1.50"}` and floats as numbers.
/// A Boolean field: `true`, or 1 where the database (SQLite) stores it as a number.
fn bool_of(value: &Value) -> bool {
    value.as_bool().unwrap_or(false) || value.as_i64() == Some(1)
}

fn decimal_of(value: &Value) -> Option<Decimal> {
    match value {
        Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
        Value::String(s) => Decimal::from_str(s).ok(),
        Value::Object(o) => o
            .get("decimal")
            .and_then(Value::as_str)
            .and_then(|d| Decimal::from_str(d).ok()),
        _ => None,
    }
}

fn sale_of(value: &Value) -> Result<ErpSale, SyncError> {
    let id = id_of(value, "id").ok_or_else(|| unexpected("a sale without an id"))?;
    Ok(ErpSale {
        id,
        number: text_of(value, "number"),
        state: sale_state(&text_of(value, "state").unwrap_or_default()),
    })
}

fn unexpected(what: &str) -> SyncError {
    SyncError::retryable("erp_unexpected", format!("Tryton answered with {what}"))
}

impl TrytonClient {
    /// `url` is the server's base URL (`http://host:8000`); the database comes from the config.
    pub fn new(url: &str, key: SecretString, erp: ErpConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(erp.request_timeout_seconds.into()))
            .pool_idle_timeout(Duration::from_secs(50))
            .build()?;
        Ok(Self {
            http,
            base: format!("{}/{}/rest", url.trim_end_matches('/'), erp.database),
            key: std::sync::RwLock::new(key),
            key_source: None,
            erp,
            refs: OnceCell::new(),
            names: Mutex::new(HashMap::new()),
        })
    }

    /// Reads the key again from `source` when Tryton refuses the one in use.
    pub fn with_key_source(mut self, source: Arc<dyn CredentialSource>) -> Self {
        self.key_source = Some((source, Mutex::new(None)));
        self
    }

    /// After Tryton refused the key: the key as stored now, if it was not read in the last
    /// minute and differs from the one in use (then the call is tried again with it).
    async fn rotated_key(&self) -> bool {
        let Some((source, last_read)) = &self.key_source else {
            return false;
        };
        {
            let mut last = last_read.lock().await;
            if last.is_some_and(|at| at.elapsed() < Duration::from_secs(60)) {
                return false;
            }
            *last = Some(Instant::now());
        }
        let fresh = match source.reread().await {
            Ok(fresh) => fresh,
            Err(error) => {
                warn!(error = %error, "the ERP key could not be read again");
                return false;
            }
        };
        let mut key = self
            .key
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if key.expose_secret() == fresh.expose_secret() {
            return false;
        }
        *key = fresh;
        info!("the ERP key was rotated; using the new one");
        true
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        context: Option<&str>,
    ) -> Result<Value, SyncError> {
        // A read is safe to repeat: one refused or failed at once (not one that timed out:
        // that already took its time) is tried again twice, briefly, before the message pays
        // a whole retry. Writes are left to the flow, which checks what a lost answer did.
        let mut pauses = [100u64, 300].into_iter();
        let mut key_reread = false;
        loop {
            let key = self.current_key();
            match self
                .call_once(method.clone(), path, query, body, context, &key)
                .await
            {
                Ok(value) => return Ok(value),
                // A refused key did nothing: any call may go again with a rotated one, read
                // now or by a concurrent call meanwhile.
                Err((error, _))
                    if error.kind == "erp_auth"
                        && !key_reread
                        && (self.current_key().expose_secret() != key.expose_secret()
                            || self.rotated_key().await) =>
                {
                    key_reread = true;
                }
                Err((error, quick_failure)) => match pauses.next() {
                    Some(pause) if method == Method::GET && quick_failure => {
                        debug!(%method, path, error = %error, "read failed; trying again");
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                    }
                    _ => return Err(error),
                },
            }
        }
    }

    /// The key in use.
    fn current_key(&self) -> SecretString {
        self.key
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// One request with `key`; on failure, the error and whether it failed quickly (refused,
    /// 5xx).
    async fn call_once(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        context: Option<&str>,
        key: &SecretString,
    ) -> Result<Value, (SyncError, bool)> {
        let url = format!("{}/{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(key.expose_secret())
            .query(query);
        if let Some(context) = context {
            request = request.header("X-Tryton-Context", context);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        // A write whose answer is lost may still be at work in Tryton and commit later: its
        // retry waits until it must have finished (the request timeout), so the look-up by
        // reference then finds what it made instead of making a second one.
        let settle = |error: SyncError, delivered: bool| {
            if method != Method::GET && delivered {
                error.with_retry_after(Duration::from_secs(self.erp.request_timeout_seconds.into()))
            } else {
                error
            }
        };
        let response = request.send().await.map_err(|e| {
            let error = SyncError::dependency_down(
                "erp_unavailable",
                format!(
                    "Tryton at {} did not answer {method} {path}: {e}",
                    self.base
                ),
            );
            // A refused connection sent nothing; anything later may have been delivered.
            (settle(error, !e.is_connect()), !e.is_timeout())
        })?;
        let status = response.status();
        let delay = retry_after(response.headers());
        let text = response.text().await.map_err(|e| {
            let error = SyncError::dependency_down(
                "erp_unavailable",
                format!("Tryton's answer to {method} {path} broke off: {e}"),
            );
            (settle(error, true), false)
        })?;
        debug!(%method, path, status = status.as_u16(), "tryton call");
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text)
                .map_err(|_| (unexpected("a body that is not JSON"), false));
        }
        let quick_failure = status.is_server_error() && delay.is_none();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| text_of(&v, "message"))
            .unwrap_or_else(|| text.chars().take(300).collect());
        let error = refusal(status, &method, path, &message, &self.erp.api_key_secret);
        let error = match delay {
            Some(delay) => error.with_retry_after(delay),
            // A 5xx may come from a gateway after Tryton did the work.
            None if status.is_server_error() => settle(error, true),
            None => error,
        };
        Err((error, quick_failure))
    }

    async fn search(
        &self,
        model: &str,
        domain: Value,
        fields: &[&str],
        order: Option<Value>,
    ) -> Result<Vec<Value>, SyncError> {
        self.search_in(model, domain, fields, order, None).await
    }

    /// A search under a context (quantities need the company and the locations).
    async fn search_in(
        &self,
        model: &str,
        domain: Value,
        fields: &[&str],
        order: Option<Value>,
        context: Option<&str>,
    ) -> Result<Vec<Value>, SyncError> {
        self.search_page(model, domain, fields, order, context, None)
            .await
    }

    /// One page of a search: `(offset, limit)` as Tryton's REST `p` and `s`.
    async fn search_page(
        &self,
        model: &str,
        domain: Value,
        fields: &[&str],
        order: Option<Value>,
        context: Option<&str>,
        page: Option<(usize, usize)>,
    ) -> Result<Vec<Value>, SyncError> {
        let mut query: Vec<(&str, String)> =
            fields.iter().map(|f| ("f", (*f).to_owned())).collect();
        query.push(("d", encode(&domain)));
        if let Some(order) = order {
            query.push(("o", encode(&order)));
        }
        if let Some((offset, limit)) = page {
            query.push(("p", offset.to_string()));
            query.push(("s", limit.to_string()));
        }
        let result = self
            .call(
                Method::GET,
                &format!("model/{model}"),
                &query,
                None,
                context,
            )
            .await?;
        match result {
            Value::Array(items) => Ok(items),
            _ => Err(unexpected(&format!(
                "a {model} search result that is not a list"
            ))),
        }
    }

    /// Looks up the reference data and opens the connection now, so the first message does
    /// not pay for it. An ERP that is down is not an error here: messages will retry.
    pub async fn warm_up(&self) {
        if let Err(error) = self.references().await {
            tracing::warn!(error = %error, "ERP not reachable at start; messages will retry");
        }
    }

    /// Creates one record of `model` and returns its id.
    async fn create(&self, model: &str, body: &Value) -> Result<i64, SyncError> {
        let refs = self.references().await?;
        let created = self
            .call(
                Method::POST,
                &format!("model/{model}"),
                &[],
                Some(body),
                Some(&refs.context),
            )
            .await?;
        serde_json::from_value::<Record>(created)
            .map(|record| record.id)
            .map_err(|_| unexpected(&format!("a created {model} without an id")))
    }

    /// The customers (id, name) with this e-mail, compared case-insensitively, oldest first:
    /// one search, the party's name read through the contact mechanism.
    async fn parties_with_email(
        &self,
        email: &Email,
    ) -> Result<Vec<(i64, Option<String>)>, SyncError> {
        let rows = self
            .search(
                "party.contact_mechanism",
                json!([
                    ["type", "=", "email"],
                    ["value", "ilike", like_literal(email.as_str())]
                ]),
                &["party.name"],
                Some(json!([["party", "ASC"]])),
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| Some((id_of(row, "party")?, text_of(&row["party"], "name"))))
            .collect())
    }

    /// The first record of `model` matching `domain`, by id.
    async fn first_id(&self, model: &str, domain: Value) -> Result<Option<i64>, SyncError> {
        Ok(self
            .search(model, domain, &["id"], Some(json!([["id", "ASC"]])))
            .await?
            .first()
            .and_then(|r| id_of(r, "id")))
    }

    async fn references(&self) -> Result<&References, SyncError> {
        let missing = |what: String| SyncError::dependency_down("erp_setup", what);
        self.refs
            .get_or_try_init(|| async {
                let company = self
                    .first_id("company.company", json!([]))
                    .await?
                    .ok_or_else(|| missing("Tryton has no company".to_owned()))?;
                let warehouse = self
                    .first_id(
                        "stock.location",
                        json!([
                            ["code", "=", self.erp.warehouse],
                            ["type", "=", "warehouse"]
                        ]),
                    )
                    .await?
                    .ok_or_else(|| {
                        missing(format!(
                            "Tryton has no warehouse with code {:?} (config erp.warehouse)",
                            self.erp.warehouse
                        ))
                    })?;
                let payment_term = self
                    .first_id(
                        "account.invoice.payment_term",
                        json!([["name", "=", self.erp.payment_term]]),
                    )
                    .await?
                    .ok_or_else(|| {
                        missing(format!(
                            "Tryton has no payment term named {:?} (config erp.payment_term)",
                            self.erp.payment_term
                        ))
                    })?;
                let currencies = self
                    .search("currency.currency", json!([]), &["code"], None)
                    .await?
                    .iter()
                    .filter_map(|c| Some((text_of(c, "code")?, id_of(c, "id")?)))
                    .collect();
                Ok(References {
                    company,
                    warehouse,
                    payment_term,
                    currencies,
                    context: encode(&json!({"company": company})),
                })
            })
            .await
    }

    /// The id of the `model` record whose `field` is `value`, cached for the container's life.
    async fn cached_id(
        &self,
        model: &'static str,
        field: &str,
        value: &str,
    ) -> Result<Option<i64>, SyncError> {
        let key = (model, format!("{field}={value}"));
        if let Some(id) = self.names.lock().await.get(&key) {
            return Ok(Some(*id));
        }
        let found = self.first_id(model, json!([[field, "=", value]])).await?;
        if let Some(id) = found {
            self.names.lock().await.insert(key, id);
        }
        Ok(found)
    }

    async fn country_id(&self, code: &CountryCode, field: &str) -> Result<i64, SyncError> {
        self.cached_id("country.country", "code", code.as_str()).await?.ok_or_else(|| {
            SyncError::permanent(
                "unknown_country",
                format!("{field}: country {code} is not set up in the ERP; add it to Tryton's countries, then redrive"),
            )
        })
    }

    /// The id of the record of `model` that the config names (`domain_field` = `name`).
    async fn id_by_name(
        &self,
        model: &'static str,
        domain_field: &str,
        name: &str,
        config_key: &str,
    ) -> Result<i64, SyncError> {
        self.cached_id(model, domain_field, name).await?.ok_or_else(|| {
            SyncError::permanent(
                "erp_setup",
                format!("{config_key} names {name:?}, which the ERP does not have ({model}): fix the config or create it in Tryton, then redrive"),
            )
        })
    }

    async fn address_values(&self, address: &Address, field: &str) -> Result<Value, SyncError> {
        Ok(json!({
            // The person to deliver to; for a business customer the party is the company.
            "party_name": address.name,
            "street_unstructured": address.street,
            "postal_code": address.postal_code,
            "city": address.city,
            "country": self.country_id(&address.country, field).await?,
        }))
    }

    async fn addresses_of(&self, party: i64) -> Result<Vec<ErpAddress>, SyncError> {
        let rows = self
            .search(
                "party.address",
                json!([["party", "=", party]]),
                &["street", "postal_code", "city", "country.code"],
                Some(json!([["id", "ASC"]])),
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                Some(ErpAddress {
                    id: id_of(row, "id")?,
                    street: text_of(row, "street"),
                    postal_code: text_of(row, "postal_code"),
                    city: text_of(row, "city"),
                    country: row
                        .get("country")
                        .and_then(|c| text_of(c, "code"))
                        .and_then(|c| CountryCode::parse(&c).ok()),
                })
            })
            .collect())
    }

    async fn read(&self, model: &str, id: i64, fields: &[&str]) -> Result<Value, SyncError> {
        let query: Vec<(&str, String)> = fields.iter().map(|f| ("f", (*f).to_owned())).collect();
        self.call(
            Method::GET,
            &format!("model/{model}/{id}"),
            &query,
            None,
            None,
        )
        .await
    }

    /// Presses a button on a record (receive, do, post, ...).
    async fn call_button(&self, model: &str, id: i64, button: &str) -> Result<(), SyncError> {
        let refs = self.references().await?;
        self.call(
            Method::POST,
            &format!("model/{model}/{id}/{button}"),
            &[],
            Some(&json!({})),
            Some(&refs.context),
        )
        .await?;
        Ok(())
    }

    /// Posts a credit note made from a return sale. Its lines carry the original sale's
    /// taxes (mapped from the shop per destination), which Tryton warns differ from the
    /// products' defaults; that difference is deliberate, so the warning is skipped here.
    async fn post_credit_note(&self, invoice_id: i64) -> Result<(), SyncError> {
        let refs = self.references().await?;
        let context = encode(&json!({"company": refs.company, "_skip_warnings": true}));
        self.call(
            Method::POST,
            &format!("model/account.invoice/{invoice_id}/post"),
            &[],
            Some(&json!({})),
            Some(&context),
        )
        .await?;
        Ok(())
    }

    async fn sale_action(&self, sale_id: i64, action: &str) -> Result<ErpSale, SyncError> {
        let refs = self.references().await?;
        let query = [("f", "number".to_owned()), ("f", "state".to_owned())];
        let result = self
            .call(
                Method::POST,
                &format!("model/sale.sale/{sale_id}/{action}"),
                &query,
                Some(&json!({})),
                Some(&refs.context),
            )
            .await?;
        sale_of(&result)
    }
}

#[async_trait]
impl SalesErp for TrytonClient {
    async fn find_sale_by_reference(&self, reference: &str) -> Result<Option<ErpSale>, SyncError> {
        let rows = self
            .search(
                "sale.sale",
                json!([["reference", "=", reference]]),
                &["number", "state"],
                Some(json!([["id", "ASC"]])),
            )
            .await?;
        // The furthest along wins (a lost create can leave a younger or older draft beside
        // it); among equals the oldest; a cancelled one only when nothing else is left.
        let rank = |row: &&Value| match row["state"].as_str() {
            Some("processing" | "confirmed" | "done") => 0,
            Some("quotation") => 1,
            Some("draft") => 2,
            _ => 3,
        };
        rows.iter().min_by_key(rank).map(sale_of).transpose()
    }

    async fn drop_duplicate_drafts(
        &self,
        reference: &str,
        keep: i64,
    ) -> Result<Vec<i64>, SyncError> {
        let drafts = self
            .search(
                "sale.sale",
                json!([
                    ["reference", "=", reference],
                    ["state", "=", "draft"],
                    ["id", "!=", keep]
                ]),
                &["id"],
                None,
            )
            .await?;
        let refs = self.references().await?;
        let mut dropped = Vec::new();
        for id in drafts.iter().filter_map(|row| id_of(row, "id")) {
            self.call(
                Method::DELETE,
                &format!("model/sale.sale/{id}"),
                &[],
                None,
                Some(&refs.context),
            )
            .await?;
            dropped.push(id);
        }
        Ok(dropped)
    }

    async fn products_by_sku(&self, skus: &[Sku]) -> Result<HashMap<Sku, ErpProduct>, SyncError> {
        let codes: Vec<&str> = skus.iter().map(Sku::as_str).collect();
        let rows = self
            .search(
                "product.product",
                json!([["code", "in", codes]]),
                &["code", "default_uom"],
                None,
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let sku = Sku::parse(&text_of(row, "code")?).ok()?;
                Some((
                    sku,
                    ErpProduct {
                        id: id_of(row, "id")?,
                        unit_id: id_of(row, "default_uom")?,
                    },
                ))
            })
            .collect())
    }

    async fn find_customer_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<ErpCustomer>, SyncError> {
        let Some((party, name)) = self.parties_with_email(email).await?.into_iter().next() else {
            return Ok(None);
        };
        Ok(Some(ErpCustomer {
            id: party,
            name,
            addresses: self.addresses_of(party).await?,
        }))
    }

    async fn create_customer(&self, customer: &CustomerDraft) -> Result<ErpCustomer, SyncError> {
        let mut addresses = vec![
            self.address_values(&customer.invoice_address, "billing_address")
                .await?,
        ];
        if customer.shipment_address != customer.invoice_address {
            addresses.push(
                self.address_values(&customer.shipment_address, "shipping_address")
                    .await?,
            );
        }
        let mut mechanisms = Vec::new();
        if let Some(email) = &customer.email {
            mechanisms.push(json!({"type": "email", "value": email.as_str()}));
        }
        if let Some(phone) = &customer.phone {
            mechanisms.push(json!({"type": "phone", "value": phone}));
        }
        let body = json!({
            "name": customer.name,
            "contact_mechanisms": [["create", mechanisms]],
            "addresses": [["create", addresses]],
        });
        let id = self.create("party.party", &body).await?;
        Ok(ErpCustomer {
            id,
            name: Some(customer.name.clone()),
            addresses: self.addresses_of(id).await?,
        })
    }

    async fn add_address(
        &self,
        customer_id: i64,
        address: &Address,
    ) -> Result<ErpAddress, SyncError> {
        let mut body = self.address_values(address, "shipping_address").await?;
        body["party"] = json!(customer_id);
        let id = self.create("party.address", &body).await?;
        Ok(ErpAddress {
            id,
            street: Some(address.street.clone()),
            postal_code: address.postal_code.clone(),
            city: address.city.clone(),
            country: Some(address.country.clone()),
        })
    }

    async fn rename_customer(&self, customer_id: i64, name: &str) -> Result<(), SyncError> {
        let refs = self.references().await?;
        self.call(
            Method::PUT,
            &format!("model/party.party/{customer_id}"),
            &[],
            Some(&json!({"name": name})),
            Some(&refs.context),
        )
        .await
        .map(|_| ())
    }

    async fn create_sale(&self, sale: &NewSale<'_>) -> Result<ErpSale, SyncError> {
        let refs = self.references().await?;
        let draft = sale.draft;
        let currency = *refs
            .currencies
            .get(draft.currency.as_str())
            .ok_or_else(|| {
                SyncError::permanent(
                    "unknown_currency",
                    format!(
                        "currency {} is not set up in the ERP; add it to Tryton, then redrive",
                        draft.currency
                    ),
                )
            })?;
        let mut taxes = HashMap::new();
        for name in draft.tax_names() {
            let id = self
                .id_by_name(
                    "account.tax",
                    "name",
                    &name,
                    "a [[channels.tax_codes]] erp_tax",
                )
                .await?;
            taxes.insert(name, id);
        }
        let carrier = match &draft.carrier {
            Some(name) => Some(
                self.id_by_name("carrier", "party.name", name, "[channels.delivery_methods]")
                    .await?,
            ),
            None => None,
        };
        let mut lines = Vec::with_capacity(draft.lines.len());
        for line in &draft.lines {
            let line_taxes: Vec<i64> = line
                .taxes
                .iter()
                .filter_map(|t| taxes.get(t).copied())
                .collect();
            let product = sale.products.get(&line.sku).ok_or_else(|| {
                SyncError::permanent(
                    "unknown_sku",
                    format!("SKU {} is not a product in the ERP", line.sku),
                )
            })?;
            lines.push(json!({
                "type": "line",
                "product": product.id,
                "unit": product.unit_id,
                "quantity": line.quantity,
                "unit_price": line.unit_price.to_string(),
                "description": line.description,
                "taxes": [["add", line_taxes]],
            }));
        }
        let body = json!({
            "company": refs.company,
            "party": sale.customer_id,
            "invoice_address": sale.invoice_address_id,
            "shipment_address": sale.shipment_address_id,
            "reference": draft.reference,
            "description": draft.description,
            "currency": currency,
            "warehouse": refs.warehouse,
            "payment_term": refs.payment_term,
            "carrier": carrier,
            // sale_shipment_cost: the shop already charged shipping as a line.
            "shipment_cost_method": null,
            "lines": [["create", lines]],
        });
        let id = self.create("sale.sale", &body).await?;
        Ok(ErpSale {
            id,
            number: None,
            state: ErpSaleState::Draft,
        })
    }

    async fn quote_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.sale_action(sale_id, "quote").await
    }

    async fn confirm_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.sale_action(sale_id, "confirm").await
    }

    async fn process_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.sale_action(sale_id, "process").await
    }

    async fn sale_details(&self, sale_id: i64) -> Result<ErpSaleDetails, SyncError> {
        let sale = self
            .read(
                "sale.sale",
                sale_id,
                &[
                    "number",
                    "state",
                    "party",
                    "invoice_address",
                    "shipment_address.street",
                    "shipment_address.postal_code",
                    "shipment_address.city",
                    "shipment_address.country.code",
                    "lines.type",
                    "lines.product.code",
                    "lines.unit",
                    "lines.quantity",
                    "lines.unit_price",
                    "lines.description",
                    "lines.taxes.type",
                    "lines.taxes.rate",
                    "shipments.state",
                    "invoices.state",
                ],
            )
            .await?;
        let address = &sale["shipment_address"];
        let lines = sale["lines"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|line| line["type"] == "line")
            .filter_map(|line| {
                Some(ErpSaleLine {
                    id: id_of(line, "id")?,
                    sku: line["product"]["code"]
                        .as_str()
                        .and_then(|c| Sku::parse(c).ok()),
                    product_id: id_of(line, "product"),
                    unit_id: id_of(line, "unit"),
                    quantity: decimal_of(&line["quantity"])?,
                    unit_price: decimal_of(&line["unit_price"])?,
                    description: text_of(line, "description"),
                    tax_rates: line["taxes"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .filter(|tax| tax["type"] == "percentage")
                        .filter_map(|tax| decimal_of(&tax["rate"]))
                        .collect(),
                })
            })
            .collect();
        let states = |field: &str| -> Vec<String> {
            sale[field]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|r| text_of(r, "state"))
                .collect()
        };
        Ok(ErpSaleDetails {
            sale: sale_of(&sale)?,
            customer_id: id_of(&sale, "party")
                .ok_or_else(|| unexpected("a sale without a party"))?,
            invoice_address_id: id_of(&sale, "invoice_address")
                .ok_or_else(|| unexpected("a sale without an invoice address"))?,
            shipment_address: ErpAddress {
                id: id_of(address, "id")
                    .ok_or_else(|| unexpected("a sale without a shipment address"))?,
                street: text_of(address, "street"),
                postal_code: text_of(address, "postal_code"),
                city: text_of(address, "city"),
                country: address["country"]["code"]
                    .as_str()
                    .and_then(|c| CountryCode::parse(c).ok()),
            },
            lines,
            // Waiting shipments are still re-planned by an amendment; anything further on is
            // the warehouse's.
            fulfilment_started: states("shipments")
                .iter()
                .any(|s| !matches!(s.as_str(), "draft" | "waiting" | "cancelled")),
            invoiced: states("invoices")
                .iter()
                .any(|s| !matches!(s.as_str(), "draft" | "cancelled")),
        })
    }

    async fn cancel_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        let sale = sale_of(
            &self
                .read("sale.sale", sale_id, &["number", "state"])
                .await?,
        )?;
        if sale.state == ErpSaleState::Confirmed {
            // Tryton cancels only drafts and quotations; a confirmed sale goes back first.
            self.sale_action(sale_id, "draft").await?;
        }
        self.sale_action(sale_id, "cancel").await
    }

    async fn amend_sale(
        &self,
        sale_id: i64,
        amendment: &SaleAmendment,
    ) -> Result<ErpSale, SyncError> {
        let mut lines: Vec<Value> = amendment
            .lines
            .iter()
            .map(|line| {
                json!({
                    "action": "line",
                    "line": line.line_id,
                    "product": line.product_id,
                    "unit": line.unit_id,
                    "quantity": line.quantity.to_string().parse::<f64>().unwrap_or_default(),
                    "unit_price": line.unit_price.to_string(),
                    "description": line.description,
                })
            })
            .collect();
        if let Some(shipment_address) = amendment.shipment_address_id {
            let sale = self
                .read("sale.sale", sale_id, &["party", "invoice_address"])
                .await?;
            lines.push(json!({
                "action": "party",
                "party": id_of(&sale, "party"),
                "invoice_party": null,
                "invoice_address": id_of(&sale, "invoice_address"),
                "shipment_party": null,
                "shipment_address": shipment_address,
            }));
        }
        let body = json!({
            "sale": sale_id,
            "description": amendment.description.chars().take(200).collect::<String>(),
            "lines": [["create", lines]],
        });
        let id = self.create("sale.amendment", &body).await?;
        let refs = self.references().await?;
        self.call(
            Method::POST,
            &format!("model/sale.amendment/{id}/validate_amendment"),
            &[],
            Some(&json!({})),
            Some(&refs.context),
        )
        .await?;
        sale_of(
            &self
                .read("sale.sale", sale_id, &["number", "state"])
                .await?,
        )
    }
}

const REVIEW_FIELDS: &[&str] = &[
    "number",
    "state",
    "reference",
    "sale_date",
    "currency.code",
    "untaxed_amount",
    "total_amount",
    "party.name",
    "party.contact_mechanisms.type",
    "party.contact_mechanisms.value",
    "lines.type",
    "lines.product.code",
    "lines.quantity",
    "lines.unit_price",
];

/// Tryton's JSON for a datetime: naive, in UTC (as Tryton stores its change stamps).
fn datetime_value(at: time::OffsetDateTime) -> Value {
    let at = at.to_offset(time::UtcOffset::UTC);
    json!({"__class__": "datetime", "year": at.year(), "month": u8::from(at.month()), "day": at.day(),
           "hour": at.hour(), "minute": at.minute(), "second": at.second(), "microsecond": at.microsecond()})
}

fn datetime_of(value: &Value) -> Option<time::OffsetDateTime> {
    let part = |name: &str| value.get(name).and_then(Value::as_i64);
    let date = time::Date::from_calendar_date(
        i32::try_from(part("year")?).ok()?,
        time::Month::try_from(u8::try_from(part("month")?).ok()?).ok()?,
        u8::try_from(part("day")?).ok()?,
    )
    .ok()?;
    let clock = time::Time::from_hms_micro(
        u8::try_from(part("hour")?).ok()?,
        u8::try_from(part("minute")?).ok()?,
        u8::try_from(part("second")?).ok()?,
        u32::try_from(part("microsecond").unwrap_or(0)).ok()?,
    )
    .ok()?;
    Some(time::PrimitiveDateTime::new(date, clock).assume_utc())
}

/// The later of a record's creation and last change.
fn stamp_of(row: &Value) -> Option<time::OffsetDateTime> {
    [
        datetime_of(&row["create_date"]),
        datetime_of(&row["write_date"]),
    ]
    .into_iter()
    .flatten()
    .max()
}

fn date_value(date: time::Date) -> Value {
    json!({"__class__": "date", "year": date.year(), "month": u8::from(date.month()), "day": date.day()})
}

fn sale_view(sale: &Value) -> Option<ReviewedSale> {
    let sale_date = sale.get("sale_date").and_then(|d| {
        let month = time::Month::try_from(u8::try_from(d.get("month")?.as_u64()?).ok()?).ok()?;
        time::Date::from_calendar_date(
            i32::try_from(d.get("year")?.as_i64()?).ok()?,
            month,
            u8::try_from(d.get("day")?.as_u64()?).ok()?,
        )
        .ok()
    });
    let party = &sale["party"];
    Some(ReviewedSale {
        id: id_of(sale, "id")?,
        state: text_of(sale, "state").unwrap_or_default(),
        number: text_of(sale, "number"),
        reference: text_of(sale, "reference"),
        customer_name: text_of(party, "name").unwrap_or_default(),
        customer_emails: party["contact_mechanisms"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|m| m["type"] == "email")
            .filter_map(|m| m["value"].as_str().and_then(|v| Email::parse(v).ok()))
            .collect(),
        currency: sale["currency"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        sale_date,
        lines: sale["lines"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|l| l["type"] == "line")
            .filter_map(|l| {
                Some((
                    Sku::parse(l["product"]["code"].as_str()?).ok()?,
                    decimal_of(&l["quantity"])?,
                    decimal_of(&l["unit_price"])?,
                ))
            })
            .collect(),
        untaxed_amount: decimal_of(&sale["untaxed_amount"]).unwrap_or_default(),
        total_amount: decimal_of(&sale["total_amount"]),
    })
}

#[async_trait]
impl SalesReview for TrytonClient {
    async fn sales_by_reference(&self, reference: &str) -> Result<Vec<ReviewedSale>, SyncError> {
        let reference = reference.to_owned();
        Ok(self
            .sales_by_references(std::slice::from_ref(&reference))
            .await?
            .remove(&reference)
            .unwrap_or_default())
    }

    async fn sales_by_references(
        &self,
        references: &[String],
    ) -> Result<std::collections::BTreeMap<String, Vec<ReviewedSale>>, SyncError> {
        let mut found: std::collections::BTreeMap<String, Vec<ReviewedSale>> = references
            .iter()
            .map(|reference| (reference.clone(), Vec::new()))
            .collect();
        if references.is_empty() {
            return Ok(found);
        }
        let rows = self
            .search(
                "sale.sale",
                json!([["reference", "in", references]]),
                REVIEW_FIELDS,
                Some(json!([["id", "ASC"]])),
            )
            .await?;
        for sale in rows.iter().filter_map(sale_view) {
            if let Some(sales) = sale.reference.as_ref().and_then(|r| found.get_mut(r)) {
                sales.push(sale);
            }
        }
        Ok(found)
    }

    async fn sales_of_customer(
        &self,
        email: &Email,
        from: time::Date,
        to: time::Date,
    ) -> Result<Vec<ReviewedSale>, SyncError> {
        let parties: Vec<i64> = self
            .parties_with_email(email)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        if parties.is_empty() {
            return Ok(Vec::new());
        }
        // A hand-entered sale has a sale date once confirmed, a quotation date once quoted,
        // and only its creation time while a draft.
        let created = |date: time::Date| {
            json!({"__class__": "datetime", "year": date.year(), "month": u8::from(date.month()), "day": date.day(),
                   "hour": 0, "minute": 0, "second": 0, "microsecond": 0})
        };
        let domain = json!([
            ["party", "in", parties],
            ["state", "!=", "cancelled"],
            [
                "OR",
                [
                    ["sale_date", ">=", date_value(from)],
                    ["sale_date", "<=", date_value(to)]
                ],
                [
                    ["sale_date", "=", null],
                    ["quotation_date", ">=", date_value(from)],
                    ["quotation_date", "<=", date_value(to)]
                ],
                [
                    ["sale_date", "=", null],
                    ["quotation_date", "=", null],
                    ["create_date", ">=", created(from)],
                    ["create_date", "<", created(to + time::Duration::days(1))]
                ]
            ]
        ]);
        let rows = self
            .search(
                "sale.sale",
                domain,
                REVIEW_FIELDS,
                Some(json!([["id", "ASC"]])),
            )
            .await?;
        Ok(rows.iter().filter_map(sale_view).collect())
    }
}

#[async_trait]
impl ErpStock for TrytonClient {
    async fn available(
        &self,
        skus: &[Sku],
        warehouse: &str,
    ) -> Result<HashMap<Sku, i64>, SyncError> {
        let refs = self.references().await?;
        let warehouse_id = self.cached_id("stock.location", "code", warehouse).await?.ok_or_else(|| {
            SyncError::permanent(
                "erp_setup",
                format!("[channels.stock.locations] names warehouse {warehouse:?}, which the ERP does not have"),
            )
        })?;
        // Quantities are computed for the locations in the context: this warehouse only.
        let context = encode(&json!({"company": refs.company, "locations": [warehouse_id]}));
        let mut available = HashMap::with_capacity(skus.len());
        for chunk in skus.chunks(500) {
            let codes: Vec<&str> = chunk.iter().map(Sku::as_str).collect();
            let rows = self
                .search_in(
                    "product.product",
                    json!([["code", "in", codes]]),
                    &["code", "quantity", "forecast_quantity"],
                    None,
                    Some(&context),
                )
                .await?;
            for row in rows {
                let Some(sku) = text_of(&row, "code").and_then(|c| Sku::parse(&c).ok()) else {
                    continue;
                };
                let on_hand = row["quantity"].as_f64().unwrap_or(0.0);
                // Forecast is on hand less what open sales reserve (plus incoming): the lower
                // of the two is what may be sold now.
                let forecast = row["forecast_quantity"].as_f64().unwrap_or(on_hand);
                available.insert(sku, on_hand.min(forecast).floor() as i64);
            }
        }
        Ok(available)
    }
}

#[async_trait]
impl ErpPrices for TrytonClient {
    async fn prices(
        &self,
        skus: &[Sku],
        currency: &CurrencyCode,
        price_list: Option<&str>,
        gross: bool,
    ) -> Result<HashMap<Sku, Decimal>, SyncError> {
        let refs = self.references().await?;
        let currency_id = *refs.currencies.get(currency.as_str()).ok_or_else(|| {
            SyncError::permanent(
                "unknown_currency",
                format!("currency {currency} is not set up in the ERP"),
            )
        })?;
        let mut context = json!({"company": refs.company, "currency": currency_id, "quantity": 1});
        if let Some(name) = price_list {
            let id = self
                .id_by_name(
                    "product.price_list",
                    "name",
                    name,
                    "[channels.prices] price_list",
                )
                .await?;
            // With no taxes in the context Tryton gives a Tax Included list's own (gross)
            // result (sale_price_list: reverse_compute only when taxes are given).
            if gross
                && !bool_of(
                    &self
                        .read("product.price_list", id, &["tax_included"])
                        .await?["tax_included"],
                )
            {
                return Err(SyncError::permanent(
                    "price_list_not_gross",
                    format!(
                        "price list {name:?} gives net prices, but the channel's prices include tax: set Tax Included on it in Tryton (its formula then gives gross prices), or name one that has it"
                    ),
                ));
            }
            context["price_list"] = json!(id);
        } else if gross {
            return Err(SyncError::permanent(
                "price_list_not_gross",
                "the channel's prices include tax but it names no price list: list prices are net",
            ));
        }
        // Tryton computes the sale price under the context: price list, then currency rate.
        let context = encode(&context);
        let mut prices = HashMap::with_capacity(skus.len());
        for chunk in skus.chunks(500) {
            let codes: Vec<&str> = chunk.iter().map(Sku::as_str).collect();
            let rows = self
                .search_in(
                    "product.product",
                    json!([["code", "in", codes]]),
                    &["code", "sale_price_uom"],
                    None,
                    Some(&context),
                )
                .await?;
            for row in rows {
                let (Some(sku), Some(price)) = (
                    text_of(&row, "code").and_then(|c| Sku::parse(&c).ok()),
                    decimal_of(&row["sale_price_uom"]),
                ) else {
                    continue;
                };
                prices.insert(sku, price);
            }
        }
        Ok(prices)
    }
}

impl TrytonClient {
    /// Records of `model` created or changed at or after `since`, with `fields` and their stamps.
    async fn changed_since(
        &self,
        model: &str,
        since: time::OffsetDateTime,
        fields: &[&str],
    ) -> Result<Vec<Value>, SyncError> {
        let since = datetime_value(since);
        let mut wanted = vec!["create_date", "write_date"];
        wanted.extend_from_slice(fields);
        self.search(
            model,
            json!([
                "OR",
                ["create_date", ">=", since],
                ["write_date", ">=", since]
            ]),
            &wanted,
            None,
        )
        .await
    }
}

#[async_trait]
impl ErpChangeFeed for TrytonClient {
    async fn stock_moved_since(
        &self,
        since: time::OffsetDateTime,
    ) -> Result<ErpChanges, SyncError> {
        // Every change to stock goes through moves: receipts, adjustments (inventories),
        // returns, sales reserving and releasing, shipments done.
        let moves = self
            .changed_since("stock.move", since, &["product.code"])
            .await?;
        let mut changes = ErpChanges::default();
        for row in &moves {
            changes.latest = changes.latest.max(stamp_of(row));
            if let Some(sku) = row["product"]["code"]
                .as_str()
                .and_then(|c| Sku::parse(c).ok())
            {
                changes.skus.insert(sku);
            }
        }
        Ok(changes)
    }

    async fn prices_changed_since(
        &self,
        since: time::OffsetDateTime,
    ) -> Result<Option<time::OffsetDateTime>, SyncError> {
        let mut latest = None;
        for model in [
            "product.template",
            "product.product",
            "product.price_list",
            "product.price_list.line",
            "currency.currency.rate",
        ] {
            for row in self.changed_since(model, since, &[]).await? {
                latest = latest.max(stamp_of(&row));
            }
        }
        Ok(latest)
    }
}

#[async_trait]
impl ErpShipments for TrytonClient {
    async fn shipments_done_since(
        &self,
        since: time::OffsetDateTime,
        after: Option<ShipmentKey>,
        limit: usize,
    ) -> Result<ShipmentPage, SyncError> {
        let stamp = datetime_value(since);
        let mut domain = vec![
            json!(["state", "=", "done"]),
            json!([
                "OR",
                ["create_date", ">=", stamp],
                ["write_date", ">=", stamp]
            ]),
        ];
        // A shipment is done by a write, so its write date is its stamp, and the id orders
        // those done in one transaction (one stamp). Pages follow on from the last row read
        // (not an offset): a shipment written again or undone meanwhile shifts nothing.
        if let Some(after) = after {
            let last = datetime_value(after.changed_at);
            domain.push(json!([
                "OR",
                ["write_date", ">", last],
                ["AND", ["write_date", "=", last], ["id", ">", after.id]]
            ]));
        }
        let rows = self
            .search_page(
                "stock.shipment.out",
                Value::Array(domain),
                SHIPMENT_FIELDS,
                Some(json!([["write_date", "ASC"], ["id", "ASC"]])),
                None,
                Some((0, limit)),
            )
            .await?;
        let last = rows.last().and_then(|row| {
            Some(ShipmentKey {
                changed_at: stamp_of(row)?,
                id: id_of(row, "id")?,
            })
        });
        Ok(ShipmentPage {
            rows: rows.len(),
            last,
            shipments: self.shipments_of(&rows).await?,
        })
    }

    async fn shipment(&self, id: i64) -> Result<Option<ErpShipment>, SyncError> {
        let rows = self
            .search(
                "stock.shipment.out",
                json!([["id", "=", id], ["state", "=", "done"]]),
                SHIPMENT_FIELDS,
                None,
            )
            .await?;
        Ok(self.shipments_of(&rows).await?.into_iter().next())
    }
}

/// What Tryton's refusal of a call means, by its status and message: the ERP down or
/// refusing the key (the dependency), a race the retry resolves, or data a person must fix.
fn refusal(
    status: StatusCode,
    method: &Method,
    path: &str,
    message: &str,
    key_secret: &str,
) -> SyncError {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => SyncError::dependency_down(
            "erp_auth",
            format!(
                "Tryton refused the REST key (HTTP {}) on {path}: check the secret {} and the application key's state",
                status.as_u16(),
                key_secret
            ),
        ),
        StatusCode::TOO_MANY_REQUESTS => SyncError::dependency_down(
            "erp_throttled",
            format!("Tryton throttled {path}: {message}"),
        ),
        s if s.is_server_error() => SyncError::dependency_down(
            "erp_unavailable",
            format!(
                "Tryton failed on {method} {path} (HTTP {}): {message}",
                s.as_u16()
            ),
        ),
        // Two transactions drawing the next party code from its sequence collide on the
        // party's unique code (party.msg_party_code_unique); the retry draws a fresh one.
        // Any other unique constraint is data a person must fix (a duplicate the retry
        // would only repeat), so it is not retried. A workflow step refused because the
        // record moved on meanwhile ("You can not call quote on ...") is a race too: the
        // retry reads the state again, as for a record deleted meanwhile (a duplicate draft
        // removed by another attempt).
        s if message.contains(PARTY_CODE_RACE)
            || message.contains("You can not call")
            || message.contains("You are trying to read records") =>
        {
            SyncError::retryable(
                "erp_conflict",
                format!(
                    "Tryton reported a concurrent write on {method} {path} (HTTP {}): {message}",
                    s.as_u16()
                ),
            )
        }
        // A record gone from under a read or a workflow step: another attempt deleted its
        // duplicate draft meanwhile. The retry looks the sale up by reference again.
        StatusCode::NOT_FOUND if names_a_record(path) => SyncError::retryable(
            "erp_conflict",
            format!(
                "Tryton has no record at {method} {path} (HTTP 404): deleted meanwhile, by another attempt or by hand"
            ),
        ),
        s => SyncError::permanent(
            "erp_rejected",
            format!(
                "Tryton refused {method} {path} (HTTP {}): {message}",
                s.as_u16()
            ),
        ),
    }
}

/// Tryton's message when two new parties draw the same code (party.msg_party_code_unique):
/// the one unique-constraint violation that is a race, and so retried.
const PARTY_CODE_RACE: &str = "The code on party must be unique";

/// What a customer shipment is read with.
const SHIPMENT_FIELDS: &[&str] = &[
    "number",
    "reference",
    "create_date",
    "write_date",
    "carrier.party.name",
    "outgoing_moves.product.code",
    "outgoing_moves.quantity",
    "outgoing_moves.state",
];

impl TrytonClient {
    /// Customer shipment rows as shipments of their sales (rows of no sale are left out).
    async fn shipments_of(&self, rows: &[Value]) -> Result<Vec<ErpShipment>, SyncError> {
        let ids: Vec<i64> = rows.iter().filter_map(|r| id_of(r, "id")).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // The sale each shipment belongs to: its reference and how far it has shipped.
        let sales = self
            .search(
                "sale.sale",
                json!([["shipments", "in", ids]]),
                &["reference", "shipment_state", "shipments"],
                None,
            )
            .await?;
        let mut sale_of: HashMap<i64, (String, String)> = HashMap::new();
        for sale in &sales {
            let reference = text_of(sale, "reference").unwrap_or_default();
            let state = text_of(sale, "shipment_state").unwrap_or_default();
            for shipment in sale["shipments"].as_array().into_iter().flatten() {
                if let Some(id) = shipment.as_i64() {
                    sale_of.insert(id, (reference.clone(), state.clone()));
                }
            }
        }
        let mut shipments = Vec::with_capacity(rows.len());
        for row in rows {
            let (Some(id), Some(changed_at)) = (id_of(row, "id"), stamp_of(row)) else {
                continue;
            };
            let Some((sale_reference, sale_shipment_state)) = sale_of.get(&id).cloned() else {
                // Not from a sale (a manual shipment): nothing for a shop to show.
                continue;
            };
            let mut moves: Vec<(Sku, u32)> = Vec::new();
            for line in row["outgoing_moves"].as_array().into_iter().flatten() {
                let (Some(sku), Some(quantity)) = (
                    line["product"]["code"]
                        .as_str()
                        .and_then(|c| Sku::parse(c).ok()),
                    line["quantity"].as_f64(),
                ) else {
                    continue;
                };
                if line["state"] == "done" && quantity > 0.0 {
                    moves.push((sku, quantity.round() as u32));
                }
            }
            shipments.push(ErpShipment {
                id,
                number: text_of(row, "number").unwrap_or_else(|| id.to_string()),
                sale_reference,
                moves,
                tracking_number: text_of(row, "reference").filter(|r| !r.trim().is_empty()),
                carrier: row["carrier"]["party"]["name"].as_str().map(str::to_owned),
                sale_shipment_state,
                changed_at,
            });
        }
        Ok(shipments)
    }
}

#[async_trait]
impl ReturnsErp for TrytonClient {
    async fn create_return(&self, draft: &ReturnDraft) -> Result<ErpSale, SyncError> {
        let refs = self.references().await?;
        let original = self
            .read(
                "sale.sale",
                draft.original_sale,
                &[
                    "party",
                    "invoice_address",
                    "shipment_address",
                    "currency",
                    "warehouse",
                    "payment_term",
                    "lines.product",
                    "lines.unit",
                    "lines.taxes",
                ],
            )
            .await?;
        let original_lines = original["lines"].as_array().cloned().unwrap_or_default();
        let like = |id: Option<i64>| {
            id.and_then(|id| original_lines.iter().find(|l| id_of(l, "id") == Some(id)))
        };
        let services: Vec<Sku> = draft
            .lines
            .iter()
            .filter_map(|l| match &l.product {
                ReturnProduct::Service(sku) => Some(sku.clone()),
                ReturnProduct::Goods => None,
            })
            .collect();
        let products = self.products_by_sku(&services).await?;
        let mut lines = Vec::with_capacity(draft.lines.len());
        for line in &draft.lines {
            let source = like(line.like_line);
            let taxes: Vec<i64> = source
                .and_then(|s| s["taxes"].as_array())
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64)
                .collect();
            let (product, unit) = match &line.product {
                ReturnProduct::Goods => {
                    let source = source.ok_or_else(|| {
                        unexpected("a returned item without its original sale line")
                    })?;
                    (id_of(source, "product"), id_of(source, "unit"))
                }
                ReturnProduct::Service(sku) => {
                    let product = products.get(sku).ok_or_else(|| {
                        SyncError::permanent(
                            "erp_setup",
                            format!(
                                "the ERP has no service product {sku} for refunds ([erp] refund_sku / shipping_sku): create it, then redrive"
                            ),
                        )
                    })?;
                    (Some(product.id), Some(product.unit_id))
                }
            };
            lines.push(json!({
                "type": "line",
                "product": product,
                "unit": unit,
                "quantity": line.quantity.to_string(),
                "unit_price": line.unit_price.to_string(),
                "description": line.description,
                "taxes": [["add", taxes]],
            }));
        }
        let body = json!({
            "company": refs.company,
            "party": id_of(&original, "party"),
            "invoice_address": id_of(&original, "invoice_address"),
            "shipment_address": id_of(&original, "shipment_address"),
            "reference": draft.reference,
            "description": draft.description,
            "currency": id_of(&original, "currency"),
            "warehouse": id_of(&original, "warehouse").unwrap_or(refs.warehouse),
            "payment_term": id_of(&original, "payment_term").unwrap_or(refs.payment_term),
            "shipment_cost_method": null,
            "lines": [["create", lines]],
        });
        let id = self.create("sale.sale", &body).await?;
        Ok(ErpSale {
            id,
            number: None,
            state: ErpSaleState::Draft,
        })
    }

    async fn settle_return(&self, sale_id: i64, restock: bool) -> Result<SettledReturn, SyncError> {
        let sale = self
            .read(
                "sale.sale",
                sale_id,
                &[
                    "shipment_returns.state",
                    "invoices.state",
                    "invoices.number",
                    "invoices.total_amount",
                ],
            )
            .await?;
        let mut restocked = false;
        for shipment in sale["shipment_returns"].as_array().into_iter().flatten() {
            let Some(id) = id_of(shipment, "id") else {
                continue;
            };
            let state = shipment["state"].as_str().unwrap_or_default();
            if restock && state == "draft" {
                self.call_button("stock.shipment.out.return", id, "receive")
                    .await?;
            }
            if restock && matches!(state, "draft" | "received") {
                self.call_button("stock.shipment.out.return", id, "do")
                    .await?;
            }
            restocked |= restock;
        }
        let invoices = sale["invoices"].as_array().cloned().unwrap_or_default();
        let Some(invoice) = invoices.first() else {
            return Err(SyncError::retryable(
                "credit_note_pending",
                format!("the ERP has not made the credit note of return sale {sale_id} yet"),
            ));
        };
        let invoice_id = id_of(invoice, "id").ok_or_else(|| unexpected("an invoice without id"))?;
        if invoice["state"] == "draft" || invoice["state"] == "validated" {
            self.post_credit_note(invoice_id).await?;
        }
        let posted = self
            .read("account.invoice", invoice_id, &["number", "total_amount"])
            .await?;
        Ok(SettledReturn {
            credit_note: text_of(&posted, "number"),
            credit_total: decimal_of(&posted["total_amount"]).unwrap_or_default(),
            restocked,
        })
    }
}

impl TrytonClient {
    /// Every record of `model` matching `domain`, a page at a time.
    async fn search_all(
        &self,
        model: &str,
        domain: Value,
        fields: &[&str],
    ) -> Result<Vec<Value>, SyncError> {
        const PAGE: usize = 1000;
        let mut all = Vec::new();
        loop {
            let mut query: Vec<(&str, String)> =
                fields.iter().map(|f| ("f", (*f).to_owned())).collect();
            query.push(("d", encode(&domain)));
            query.push(("o", encode(&json!([["id", "ASC"]]))));
            query.push(("s", PAGE.to_string()));
            query.push(("p", all.len().to_string()));
            let page = match self
                .call(Method::GET, &format!("model/{model}"), &query, None, None)
                .await?
            {
                Value::Array(items) => items,
                _ => return Err(unexpected(&format!("a {model} page that is not a list"))),
            };
            let last = page.len() < PAGE;
            all.extend(page);
            if last {
                return Ok(all);
            }
        }
    }
}

#[async_trait]
impl ErpCatalogue for TrytonClient {
    async fn product_codes(&self) -> Result<Vec<String>, SyncError> {
        Ok(self
            .search_all("product.product", json!([["code", "!=", null]]), &["code"])
            .await?
            .iter()
            .filter_map(|row| text_of(row, "code"))
            .collect())
    }

    async fn customer_emails(&self) -> Result<Vec<ErpContact>, SyncError> {
        Ok(self
            .search_all(
                "party.contact_mechanism",
                json!([["type", "=", "email"]]),
                &["value", "party", "party.name"],
            )
            .await?
            .iter()
            .filter_map(|row| {
                Some(ErpContact {
                    party_id: row["party"]["id"]
                        .as_i64()
                        .or_else(|| id_of(row, "party"))?,
                    party_name: row["party"]["name"].as_str().unwrap_or_default().to_owned(),
                    email: text_of(row, "value")?,
                })
            })
            .collect())
    }

    async fn tax_rates(&self) -> Result<HashMap<String, Option<rust_decimal::Decimal>>, SyncError> {
        // Tryton's `rate` is a fraction (0.2 for 20 %), set only on percentage taxes.
        Ok(self
            .search_all("account.tax", json!([]), &["name", "type", "rate"])
            .await?
            .iter()
            .filter_map(|row| {
                let rate = (row["type"] == "percentage")
                    .then(|| decimal_of(&row["rate"]))
                    .flatten();
                Some((text_of(row, "name")?, rate))
            })
            .collect())
    }

    async fn currency_roundings(
        &self,
    ) -> Result<HashMap<String, rust_decimal::Decimal>, SyncError> {
        Ok(self
            .search_all("currency.currency", json!([]), &["code", "rounding"])
            .await?
            .iter()
            .filter_map(|row| Some((text_of(row, "code")?, decimal_of(&row["rounding"])?)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::names_a_record;

    #[test]
    fn only_the_party_code_race_among_unique_violations_is_retried() {
        use super::{Method, StatusCode, refusal};
        use erpsync_core::ErrorClass;
        let answer = |message: &str| {
            refusal(
                StatusCode::BAD_REQUEST,
                &Method::POST,
                "model/party.party",
                message,
                "erpsync/erp-api-key",
            )
        };
        let race = answer("The code on party must be unique.");
        assert_eq!(
            (race.class, race.kind.as_str()),
            (ErrorClass::Retryable, "erp_conflict")
        );
        // Another unique constraint is data to fix: a retry would only repeat it.
        let duplicate = answer("The code on language must be unique.");
        assert_eq!(
            (duplicate.class, duplicate.kind.as_str()),
            (ErrorClass::Permanent, "erp_rejected")
        );
        assert!(duplicate.message.contains("language"), "{duplicate}");
        // A workflow step on a record that moved on meanwhile is a race.
        let moved = answer("You can not call quote on sale \"SO12\".");
        assert_eq!(moved.class, ErrorClass::Retryable);
        let refused = refusal(
            StatusCode::UNAUTHORIZED,
            &Method::GET,
            "model/sale.sale",
            "",
            "erpsync/erp-api-key",
        );
        assert!(refused.dependency_down && refused.message.contains("erpsync/erp-api-key"));
    }

    #[test]
    fn a_404_names_a_record_only_on_a_record_or_its_buttons() {
        assert!(names_a_record("model/sale.sale/42"));
        assert!(names_a_record("model/sale.sale/42/quote"));
        assert!(
            !names_a_record("model/sale.sale"),
            "a missing model is config"
        );
        assert!(!names_a_record("model/sale.sale/"));
        assert!(!names_a_record("model/sale.sale/x1"));
        assert!(!names_a_record("user/application/42"));
    }
}
