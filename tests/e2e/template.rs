//! The local stack's queues, table and IAM roles are the ones infra/template.yaml declares.

use aws_sdk_sqs::types::QueueAttributeName;
use erpsync_e2e::World;
use erpsync_tools::template::Template;
use serde_json::Value;

/// Each function's role in moto carries exactly the inline policies SAM makes of the template
/// for it (resolved to this stage's resources) and the managed policies SAM attaches.
#[tokio::test]
async fn every_function_runs_under_a_role_with_exactly_the_templates_policies() {
    let world = World::start().await;
    let iam = aws_sdk_iam::Client::new(&world.sdk);
    let declared = erpsync_tools::roles::transformed_template()
        .and_then(erpsync_tools::roles::declared_roles)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let functions = Template::project()
        .unwrap_or_else(|e| panic!("{e:#}"))
        .resources_of("AWS::Serverless::Function");
    assert_eq!(
        declared.len(),
        functions.len() + 1,
        "one role per function, and the operator's"
    );
    for role in &declared {
        let name = format!("erpsync-{}-{}", world.stage, role.name);
        let inline = iam
            .list_role_policies()
            .role_name(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(inline.policy_names().len(), role.inline.len(), "{name}");
        for (policy, document) in &role.inline {
            let held = iam
                .get_role_policy()
                .role_name(&name)
                .policy_name(policy)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{name} {policy}: {e}"));
            // IAM answers policy documents URL-encoded.
            let held = percent_encoding::percent_decode_str(held.policy_document())
                .decode_utf8_lossy()
                .into_owned();
            let held: Value = serde_json::from_str(&held).unwrap_or_else(|e| panic!("{e}"));
            let expected = world
                .resources
                .resolver
                .resolve_json(document)
                .unwrap_or_else(|e| panic!("{e:#}"));
            assert_eq!(held, expected, "{name} {policy}");
        }
        let attached = iam
            .list_attached_role_policies()
            .role_name(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut attached: Vec<String> = attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_owned))
            .collect();
        let mut managed: Vec<String> = role
            .managed
            .iter()
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect();
        attached.sort();
        managed.sort();
        assert_eq!(attached, managed, "{name}");
    }
}

#[tokio::test]
async fn the_local_queues_and_table_are_the_ones_the_template_declares() {
    let world = World::start().await;
    let template = Template::project().unwrap_or_else(|e| panic!("{e:#}"));
    let sqs = aws_sdk_sqs::Client::new(&world.sdk);
    for queue in template.resources_of("AWS::SQS::Queue") {
        let declared = world
            .resources
            .resolver
            .resolve(&serde_yaml_value(&queue.properties))
            .unwrap_or_else(|e| panic!("{e:#}"));
        let actual = sqs
            .get_queue_attributes()
            .queue_url(world.queue(&queue.logical_id))
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let actual = actual.attributes().cloned().unwrap_or_default();
        let get = |name: QueueAttributeName| actual.get(&name).cloned().unwrap_or_default();
        if let Some(fifo) = declared.get("FifoQueue") {
            assert_eq!(
                get(QueueAttributeName::FifoQueue),
                fifo.to_string(),
                "{}",
                queue.logical_id
            );
        }
        assert_eq!(
            get(QueueAttributeName::MessageRetentionPeriod),
            declared["MessageRetentionPeriod"].to_string()
        );
        if let Some(timeout) = declared.get("VisibilityTimeout") {
            assert_eq!(
                get(QueueAttributeName::VisibilityTimeout),
                timeout.to_string()
            );
        }
        if let Some(redrive) = declared.get("RedrivePolicy") {
            let actual: Value =
                serde_json::from_str(&get(QueueAttributeName::RedrivePolicy)).unwrap_or_default();
            assert_eq!(
                actual["deadLetterTargetArn"],
                redrive["deadLetterTargetArn"]
            );
            assert_eq!(
                actual["maxReceiveCount"].to_string(),
                redrive["maxReceiveCount"].to_string()
            );
        }
    }
    // The order-sync function's timeout and the queue's visibility: at least 6x, as AWS advises.
    let function = template
        .resources_of("AWS::Serverless::Function")
        .into_iter()
        .find(|f| f.logical_id == "OrderSyncFunction")
        .unwrap_or_else(|| panic!("no OrderSyncFunction"));
    let timeout = function
        .properties
        .get("Timeout")
        .and_then(|t| t.as_u64())
        .unwrap_or(0);
    let visibility = template
        .resources_of("AWS::SQS::Queue")
        .into_iter()
        .find(|q| q.logical_id == "OrdersQueue")
        .and_then(|q| {
            q.properties
                .get("VisibilityTimeout")
                .and_then(|v| v.as_u64())
        })
        .unwrap_or(0);
    assert!(
        timeout > 0 && visibility >= 6 * timeout,
        "visibility {visibility} vs timeout {timeout}"
    );

    let table = aws_sdk_dynamodb::Client::new(&world.sdk)
        .describe_table()
        .table_name(&world.resources.table)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let table = table.table().cloned().unwrap_or_else(|| panic!("no table"));
    let keys: Vec<_> = table
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_owned(),
                k.key_type().as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            ("pk".to_owned(), "HASH".to_owned()),
            ("sk".to_owned(), "RANGE".to_owned())
        ]
    );
    let indexes: Vec<_> = table
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    assert_eq!(indexes, vec![erpsync_aws::dynamo::ATTENTION_INDEX]);
}

fn serde_yaml_value(mapping: &serde_yaml_ng::Mapping) -> serde_yaml_ng::Value {
    serde_yaml_ng::Value::Mapping(mapping.clone())
}

/// EventBridge Scheduler hands Lambda only the schedule's Input: each must be an event the
/// function parses, in a mode it knows.
#[test]
fn every_schedule_sends_an_event_its_function_understands() {
    use aws_lambda_events::event::eventbridge::EventBridgeEvent;
    let template = Template::project().unwrap_or_else(|e| panic!("{e:#}"));
    let mut schedules = 0;
    for function in template.resources_of("AWS::Serverless::Function") {
        let Some(serde_yaml_ng::Value::Mapping(events)) = function.properties.get("Events") else {
            continue;
        };
        for (name, event) in events {
            if event.get("Type").and_then(|t| t.as_str()) != Some("ScheduleV2") {
                continue;
            }
            schedules += 1;
            let input = event
                .get("Properties")
                .and_then(|p| p.get("Input"))
                .and_then(|i| i.as_str())
                .unwrap_or_else(|| panic!("{} {name:?} has no Input", function.logical_id));
            // Scheduler fills in its context attributes before sending.
            let input = input
                .replace(
                    "<aws.scheduler.execution-id>",
                    "d4a7a3c2-0000-4000-8000-000000000001",
                )
                .replace("<aws.scheduler.scheduled-time>", "2026-11-29T12:00:00Z");
            let parsed: EventBridgeEvent<Value> = serde_json::from_str(&input)
                .unwrap_or_else(|e| panic!("{} {name:?}: {e}", function.logical_id));
            let understood = match function.logical_id.as_str() {
                "StockSyncFunction" => serde_json::from_value::<
                    stock_sync::schedule_handler::StockRequest,
                >(parsed.detail)
                .map(|_| ()),
                "PriceSyncFunction" => serde_json::from_value::<
                    price_sync::schedule_handler::PriceRequest,
                >(parsed.detail)
                .map(|_| ()),
                _ => Ok(()),
            };
            assert!(
                understood.is_ok(),
                "{} {name:?}: {understood:?}",
                function.logical_id
            );
        }
    }
    assert_eq!(
        schedules, 6,
        "stock (full, changes), prices (full, changes), shipments, reconcile"
    );
}

/// `make lint` runs infra/lint/lint-template.sh: a template with a queue that lost its
/// dead-letter queue, or a wildcard IAM action, fails it, naming the rule.
#[test]
fn a_template_with_an_injected_fault_fails_the_lint() {
    let stack = erpsync_e2e::Stack::from_env().unwrap_or_else(|e| panic!("{e:#}"));
    let root = erpsync_tools::project_root();
    let original =
        std::fs::read_to_string(root.join("infra/template.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let lint = |name: &str, text: &str| {
        let path = stack.run_dir.join(name);
        std::fs::create_dir_all(&stack.run_dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        let output = std::process::Command::new(root.join("infra/lint/lint-template.sh"))
            .arg(&path)
            .current_dir(&root)
            .env("ERPSYNC_VENV", &stack.venv)
            .env("ERPSYNC", root.join("target/debug/erpsync"))
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let (passed, out) = lint("sound.yaml", &original);
    assert!(passed, "the project's template passes: {out}");

    let redrive = "      RedrivePolicy:\n        deadLetterTargetArn: !GetAtt ReturnsDeadLetterQueue.Arn\n        # A refund whose order is still on its way waits this long, like the order.\n        maxReceiveCount: !Ref OrdersMaxReceiveCount\n";
    assert!(
        original.contains(redrive),
        "the fault to inject is still there to remove"
    );
    let (passed, out) = lint("no-dlq.yaml", &original.replace(redrive, ""));
    assert!(!passed);
    assert!(
        out.contains("queue-has-dead-letter-queue") && out.contains("ReturnsQueue"),
        "{out}"
    );

    let action =
        "Action: [sqs:ChangeMessageVisibility]\n              Resource: !GetAtt ReturnsQueue.Arn";
    assert!(original.contains(action));
    let (passed, out) = lint(
        "wildcard.yaml",
        &original.replace(
            action,
            "Action: [\"sqs:*\"]\n              Resource: !GetAtt ReturnsQueue.Arn",
        ),
    );
    assert!(!passed);
    assert!(
        out.contains("no-wildcard-iam") && out.contains("sqs:*"),
        "{out}"
    );
}
