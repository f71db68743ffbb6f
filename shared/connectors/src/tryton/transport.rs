//! How the adapter talks to Tryton's REST API: one request with the key (read again when
//! Tryton refuses it), reads tried again briefly, searches and pages, records created, read
//! and their buttons pressed, and what Tryton's refusal of a call means.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use erpsync_core::SyncError;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::TrytonClient;
use super::values::{id_of, text_of};
use crate::http::retry_after;

#[derive(Debug, Deserialize)]
struct Record {
    id: i64,
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

pub(super) fn encode(value: &Value) -> String {
    URL_SAFE.encode(value.to_string())
}

pub(super) fn unexpected(what: &str) -> SyncError {
    SyncError::retryable("erp_unexpected", format!("Tryton answered with {what}"))
}

impl TrytonClient {
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

    pub(super) async fn call(
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

    pub(super) async fn search(
        &self,
        model: &str,
        domain: Value,
        fields: &[&str],
        order: Option<Value>,
    ) -> Result<Vec<Value>, SyncError> {
        self.search_in(model, domain, fields, order, None).await
    }

    /// A search under a context (quantities need the company and the locations).
    pub(super) async fn search_in(
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
    pub(super) async fn search_page(
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

    /// Creates one record of `model` and returns its id.
    pub(super) async fn create(&self, model: &str, body: &Value) -> Result<i64, SyncError> {
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

    /// The first record of `model` matching `domain`, by id.
    pub(super) async fn first_id(
        &self,
        model: &str,
        domain: Value,
    ) -> Result<Option<i64>, SyncError> {
        Ok(self
            .search(model, domain, &["id"], Some(json!([["id", "ASC"]])))
            .await?
            .first()
            .and_then(|r| id_of(r, "id")))
    }

    pub(super) async fn read(
        &self,
        model: &str,
        id: i64,
        fields: &[&str],
    ) -> Result<Value, SyncError> {
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
    pub(super) async fn call_button(
        &self,
        model: &str,
        id: i64,
        button: &str,
    ) -> Result<(), SyncError> {
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

    /// Every record of `model` matching `domain`, a page at a time.
    pub(super) async fn search_all(
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
