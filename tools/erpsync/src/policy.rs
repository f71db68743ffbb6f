//! The deployment's policy rules, checked on the CloudFormation that SAM makes of
//! infra/template.yaml (long-form intrinsics, generated roles and event source mappings):
//!
//! - every queue has a dead-letter queue, and every queue is encrypted;
//! - every dead-letter queue has an alarm on its visible messages, with an action;
//! - every SQS-triggered function reports batch item failures;
//! - a queue's visibility timeout is at least 6 x the timeout of the function it feeds;
//! - no IAM action with a wildcard, no resource `*`; the only wildcards allowed in a resource
//!   are in a Secrets Manager ARN naming its secret (`secret:erpsync/erp-api-key-??????`,
//!   `secret:erpsync/*/webhook-??????`): secret ARNs end in a random six-character suffix,
//!   and a channel's secrets sit under its id. A whole prefix (`secret:erpsync/*`) is refused;
//! - every queue takes SQS's largest message (`MaximumMessageSize` 1 MiB; the default is
//!   256 KiB, less than a webhook body erpsync accepts);
//! - every function behind a public URL has reserved concurrency, so a flood cannot starve
//!   the others;
//! - every function logs to a log group of the template with a retention period;
//! - the table and every dead-letter queue are kept when the stack is deleted or replaced
//!   (`DeletionPolicy` and `UpdateReplacePolicy: Retain`).
//!
//! These relate resources to each other (and compare numbers), which is why they are here
//! rather than in a generic linter; cfn-lint and `sam validate --lint` run beside them.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub rule: &'static str,
    pub resource: String,
    pub message: String,
}

fn resources(template: &Value) -> Vec<(&str, &Value)> {
    template["Resources"]
        .as_object()
        .map(|r| r.iter().map(|(k, v)| (k.as_str(), v)).collect())
        .unwrap_or_default()
}

fn of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    resources(template)
        .into_iter()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

/// The logical id a `{"Fn::GetAtt": [id, attribute]}` or `{"Ref": id}` points at.
fn target(value: &Value) -> Option<&str> {
    value["Fn::GetAtt"][0]
        .as_str()
        .or_else(|| value["Ref"].as_str())
}

/// Statement values may be one item or a list.
fn items(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(list) => list.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    }
}

/// The text of a resource ARN as written (`Fn::Sub` strings included).
fn text(value: &Value) -> Option<&str> {
    value.as_str().or_else(|| value["Fn::Sub"].as_str())
}

pub fn check(template: &Value) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut violation = |rule, resource: &str, message: String| {
        found.push(Violation {
            rule,
            resource: resource.to_owned(),
            message,
        });
    };
    let queues = of_type(template, "AWS::SQS::Queue");
    let dead_letter_queues: BTreeSet<&str> = queues
        .iter()
        .filter_map(|(_, q)| target(&q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]))
        .collect();
    for (id, queue) in &queues {
        let properties = &queue["Properties"];
        if !dead_letter_queues.contains(id)
            && (properties["RedrivePolicy"]["deadLetterTargetArn"].is_null()
                || properties["RedrivePolicy"]["maxReceiveCount"].is_null())
        {
            violation(
                "queue-has-dead-letter-queue",
                id,
                "has no RedrivePolicy with a deadLetterTargetArn and maxReceiveCount: failed messages would be lost".to_owned(),
            );
        }
        if properties["SqsManagedSseEnabled"] != true && properties["KmsMasterKeyId"].is_null() {
            violation(
                "queue-encrypted",
                id,
                "is not encrypted (SqsManagedSseEnabled or KmsMasterKeyId)".to_owned(),
            );
        }
    }
    for (id, queue) in &queues {
        if queue["Properties"]["MaximumMessageSize"].as_u64() != Some(MAX_MESSAGE_BYTES) {
            violation(
                "queue-takes-the-largest-message",
                id,
                format!(
                    "MaximumMessageSize is not {MAX_MESSAGE_BYTES}: SQS's default (262144) is less than the webhook bodies erpsync accepts"
                ),
            );
        }
    }
    let retained = |resource: &Value| {
        resource["DeletionPolicy"] == "Retain" && resource["UpdateReplacePolicy"] == "Retain"
    };
    let stateful = of_type(template, "AWS::DynamoDB::Table").into_iter().chain(
        queues
            .iter()
            .filter(|(id, _)| dead_letter_queues.contains(id))
            .copied(),
    );
    for (id, resource) in stateful {
        if !retained(resource) {
            violation(
                "state-kept-when-the-stack-goes",
                id,
                "has no DeletionPolicy and UpdateReplacePolicy Retain: deleting or replacing the stack would lose sync state or parked messages".to_owned(),
            );
        }
    }
    let log_groups = of_type(template, "AWS::Logs::LogGroup");
    for (id, function) in of_type(template, "AWS::Lambda::Function") {
        let group = target(&function["Properties"]["LoggingConfig"]["LogGroup"])
            .and_then(|g| log_groups.iter().find(|(gid, _)| *gid == g));
        if !group.is_some_and(|(_, g)| {
            g["Properties"]["RetentionInDays"].is_number()
                || g["Properties"]["RetentionInDays"]["Ref"].is_string()
        }) {
            violation(
                "function-logs-retained-for-a-period",
                id,
                "does not log to a log group of the template with RetentionInDays: Lambda's own group keeps logs forever".to_owned(),
            );
        }
    }
    for (id, url) in of_type(template, "AWS::Lambda::Url") {
        let Some(function_id) = target(&url["Properties"]["TargetFunctionArn"]) else {
            continue;
        };
        let reserved = resources(template)
            .into_iter()
            .find(|(fid, _)| *fid == function_id)
            .is_some_and(|(_, f)| !f["Properties"]["ReservedConcurrentExecutions"].is_null());
        if !reserved {
            violation(
                "public-function-has-reserved-concurrency",
                function_id,
                format!(
                    "is public through {id} without ReservedConcurrentExecutions: a flood of requests could take the concurrency the queue consumers need"
                ),
            );
        }
    }
    let alarms = of_type(template, "AWS::CloudWatch::Alarm");
    for dead_letter in &dead_letter_queues {
        let watched = alarms.iter().any(|(_, alarm)| {
            let properties = &alarm["Properties"];
            properties["MetricName"] == "ApproximateNumberOfMessagesVisible"
                && items(&properties["Dimensions"])
                    .iter()
                    .any(|d| d["Name"] == "QueueName" && target(&d["Value"]) == Some(*dead_letter))
                && !items(&properties["AlarmActions"]).is_empty()
        });
        if !watched {
            violation(
                "dead-letter-queue-alarmed",
                dead_letter,
                "has no alarm with an action on ApproximateNumberOfMessagesVisible: nobody would know a message is parked".to_owned(),
            );
        }
    }
    let functions = of_type(template, "AWS::Lambda::Function");
    for (id, mapping) in of_type(template, "AWS::Lambda::EventSourceMapping") {
        let properties = &mapping["Properties"];
        let Some(queue) = target(&properties["EventSourceArn"])
            .and_then(|q| queues.iter().find(|(qid, _)| *qid == q))
        else {
            continue;
        };
        let reports = items(&properties["FunctionResponseTypes"])
            .iter()
            .any(|t| *t == "ReportBatchItemFailures");
        if !reports {
            violation(
                "sqs-function-reports-batch-item-failures",
                id,
                format!(
                    "reads {} without FunctionResponseTypes [ReportBatchItemFailures]: one bad message would return the whole batch",
                    queue.0
                ),
            );
        }
        let function = target(&properties["FunctionName"])
            .and_then(|f| functions.iter().find(|(fid, _)| *fid == f));
        if let Some((function_id, function)) = function {
            // CloudFormation's defaults: 30 s visibility, 3 s function timeout.
            let visibility = queue.1["Properties"]["VisibilityTimeout"]
                .as_u64()
                .unwrap_or(30);
            let timeout = function["Properties"]["Timeout"].as_u64().unwrap_or(3);
            if visibility < 6 * timeout {
                violation(
                    "visibility-at-least-6x-timeout",
                    queue.0,
                    format!(
                        "VisibilityTimeout {visibility} s is less than 6 x {function_id}'s Timeout {timeout} s: messages would be handed out again while still being processed"
                    ),
                );
            }
        }
    }
    let roles = of_type(template, "AWS::IAM::Role");
    let policies = of_type(template, "AWS::IAM::Policy")
        .into_iter()
        .chain(of_type(template, "AWS::IAM::ManagedPolicy"));
    let mut documents: Vec<(&str, &Value)> = Vec::new();
    for (id, role) in &roles {
        for policy in items(&role["Properties"]["Policies"]) {
            documents.push((id, &policy["PolicyDocument"]));
        }
    }
    for (id, policy) in policies {
        documents.push((id, &policy["Properties"]["PolicyDocument"]));
    }
    for (id, document) in documents {
        for statement in items(&document["Statement"]) {
            for action in items(&statement["Action"]) {
                if action.as_str().is_some_and(|a| a.contains('*')) {
                    violation(
                        "no-wildcard-iam",
                        id,
                        format!("allows the wildcard action {action}"),
                    );
                }
            }
            for resource in items(&statement["Resource"]) {
                let Some(arn) = text(resource) else { continue };
                if arn.contains('*') && !scoped_secret(arn) {
                    violation(
                        "no-wildcard-iam",
                        id,
                        format!("allows the wildcard resource {arn:?}"),
                    );
                }
            }
        }
    }
    found
}

/// The size every queue is set to: SQS's maximum.
const MAX_MESSAGE_BYTES: u64 = erpsync_aws::sqs::MAX_MESSAGE_BYTES as u64;

/// `...:secret:<prefix>/<name>-??????` or `...:secret:<prefix>/*/<name>-??????`: secrets
/// named, with Secrets Manager's random suffix, under one fixed prefix (the `*` standing for
/// a channel id).
fn scoped_secret(arn: &str) -> bool {
    let Some((service, name)) = arn.split_once(":secret:") else {
        return false;
    };
    let Some(named) = name.strip_suffix("-??????") else {
        return false;
    };
    let Some((path, last)) = named.rsplit_once('/') else {
        return false;
    };
    let path = path.strip_suffix("/*").unwrap_or(path);
    service.contains(":secretsmanager:")
        && !last.is_empty()
        && !last.contains(['*', '?'])
        && !path.is_empty()
        && !path.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({"Resources": {
            "Dlq": {"Type": "AWS::SQS::Queue", "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
                  "Properties": {"SqsManagedSseEnabled": true, "MaximumMessageSize": 1048576}},
            "Q": {"Type": "AWS::SQS::Queue", "Properties": {"SqsManagedSseEnabled": true, "VisibilityTimeout": 360, "MaximumMessageSize": 1048576,
                  "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": ["Dlq", "Arn"]}, "maxReceiveCount": 5}}},
            "DlqAlarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"MetricName": "ApproximateNumberOfMessagesVisible",
                  "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["Dlq", "QueueName"]}}], "AlarmActions": [{"Ref": "Topic"}]}},
            "F": {"Type": "AWS::Lambda::Function", "Properties": {"Timeout": 60, "ReservedConcurrentExecutions": 5,
                  "LoggingConfig": {"LogFormat": "JSON", "LogGroup": {"Ref": "FLogs"}}}},
            "FLogs": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 30}},
            "FUrl": {"Type": "AWS::Lambda::Url", "Properties": {"AuthType": "NONE", "TargetFunctionArn": {"Ref": "F"}}},
            "FQ": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {"EventSourceArn": {"Fn::GetAtt": ["Q", "Arn"]},
                  "FunctionName": {"Ref": "F"}, "FunctionResponseTypes": ["ReportBatchItemFailures"]}},
            "FRole": {"Type": "AWS::IAM::Role", "Properties": {"Policies": [{"PolicyDocument": {"Statement": [
                {"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": {"Fn::GetAtt": ["Dlq", "Arn"]}},
                {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                 "Resource": [{"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretsPrefix}/erp-api-key-??????"},
                              {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretsPrefix}/*/webhook-??????"}]}]}}]}}
        }})
    }

    fn rules(template: &Value) -> Vec<&'static str> {
        check(template).into_iter().map(|v| v.rule).collect()
    }

    #[test]
    fn a_sound_template_passes() {
        assert_eq!(check(&good()), []);
    }

    #[test]
    fn each_injected_fault_is_named() {
        let mut no_dlq = good();
        no_dlq["Resources"]["Q"]["Properties"]
            .as_object_mut()
            .map(|p| p.remove("RedrivePolicy"));
        assert!(rules(&no_dlq).contains(&"queue-has-dead-letter-queue"));

        let mut plain = good();
        plain["Resources"]["Q"]["Properties"]["SqsManagedSseEnabled"] = json!(false);
        assert_eq!(rules(&plain), ["queue-encrypted"]);

        let mut unwatched = good();
        unwatched["Resources"]
            .as_object_mut()
            .map(|r| r.remove("DlqAlarm"));
        assert_eq!(rules(&unwatched), ["dead-letter-queue-alarmed"]);

        let mut whole_batch = good();
        whole_batch["Resources"]["FQ"]["Properties"]["FunctionResponseTypes"] = json!([]);
        assert_eq!(
            rules(&whole_batch),
            ["sqs-function-reports-batch-item-failures"]
        );

        let mut short = good();
        short["Resources"]["Q"]["Properties"]["VisibilityTimeout"] = json!(300);
        let found = check(&short);
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("6 x F's Timeout 60"), "{found:?}");

        let mut wildcard = good();
        wildcard["Resources"]["FRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            [0]["Action"] = json!("sqs:*");
        wildcard["Resources"]["FRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            [0]["Resource"] = json!("*");
        assert_eq!(rules(&wildcard), ["no-wildcard-iam", "no-wildcard-iam"]);
    }

    #[test]
    fn only_named_secrets_may_use_a_wildcard() {
        for allowed in [
            "arn:aws:secretsmanager:eu-west-1:1:secret:erpsync/erp-api-key-??????",
            "arn:aws:secretsmanager:eu-west-1:1:secret:erpsync/*/webhook-??????",
        ] {
            assert!(scoped_secret(allowed), "{allowed}");
        }
        for refused in [
            "arn:aws:secretsmanager:eu-west-1:1:secret:erpsync/*",
            "arn:aws:secretsmanager:eu-west-1:1:secret:*",
            "arn:aws:secretsmanager:eu-west-1:1:secret:erpsync/*-??????",
            "arn:aws:secretsmanager:eu-west-1:1:secret:*/webhook-??????",
            "arn:aws:sqs:eu-west-1:1:*",
        ] {
            assert!(!scoped_secret(refused), "{refused}");
        }
    }

    #[test]
    fn the_hardening_rules_name_what_is_missing() {
        let mut small = good();
        small["Resources"]["Q"]["Properties"]
            .as_object_mut()
            .map(|p| p.remove("MaximumMessageSize"));
        assert_eq!(rules(&small), ["queue-takes-the-largest-message"]);

        let mut dropped = good();
        dropped["Resources"]["Dlq"]
            .as_object_mut()
            .map(|d| d.remove("DeletionPolicy"));
        assert_eq!(rules(&dropped), ["state-kept-when-the-stack-goes"]);

        let mut forever = good();
        forever["Resources"]["FLogs"]["Properties"]
            .as_object_mut()
            .map(|p| p.remove("RetentionInDays"));
        assert_eq!(rules(&forever), ["function-logs-retained-for-a-period"]);

        let mut open = good();
        open["Resources"]["F"]["Properties"]
            .as_object_mut()
            .map(|p| p.remove("ReservedConcurrentExecutions"));
        assert_eq!(rules(&open), ["public-function-has-reserved-concurrency"]);

        let mut every_secret = good();
        every_secret["Resources"]["FRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            [1]["Resource"] =
            json!({"Fn::Sub": "arn:aws:secretsmanager:eu-west-1:1:secret:${SecretsPrefix}/*"});
        assert_eq!(rules(&every_secret), ["no-wildcard-iam"]);
    }
}
