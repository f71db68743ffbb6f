//! `erpsync`: the operator CLI (dead-letter queues, status, exceptions, mapping, shadow
//! report) and the local stack (`stack run`, `stack up`, `demo`, `send order`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use erpsync_aws::dynamo::DynamoStore;
use erpsync_aws::secrets::SecretCache;
use erpsync_connectors::TrytonClient;
use erpsync_core::config::Config;
use erpsync_core::model::ids::ChannelId;
use erpsync_tools::shadow;
use erpsync_tools::stack::{Moto, Tryton, stack_dir};

mod commands;
mod demo;
mod send;
mod up;

#[derive(Parser)]
#[command(
    name = "erpsync",
    version,
    about = "erpsync operator CLI and local stack"
)]
struct Cli {
    /// The deployment's stage (resource names are `erpsync-<stage>-...`).
    #[arg(long, global = true, env = "ERPSYNC_STAGE", default_value = "prod")]
    stage: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The local stack: moto server and a seeded Tryton on free loopback ports.
    Stack {
        #[command(subcommand)]
        command: StackCommand,
    },
    /// Start the local stack, send signed webhooks through it, print what happened, stop.
    Demo,
    /// Send a signed webhook to the local stack (`erpsync stack up`), as a store would.
    Send {
        #[command(subcommand)]
        command: SendCommand,
    },
    /// Finance: the ERP's invoices and credit notes against the money recorded.
    Finance {
        #[command(subcommand)]
        command: FinanceCommand,
    },
    /// Shadow mode (dual running before go-live).
    Shadow {
        #[command(subcommand)]
        command: ShadowCommand,
    },
    /// The mapping configuration.
    Mapping {
        #[command(subcommand)]
        command: MappingCommand,
    },
    /// Messages parked in the dead-letter queues: what failed, why, and what to do.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Preflight before go-live: duplicate SKUs (ERP, each channel), channel SKUs unknown to
    /// the ERP, delivery methods and taxes of recent orders with no mapping, customers
    /// sharing an e-mail. Reads ERPSYNC_CONFIG and ERP_URL; secrets from Secrets Manager.
    /// Exit 1 when anything needs fixing.
    Audit {
        /// How many days of recent orders to check.
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long)]
        json: bool,
    },
    /// Puts the payload of an order that failed back on the orders queue (after fixing what
    /// made it fail). A version that already took effect changes nothing. Exit 1 when no
    /// payload is kept for the order.
    Replay {
        channel: String,
        order: String,
        #[arg(long)]
        json: bool,
    },
    /// The deployment template.
    Template {
        #[command(subcommand)]
        command: TemplateCommand,
    },
    /// Entities per flow and state, queues, last runs, backordered orders. Exit 1 when
    /// something needs a person.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Everything needing a person, newest first, with the action to take. Exit 1 if any.
    Exceptions {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TemplateCommand {
    /// Checks the policy rules (dead-letter queues, encryption, alarms, batch item failures,
    /// visibility timeouts, no wildcard IAM) on the CloudFormation SAM makes of the
    /// template (infra/lint/transform.py). Exit 1 when a rule is broken.
    Check {
        file: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// One row per parked message: flow, entity, reason, error class, attempts, first and
    /// last failure.
    List {
        #[arg(long)]
        flow: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A parked message: its attributes and payload.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Sends parked messages back to their queue (FIFO group kept); each takes effect once.
    Redrive {
        #[arg(long)]
        flow: Option<String>,
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        id: Option<String>,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Removes a parked message for good; sync state records who closed it and why.
    Discard {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum StackCommand {
    /// Start the stack, run COMMAND with its addresses in the environment, stop the stack.
    Run {
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
    /// The whole local deployment (stage `local`) until Ctrl-C: moto, the seeded Tryton, the
    /// sandbox stores, every function under `cargo lambda watch`, the event source mappings
    /// and the template's schedules at their rates. Prints the function URLs, the secrets,
    /// Tryton's address and the environment to export for the other commands.
    Up,
}

#[derive(Subcommand)]
enum SendCommand {
    /// A signed Shopify order webhook to shop-webhook; prints the answer. Exit 1 when it is
    /// not a 2xx.
    Order(send::SendOrder),
}

#[derive(Subcommand)]
enum ShadowCommand {
    /// Compare what shadow channels would have sent with the sales entered in the ERP.
    /// Exit code 0: no differences; 1: differences; 2: could not run. Reads ERPSYNC_CONFIG,
    /// TABLE_NAME and ERP_URL, and AWS through the standard configuration.
    Report {
        #[arg(long)]
        channel: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum FinanceCommand {
    /// Per order of the period (sale date), shop money recorded (payments in, refunds out)
    /// against what the ERP invoiced and credited, every variance named: missing payment,
    /// amount differs, invoice or credit note not settled, payment not succeeded, money
    /// erpsync could not book. Totals per channel and currency. Exit 0: clean; 1: variances;
    /// 2: could not run. Reads ERPSYNC_CONFIG, TABLE_NAME and ERP_URL.
    Report {
        /// First day, YYYY-MM-DD.
        #[arg(long)]
        from: String,
        /// Last day, YYYY-MM-DD (included).
        #[arg(long)]
        to: String,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV for accountants: one row per order.
        #[arg(long)]
        csv: bool,
    },
}

#[derive(Subcommand)]
enum MappingCommand {
    /// Validate a config file exactly as the functions do at cold start. Exit 1 if invalid.
    Check {
        file: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The integration's logic as Markdown (flows and triggers, ownership, every mapping
    /// table, schedules, modes per channel), generated from the config.
    Docs {
        file: std::path::PathBuf,
        /// Write it here instead of to standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Stack {
            command: StackCommand::Run { command },
        } => stack_run(command).await,
        Command::Stack {
            command: StackCommand::Up,
        } => up::run().await,
        Command::Demo => demo::run().await.map(|()| ExitCode::SUCCESS),
        Command::Send {
            command: SendCommand::Order(args),
        } => send::order(args).await,
        Command::Mapping {
            command: MappingCommand::Check { file, json },
        } => mapping_check(&file, json),
        Command::Mapping {
            command: MappingCommand::Docs { file, out },
        } => mapping_docs(&file, out.as_deref()),
        Command::Shadow {
            command: ShadowCommand::Report { channel, json },
        } => shadow_report(channel, json).await,
        Command::Finance {
            command:
                FinanceCommand::Report {
                    from,
                    to,
                    channel,
                    json,
                    csv,
                },
        } => finance_report(&from, &to, channel.as_deref(), json, csv).await,
        Command::Dlq { command } => dlq(&cli.stage, command).await,
        Command::Audit { days, json } => audit(days, json).await,
        Command::Replay {
            channel,
            order,
            json,
        } => replay(&cli.stage, &channel, &order, json).await,
        Command::Template {
            command: TemplateCommand::Check { file, json },
        } => template_check(&file, json),
        Command::Status { json } => match commands::deployment(&cli.stage).await {
            Ok(deployment) => commands::status(&deployment, json).await,
            Err(error) => Err(error),
        },
        Command::Exceptions { json } => match commands::deployment(&cli.stage).await {
            Ok(deployment) => commands::exceptions(&deployment, json).await,
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("erpsync: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn dlq(stage: &str, command: DlqCommand) -> anyhow::Result<ExitCode> {
    let deployment = commands::deployment(stage).await?;
    match command {
        DlqCommand::List { flow, json } => {
            commands::dlq_list(&deployment, flow.as_deref(), json).await
        }
        DlqCommand::Show { id, json } => commands::dlq_show(&deployment, &id, json).await,
        DlqCommand::Redrive {
            flow,
            id,
            all: _,
            json,
        } => commands::dlq_redrive(&deployment, flow.as_deref(), id.as_deref(), json).await,
        DlqCommand::Discard { id, reason, json } => {
            commands::dlq_discard(&deployment, &id, &reason, json).await
        }
    }
}

fn template_check(file: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let template: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let violations = erpsync_tools::policy::check(&template);
    if json {
        println!("{}", serde_json::to_string_pretty(&violations)?);
    } else if violations.is_empty() {
        println!("{}: every policy rule holds", file.display());
    } else {
        for violation in &violations {
            eprintln!(
                "{}: [{}] {} {}",
                file.display(),
                violation.rule,
                violation.resource,
                violation.message
            );
        }
    }
    Ok(if violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn mapping_docs(file: &std::path::Path, out: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let config = match Config::from_toml(&text) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{}: {error}", file.display());
            return Ok(ExitCode::from(1));
        }
    };
    let template =
        erpsync_tools::template::Template::parse(include_str!("../../../infra/template.yaml"))?;
    let docs = erpsync_tools::docs::mapping_docs(&config, &template, &file.display().to_string());
    match out {
        Some(path) => {
            std::fs::write(path, docs).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{docs}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn mapping_check(file: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let result = Config::from_toml(&text);
    if json {
        let answer = match &result {
            Ok(config) => {
                serde_json::json!({"file": file, "valid": true, "channels": config.channels.len()})
            }
            Err(error) => {
                serde_json::json!({"file": file, "valid": false, "error": error.to_string()})
            }
        };
        println!("{answer}");
    } else {
        match &result {
            Ok(config) => println!(
                "{}: valid ({} channels)",
                file.display(),
                config.channels.len()
            ),
            Err(error) => eprintln!("{}: {error}", file.display()),
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn replay(stage: &str, channel: &str, order: &str, json: bool) -> anyhow::Result<ExitCode> {
    let channel = ChannelId::parse(channel)?;
    let deployment = commands::deployment(stage).await?;
    let sent = erpsync_tools::ops::replay(&deployment, &channel, order).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"channel": channel.as_str(), "order": order, "message_id": sent})
        );
    } else {
        match &sent {
            Some(id) => {
                println!("order {order} of {channel} is on the orders queue again (message {id})")
            }
            None => eprintln!("no payload is kept for order {order} of {channel}"),
        }
    }
    Ok(if sent.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn audit(days: u32, json: bool) -> anyhow::Result<ExitCode> {
    let config = erpsync_aws::env::load_config()?;
    let sdk = erpsync_aws::env::sdk_config().await;
    let secrets = SecretCache::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        std::time::Duration::from_secs(300),
    );
    let key = secrets.current(&config.erp.api_key_secret).await?;
    let erp = TrytonClient::new(
        &erpsync_aws::env::required("ERP_URL")?,
        key,
        config.erp.clone(),
    )?;
    let tokens = &secrets;
    let shops = erpsync_connectors::shopify::admin_clients(
        &config,
        |c| c.admin_api.is_some(),
        |name| async move { tokens.current(&name).await.map_err(anyhow::Error::from) },
    )
    .await?;
    let since = time::OffsetDateTime::now_utc() - time::Duration::days(i64::from(days));
    let spinner = if json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let report = erpsync_tools::audit::audit(&config, &erp, &shops, since, &|what| {
        spinner.set_message(format!("reading {what}"));
    })
    .await?;
    spinner.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", erpsync_tools::audit::render(&report));
    }
    Ok(if report.findings() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn finance_report(
    from: &str,
    to: &str,
    channel: Option<&str>,
    json: bool,
    csv: bool,
) -> anyhow::Result<ExitCode> {
    let day = |text: &str, flag: &str| {
        time::Date::parse(
            text,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .with_context(|| format!("--{flag} {text:?} is not a date (YYYY-MM-DD)"))
    };
    let (from, to) = (day(from, "from")?, day(to, "to")?);
    anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
    let config = erpsync_aws::env::load_config()?;
    let sdk = erpsync_aws::env::sdk_config().await;
    let secrets = SecretCache::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        std::time::Duration::from_secs(300),
    );
    let key = secrets.current(&config.erp.api_key_secret).await?;
    let erp = TrytonClient::new(
        &erpsync_aws::env::required("ERP_URL")?,
        key,
        config.erp.clone(),
    )?;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        erpsync_aws::env::required("TABLE_NAME")?,
    );
    let progress = if json || csv {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    progress.enable_steady_tick(std::time::Duration::from_millis(120));
    let report =
        erpsync_tools::finance::report(&config, &erp, &store, channel, from, to, &|what| {
            progress.set_message(format!("reading {what}'s sales, invoices and payments"));
        })
        .await?;
    progress.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if csv {
        print!("{}", erpsync_tools::finance::to_csv(&report)?);
    } else {
        print!("{}", erpsync_tools::finance::render(&report));
    }
    Ok(if report.variances() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn shadow_report(channel: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let config = erpsync_aws::env::load_config()?;
    let channel = channel.map(|c| ChannelId::parse(&c)).transpose()?;
    let sdk = erpsync_aws::env::sdk_config().await;
    let secrets = SecretCache::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        std::time::Duration::from_secs(300),
    );
    let key = secrets.current(&config.erp.api_key_secret).await?;
    let erp = TrytonClient::new(
        &erpsync_aws::env::required("ERP_URL")?,
        key,
        config.erp.clone(),
    )?;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        erpsync_aws::env::required("TABLE_NAME")?,
    );
    let comparisons = shadow::report(&store, &erp, channel.as_ref()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&comparisons)?);
    } else {
        print!("{}", shadow::render(&comparisons));
    }
    let different = comparisons.iter().any(|c| !c.differences.is_empty());
    Ok(if different {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn stack_run(command: Vec<String>) -> anyhow::Result<ExitCode> {
    let dir = stack_dir();
    let venv = dir.join("venv");
    let template = dir.join("tryton-template");
    let run_dir = dir.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir)?;
    let mut moto = Moto::start(&venv, &run_dir).await?;
    let mut tryton = Tryton::start(&venv, &template, &run_dir.join("tryton")).await?;
    eprintln!(
        "erpsync stack: moto {} (pid {:?}), Tryton {} (pid {:?})",
        moto.endpoint,
        moto.pid(),
        tryton.url,
        tryton.pid()
    );
    let environment = BTreeMap::from([
        ("ERPSYNC_TEST_AWS_ENDPOINT", moto.endpoint.clone()),
        ("ERPSYNC_TEST_TRYTON_URL", tryton.url.clone()),
        ("ERPSYNC_TEST_TRYTON_KEY", tryton.api_key.clone()),
        (
            "ERPSYNC_TEST_TRYTON_RPC_PASSWORD",
            tryton.rpc_password.clone(),
        ),
        ("ERPSYNC_VENV", venv.display().to_string()),
        ("ERPSYNC_TRYTON_TEMPLATE", template.display().to_string()),
        ("ERPSYNC_RUN_DIR", run_dir.display().to_string()),
    ]);
    let (program, args) = command.split_first().context("no command to run")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(environment)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let status = tokio::select! {
        status = child.wait() => status?,
        _ = tokio::signal::ctrl_c() => {
            let _ = child.kill().await;
            child.wait().await?
        }
    };
    tryton.stop().await;
    moto.stop().await;
    if status.success() {
        let _ = std::fs::remove_dir_all(&run_dir);
    } else {
        eprintln!("erpsync stack: logs kept in {}", run_dir.display());
    }
    Ok(ExitCode::from(
        u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
    ))
}
