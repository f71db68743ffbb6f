//! Payments (`account_payment`, with `account_payment_clearing` and `sale_payment`): found by
//! their reference, created against the sale, and walked to succeeded; the sale's invoices
//! and payments read; invoices posted.
//!
//! One step is not on the REST API: a payment goes from submitted to processing through the
//! `account.payment.process` wizard (the method behind it is in no model's `__rpc__`, and
//! REST serves no wizards). That one call goes over JSON-RPC (`/<db>/rpc/`) with a session of
//! the `[erp.rpc]` user; everything else is REST with the application key.

use async_trait::async_trait;
use erpsync_core::SyncError;
use erpsync_core::ports::{
    ErpInvoice, ErpPayment, ErpPaymentState, FinanceErp, InvoiceState, NewPayment, PaymentKind,
    PaymentsErp, SaleMoney, SaleWithMoney,
};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tracing::debug;

use super::TrytonClient;
use super::transport::unexpected;
use super::values::{date_value, decimal_of, id_of, text_of};

/// The `[erp.rpc]` user's login and its current session.
pub(super) struct RpcLogin {
    pub(super) user: String,
    pub(super) password: SecretString,
    /// `(user id, session key)` while logged in.
    pub(super) session: tokio::sync::Mutex<Option<(i64, SecretString)>>,
}

fn payment_state(text: &str) -> ErpPaymentState {
    match text {
        "draft" => ErpPaymentState::Draft,
        "submitted" => ErpPaymentState::Submitted,
        "approved" => ErpPaymentState::Approved,
        "processing" => ErpPaymentState::Processing,
        "succeeded" => ErpPaymentState::Succeeded,
        "failed" => ErpPaymentState::Failed,
        other => ErpPaymentState::Other(other.to_owned()),
    }
}

fn invoice_state(text: &str) -> InvoiceState {
    match text {
        "draft" => InvoiceState::Draft,
        "validated" => InvoiceState::Validated,
        "posted" => InvoiceState::Posted,
        "paid" => InvoiceState::Paid,
        "cancelled" => InvoiceState::Cancelled,
        other => InvoiceState::Other(other.to_owned()),
    }
}

fn kind_text(kind: PaymentKind) -> &'static str {
    match kind {
        PaymentKind::Receivable => "receivable",
        PaymentKind::Payable => "payable",
    }
}

fn payment_of(row: &Value) -> Option<ErpPayment> {
    Some(ErpPayment {
        id: id_of(row, "id")?,
        reference: text_of(row, "reference"),
        kind: if row["kind"] == "payable" {
            PaymentKind::Payable
        } else {
            PaymentKind::Receivable
        },
        amount: decimal_of(&row["amount"]).unwrap_or_default(),
        state: payment_state(row["state"].as_str().unwrap_or_default()),
    })
}

const PAYMENT_FIELDS: [&str; 5] = ["reference", "kind", "amount", "state", "origin"];

/// A sale's fields its money is read from.
const MONEY_FIELDS: [&str; 10] = [
    "currency",
    "invoices.state",
    "invoices.number",
    "invoices.total_amount",
    "invoices.amount_to_pay",
    "invoices.lines_to_pay",
    "payments.reference",
    "payments.kind",
    "payments.amount",
    "payments.state",
];

impl TrytonClient {
    /// A sale's money from its row read with [`MONEY_FIELDS`].
    async fn money_of(&self, sale: &Value) -> Result<SaleMoney, SyncError> {
        let invoices = sale["invoices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|row| {
                Some(ErpInvoice {
                    id: id_of(row, "id")?,
                    number: text_of(row, "number"),
                    state: invoice_state(row["state"].as_str().unwrap_or_default()),
                    total: decimal_of(&row["total_amount"]).unwrap_or_default(),
                    amount_to_pay: decimal_of(&row["amount_to_pay"]).unwrap_or_default(),
                    line_to_pay: row["lines_to_pay"].as_array().and_then(|lines| {
                        lines
                            .iter()
                            .filter_map(|l| l.as_i64().or_else(|| id_of(l, "id")))
                            .min()
                    }),
                })
            })
            .collect();
        let payments = sale["payments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(payment_of)
            .collect();
        let currency_id = id_of(sale, "currency");
        let refs = self.references().await?;
        let currency = refs
            .currencies
            .iter()
            .find(|(_, id)| Some(**id) == currency_id)
            .map(|(code, _)| code.clone());
        Ok(SaleMoney {
            currency,
            invoices,
            payments,
        })
    }

    /// The `[erp.rpc]` login, or the error that says it is missing.
    fn rpc_login(&self) -> Result<&RpcLogin, SyncError> {
        self.rpc.as_ref().ok_or_else(|| {
            SyncError::permanent(
                "erp_setup",
                "recording payments needs the [erp.rpc] user (Tryton processes payments through a wizard, which only its JSON-RPC serves)",
            )
        })
    }

    /// One JSON-RPC call as the `[erp.rpc]` user, logging in first when there is no session,
    /// and once again when Tryton ends it (a session expires after its idle timeout).
    async fn rpc(&self, method: &str, params: Value) -> Result<Value, SyncError> {
        let login = self.rpc_login()?;
        let mut relogged = false;
        loop {
            let (user_id, session) = self.rpc_session(login).await?;
            let token = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{}:{user_id}:{}", login.user, session.expose_secret()),
            );
            match self
                .rpc_post(method, &params, Some(&format!("Session {token}")))
                .await
            {
                Err(error) if error.kind == "erp_rpc_auth" && !relogged => {
                    relogged = true;
                    *login.session.lock().await = None;
                }
                // Refused again with a fresh session: the user lacks the rights.
                Err(error) if error.kind == "erp_rpc_auth" => {
                    return Err(SyncError::permanent("erp_rpc_login", error.message));
                }
                other => return other,
            }
        }
    }

    async fn rpc_session(&self, login: &RpcLogin) -> Result<(i64, SecretString), SyncError> {
        let mut session = login.session.lock().await;
        if let Some(open) = session.as_ref() {
            return Ok(open.clone());
        }
        let answer = self
            .rpc_post(
                "common.db.login",
                &json!([login.user, {"password": login.password.expose_secret()}, "en"]),
                None,
            )
            .await?;
        let user_id = answer.get(0).and_then(Value::as_i64);
        let key = answer.get(1).and_then(Value::as_str);
        let (Some(user_id), Some(key)) = (user_id, key) else {
            return Err(unexpected("a login answer without a user and a session"));
        };
        let open = (user_id, SecretString::from(key.to_owned()));
        *session = Some(open.clone());
        Ok(open)
    }

    async fn rpc_post(
        &self,
        method: &str,
        params: &Value,
        authorization: Option<&str>,
    ) -> Result<Value, SyncError> {
        let url = format!("{}/rpc/", self.base.trim_end_matches("/rest"));
        let mut request = self
            .http
            .post(&url)
            .json(&json!({"id": 1, "method": method, "params": params}));
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let response = request.send().await.map_err(|e| {
            SyncError::dependency_down(
                "erp_unavailable",
                format!("Tryton's JSON-RPC did not answer {method}: {e}"),
            )
        })?;
        let status = response.status();
        debug!(method, status = status.as_u16(), "tryton rpc");
        let secret = self
            .erp
            .rpc
            .as_ref()
            .map_or("(none)", |r| r.password_secret.as_str());
        match status {
            // A refused login is the credentials (a person's to fix, not an outage to wait
            // out); a refused call with a session is the session ending, logged in again once.
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let message = format!(
                    "Tryton refused the [erp.rpc] user (HTTP {}) on {method}: check the user, its groups and the password in {secret}, then redrive",
                    status.as_u16()
                );
                return Err(if authorization.is_none() {
                    SyncError::permanent("erp_rpc_login", message)
                } else {
                    SyncError::retryable("erp_rpc_auth", message)
                });
            }
            StatusCode::TOO_MANY_REQUESTS => {
                return Err(SyncError::dependency_down(
                    "erp_throttled",
                    format!("Tryton throttled the JSON-RPC login or {method}"),
                ));
            }
            s if s.is_server_error() => {
                return Err(SyncError::dependency_down(
                    "erp_unavailable",
                    format!("Tryton failed on JSON-RPC {method} (HTTP {})", s.as_u16()),
                ));
            }
            s if !s.is_success() => {
                return Err(SyncError::permanent(
                    "erp_rejected",
                    format!("Tryton refused JSON-RPC {method} (HTTP {})", s.as_u16()),
                ));
            }
            _ => {}
        }
        let body: Value = response
            .json()
            .await
            .map_err(|_| unexpected("a JSON-RPC answer that is not JSON"))?;
        if let Some(error) = body.get("error").filter(|e| !e.is_null()) {
            // Tryton answers any failure with 200 and `error`: a refusal of the data names
            // its class first (UserError, UserWarning, AccessError); anything else (a
            // concurrent update, a crash) is Tryton's trouble, and the retry may pass.
            let text: String = error.to_string().chars().take(300).collect();
            let class = error.get(0).and_then(Value::as_str).unwrap_or_default();
            return Err(
                if matches!(class, "UserError" | "UserWarning" | "AccessError") {
                    SyncError::permanent(
                        "erp_rejected",
                        format!("Tryton refused JSON-RPC {method}: {text}"),
                    )
                } else {
                    SyncError::retryable(
                        "erp_unavailable",
                        format!("Tryton failed on JSON-RPC {method}: {text}"),
                    )
                },
            );
        }
        Ok(body.get("result").cloned().unwrap_or(Value::Null))
    }

    /// Runs the payment processing wizard on one payment (submitted, or approved).
    async fn process_payment(&self, payment_id: i64) -> Result<(), SyncError> {
        let refs = self.references().await?;
        let context = json!({
            "company": refs.company,
            "active_model": "account.payment",
            "active_id": payment_id,
            "active_ids": [payment_id],
        });
        let started = self
            .rpc("wizard.account.payment.process.create", json!([context]))
            .await?;
        let session = started
            .get(0)
            .and_then(Value::as_i64)
            .ok_or_else(|| unexpected("a wizard without a session id"))?;
        let state = started
            .get(1)
            .and_then(Value::as_str)
            .unwrap_or("process")
            .to_owned();
        let outcome = self
            .rpc(
                "wizard.account.payment.process.execute",
                json!([session, {}, state, context]),
            )
            .await;
        // The wizard's session is removed whatever the step did; a leftover one is harmless.
        let _ = self
            .rpc(
                "wizard.account.payment.process.delete",
                json!([session, context]),
            )
            .await;
        outcome.map(|_| ())
    }

    /// Marks the payment succeeded, its clearing move dated when the money moved (not when
    /// erpsync got to it), and posts that move: no cron of Tryton's posts it, and a draft
    /// move would leave the gateway's clearing and the gift-card liability out of the books.
    async fn succeed(&self, payment_id: i64, date: time::Date) -> Result<(), SyncError> {
        let refs = self.references().await?;
        let context = super::transport::encode(&json!({
            "company": refs.company,
            "clearing_date": date_value(date),
        }));
        self.call(
            reqwest::Method::POST,
            &format!("model/account.payment/{payment_id}/succeed"),
            &[],
            Some(&json!({})),
            Some(&context),
        )
        .await?;
        self.post_clearing_move(payment_id).await
    }

    /// Posts a succeeded payment's clearing move if it is still a draft.
    async fn post_clearing_move(&self, payment_id: i64) -> Result<(), SyncError> {
        let payment = self
            .read("account.payment", payment_id, &["clearing_move.state"])
            .await?;
        let Some(clearing) = id_of(&payment, "clearing_move") else {
            return Ok(());
        };
        if payment["clearing_move"]["state"] == "draft" {
            self.call_button("account.move", clearing, "post").await?;
        }
        Ok(())
    }

    async fn payment_by_reference(&self, reference: &str) -> Result<Option<Value>, SyncError> {
        Ok(self
            .search(
                "account.payment",
                json!([["reference", "=", reference]]),
                &PAYMENT_FIELDS,
                Some(json!([["id", "ASC"]])),
            )
            .await?
            .into_iter()
            .next())
    }

    async fn create_payment(&self, payment: &NewPayment<'_>) -> Result<i64, SyncError> {
        let refs = self.references().await?;
        let journal = self
            .id_by_name(
                "account.payment.journal",
                "name",
                payment.journal,
                "[channels.payments]",
            )
            .await?;
        let sale = self
            .read("sale.sale", payment.sale_id, &["party", "invoice_party"])
            .await?;
        let party = id_of(&sale, "invoice_party")
            .or_else(|| id_of(&sale, "party"))
            .ok_or_else(|| unexpected("a sale without a party"))?;
        let mut body = json!({
            "company": refs.company,
            "journal": journal,
            "kind": kind_text(payment.kind),
            "party": party,
            "amount": payment.amount.to_string(),
            "date": date_value(payment.date),
            "origin": format!("sale.sale,{}", payment.sale_id),
            "reference": payment.reference,
        });
        if let Some(line) = payment.line {
            body["line"] = json!(line);
        }
        self.create("account.payment", &body).await
    }
}

#[async_trait]
impl FinanceErp for TrytonClient {
    async fn sales_with_money(
        &self,
        channel: &str,
        from: time::Date,
        to: time::Date,
    ) -> Result<Vec<SaleWithMoney>, SyncError> {
        let mut fields = vec!["reference", "number"];
        fields.extend(MONEY_FIELDS);
        let rows = self
            .search_all(
                "sale.sale",
                json!([
                    ["reference", "like", format!("{channel}/%")],
                    ["sale_date", ">=", date_value(from)],
                    ["sale_date", "<=", date_value(to)]
                ]),
                &fields,
            )
            .await?;
        let mut sales = Vec::with_capacity(rows.len());
        for row in &rows {
            sales.push(SaleWithMoney {
                reference: text_of(row, "reference").unwrap_or_default(),
                number: text_of(row, "number"),
                money: self.money_of(row).await?,
            });
        }
        Ok(sales)
    }
}

#[async_trait]
impl PaymentsErp for TrytonClient {
    async fn record_payment(&self, payment: &NewPayment<'_>) -> Result<ErpPayment, SyncError> {
        // Found by reference first: a create whose answer was lost, or an attempt that
        // stopped half way, is moved on from where it is.
        let mut row = match self.payment_by_reference(payment.reference).await? {
            Some(row) => row,
            None => {
                let id = self.create_payment(payment).await?;
                self.read("account.payment", id, &PAYMENT_FIELDS).await?
            }
        };
        // Each step at most once per state; a state that does not move is Tryton's refusal.
        for _ in 0..5 {
            let found = payment_of(&row).ok_or_else(|| unexpected("a payment without an id"))?;
            match &found.state {
                ErpPaymentState::Succeeded => {
                    // An attempt that stopped after succeeding may have left its move a draft.
                    self.post_clearing_move(found.id).await?;
                    return Ok(found);
                }
                ErpPaymentState::Draft => {
                    self.call_button("account.payment", found.id, "submit")
                        .await?
                }
                // Money going out is approved before it is processed.
                ErpPaymentState::Submitted if found.kind == PaymentKind::Payable => {
                    self.call_button("account.payment", found.id, "approve")
                        .await?
                }
                ErpPaymentState::Submitted | ErpPaymentState::Approved => {
                    self.process_payment(found.id).await?
                }
                ErpPaymentState::Processing => self.succeed(found.id, payment.date).await?,
                ErpPaymentState::Failed | ErpPaymentState::Other(_) => {
                    return Err(SyncError::permanent(
                        "erp_payment_state",
                        format!(
                            "ERP payment {} ({}) is {:?}: someone failed it in the ERP; settle it there, then discard this message",
                            found.id, payment.reference, found.state
                        ),
                    ));
                }
            }
            row = self
                .read("account.payment", found.id, &PAYMENT_FIELDS)
                .await?;
        }
        Err(unexpected(&format!(
            "payment {} that does not move on to succeeded",
            payment.reference
        )))
    }

    async fn sale_money(&self, sale_id: i64) -> Result<SaleMoney, SyncError> {
        let sale = self.read("sale.sale", sale_id, &MONEY_FIELDS).await?;
        self.money_of(&sale).await
    }

    async fn post_invoice(&self, invoice_id: i64) -> Result<(), SyncError> {
        self.post_with_shop_taxes(invoice_id).await
    }
}
