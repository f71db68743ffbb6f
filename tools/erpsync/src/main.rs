//! `erpsync`: the operator CLI. For now: the local stack (`stack run`), the demo, and
//! `mapping check`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use erpsync_core::config::Config;
use erpsync_tools::stack::{Moto, Tryton, stack_dir};

mod demo;

#[derive(Parser)]
#[command(
    name = "erpsync",
    version,
    about = "erpsync operator CLI and local stack"
)]
struct Cli {
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
    /// The mapping configuration.
    Mapping {
        #[command(subcommand)]
        command: MappingCommand,
    },
}

#[derive(Subcommand)]
enum StackCommand {
    /// Start the stack, run COMMAND with its addresses in the environment, stop the stack.
    Run {
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Subcommand)]
enum MappingCommand {
    /// Validate a config file exactly as the functions do at cold start.
    Check { file: std::path::PathBuf },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Stack {
            command: StackCommand::Run { command },
        } => stack_run(command).await,
        Command::Demo => demo::run().await.map(|()| ExitCode::SUCCESS),
        Command::Mapping {
            command: MappingCommand::Check { file },
        } => mapping_check(&file),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("erpsync: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn mapping_check(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    match Config::from_toml(&text) {
        Ok(config) => {
            println!(
                "{}: valid ({} channels)",
                file.display(),
                config.channels.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{}: {error}", file.display());
            Ok(ExitCode::from(1))
        }
    }
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
