//! `erpsync stack up`: the whole local deployment running until Ctrl-C. The stack `make demo`
//! runs (moto, the seeded Tryton, the sandbox stores, every function under `cargo lambda
//! watch`), with the template's event source mappings polling and its schedules firing at their
//! rates, and what another terminal needs to use it printed (and written to an env file).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use erpsync_core::config::Platform;
use erpsync_tools::local::{COURIER_SECRET, LocalStack, SHOPS};
use erpsync_tools::roles::OPERATOR;
use erpsync_tools::schedules::Schedule;
use erpsync_tools::stack::{REGION, aws_environment, iam_denials, project_root, stack_dir};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

/// The stage `stack up` deploys: resource names are `erpsync-local-...`.
pub const STAGE: &str = "local";

/// The env file of the latest `stack up`, for `source` in another terminal.
pub fn env_file() -> PathBuf {
    stack_dir().join("up.env")
}

/// The variable `erpsync send order` reads a channel's webhook secret from.
pub fn secret_variable(channel: &str) -> String {
    format!("ERPSYNC_WEBHOOK_SECRET_{}", shell_name(channel))
}

/// The variable holding the port of the `cargo lambda watch` serving `binary`.
fn invoke_port_variable(binary: &str) -> String {
    format!("ERPSYNC_INVOKE_PORT_{}", shell_name(binary))
}

fn shell_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// `'value'`, safe in any POSIX shell.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

pub async fn run() -> anyhow::Result<ExitCode> {
    let root = project_root();
    let run_dir = stack_dir().join(format!("up-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    log_to(&run_dir.join("stack-up.log"))?;
    // Listening from the start: an interrupt while the stack starts drops what has started
    // (each part is killed as it is dropped) rather than leaving it behind.
    let mut interrupted = tokio::spawn(interrupt());
    println!(
        "erpsync stack up: starting moto, Tryton, the sandbox stores and the functions (cargo lambda watch) on loopback; logs in {}",
        run_dir.display()
    );
    let started = tokio::select! {
        started = LocalStack::start(&root, &run_dir, STAGE) => started,
        _ = &mut interrupted => {
            println!("erpsync stack up: interrupted while starting; logs in {}", run_dir.display());
            return Ok(ExitCode::SUCCESS);
        }
    };
    let mut stack = match started {
        Ok(stack) => stack,
        Err(error) => {
            eprintln!("erpsync stack up: logs kept in {}", run_dir.display());
            return Err(error);
        }
    };
    let served = serve(&run_dir, &stack, interrupted).await;
    println!("\nerpsync stack up: stopping...");
    stack.stop().await;
    // Only our own: another `stack up` may have written the file since.
    if std::fs::read_to_string(env_file())
        .is_ok_and(|text| text.contains(&*run_dir.to_string_lossy()))
    {
        let _ = std::fs::remove_file(env_file());
    }
    let refused = iam_denials(&run_dir, STAGE);
    if !refused.is_empty() {
        eprintln!(
            "IAM refused {} call(s) (see {}):\n  {}",
            refused.len(),
            run_dir.join(erpsync_tools::stack::DENIALS_LOG).display(),
            refused.join("\n  ")
        );
    }
    println!(
        "erpsync stack up: stopped; logs kept in {}",
        run_dir.display()
    );
    served.map(|()| ExitCode::SUCCESS)
}

/// Tracing (the event source mappings, the schedules) goes to the run's log, not the terminal.
fn log_to(path: &Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,erpsync=info,erpsync_tools=info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .try_init()
        .map_err(|e| anyhow::anyhow!("logging: {e}"))
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn interrupt() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        signal = tokio::signal::ctrl_c() => signal.context("listening for Ctrl-C"),
        _ = terminate.recv() => Ok(()),
    }
}

/// Runs the event source mappings and the schedules until `interrupted` resolves.
async fn serve(
    run_dir: &Path,
    stack: &LocalStack,
    interrupted: tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let template = &stack.deployment.template;
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let triggers = template.sqs_triggers()?;
    for trigger in &triggers {
        let mapping = stack.mapping_of(trigger).await?;
        tasks.spawn(mapping.run(stopped.clone()));
    }
    let schedules = template.schedules()?;
    for schedule in &schedules {
        let base = stack.functions.base(&schedule.function)?.to_owned();
        tasks.spawn(fire_every(schedule.clone(), base, stopped.clone()));
    }
    let environment = environment(stack)?;
    let mut env_text = format!("# erpsync stack up ({}): source me\n", run_dir.display());
    for (name, value) in &environment {
        writeln!(env_text, "{}", export_line(name, value))?;
    }
    std::fs::write(env_file(), &env_text)
        .with_context(|| format!("writing {}", env_file().display()))?;
    print!(
        "{}",
        block(stack, &triggers, &schedules, &environment, run_dir)?
    );

    let waited = interrupted.await;
    let _ = stop.send(true);
    // A schedule's run in flight is cut short: the stack is going away under it anyway.
    if tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tasks.abort_all();
    }
    waited.context("waiting for Ctrl-C")?
}

/// Fires `schedule` at its rate, the first time at once (as a schedule just created),
/// invoking its function with the EventBridge event Scheduler sends. Each fire is its own
/// task, so a long run never delays the next: Scheduler invokes its target at every
/// scheduled time (with 60 s precision) whether or not the last run ended
/// (docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html), which is what the
/// template's reserved concurrency on the scheduled functions is for.
async fn fire_every(schedule: Schedule, base: String, mut stop: watch::Receiver<bool>) {
    let http = reqwest::Client::new();
    let mut ticks = tokio::time::interval(schedule.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut runs = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = ticks.tick() => {}
        }
        let (schedule, base, http) = (schedule.clone(), base.clone(), http.clone());
        runs.spawn(async move {
            match schedule.fire(&http, &base).await {
                Ok(answer) => info!(schedule = %schedule.name, %answer, "schedule fired"),
                Err(error) => {
                    warn!(schedule = %schedule.name, error = %format!("{error:#}"), "schedule failed")
                }
            }
        });
        // Finished runs are collected as they end, so the set holds only those in flight.
        while runs.try_join_next().is_some() {}
    }
    // A run in flight is cut short: the stack is going away under it anyway.
    runs.abort_all();
}

/// What another terminal needs: AWS as the operator (the template's `OperatorPolicy`), the
/// stage, the config and the ERP (`audit`, `shadow report`), the function URLs and webhook
/// secrets (`send order`), each function's invoke port (`cargo lambda invoke`), and the
/// binaries on PATH.
fn environment(stack: &LocalStack) -> anyhow::Result<BTreeMap<String, String>> {
    let deployment = &stack.deployment;
    let operator = deployment.roles.get(OPERATOR)?;
    let mut environment: BTreeMap<String, String> =
        aws_environment(&stack.moto.endpoint, operator.environment())
            .into_iter()
            .collect();
    environment.insert("ERPSYNC_STAGE".to_owned(), STAGE.to_owned());
    environment.insert(
        "ERPSYNC_CONFIG".to_owned(),
        deployment.config_path.display().to_string(),
    );
    environment.insert("ERP_URL".to_owned(), stack.tryton.url.clone());
    environment.insert("TABLE_NAME".to_owned(), deployment.resources.table.clone());
    environment.insert(
        "ERPSYNC_TRYTON_KEY".to_owned(),
        stack.tryton.api_key.clone(),
    );
    environment.insert(
        "ERPSYNC_SHOP_WEBHOOK_URL".to_owned(),
        stack.functions.url("shop-webhook")?,
    );
    environment.insert(
        "ERPSYNC_COURIER_WEBHOOK_URL".to_owned(),
        stack.functions.url("courier-webhook")?,
    );
    for (channel, secret) in &deployment.webhook_secrets {
        environment.insert(secret_variable(channel), secret.clone());
    }
    environment.insert(
        "ERPSYNC_COURIER_WEBHOOK_SECRET".to_owned(),
        COURIER_SECRET.to_owned(),
    );
    for (binary, base) in stack.functions.bases() {
        let port = base.rsplit(':').next().unwrap_or_default();
        environment.insert(invoke_port_variable(binary), port.to_owned());
    }
    // This erpsync and cargo-lambda (the stack's venv) first.
    let mut path = Vec::new();
    if let Some(dir) = std::env::current_exe()?.parent() {
        path.push(dir.display().to_string());
    }
    path.push(stack_dir().join("venv/bin").display().to_string());
    environment.insert("PATH".to_owned(), path.join(":"));
    Ok(environment)
}

fn export_line(name: &str, value: &str) -> String {
    if name == "PATH" {
        format!("export PATH={}:\"$PATH\"", quoted(value))
    } else {
        format!("export {name}={}", quoted(value))
    }
}

/// The block printed once everything answers.
fn block(
    stack: &LocalStack,
    triggers: &[erpsync_tools::esm::SqsTrigger],
    schedules: &[Schedule],
    environment: &BTreeMap<String, String>,
    run_dir: &Path,
) -> anyhow::Result<String> {
    let deployment = &stack.deployment;
    let functions = &stack.functions;
    let mut out = String::new();
    writeln!(
        out,
        "\nerpsync stack up: running, stage {STAGE}. Ctrl-C stops everything.\n"
    )?;
    writeln!(out, "Function URLs")?;
    for binary in ["shop-webhook", "courier-webhook"] {
        writeln!(out, "  {binary:<16} {}", functions.url(binary)?)?;
    }
    writeln!(out, "\nWebhook secrets")?;
    for channel in &deployment.config.channels {
        let platform = match channel.platform {
            Platform::Shopify => "shopify",
            Platform::Woocommerce => "woocommerce",
        };
        writeln!(
            out,
            "  {:<9} {:<26} {:<12} {}",
            channel.id.as_str(),
            channel.shop_domain,
            platform,
            deployment.webhook_secret(channel.id.as_str())
        )?;
    }
    if deployment.config.courier.is_some() {
        writeln!(
            out,
            "  {:<9} {:<39} {COURIER_SECRET}",
            "courier", "EasyPost"
        )?;
    }
    writeln!(out, "\nTryton (the ERP)")?;
    writeln!(out, "  URL       {}", stack.tryton.url)?;
    writeln!(out, "  database  {}", stack.tryton.database)?;
    writeln!(out, "  user      admin, password admin")?;
    writeln!(
        out,
        "  REST key  {} (Authorization: Bearer; {}/{}/rest/model/<model>)",
        stack.tryton.api_key, stack.tryton.url, stack.tryton.database
    )?;
    writeln!(out, "\nSandbox stores (Shopify Admin API)")?;
    for (domain, location) in SHOPS {
        writeln!(
            out,
            "  {domain:<26} {} (location {location})",
            deployment.sandbox.admin_url(domain)
        )?;
    }
    writeln!(out, "\nAWS (moto)  {}", stack.moto.endpoint)?;
    writeln!(out, "\nFunctions (cargo lambda watch; invoke on 127.0.0.1)")?;
    let mut by_base: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (binary, base) in functions.bases() {
        by_base.entry(base).or_default().push(binary);
    }
    for (base, binaries) in by_base {
        writeln!(out, "  {base}  {}", binaries.join(" "))?;
    }
    writeln!(out, "\nEvent source mappings")?;
    for trigger in triggers {
        writeln!(
            out,
            "  {:<18} -> {:<14} batch {}",
            trigger.queue, trigger.binary, trigger.batch_size
        )?;
    }
    writeln!(
        out,
        "\nSchedules of infra/template.yaml (each fired now, then at its rate)"
    )?;
    for schedule in schedules {
        writeln!(
            out,
            "  {:<32} {:<14} every {}",
            schedule.name,
            schedule.function,
            every(schedule.every)
        )?;
    }
    writeln!(
        out,
        "\nIn another terminal: source {}\n(or paste these)",
        env_file().display()
    )?;
    for (name, value) in environment {
        writeln!(out, "{}", export_line(name, value))?;
    }
    writeln!(out, "\nLogs: {}", run_dir.display())?;
    writeln!(out, "erpsync stack up: ready (AWS region {REGION})")?;
    Ok(out)
}

fn every(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_values_survive_the_shell_quoted() {
        assert_eq!(quoted("démo-easypost-secret"), "'démo-easypost-secret'");
        assert_eq!(quoted("it's"), r"'it'\''s'");
        assert_eq!(
            export_line("PATH", "/a b:/c"),
            "export PATH='/a b:/c':\"$PATH\""
        );
        assert_eq!(secret_variable("uk-shop"), "ERPSYNC_WEBHOOK_SECRET_UK_SHOP");
        assert_eq!(every(Duration::from_secs(300)), "5 min");
        assert_eq!(every(Duration::from_secs(3600)), "1 h");
    }
}
