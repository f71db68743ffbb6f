//! One Lambda execution environment, emulated for a real function binary: the Runtime API the
//! binary polls (`AWS_LAMBDA_RUNTIME_API`), and the two ways in that AWS offers — the Invoke
//! API (`POST /2015-03-31/functions/{name}/invocations`, raw event) and a function URL
//! (`/lambda-url/{name}/...`, the HTTP request turned into the documented payload 2.0 event).
//! Both paths mirror `cargo lambda watch`, so the same clients drive either. It also records
//! when the binary first asked for work: the end of its init, for the bench.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use tokio::sync::{Notify, oneshot};

/// What the function answered for one invocation.
#[derive(Debug)]
pub enum Outcome {
    Response(Vec<u8>),
    /// The function reported an error (`/invocation/{id}/error`): its JSON error body.
    Error(String),
}

struct Pending {
    id: String,
    event: Vec<u8>,
    answer: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<VecDeque<Pending>>,
    queued: Notify,
    in_flight: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    first_poll: Mutex<Option<Instant>>,
    init_error: Mutex<Option<String>>,
    next_id: Mutex<u64>,
    timeout: Duration,
    function_arn: String,
}

pub struct LocalLambda {
    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API` for the binary.
    pub runtime_api: String,
    /// `http://host:port`: where the Invoke API and function URLs are served.
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl LocalLambda {
    /// `timeout` sets each invocation's deadline, as the function's configured timeout does.
    pub async fn start(function: &str, timeout: Duration) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            timeout,
            function_arn: format!("arn:aws:lambda:eu-west-2:123456789012:function:{function}"),
            ..Shared::default()
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .route("/2015-03-31/functions/{name}/invocations", post(invoke_api))
            .route("/lambda-url/{name}", any(function_url))
            .route("/lambda-url/{name}/", any(function_url))
            .route("/lambda-url/{name}/{*path}", any(function_url))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(error = %error, "local Lambda stopped");
            }
        });
        Ok(Self {
            runtime_api: address.to_string(),
            url: format!("http://{address}"),
            shared,
            server,
        })
    }

    /// When the binary first polled for an invocation: its init was done.
    pub fn first_poll(&self) -> Option<Instant> {
        self.shared.first_poll.lock().ok().and_then(|t| *t)
    }

    /// What the binary reported on `/init/error`, if it failed to start.
    pub fn init_error(&self) -> Option<String> {
        self.shared.init_error.lock().ok().and_then(|e| e.clone())
    }

    /// Hands the event to the function and waits for its answer.
    pub async fn invoke(&self, event: Vec<u8>) -> anyhow::Result<Outcome> {
        invoke(&self.shared, event).await
    }
}

impl Drop for LocalLambda {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn invoke(shared: &Shared, event: Vec<u8>) -> anyhow::Result<Outcome> {
    let (answer, answered) = oneshot::channel();
    let id = {
        let mut next = shared
            .next_id
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        *next += 1;
        format!("00000000-0000-4000-8000-{:012}", *next)
    };
    shared
        .queue
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .push_back(Pending { id, event, answer });
    shared.queued.notify_one();
    answered
        .await
        .map_err(|_| anyhow::anyhow!("the function went away without answering"))
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    if let Ok(mut first) = shared.first_poll.lock() {
        first.get_or_insert_with(Instant::now);
    }
    loop {
        let notified = shared.queued.notified();
        let pending = shared.queue.lock().ok().and_then(|mut q| q.pop_front());
        if let Some(pending) = pending {
            let deadline = SystemTime::now() + shared.timeout;
            let deadline_ms = deadline
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default();
            if let Ok(mut in_flight) = shared.in_flight.lock() {
                in_flight.insert(pending.id.clone(), pending.answer);
            }
            let mut response = Response::new(Body::from(pending.event));
            let headers = response.headers_mut();
            for (name, value) in [
                ("lambda-runtime-aws-request-id", pending.id),
                ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
                (
                    "lambda-runtime-invoked-function-arn",
                    shared.function_arn.clone(),
                ),
                ("content-type", "application/json".to_owned()),
            ] {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(name, value);
                }
            }
            return response;
        }
        notified.await;
    }
}

fn settle(shared: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    let answer = shared
        .in_flight
        .lock()
        .ok()
        .and_then(|mut in_flight| in_flight.remove(id));
    match answer {
        Some(answer) => {
            let _ = answer.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    settle(&shared, &id, Outcome::Response(body.to_vec()))
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    settle(
        &shared,
        &id,
        Outcome::Error(String::from_utf8_lossy(&body).into_owned()),
    )
}

async fn init_error(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> StatusCode {
    if let Ok(mut error) = shared.init_error.lock() {
        *error = Some(String::from_utf8_lossy(&body).into_owned());
    }
    StatusCode::ACCEPTED
}

async fn invoke_api(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    match invoke(&shared, body.to_vec()).await {
        Ok(Outcome::Response(body)) => (StatusCode::OK, body).into_response(),
        // A function error is not a batch response: never let a caller read it as one.
        Ok(Outcome::Error(error)) => (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}

async fn function_url(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, 16 * 1024 * 1024).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response();
    };
    let mut event = LambdaFunctionUrlRequest::default();
    event.version = Some("2.0".to_owned());
    event.raw_path = Some(parts.uri.path().to_owned());
    event.raw_query_string = Some(parts.uri.query().unwrap_or_default().to_owned());
    event.request_context.http.method = Some(parts.method.to_string());
    event.request_context.http.path = Some(parts.uri.path().to_owned());
    event.headers = parts.headers;
    match String::from_utf8(body.to_vec()) {
        Ok(text) => event.body = (!text.is_empty()).then_some(text),
        Err(_) => {
            use base64::Engine;
            event.body = Some(base64::engine::general_purpose::STANDARD.encode(&body));
            event.is_base64_encoded = true;
        }
    }
    let Ok(event) = serde_json::to_vec(&event) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let answer = match invoke(&shared, event).await {
        Ok(Outcome::Response(body)) => body,
        Ok(Outcome::Error(error)) => {
            return (StatusCode::BAD_GATEWAY, error).into_response();
        }
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let Ok(answer) = serde_json::from_slice::<LambdaFunctionUrlResponse>(&answer) else {
        return (StatusCode::BAD_GATEWAY, "not a function URL response").into_response();
    };
    let mut response = Response::new(Body::from(answer.body.unwrap_or_default()));
    *response.status_mut() = StatusCode::from_u16(u16::try_from(answer.status_code).unwrap_or(500))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *response.headers_mut() = answer.headers;
    response
}
