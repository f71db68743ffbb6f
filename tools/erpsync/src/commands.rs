//! The operator commands: what they print (a table for people, `--json` for scripts) and
//! the exit code a script can act on (0 fine, 1 something for a person, 2 could not run).

use std::process::ExitCode;

use erpsync_tools::ops::{self, Deployment, Selection, ago, table};
use erpsync_tools::template::Template;
use serde::Serialize;

/// Where the deployment is: the stage's resources, named from the template as SAM names
/// them, through the standard AWS configuration (profile, region, AWS_ENDPOINT_URL).
pub async fn deployment(stage: &str) -> anyhow::Result<Deployment> {
    let sdk = erpsync_aws::env::sdk_config().await;
    let template = Template::parse(include_str!("../../../infra/template.yaml"))?;
    Deployment::discover(&sdk, &template, stage).await
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn code(needs_a_person: bool) -> ExitCode {
    if needs_a_person {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

pub async fn dlq_list(
    deployment: &Deployment,
    flow: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let letters = ops::dead_letters(deployment, flow).await?;
    if json {
        print_json(&letters)?;
    } else if letters.is_empty() {
        println!("no parked messages");
    } else {
        let rows: Vec<Vec<String>> = letters
            .iter()
            .map(|l| {
                vec![
                    l.id.clone(),
                    l.flow.clone(),
                    l.entity.clone(),
                    format!("{}/{}", l.error_class, l.error_kind),
                    l.attempts.clone(),
                    ago(&l.first_failure),
                    ago(&l.last_failure),
                    l.reason.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "id", "flow", "entity", "error", "attempts", "first", "last", "reason"
                ],
                &rows
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn dlq_show(deployment: &Deployment, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let Some(letter) = ops::dead_letter(deployment, id).await? else {
        eprintln!("no parked message {id}");
        return Ok(ExitCode::from(1));
    };
    if json {
        print_json(&letter)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("message        {}", letter.id);
    println!(
        "queue          {} (from {})",
        letter.dead_letter_queue, letter.source_queue
    );
    println!("flow           {}", letter.flow);
    println!("entity         {}", letter.entity);
    println!(
        "error          {} / {}",
        letter.error_class, letter.error_kind
    );
    println!("attempts       {}", letter.attempts);
    println!("first failure  {}", letter.first_failure);
    println!("last failure   {}", letter.last_failure);
    println!("reason         {}", letter.reason);
    if let Some(group) = &letter.group_id {
        println!("group          {group}");
    }
    for (name, value) in &letter.source_attributes {
        println!("  {name:<13}{value}");
    }
    let pretty = serde_json::from_str::<serde_json::Value>(&letter.body)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| letter.body.clone());
    println!("payload\n{pretty}");
    Ok(ExitCode::SUCCESS)
}

pub async fn dlq_redrive(
    deployment: &Deployment,
    flow: Option<&str>,
    id: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let selection = match id {
        Some(id) => Selection::One(id),
        None => Selection::All { flow },
    };
    let total = match &selection {
        Selection::One(_) => 1,
        Selection::All { flow } => ops::dead_letters(deployment, *flow).await?.len(),
    };
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(u64::try_from(total).unwrap_or(0))
    };
    let moved = ops::redrive(deployment, selection, &|letter| {
        bar.set_message(letter.entity.clone());
        bar.inc(1);
    })
    .await?;
    bar.finish_and_clear();
    if json {
        print_json(&moved)?;
    } else {
        println!(
            "{} message(s) sent back to their queue; each takes effect once",
            moved.len()
        );
    }
    Ok(code(moved.is_empty()))
}

pub async fn dlq_discard(
    deployment: &Deployment,
    id: &str,
    reason: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let by = std::env::var("USER").unwrap_or_else(|_| "an operator".to_owned());
    let letter = ops::discard(deployment, id, reason, &by).await?;
    if json {
        print_json(&letter)?;
    } else {
        println!(
            "discarded {} ({}); recorded as resolved by {by}: {reason}",
            letter.id, letter.entity
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(deployment: &Deployment, json: bool) -> anyhow::Result<ExitCode> {
    let status = ops::status(deployment).await?;
    let parked = ops::parked(&status, deployment);
    let attention = status.needs_attention > 0 || parked > 0;
    if json {
        print_json(&status)?;
        return Ok(code(attention));
    }
    println!("Entities per flow and state:");
    let rows: Vec<Vec<String>> = status
        .counts
        .iter()
        .map(|(flow, states)| {
            vec![
                flow.clone(),
                states
                    .iter()
                    .map(|(state, n)| format!("{state} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    print!("{}", table(&["flow", "states"], &rows));
    println!("\nQueues:");
    let rows: Vec<Vec<String>> = status
        .queues
        .iter()
        .map(|q| {
            vec![
                q.queue.clone(),
                q.depth.to_string(),
                q.oldest.as_deref().map(ago).unwrap_or_default(),
            ]
        })
        .collect();
    print!("{}", table(&["queue", "waiting", "oldest"], &rows));
    println!("\nLast successful runs:");
    let rows: Vec<Vec<String>> = status
        .last_runs
        .iter()
        .map(|r| {
            vec![
                r.schedule.clone(),
                ago(&r.at),
                r.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!("{}", table(&["schedule", "when", "note"], &rows));
    println!("\nBackordered orders:");
    if status.backordered.is_empty() {
        println!("  none");
    }
    for line in &status.backordered {
        println!(
            "  {}  {}  {}",
            line.entity,
            line.erp_number.as_deref().unwrap_or("-"),
            line.note.as_deref().unwrap_or_default()
        );
    }
    println!(
        "\n{} need(s) attention, {parked} parked message(s): {}",
        status.needs_attention,
        if attention {
            "see `erpsync exceptions` and `erpsync dlq list`"
        } else {
            "all clear"
        }
    );
    Ok(code(attention))
}

pub async fn exceptions(deployment: &Deployment, json: bool) -> anyhow::Result<ExitCode> {
    let lines = ops::exceptions(deployment).await?;
    if json {
        print_json(&lines)?;
    } else if lines.is_empty() {
        println!("nothing needs attention");
    } else {
        for line in &lines {
            println!(
                "{}  {}  [{}]\n  {}",
                ago(&line.updated_at),
                line.entity,
                line.error_kind.as_deref().unwrap_or("-"),
                line.note.as_deref().unwrap_or_default()
            );
        }
    }
    Ok(code(!lines.is_empty()))
}
