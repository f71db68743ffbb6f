//! The operator's view of a deployment (on AWS or the local stack, through the standard AWS
//! configuration): dead-letter queues (list, show, redrive, discard), status, exceptions.
//! Queue and table names come from infra/template.yaml and the stage, as SAM names them.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, anyhow};
use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use erpsync_aws::dynamo::DynamoStore;
use erpsync_aws::sqs::{attr, order_of_group};
use erpsync_core::model::state::{EntityRef, Flow, SyncRecord, SyncState, SyncStatus};
use erpsync_core::ports::SyncStateStore;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::queues;
use crate::template::{Resolver, Template};

/// A queue that feeds a function and the dead-letter queue beside it.
#[derive(Debug, Clone, Serialize)]
pub struct QueuePair {
    pub source: String,
    pub source_url: String,
    pub dead_letter: String,
    pub dead_letter_url: String,
}

pub struct Deployment {
    pub sqs: aws_sdk_sqs::Client,
    pub store: DynamoStore,
    pub queues: Vec<QueuePair>,
}

/// Which queue is whose dead-letter queue, from the redrive policies in the template.
fn pairs(template: &Template) -> Vec<(String, String)> {
    template
        .resources_of("AWS::SQS::Queue")
        .into_iter()
        .filter_map(|queue| {
            let target = queue
                .properties
                .get("RedrivePolicy")?
                .get("deadLetterTargetArn")?;
            // `!GetAtt X.Arn` is a tagged value in YAML.
            let text = match target {
                serde_yaml_ng::Value::Tagged(tagged) => tagged.value.as_str()?.to_owned(),
                other => other.as_str()?.to_owned(),
            };
            let dead_letter = text.strip_suffix(".Arn").unwrap_or(&text).to_owned();
            Some((queue.logical_id, dead_letter))
        })
        .collect()
}

impl Deployment {
    /// A deployed stage: names resolved from the template with `Stage`, URLs looked up.
    pub async fn discover(
        sdk: &aws_config::SdkConfig,
        template: &Template,
        stage: &str,
    ) -> anyhow::Result<Self> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let mut resolver = Resolver::default();
        resolver
            .parameters
            .insert("Stage".to_owned(), stage.to_owned());
        let name_of = |logical_id: &str, property: &str| -> anyhow::Result<String> {
            let resource = template
                .resources()
                .into_iter()
                .find(|r| r.logical_id == logical_id)
                .with_context(|| format!("the template has no {logical_id}"))?;
            let value = resource
                .properties
                .get(property)
                .with_context(|| format!("{logical_id} has no {property}"))?;
            resolver
                .resolve(value)?
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("{logical_id}.{property} is not a name"))
        };
        let mut queues = Vec::new();
        for (source, dead_letter) in pairs(template) {
            let url = |logical_id: &str| {
                let name = name_of(logical_id, "QueueName");
                let sqs = sqs.clone();
                async move {
                    let name = name?;
                    let found = sqs
                        .get_queue_url()
                        .queue_name(&name)
                        .send()
                        .await
                        .with_context(|| format!("queue {name} (is the stage right?)"))?;
                    found
                        .queue_url()
                        .map(str::to_owned)
                        .with_context(|| format!("queue {name} has no URL"))
                }
            };
            queues.push(QueuePair {
                source_url: url(&source).await?,
                dead_letter_url: url(&dead_letter).await?,
                source,
                dead_letter,
            });
        }
        let table = name_of("SyncTable", "TableName")?;
        Ok(Self {
            store: DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), table),
            sqs,
            queues,
        })
    }

    /// The local stack's resources (what the tests and the demo created).
    pub fn local(
        sdk: &aws_config::SdkConfig,
        template: &Template,
        resources: &crate::stack::LocalResources,
    ) -> anyhow::Result<Self> {
        let mut queues = Vec::new();
        for (source, dead_letter) in pairs(template) {
            queues.push(QueuePair {
                source_url: resources.queue_url(&source)?.to_owned(),
                dead_letter_url: resources.queue_url(&dead_letter)?.to_owned(),
                source,
                dead_letter,
            });
        }
        Ok(Self {
            sqs: aws_sdk_sqs::Client::new(sdk),
            store: DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &resources.table),
            queues,
        })
    }
}

/// A message parked in a dead-letter queue, with what the flow recorded about it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub id: String,
    pub dead_letter_queue: String,
    pub source_queue: String,
    pub flow: String,
    pub entity: String,
    pub reason: String,
    pub error_class: String,
    pub error_kind: String,
    pub attempts: String,
    pub first_failure: String,
    pub last_failure: String,
    pub group_id: Option<String>,
    /// Moved by the queue's redrive policy (its invocation died on its last receive), not
    /// parked by a flow: nothing recorded why, and its entity's state may still say retrying.
    pub moved_by_queue: bool,
    /// The original message's attributes, to send it back as it was.
    pub source_attributes: BTreeMap<String, String>,
    pub body: String,
    /// When it reached the dead-letter queue (the queue's own timestamp).
    #[serde(skip)]
    pub parked_at: Option<OffsetDateTime>,
}

/// The attributes a parked message gains in the dead-letter queue, never the original's.
const PARKING_ATTRIBUTES: [&str; 9] = [
    attr::REASON,
    attr::ERROR_CLASS,
    attr::ERROR_KIND,
    attr::FLOW,
    attr::ENTITY,
    attr::FAILED_AT,
    attr::FIRST_FAILED_AT,
    attr::ATTEMPTS,
    attr::SOURCE,
];

impl DeadLetter {
    fn of(message: &Message, pair: &QueuePair) -> Self {
        let attribute = |name: &str| {
            message
                .message_attributes()
                .and_then(|a| a.get(name))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_owned()
        };
        // What the runner parked carries the original's attributes as one JSON `source`; a
        // message the queue's redrive policy moved still carries them as they were.
        let carried = || -> BTreeMap<String, String> {
            message
                .message_attributes()
                .into_iter()
                .flatten()
                .filter(|(name, _)| !PARKING_ATTRIBUTES.contains(&name.as_str()))
                .filter_map(|(name, value)| Some((name.clone(), value.string_value()?.to_owned())))
                .collect()
        };
        let mut source: BTreeMap<String, String> = message
            .message_attributes()
            .and_then(|a| a.get(attr::SOURCE))
            .and_then(|v| v.string_value())
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_else(carried);
        let group_id = source.remove("group_id").or_else(|| {
            message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned()
        });
        let parked_at = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
            .and_then(|ms| ms.parse::<i128>().ok())
            .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok());
        let sent = parked_at
            .and_then(|at| at.format(&Rfc3339).ok())
            .unwrap_or_default();
        let or = |value: String, fallback: &str| {
            if value.is_empty() {
                fallback.to_owned()
            } else {
                value
            }
        };
        let reason = attribute(attr::REASON);
        let moved_by_queue = reason.is_empty();
        // A moved order message still names its order by its group.
        let moved_order = (moved_by_queue && pair.source == "OrdersQueue")
            .then(|| group_id.as_deref().and_then(order_of_group))
            .flatten();
        Self {
            id: message.message_id().unwrap_or_default().to_owned(),
            dead_letter_queue: pair.dead_letter.clone(),
            source_queue: pair.source.clone(),
            flow: or(
                attribute(attr::FLOW),
                if moved_order.is_some() {
                    Flow::OrderSync.as_str()
                } else {
                    "unknown"
                },
            ),
            entity: or(
                attribute(attr::ENTITY),
                &moved_order.map_or_else(|| "unknown".to_owned(), |order| order.to_string()),
            ),
            // Moved by the redrive policy after a whole invocation failed: no flow wrote one.
            reason: or(
                reason,
                "moved by the queue's redrive policy after its receives ran out (no reason recorded: see the function's logs)",
            ),
            error_class: or(attribute(attr::ERROR_CLASS), "unknown"),
            error_kind: or(attribute(attr::ERROR_KIND), "unknown"),
            attempts: or(attribute(attr::ATTEMPTS), "?"),
            first_failure: or(attribute(attr::FIRST_FAILED_AT), &sent),
            last_failure: or(attribute(attr::FAILED_AT), &sent),
            group_id,
            moved_by_queue,
            source_attributes: source,
            body: message.body().unwrap_or_default().to_owned(),
            parked_at,
        }
    }

    fn matches(&self, flow: Option<&str>) -> bool {
        flow.is_none_or(|f| self.flow == f || self.source_queue == f)
    }
}

/// Every parked message (left where it is), optionally of one flow.
pub async fn dead_letters(
    deployment: &Deployment,
    flow: Option<&str>,
) -> anyhow::Result<Vec<DeadLetter>> {
    let mut found = Vec::new();
    for pair in &deployment.queues {
        for message in queues::peek(&deployment.sqs, &pair.dead_letter_url).await? {
            let letter = DeadLetter::of(&message, pair);
            if letter.matches(flow) {
                found.push(letter);
            }
        }
    }
    found.sort_by(|a, b| a.last_failure.cmp(&b.last_failure));
    Ok(found)
}

pub async fn dead_letter(deployment: &Deployment, id: &str) -> anyhow::Result<Option<DeadLetter>> {
    Ok(dead_letters(deployment, None)
        .await?
        .into_iter()
        .find(|l| l.id == id))
}

/// Receives the parked message `id` with a receipt handle (the others seen on the way are
/// left visible again). FIFO order holds within a group: a message behind another of its group
/// is reachable only once that one is gone.
async fn take(
    deployment: &Deployment,
    pair: &QueuePair,
    id: &str,
) -> anyhow::Result<Option<(Message, String)>> {
    queues::take(&deployment.sqs, &pair.dead_letter_url, |m| {
        m.message_id() == Some(id)
    })
    .await
}

/// What to redrive.
pub enum Selection<'a> {
    One(&'a str),
    All { flow: Option<&'a str> },
}

/// Sends parked messages back to their source queue as they first came (body, attributes,
/// FIFO group), then deletes them from the dead-letter queue. Idempotency keys make a
/// redriven message take effect once, however often it is redriven. Answers the ids moved.
///
/// All of them: each dead-letter queue is walked once per pass, each message parked before the
/// redrive began sent back as it is received (a FIFO group's next message comes within reach
/// once its head is gone); passes repeat until one moves nothing. What it sent back and failed
/// again stays parked.
pub async fn redrive(
    deployment: &Deployment,
    selection: Selection<'_>,
    progress: &dyn Fn(&DeadLetter),
) -> anyhow::Result<Vec<String>> {
    let began = OffsetDateTime::now_utc();
    let mut moved = Vec::new();
    match selection {
        Selection::One(id) => {
            let letter = dead_letter(deployment, id)
                .await?
                .with_context(|| format!("no parked message {id}"))?;
            send_back(deployment, &letter).await?;
            progress(&letter);
            moved.push(letter.id);
        }
        Selection::All { flow } => {
            // One walk of each dead-letter queue per pass, sending back each message as it
            // is received (taking them one by one walked the queue once per message: hours at
            // a thousand letters). In a FIFO queue a group's next message comes within reach
            // once its head is gone, within the same walk; a pass that moves nothing ends it.
            for _pass in 0..REDRIVE_PASSES {
                let before = moved.len();
                for pair in &deployment.queues {
                    redrive_queue(deployment, pair, flow, began, progress, &mut moved).await?;
                }
                if moved.len() == before {
                    break;
                }
            }
        }
    }
    Ok(moved)
}

/// Walks one dead-letter queue, sending back every message of `flow` parked before `began`
/// as it comes; the others are made visible again when the walk ends, whatever happened.
async fn redrive_queue(
    deployment: &Deployment,
    pair: &QueuePair,
    flow: Option<&str>,
    began: OffsetDateTime,
    progress: &dyn Fn(&DeadLetter),
    moved: &mut Vec<String>,
) -> anyhow::Result<()> {
    // Every receipt of the walk until its message is gone, so whatever the walk does not
    // remove (kept, or left when a send fails mid-batch) is made visible again at the end.
    let mut kept: Vec<String> = Vec::new();
    let walked: anyhow::Result<()> = async {
        for _ in 0..queues::WALK_RECEIVES {
            let received = queues::receive_batch(&deployment.sqs, &pair.dead_letter_url).await?;
            if received.is_empty() {
                return Ok(());
            }
            kept.extend(
                received
                    .iter()
                    .map(|m| m.receipt_handle().unwrap_or_default().to_owned()),
            );
            for message in received {
                let receipt = message.receipt_handle().unwrap_or_default().to_owned();
                let letter = DeadLetter::of(&message, pair);
                // Once per run: a letter sent back, failed again and parked again in this run
                // (the clocks of SQS and this machine may differ) waits for the next run; sent
                // again now, a FIFO queue would drop it as a duplicate of the first send.
                let wanted = letter.matches(flow)
                    && letter.parked_at.is_none_or(|at| at < began)
                    && !moved.contains(&letter.id);
                if !wanted {
                    continue;
                }
                send_to_source(deployment, pair, &letter, &message).await?;
                remove(deployment, pair, &receipt).await?;
                kept.retain(|r| *r != receipt);
                progress(&letter);
                moved.push(letter.id);
            }
        }
        Ok(())
    }
    .await;
    let released = queues::release(&deployment.sqs, &pair.dead_letter_url, &kept).await;
    walked?;
    released
}

/// Passes of `redrive --all`: as many as one FIFO group can have messages parked.
const REDRIVE_PASSES: usize = 1000;

/// Deletes a taken message from its dead-letter queue.
async fn remove(deployment: &Deployment, pair: &QueuePair, receipt: &str) -> anyhow::Result<()> {
    deployment
        .sqs
        .delete_message()
        .queue_url(&pair.dead_letter_url)
        .receipt_handle(receipt)
        .send()
        .await?;
    Ok(())
}

/// A parked message that could not be received to be sent back (behind another message of
/// its group that is in flight, or gone meanwhile).
#[derive(Debug, thiserror::Error)]
#[error("message {id} could not be taken from {queue} (behind another message of its group?)")]
struct NotTaken {
    id: String,
    queue: String,
}

async fn send_back(deployment: &Deployment, letter: &DeadLetter) -> anyhow::Result<()> {
    let pair = pair_of(deployment, letter)?;
    let Some((message, receipt)) = take(deployment, pair, &letter.id).await? else {
        return Err(NotTaken {
            id: letter.id.clone(),
            queue: pair.dead_letter.clone(),
        }
        .into());
    };
    send_to_source(deployment, pair, letter, &message).await?;
    remove(deployment, pair, &receipt).await?;
    Ok(())
}

/// Sends a parked message back to its source queue as it first came (body, attributes, FIFO
/// group); deduplicated by its id, so a send repeated after a failure lands once.
async fn send_to_source(
    deployment: &Deployment,
    pair: &QueuePair,
    letter: &DeadLetter,
    message: &Message,
) -> anyhow::Result<()> {
    let fifo = pair.source_url.ends_with(".fifo");
    let mut send = deployment
        .sqs
        .send_message()
        .queue_url(&pair.source_url)
        .message_body(message.body().unwrap_or_default());
    for (name, value) in &letter.source_attributes {
        send = send.message_attributes(
            name,
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()?,
        );
    }
    if fifo {
        send = send
            .message_group_id(
                letter
                    .group_id
                    .clone()
                    .unwrap_or_else(|| letter.flow.clone()),
            )
            .message_deduplication_id(format!("redrive-{}", letter.id));
    }
    send.send()
        .await
        .with_context(|| format!("sending {} back to {}", letter.id, pair.source))?;
    Ok(())
}

fn pair_of<'a>(deployment: &'a Deployment, letter: &DeadLetter) -> anyhow::Result<&'a QueuePair> {
    deployment
        .queues
        .iter()
        .find(|p| p.dead_letter == letter.dead_letter_queue)
        .ok_or_else(|| anyhow!("no queue pair for {}", letter.dead_letter_queue))
}

/// Removes a parked message for good and records in sync state that a person closed it,
/// with the reason.
pub async fn discard(
    deployment: &Deployment,
    id: &str,
    reason: &str,
    by: &str,
) -> anyhow::Result<DeadLetter> {
    let letter = dead_letter(deployment, id)
        .await?
        .with_context(|| format!("no parked message {id}"))?;
    let pair = pair_of(deployment, &letter)?;
    let (_, receipt) = take(deployment, pair, id)
        .await?
        .with_context(|| format!("message {id} could not be taken from {}", pair.dead_letter))?;
    // A letter the queue moved recorded nothing on its entity (whose state may be at a newer
    // version since): discarding it closes only the letter, or reconciliation would take the
    // order as settled at any version.
    if let Some(entity) = EntityRef::parse(&letter.entity).filter(|_| !letter.moved_by_queue) {
        deployment
            .store
            .record(&SyncRecord {
                basis: None,
                entity,
                status: SyncStatus::Resolved,
                erp_id: None,
                erp_number: None,
                version: None,
                note: Some(format!(
                    "discarded by {by} at {}: {reason} (was: {})",
                    OffsetDateTime::now_utc()
                        .format(&Rfc3339)
                        .unwrap_or_default(),
                    letter.reason
                )),
            })
            .await?;
    }
    remove(deployment, pair, &receipt).await?;
    Ok(letter)
}

/// The answer to "is everything flowing?".
#[derive(Debug, Serialize)]
pub struct Status {
    /// Flow -> status -> entities.
    pub counts: BTreeMap<String, BTreeMap<String, usize>>,
    pub queues: Vec<QueueStatus>,
    /// The last successful run of each schedule (per channel where it runs per channel).
    pub last_runs: Vec<LastRun>,
    pub backordered: Vec<StateLine>,
    pub needs_attention: usize,
}

#[derive(Debug, Serialize)]
pub struct QueueStatus {
    pub queue: String,
    pub depth: u64,
    /// When the oldest message still waiting was sent.
    pub oldest: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LastRun {
    pub schedule: String,
    pub at: String,
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StateLine {
    pub entity: String,
    pub status: String,
    pub updated_at: String,
    pub erp_number: Option<String>,
    pub note: Option<String>,
    pub error_kind: Option<String>,
}

impl StateLine {
    /// Parked messages naming no entity (most of them moved by the queue without a reason),
    /// as one exception for their queue.
    fn moved_from(queue: &str, letters: &[DeadLetter]) -> Self {
        let newest = letters
            .iter()
            .map(|l| l.last_failure.clone())
            .max()
            .unwrap_or_default();
        Self {
            entity: format!("{queue} ({} message(s))", letters.len()),
            status: SyncStatus::NeedsAttention.as_str().to_owned(),
            updated_at: newest,
            erp_number: None,
            note: Some(
                "parked naming no entity (or moved by the queue's redrive policy, with no reason recorded): `erpsync dlq list`, then redrive or discard them"
                    .to_owned(),
            ),
            error_kind: Some("parked".to_owned()),
        }
    }

    /// A dead letter whose entity's state does not say it needs a person, as an exception:
    /// what it is and what to do.
    fn parked(letter: &DeadLetter) -> Self {
        Self {
            entity: letter.entity.clone(),
            status: SyncStatus::NeedsAttention.as_str().to_owned(),
            updated_at: letter.last_failure.clone(),
            erp_number: None,
            note: Some(format!(
                "{}; in {} as message {}: `erpsync dlq show {}`, then redrive it (a version older than the one applied since replays as stale) or discard it",
                letter.reason, letter.dead_letter_queue, letter.id, letter.id
            )),
            error_kind: Some(if letter.moved_by_queue {
                "moved_by_queue".to_owned()
            } else {
                letter.error_kind.clone()
            }),
        }
    }
}

impl From<&SyncState> for StateLine {
    fn from(state: &SyncState) -> Self {
        Self {
            entity: state.entity.to_string(),
            status: state.status.as_str().to_owned(),
            updated_at: state.updated_at.format(&Rfc3339).unwrap_or_default(),
            erp_number: state.erp_number.clone(),
            note: state
                .last_error
                .as_ref()
                .filter(|_| state.status == SyncStatus::NeedsAttention)
                .map(|e| e.message.clone())
                .or_else(|| state.note.clone()),
            error_kind: state.last_error.as_ref().map(|e| e.kind.clone()),
        }
    }
}

/// Schedules' runs are recorded under these entities; cursors stand for the change polls.
fn is_run(state: &SyncState) -> bool {
    matches!(
        (state.entity.flow, state.entity.entity_id.as_str()),
        (Flow::StockSync, "stock") | (Flow::PriceSync, "prices") | (Flow::Reconcile, "run")
    )
}

pub async fn status(deployment: &Deployment) -> anyhow::Result<Status> {
    let states = deployment.store.all_states().await?;
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut last_runs = Vec::new();
    for state in &states {
        if is_run(state) {
            if state.status == SyncStatus::Synced {
                last_runs.push(LastRun {
                    schedule: format!("{}/{}", state.entity.flow.as_str(), state.entity.channel),
                    at: state.updated_at.format(&Rfc3339).unwrap_or_default(),
                    note: state.note.clone(),
                });
            }
            continue;
        }
        *counts
            .entry(state.entity.flow.as_str().to_owned())
            .or_default()
            .entry(state.status.as_str().to_owned())
            .or_default() += 1;
    }
    for (cursor, at) in deployment.store.cursors().await? {
        last_runs.push(LastRun {
            schedule: format!("cursor {cursor}"),
            at: at.format(&Rfc3339).unwrap_or_default(),
            note: Some("changes applied up to here".to_owned()),
        });
    }
    last_runs.sort_by(|a, b| a.schedule.cmp(&b.schedule));
    let mut queues_status = Vec::new();
    for pair in &deployment.queues {
        for (name, url) in [
            (&pair.source, &pair.source_url),
            (&pair.dead_letter, &pair.dead_letter_url),
        ] {
            let depth = queues::depth(&deployment.sqs, url).await?;
            let oldest = if depth > 0 {
                oldest_sent(&deployment.sqs, url).await?
            } else {
                None
            };
            queues_status.push(QueueStatus {
                queue: name.clone(),
                depth,
                oldest,
            });
        }
    }
    let mut backordered: Vec<StateLine> = states
        .iter()
        .filter(|s| s.status == SyncStatus::Backordered)
        .map(StateLine::from)
        .collect();
    backordered.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
    Ok(Status {
        counts,
        queues: queues_status,
        last_runs,
        backordered,
        needs_attention: states
            .iter()
            .filter(|s| s.status == SyncStatus::NeedsAttention)
            .count(),
    })
}

async fn oldest_sent(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<Option<String>> {
    let messages = queues::peek(sqs, url).await?;
    Ok(messages
        .iter()
        .filter_map(|m| {
            m.attributes()?
                .get(&MessageSystemAttributeName::SentTimestamp)?
                .parse::<i128>()
                .ok()
        })
        .min()
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok())
        .and_then(|at| at.format(&Rfc3339).ok()))
}

/// Everything needing a person, newest first, each with what to do (the flows write the
/// action into the reason).
pub async fn exceptions(deployment: &Deployment) -> anyhow::Result<Vec<StateLine>> {
    let mut states = Vec::new();
    for flow in Flow::ALL {
        states.extend(deployment.store.needing_attention(flow).await?);
    }
    let mut lines: Vec<StateLine> = states.iter().map(StateLine::from).collect();
    // Every parked message is a person's until it is redriven or discarded, whatever its
    // entity's state says now: one the queue moved by itself (its invocation died on its last
    // receive) has no state saying so, and a newer version retrying or moved after it can
    // hide an older one parked. The dead-letter queues are read for them; if they cannot be,
    // the states still list (and a line says so).
    match dead_letters(deployment, None).await {
        Ok(letters) => {
            let mut named: std::collections::HashSet<String> =
                lines.iter().map(|line| line.entity.clone()).collect();
            // Letters naming no entity (stock refresh signals, courier events): one line per
            // queue, not one per message.
            let mut unnamed: BTreeMap<String, Vec<DeadLetter>> = BTreeMap::new();
            for letter in letters {
                if letter.entity != "unknown" {
                    if named.insert(letter.entity.clone()) {
                        lines.push(StateLine::parked(&letter));
                    }
                } else {
                    unnamed
                        .entry(letter.dead_letter_queue.clone())
                        .or_default()
                        .push(letter);
                }
            }
            lines.extend(
                unnamed
                    .iter()
                    .map(|(queue, letters)| StateLine::moved_from(queue, letters)),
            );
        }
        Err(error) => lines.push(StateLine {
            entity: "dead-letter queues".to_owned(),
            status: SyncStatus::NeedsAttention.as_str().to_owned(),
            updated_at: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            erp_number: None,
            note: Some(format!(
                "could not be read for messages the queue moved without a reason: {error:#}"
            )),
            error_kind: Some("dlq_unreadable".to_owned()),
        }),
    }
    // Newest first.
    lines.sort_by_cached_key(|line| {
        std::cmp::Reverse(OffsetDateTime::parse(&line.updated_at, &Rfc3339).ok())
    });
    Ok(lines)
}

/// Plain-text table: columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(headers.iter().map(|h| (*h).to_owned()).collect());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
    out
}

/// How long ago, for people.
pub fn ago(rfc3339: &str) -> String {
    let Ok(at) = OffsetDateTime::parse(rfc3339, &Rfc3339) else {
        return rfc3339.to_owned();
    };
    let seconds = (OffsetDateTime::now_utc() - at).whole_seconds().max(0);
    let text = match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    };
    format!("{text} ago")
}

/// Used by the status summary: total messages waiting in dead-letter queues.
pub fn parked(status: &Status, deployment: &Deployment) -> u64 {
    let dead: HashMap<&str, ()> = deployment
        .queues
        .iter()
        .map(|p| (p.dead_letter.as_str(), ()))
        .collect();
    status
        .queues
        .iter()
        .filter(|q| dead.contains_key(q.queue.as_str()))
        .map(|q| q.depth)
        .sum()
}

/// Puts the payload kept from an order's failure back on the orders queue, as its webhook would have
/// come (its FIFO group, `found_by = replay`). Answers the message id, or none when no
/// payload is kept for it. Idempotency makes a version that already took effect a no-op.
pub async fn replay(
    deployment: &Deployment,
    channel: &erpsync_core::model::ids::ChannelId,
    order_id: &str,
) -> anyhow::Result<Option<String>> {
    use erpsync_core::ports::PayloadArchive;
    let entity = EntityRef::order(channel, order_id);
    let Some(payload) = deployment.store.latest(&entity).await? else {
        return Ok(None);
    };
    let orders = deployment
        .queues
        .iter()
        .find(|p| p.source == "OrdersQueue")
        .context("the template has no OrdersQueue")?;
    let attribute = |value: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
    };
    let replay_id = format!("replay-{}", uuid::Uuid::new_v4().simple());
    let mut send = deployment
        .sqs
        .send_message()
        .queue_url(&orders.source_url)
        .message_body(&payload.body)
        .message_group_id(format!("{channel}:{order_id}"))
        .message_deduplication_id(&replay_id)
        .message_attributes(attr::CHANNEL, attribute(channel.as_str())?)
        .message_attributes(attr::TOPIC, attribute(&payload.topic)?)
        .message_attributes(attr::WEBHOOK_ID, attribute(&replay_id)?)
        .message_attributes(attr::FOUND_BY, attribute("replay")?);
    // The delivery's trigger time makes the replay the same version as what failed.
    if let Some(at) = payload.triggered_at.and_then(|at| {
        at.format(&time::format_description::well_known::Rfc3339)
            .ok()
    }) {
        send = send.message_attributes(attr::TRIGGERED_AT, attribute(&at)?);
    }
    let sent = send
        .send()
        .await
        .with_context(|| format!("sending order {order_id} to {}", orders.source))?;
    Ok(sent.message_id().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(value: &str) -> MessageAttributeValue {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A message the queue's redrive policy moved carries no `source`: the attributes it was
    /// sent with are what a redrive must send back, or order-sync cannot read it (no channel,
    /// no topic) and parks it again, in a loop.
    #[test]
    fn a_dead_letter_moved_by_the_redrive_policy_keeps_the_attributes_it_was_sent_with() {
        let pair = QueuePair {
            source: "OrdersQueue".to_owned(),
            source_url: "https://sqs/orders.fifo".to_owned(),
            dead_letter: "orders-dlq".to_owned(),
            dead_letter_url: "https://sqs/orders-dlq.fifo".to_owned(),
        };
        let moved = Message::builder()
            .message_id("m-1")
            .body("{}")
            .message_attributes(attr::CHANNEL, string("uk-shop"))
            .message_attributes(attr::TOPIC, string("orders/create"))
            .attributes(MessageSystemAttributeName::MessageGroupId, "uk-shop:1")
            .build();
        let letter = DeadLetter::of(&moved, &pair);
        assert_eq!(
            letter.source_attributes,
            BTreeMap::from([
                (attr::CHANNEL.to_owned(), "uk-shop".to_owned()),
                (attr::TOPIC.to_owned(), "orders/create".to_owned()),
            ])
        );
        assert_eq!(letter.group_id.as_deref(), Some("uk-shop:1"));
        assert!(
            letter.reason.contains("redrive policy"),
            "{}",
            letter.reason
        );
        // Nothing recorded its entity: its group names the order, for `erpsync exceptions`.
        assert!(letter.moved_by_queue);
        assert_eq!(letter.entity, "order-sync/uk-shop/1");
        assert_eq!(
            StateLine::parked(&letter).error_kind.as_deref(),
            Some("moved_by_queue")
        );

        // One the runner parked sends back its `source`, never its parking attributes.
        let parked = Message::builder()
            .message_id("m-2")
            .body("{}")
            .message_attributes(attr::REASON, string("unknown SKU"))
            .message_attributes(
                attr::SOURCE,
                string(r#"{"channel":"uk-shop","topic":"orders/updated","group_id":"uk-shop:1"}"#),
            )
            .build();
        let letter = DeadLetter::of(&parked, &pair);
        assert!(!letter.moved_by_queue);
        assert_eq!(
            letter.source_attributes,
            BTreeMap::from([
                (attr::CHANNEL.to_owned(), "uk-shop".to_owned()),
                (attr::TOPIC.to_owned(), "orders/updated".to_owned()),
            ])
        );
    }
}
