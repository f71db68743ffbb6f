//! The template's schedules (`ScheduleV2` events), fired at the local functions as
//! EventBridge Scheduler would: the schedule's Input with its context attributes filled in.

use std::time::Duration;

use anyhow::{Context, bail};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::template::Template;

#[derive(Debug, Clone)]
pub struct Schedule {
    /// `Function.Event`, e.g. `StockSyncFunction.ErpChanges`.
    pub name: String,
    /// The function's binary (its name under `cargo lambda watch`).
    pub function: String,
    pub every: Duration,
    /// The Input as written, context attributes unfilled.
    pub input: String,
}

impl Template {
    pub fn schedules(&self) -> anyhow::Result<Vec<Schedule>> {
        let mut schedules = Vec::new();
        for function in self.resources_of("AWS::Serverless::Function") {
            let binary = function.binary().with_context(|| {
                format!("{} has no BuildProperties.Binary", function.logical_id)
            })?;
            let Some(serde_yaml_ng::Value::Mapping(events)) = function.properties.get("Events")
            else {
                continue;
            };
            for (event_name, event) in events {
                if event.get("Type").and_then(|t| t.as_str()) != Some("ScheduleV2") {
                    continue;
                }
                let name = format!(
                    "{}.{}",
                    function.logical_id,
                    event_name.as_str().unwrap_or_default()
                );
                let properties = event.get("Properties");
                let expression = properties
                    .and_then(|p| p.get("ScheduleExpression"))
                    .and_then(|e| e.as_str())
                    .with_context(|| format!("{name} has no ScheduleExpression"))?;
                let input = properties
                    .and_then(|p| p.get("Input"))
                    .and_then(|i| i.as_str())
                    .with_context(|| format!("{name} has no Input"))?;
                schedules.push(Schedule {
                    every: rate(expression).with_context(|| name.clone())?,
                    function: binary.to_owned(),
                    input: input.to_owned(),
                    name,
                });
            }
        }
        Ok(schedules)
    }
}

/// `rate(5 minutes)` -> 5 minutes. (The template uses rates only, not cron.)
pub fn rate(expression: &str) -> anyhow::Result<Duration> {
    let inner = expression
        .strip_prefix("rate(")
        .and_then(|e| e.strip_suffix(')'))
        .with_context(|| format!("{expression:?} is not a rate expression"))?;
    let (count, unit) = inner
        .split_once(' ')
        .with_context(|| format!("{expression:?}: rate(N unit)"))?;
    let count: u64 = count
        .parse()
        .with_context(|| format!("{expression:?}: {count:?} is not a whole number"))?;
    let seconds = match unit {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        other => bail!("{expression:?}: unknown unit {other:?}"),
    };
    Ok(Duration::from_secs(count * seconds))
}

impl Schedule {
    /// The event Scheduler sends at `at`: the Input with its context attributes filled in,
    /// read as the EventBridge event the scheduled handlers parse (an Input that is not one
    /// fails here, not in the function).
    pub fn event(&self, at: OffsetDateTime) -> anyhow::Result<EventBridgeEvent<Value>> {
        let text = self
            .input
            .replace(
                "<aws.scheduler.execution-id>",
                &uuid::Uuid::new_v4().to_string(),
            )
            .replace(
                "<aws.scheduler.scheduled-time>",
                &at.format(&Rfc3339).unwrap_or_default(),
            );
        serde_json::from_str(&text)
            .with_context(|| format!("{}: Input is not an EventBridge event", self.name))
    }

    /// Invokes the function once through the local Lambda runtime (`cargo lambda watch`).
    pub async fn fire(&self, http: &reqwest::Client, runtime: &str) -> anyhow::Result<Value> {
        let event = self.event(OffsetDateTime::now_utc())?;
        let response = http
            .post(format!(
                "{runtime}/2015-03-31/functions/{}/invocations",
                self.function
            ))
            .json(&event)
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .with_context(|| format!("firing {}", self.name))?;
        // The Invoke API answers a function's own error with 200 and this header; a runtime
        // that could not run it answers 5xx. Either is the run failing, not a run's answer.
        let status = response.status();
        let function_error = response.headers().contains_key("x-amz-function-error");
        let answer: Value = response
            .json()
            .await
            .with_context(|| format!("{}: the answer is not JSON", self.name))?;
        if !status.is_success() || function_error {
            anyhow::bail!("{} failed ({status}): {answer}", self.name);
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_schedules_are_read_with_their_rates_and_inputs() {
        let template = Template::project().unwrap_or_else(|e| panic!("{e:#}"));
        let schedules = template.schedules().unwrap_or_else(|e| panic!("{e:#}"));
        let changes = schedules
            .iter()
            .find(|s| s.name == "StockSyncFunction.ErpChanges")
            .unwrap_or_else(|| panic!("{schedules:?}"));
        assert_eq!(
            (changes.function.as_str(), changes.every),
            ("stock-sync", Duration::from_secs(60))
        );
        let event = changes
            .event(time::macros::datetime!(2026-11-29 12:00 UTC))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            event.time.map(|t| t.timestamp()),
            Some(time::macros::datetime!(2026-11-29 12:00 UTC).unix_timestamp())
        );
        assert_eq!(
            (event.detail_type.as_str(), event.source.as_str()),
            ("Scheduled Event", "aws.scheduler")
        );
        assert_eq!(event.detail["mode"], "changes");
        assert!(rate("rate(2 fortnights)").is_err());
        assert!(rate("cron(0 * * * ? *)").is_err());
    }
}
