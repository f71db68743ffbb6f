//! The ERP port on Tryton's REST API (`/<db>/rest/model/...`, bearer application key).
//! Reference data (company, warehouse, payment term, currencies, countries) is looked up on
//! first use and cached for the life of the container.
//!
//! One file per concern: `transport` (requests, searches, and what Tryton's refusals mean),
//! `values` (Tryton's JSON values), `sales`, `customers`, `review` (sales as the shadow
//! review reads them), `stock`, `prices` (with the change feed), `shipments`, `returns`
//! (return sales and credit notes), `payments` (payments, invoices posted; the one JSON-RPC
//! call) and `catalogue` (what the audit compares).

mod catalogue;
mod customers;
mod payments;
mod prices;
mod returns;
mod review;
mod sales;
mod shipments;
mod stock;
mod transport;
mod values;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use erpsync_core::SyncError;
use erpsync_core::config::ErpConfig;
use erpsync_core::ports::CredentialSource;
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::{Mutex, OnceCell};

use transport::encode;
use values::{id_of, text_of};

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
    /// The `[erp.rpc]` user, for the one payment step REST does not serve.
    rpc: Option<payments::RpcLogin>,
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
            rpc: None,
        })
    }

    /// Logs in as the `[erp.rpc]` user (with this password) for the payment processing
    /// wizard, which Tryton serves over JSON-RPC only.
    pub fn with_rpc_login(mut self, password: SecretString) -> Self {
        self.rpc = self.erp.rpc.as_ref().map(|login| payments::RpcLogin {
            user: login.user.clone(),
            password,
            session: Mutex::new(None),
        });
        self
    }

    /// Reads the key again from `source` when Tryton refuses the one in use.
    pub fn with_key_source(mut self, source: Arc<dyn CredentialSource>) -> Self {
        self.key_source = Some((source, Mutex::new(None)));
        self
    }

    /// Looks up the reference data and opens the connection now, so the first message does
    /// not pay for it. An ERP that is down is not an error here: messages will retry.
    pub async fn warm_up(&self) {
        if let Err(error) = self.references().await {
            tracing::warn!(error = %error, "ERP not reachable at start; messages will retry");
        }
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
}
