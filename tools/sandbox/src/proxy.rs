//! A fault-injecting HTTP proxy to put in front of a real server (the ERP in the chaos run):
//! server errors before the request reaches it, server errors after it did the work (the
//! answer lost on the way back), answers held past the client's timeout, and outages.
//! Without faults it is a counter: in front of moto it counts AWS requests per operation
//! (`X-Amz-Target`), for the bench.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// What to inject, as probabilities per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyFaults {
    /// A 503 without forwarding.
    pub error_before: f64,
    /// Forwarded and done upstream, answered 502: the client cannot know it happened.
    pub error_after: f64,
    /// Forwarded and done upstream, answered only after `hold`: past the client's timeout.
    pub timeout: f64,
    pub hold: Duration,
}

/// What was injected, for the run's summary.
#[derive(Debug, Default, Serialize)]
pub struct ProxyCounts {
    pub forwarded: u64,
    pub error_before: u64,
    pub error_after: u64,
    pub timeouts: u64,
    pub refused_in_outage: u64,
    /// Forwarded requests per `X-Amz-Target` (an AWS JSON-protocol operation), or method and
    /// path for anything else.
    pub by_operation: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Counters {
    forwarded: AtomicU64,
    error_before: AtomicU64,
    error_after: AtomicU64,
    timeouts: AtomicU64,
    refused_in_outage: AtomicU64,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    faults: Mutex<ProxyFaults>,
    /// The window in which everything is refused.
    outage: Mutex<Option<(Instant, Instant)>>,
    /// Requests still to refuse with a 503, whatever the odds (for deterministic tests).
    fail_next: AtomicU64,
    counters: Counters,
    by_operation: Mutex<BTreeMap<String, u64>>,
}

pub struct FaultProxy {
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Proxies everything to `upstream` (`http://host:port`), on a free loopback port.
    pub async fn start(upstream: &str, faults: ProxyFaults) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder().build()?,
            faults: Mutex::new(faults),
            outage: Mutex::new(None),
            fail_next: AtomicU64::new(0),
            counters: Counters::default(),
            by_operation: Mutex::new(BTreeMap::new()),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(error = %error, "fault proxy stopped");
            }
        });
        Ok(Self {
            url,
            shared,
            server,
        })
    }

    /// Everything is refused for `length`, starting `after` from now.
    pub fn outage(&self, after: Duration, length: Duration) {
        let from = Instant::now() + after;
        if let Ok(mut outage) = self.shared.outage.lock() {
            *outage = Some((from, from + length));
        }
    }

    /// The next `count` requests get a 503 without reaching the upstream.
    pub fn fail_next(&self, count: u64) {
        self.shared.fail_next.store(count, Ordering::Relaxed);
    }

    pub fn set_faults(&self, faults: ProxyFaults) {
        if let Ok(mut current) = self.shared.faults.lock() {
            *current = faults;
        }
    }

    pub fn counts(&self) -> ProxyCounts {
        let c = &self.shared.counters;
        ProxyCounts {
            forwarded: c.forwarded.load(Ordering::Relaxed),
            error_before: c.error_before.load(Ordering::Relaxed),
            error_after: c.error_after.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            refused_in_outage: c.refused_in_outage.load(Ordering::Relaxed),
            by_operation: self
                .shared
                .by_operation
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default(),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "injected: unavailable").into_response()
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let counters = &shared.counters;
    let now = Instant::now();
    let in_outage = shared
        .outage
        .lock()
        .ok()
        .and_then(|outage| *outage)
        .is_some_and(|(from, until)| from <= now && now < until);
    if in_outage {
        counters.refused_in_outage.fetch_add(1, Ordering::Relaxed);
        return unavailable();
    }
    let forced = shared
        .fail_next
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok();
    let faults = shared.faults.lock().map(|f| *f).unwrap_or_default();
    let roll: f64 = rand::random();
    if forced || roll < faults.error_before {
        counters.error_before.fetch_add(1, Ordering::Relaxed);
        return unavailable();
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, 16 * 1024 * 1024).await else {
        return (StatusCode::BAD_REQUEST, "body unreadable").into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let operation = parts
        .headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .map_or_else(
            || format!("{} {}", parts.method, parts.uri.path()),
            str::to_owned,
        );
    // A SigV4-signed request (to moto, which checks signatures) keeps the Host it was
    // signed with; anything else gets the upstream's.
    let signed = parts
        .headers
        .get("authorization")
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256"));
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if (name != "host" || signed) && name != "content-length" {
            headers.insert(name.clone(), value.clone());
        }
    }
    let upstream = shared
        .http
        .request(parts.method, format!("{}{path}", shared.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await;
    counters.forwarded.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut by_operation) = shared.by_operation.lock() {
        *by_operation.entry(operation).or_default() += 1;
    }
    let Ok(upstream) = upstream else {
        return (StatusCode::BAD_GATEWAY, "upstream unreachable").into_response();
    };
    let status = upstream.status();
    let content_type = upstream.headers().get("content-type").cloned();
    let bytes = upstream.bytes().await.unwrap_or_default();
    if roll < faults.error_before + faults.error_after {
        counters.error_after.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::BAD_GATEWAY, "injected: answer lost").into_response();
    }
    if roll < faults.error_before + faults.error_after + faults.timeout {
        counters.timeouts.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(faults.hold).await;
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response.headers_mut().insert("content-type", content_type);
    }
    response
}
