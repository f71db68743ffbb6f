//! Bulk query operations, as "Perform bulk operations with the GraphQL Admin API" documents
//! them (https://shopify.dev/docs/apps/build/apis/graphql-admin/bulk-operations/queries):
//! `bulkOperationRunQuery(query:)` takes a query with one top-level connection (at most five
//! connections, nested two levels deep, no `first` needed), the operation goes CREATED ->
//! RUNNING -> COMPLETED (or FAILED with an `errorCode`, or EXPIRED once its results are
//! gone), and its result is a JSONL file at `url`: one object per line, a nested
//! connection's nodes on their own lines with `__parentId`. From API 2026-01 an app runs up
//! to five bulk queries at once per shop (LIMIT_REACHED beyond), before it one
//! (OPERATION_IN_PROGRESS); `bulkOperation(id:)` exists from 2026-01 ("New Queries for Bulk
//! Operations", shopify.dev changelog), `currentBulkOperation` in every version.
//!
//! The sandbox runs an operation right after the request that created it answers, against a
//! snapshot of the store; fault hooks make the next one fail or expire, or keep operations
//! running (so the concurrency limit can be reached).

use std::time::{Duration, Instant};

use async_graphql::parser::types::{DocumentOperations, OperationType, Selection, SelectionSet};
use async_graphql::{Context, Enum, SimpleObject};
use serde_json::Value;

use crate::shopify::{SharedStore, ShopSchema, Store, lock};

/// The Admin API version of the request (`/admin/api/{version}/graphql.json`).
pub struct ApiVersion(pub String);

/// Set on the request a bulk operation runs: connections need no `first`.
pub struct BulkMode;

/// The version from which five bulk queries may run at once, and `bulkOperation(id:)` exists.
const CONCURRENT_FROM: &str = "2026-01";

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "BulkOperationStatus")]
pub enum BulkStatus {
    Canceled,
    Canceling,
    Completed,
    Created,
    Expired,
    Failed,
    Running,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "BulkOperationErrorCode")]
pub enum BulkErrorCode {
    AccessDenied,
    InternalServerError,
    Timeout,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "BulkOperationUserErrorCode")]
pub enum BulkUserErrorCode {
    Invalid,
    LimitReached,
    OperationInProgress,
}

/// Fault injection for a store's bulk operations.
#[derive(Debug, Clone, Default)]
pub struct BulkFaults {
    /// The next operation fails with this code.
    pub fail_next: Option<BulkErrorCode>,
    /// The next operation's results expire as it completes.
    pub expire_next: bool,
    /// Operations stay RUNNING while this is set.
    pub hold: bool,
    /// How long an operation runs before it completes.
    pub run_for: Duration,
}

#[derive(Debug, Clone)]
enum Outcome {
    /// Created, not yet run.
    Pending {
        fail: Option<BulkErrorCode>,
        expire: bool,
    },
    Done {
        jsonl: String,
        objects: u64,
        roots: u64,
        url: Option<String>,
    },
    Failed(BulkErrorCode),
    Expired,
}

#[derive(Debug, Clone)]
pub struct BulkOperation {
    number: u64,
    query: String,
    started: Instant,
    outcome: Outcome,
}

#[derive(Debug, Clone, Default)]
pub struct BulkState {
    operations: Vec<BulkOperation>,
    pub faults: BulkFaults,
    next: u64,
}

impl BulkOperation {
    fn id(&self) -> String {
        format!("gid://shopify/BulkOperation/{}", self.number)
    }

    fn status(&self, faults: &BulkFaults) -> BulkStatus {
        match &self.outcome {
            Outcome::Pending { .. } => BulkStatus::Created,
            Outcome::Failed(_) => BulkStatus::Failed,
            Outcome::Expired => BulkStatus::Expired,
            Outcome::Done { .. } if faults.hold || self.started.elapsed() < faults.run_for => {
                BulkStatus::Running
            }
            Outcome::Done { .. } => BulkStatus::Completed,
        }
    }

    fn node(&self, faults: &BulkFaults) -> BulkOperationNode {
        let status = self.status(faults);
        let (objects, roots, url) = match (&self.outcome, status) {
            (
                Outcome::Done {
                    objects,
                    roots,
                    url,
                    ..
                },
                BulkStatus::Completed,
            ) => (*objects, *roots, url.clone()),
            _ => (0, 0, None),
        };
        BulkOperationNode {
            id: self.id(),
            status,
            error_code: match self.outcome {
                Outcome::Failed(code) => Some(code),
                _ => None,
            },
            object_count: objects.to_string(),
            root_object_count: roots.to_string(),
            url,
            partial_data_url: None,
            query: self.query.clone(),
        }
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "BulkOperation")]
pub struct BulkOperationNode {
    id: String,
    status: BulkStatus,
    error_code: Option<BulkErrorCode>,
    /// UnsignedInt64, a string on the wire.
    object_count: String,
    root_object_count: String,
    url: Option<String>,
    partial_data_url: Option<String>,
    query: String,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "BulkOperationUserError")]
pub struct BulkUserError {
    code: Option<BulkUserErrorCode>,
    field: Option<Vec<String>>,
    message: String,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "BulkOperationRunQueryPayload")]
pub struct RunQueryPayload {
    bulk_operation: Option<BulkOperationNode>,
    user_errors: Vec<BulkUserError>,
}

fn refused(code: BulkUserErrorCode, message: String) -> RunQueryPayload {
    RunQueryPayload {
        bulk_operation: None,
        user_errors: vec![BulkUserError {
            code: Some(code),
            field: Some(vec!["query".to_owned()]),
            message,
        }],
    }
}

fn concurrent(ctx: &Context<'_>) -> bool {
    ctx.data_opt::<ApiVersion>()
        .is_none_or(|v| v.0.as_str() >= CONCURRENT_FROM)
}

/// `bulkOperationRunQuery`.
pub fn run_query(ctx: &Context<'_>, query: String) -> async_graphql::Result<RunQueryPayload> {
    if let Err(message) = validate(&query) {
        return Ok(refused(BulkUserErrorCode::Invalid, message));
    }
    let concurrent = concurrent(ctx);
    let mut store = lock(ctx)?;
    let state = &mut store.bulk;
    let running: Vec<String> = state
        .operations
        .iter()
        .filter(|op| {
            matches!(
                op.status(&state.faults),
                BulkStatus::Created | BulkStatus::Running
            )
        })
        .map(BulkOperation::id)
        .collect();
    if concurrent && running.len() >= 5 {
        return Ok(refused(
            BulkUserErrorCode::LimitReached,
            "Bulk operations limit reached. Please try again later.".to_owned(),
        ));
    }
    if !concurrent && let Some(id) = running.first() {
        return Ok(refused(
            BulkUserErrorCode::OperationInProgress,
            format!("A bulk query operation for this app and shop is already in progress: {id}."),
        ));
    }
    state.next += 1;
    let operation = BulkOperation {
        number: state.next,
        query,
        started: Instant::now(),
        outcome: Outcome::Pending {
            fail: state.faults.fail_next.take(),
            expire: std::mem::take(&mut state.faults.expire_next),
        },
    };
    let node = operation.node(&state.faults);
    state.operations.push(operation);
    Ok(RunQueryPayload {
        bulk_operation: Some(node),
        user_errors: Vec::new(),
    })
}

/// `bulkOperation(id:)` (2026-01 and later).
pub fn by_id(ctx: &Context<'_>, id: &str) -> async_graphql::Result<Option<BulkOperationNode>> {
    if !concurrent(ctx) {
        return Err(async_graphql::Error::new(
            "Field 'bulkOperation' doesn't exist on type 'QueryRoot'",
        ));
    }
    let store = lock(ctx)?;
    Ok(store
        .bulk
        .operations
        .iter()
        .find(|op| op.id() == id)
        .map(|op| op.node(&store.bulk.faults)))
}

/// `currentBulkOperation`: the app's most recent bulk query.
pub fn current(ctx: &Context<'_>) -> async_graphql::Result<Option<BulkOperationNode>> {
    let store = lock(ctx)?;
    Ok(store
        .bulk
        .operations
        .last()
        .map(|op| op.node(&store.bulk.faults)))
}

/// The query must read one top-level connection, with at most five connections nested at
/// most two levels deep.
fn validate(query: &str) -> Result<(), String> {
    let document = async_graphql::parser::parse_query(query).map_err(|e| e.to_string())?;
    let operation = match &document.operations {
        DocumentOperations::Single(operation) => operation,
        DocumentOperations::Multiple(_) => {
            return Err("Bulk queries take a single operation.".to_owned());
        }
    };
    if operation.node.ty != OperationType::Query {
        return Err("Bulk queries must be queries.".to_owned());
    }
    let root = &operation.node.selection_set.node;
    if root.items.len() != 1 {
        return Err("Bulk queries must select a single top-level field.".to_owned());
    }
    let (count, depth) = connections(root, 0);
    if count == 0 {
        return Err("Bulk queries must contain at least one connection.".to_owned());
    }
    if count > 5 {
        return Err(format!(
            "Bulk queries cannot contain more than 5 connections; this one has {count}."
        ));
    }
    if depth > 2 {
        return Err(
            "Bulk queries cannot contain connections nested more than 2 levels deep.".to_owned(),
        );
    }
    Ok(())
}

/// (connections, deepest nesting) under a selection.
fn connections(set: &SelectionSet, depth: usize) -> (usize, usize) {
    let mut count = 0;
    let mut deepest = depth;
    for item in &set.items {
        let Selection::Field(field) = &item.node else {
            continue;
        };
        let selection = &field.node.selection_set.node;
        match crate::cost::node_selection(selection) {
            Some(node) => {
                let (inner, inner_depth) = connections(node, depth + 1);
                count += 1 + inner;
                deepest = deepest.max(inner_depth);
            }
            None => {
                let (inner, inner_depth) = connections(selection, depth);
                count += inner;
                deepest = deepest.max(inner_depth);
            }
        }
    }
    (count, deepest)
}

/// Runs the operations created since the last call, against the store as it is now.
pub async fn run_pending(store: &SharedStore, schema: &ShopSchema, base_url: &str, domain: &str) {
    let pending: Vec<(u64, String)> = match store.lock() {
        Ok(store) => store
            .bulk
            .operations
            .iter()
            .filter(|op| matches!(op.outcome, Outcome::Pending { .. }))
            .map(|op| (op.number, op.query.clone()))
            .collect(),
        Err(_) => return,
    };
    for (number, query) in pending {
        let response = schema
            .execute(async_graphql::Request::new(query).data(BulkMode))
            .await;
        let data = serde_json::to_value(&response.data).unwrap_or(Value::Null);
        let failed = !response.errors.is_empty();
        let mut lines = Vec::new();
        let mut roots = 0;
        if let Some(top) = data.as_object().and_then(|d| d.values().next()) {
            roots = jsonl(top, None, &mut lines);
        }
        let Ok(mut store) = store.lock() else {
            return;
        };
        let Some(op) = store
            .bulk
            .operations
            .iter_mut()
            .find(|op| op.number == number)
        else {
            continue;
        };
        let Outcome::Pending { fail, expire } = op.outcome.clone() else {
            continue;
        };
        op.started = Instant::now();
        op.outcome = match (fail, expire, failed) {
            (Some(code), _, _) => Outcome::Failed(code),
            (None, _, true) => Outcome::Failed(BulkErrorCode::InternalServerError),
            (None, true, false) => Outcome::Expired,
            (None, false, false) => Outcome::Done {
                objects: lines.len() as u64,
                roots,
                // An operation that found nothing has no file.
                url: (!lines.is_empty())
                    .then(|| format!("{base_url}/bulk/{domain}/{number}.jsonl")),
                jsonl: lines.join("\n") + if lines.is_empty() { "" } else { "\n" },
            },
        };
    }
}

/// The result file of a completed operation.
pub fn result(store: &SharedStore, number: &str) -> Option<String> {
    let store = store.lock().ok()?;
    let op = store
        .bulk
        .operations
        .iter()
        .find(|op| op.number.to_string() == number)?;
    match (&op.outcome, op.status(&store.bulk.faults)) {
        (Outcome::Done { jsonl, .. }, BulkStatus::Completed) => Some(jsonl.clone()),
        _ => None,
    }
}

fn is_connection(value: &Value) -> bool {
    value.get("nodes").is_some_and(Value::is_array)
        || value.get("edges").is_some_and(Value::is_array)
}

/// One line per node of `connection`, its nested connections' nodes after it with
/// `__parentId`; answers how many nodes were at this level.
fn jsonl(connection: &Value, parent: Option<&str>, lines: &mut Vec<String>) -> u64 {
    let nodes: Vec<Value> = match connection.get("nodes").and_then(Value::as_array) {
        Some(nodes) => nodes.clone(),
        None => connection["edges"]
            .as_array()
            .map(|edges| edges.iter().map(|e| e["node"].clone()).collect())
            .unwrap_or_default(),
    };
    for node in &nodes {
        let Some(fields) = node.as_object() else {
            continue;
        };
        let mut own = serde_json::Map::new();
        let mut children = Vec::new();
        for (key, value) in fields {
            if is_connection(value) {
                children.push(value);
            } else {
                own.insert(key.clone(), value.clone());
            }
        }
        if let Some(parent) = parent {
            own.insert("__parentId".to_owned(), Value::String(parent.to_owned()));
        }
        lines.push(Value::Object(own).to_string());
        for child in children {
            jsonl(child, node["id"].as_str(), lines);
        }
    }
    nodes.len() as u64
}

impl Store {
    pub fn bulk_faults(&mut self) -> &mut BulkFaults {
        &mut self.bulk.faults
    }
}
