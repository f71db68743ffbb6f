//! The local stack's parts: moto server and a seeded Tryton as child processes on free
//! loopback ports (stopped by PID, and killed if the owner drops them), and the AWS
//! resources of infra/template.yaml created in moto. moto enforces IAM: the stack acts as its
//! own identity; functions and operators as the roles of roles.rs.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType,
    SseSpecification, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value as Json;
use tokio::process::{Child, Command};

use crate::template::{Resolver, Template, json_scalar};

pub const REGION: &str = "eu-west-1";

/// Where the repo is: `ERPSYNC_ROOT`, else two levels above this crate (canonical where it
/// exists, so the paths the stack prints are plain).
pub fn project_root() -> PathBuf {
    let root = std::env::var_os("ERPSYNC_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    std::fs::canonicalize(&root).unwrap_or(root)
}

/// `.stack/` in the repo: the Python venv and the seeded Tryton template (`make setup`).
pub fn stack_dir() -> PathBuf {
    std::env::var_os("ERPSYNC_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join(".stack"))
}

pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// A child process owned by the stack: killed on `stop`, and on drop as a last resort.
pub struct Service {
    pub name: &'static str,
    child: Child,
}

impl Service {
    pub fn spawn(name: &'static str, command: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self { name, child })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Asks the process to stop (SIGTERM), waits up to `grace` for it, then kills it. For a
    /// process with children of its own (cargo lambda watch runs each function as one): it
    /// stops them on its way out, where a SIGKILL would leave them running.
    pub async fn terminate(&mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            // The `kill` command rather than libc: the workspace has no unsafe code.
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut ready: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < timeout {
        if ready().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    bail!("{what} was not ready within {timeout:?}")
}

/// Every call moto's IAM refused, one a line (in the log directory given to [`Moto::start`]).
pub const DENIALS_LOG: &str = "iam-denials.log";

/// The refusals in `log_dir`'s [`DENIALS_LOG`] that concern `stage`'s roles.
pub fn iam_denials(log_dir: &Path, stage: &str) -> Vec<String> {
    let role = format!("/erpsync-{stage}-");
    std::fs::read_to_string(log_dir.join(DENIALS_LOG))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(&role))
        .map(str::to_owned)
        .collect()
}

pub struct Moto {
    pub endpoint: String,
    service: Service,
}

impl Moto {
    pub async fn start(venv: &Path, log_dir: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        // moto_server, with its transactions' rollback made proportional to what they touch.
        let mut command = Command::new(venv.join("bin/python3"));
        command
            .arg(project_root().join("tools/erpsync/moto_server.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // IAM enforced from the first request: every call is signed by a known identity
            // and allowed by its policies (moto_server.py creates the stack's own identity),
            // with the AWS managed policies SAM attaches to the functions' roles known.
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "0")
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .env("ERPSYNC_IAM_DENIALS", log_dir.join(DENIALS_LOG));
        let service = Service::spawn("moto", &mut command, &log_dir.join("moto.log"))?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let probe = format!("{endpoint}/moto-api/");
        wait_until("moto server", Duration::from_secs(30), || {
            let request = http.get(&probe).send();
            async move { request.await.is_ok() }
        })
        .await?;
        Ok(Self { endpoint, service })
    }

    pub fn pid(&self) -> Option<u32> {
        self.service.pid()
    }

    pub async fn stop(&mut self) {
        self.service.stop().await;
    }
}

/// The stack's own identity in moto (moto_server.py creates it, allowed everything): what
/// creates the resources and the roles; the functions and the operator CLI never use it.
pub const STACK_ACCESS_KEY: &str = "local";

/// SDK configuration that reaches moto as the stack itself: loopback endpoint, its fixed key.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    sdk_config_as(
        endpoint,
        aws_sdk_sqs::config::Credentials::new(
            STACK_ACCESS_KEY,
            STACK_ACCESS_KEY,
            None,
            None,
            "erpsync-local",
        ),
    )
    .await
}

/// SDK configuration that reaches moto with `credentials` (e.g. an assumed role's).
pub async fn sdk_config_as(
    endpoint: &str,
    credentials: aws_sdk_sqs::config::Credentials,
) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(credentials)
        .load()
        .await
}

/// The environment a process needs to reach moto through the standard chain, with
/// `credentials` (e.g. [`crate::roles::RoleCredentials::environment`]).
pub fn aws_environment(
    endpoint: &str,
    credentials: Vec<(String, String)>,
) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", REGION),
        ("AWS_DEFAULT_REGION", REGION),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain(credentials)
    .collect()
}

/// A Tryton server on a private copy of the seeded database.
pub struct Tryton {
    pub url: String,
    pub database: String,
    pub api_key: String,
    /// The payments user's password (config [erp.rpc]).
    pub rpc_password: String,
    venv: PathBuf,
    config_file: PathBuf,
    log: PathBuf,
    service: Option<Service>,
}

impl Tryton {
    /// `template_dir` holds `erpsync.sqlite` and `api-key` (tools/erpsync/tryton/build-template.sh).
    pub async fn start(venv: &Path, template_dir: &Path, run_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(run_dir)?;
        let database = "erpsync".to_owned();
        std::fs::copy(
            template_dir.join("erpsync.sqlite"),
            run_dir.join("erpsync.sqlite"),
        )
        .with_context(|| {
            format!(
                "copying the seeded Tryton database from {} (run `make setup`)",
                template_dir.display()
            )
        })?;
        let api_key = std::fs::read_to_string(template_dir.join("api-key"))?
            .trim()
            .to_owned();
        let rpc_password = std::fs::read_to_string(template_dir.join("rpc-password"))
            .with_context(|| {
                format!(
                    "reading the payments user's password from {} (run `make setup` again)",
                    template_dir.display()
                )
            })?
            .trim()
            .to_owned();
        let port = free_port()?;
        let config_file = run_dir.join("trytond.conf");
        let run_dir_abs = std::fs::canonicalize(run_dir)?;
        std::fs::write(
            &config_file,
            format!(
                "[database]\nuri = sqlite://\npath = {}\n[web]\nlisten = 127.0.0.1:{port}\n",
                run_dir_abs.display()
            ),
        )?;
        let mut tryton = Self {
            url: format!("http://127.0.0.1:{port}"),
            database,
            api_key,
            rpc_password,
            venv: venv.to_owned(),
            config_file,
            log: run_dir.join("trytond.log"),
            service: None,
        };
        tryton.resume().await?;
        Ok(tryton)
    }

    pub fn pid(&self) -> Option<u32> {
        self.service.as_ref().and_then(Service::pid)
    }

    /// Stops the server (an outage); the database stays.
    pub async fn stop(&mut self) {
        if let Some(mut service) = self.service.take() {
            service.stop().await;
        }
    }

    /// Starts the server again on the same port and database.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new(self.venv.join("bin/trytond"));
        command
            .arg("-c")
            .arg(&self.config_file)
            .args(["-d", &self.database]);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting trytond")?;
        self.service = Some(Service {
            name: "tryton",
            child,
        });
        let http = reqwest::Client::new();
        let probe = format!("{}/{}/rest/model/company.company", self.url, self.database);
        let key = self.api_key.clone();
        wait_until("Tryton", Duration::from_secs(60), || {
            let request = http.get(&probe).bearer_auth(&key).send();
            async move { matches!(request.await, Ok(r) if r.status().is_success()) }
        })
        .await
    }
}

/// The AWS resources of the template, created in moto for one stage.
#[derive(Debug, Clone)]
pub struct LocalResources {
    pub stage: String,
    pub resolver: Resolver,
    /// Logical id -> queue URL.
    pub queue_urls: HashMap<String, String>,
    pub table: String,
}

impl LocalResources {
    pub fn queue_url(&self, logical_id: &str) -> anyhow::Result<&str> {
        self.queue_urls
            .get(logical_id)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("the template has no queue {logical_id}"))
    }

    pub fn queue_arn(&self, logical_id: &str) -> anyhow::Result<&str> {
        self.resolver
            .attributes
            .get(&format!("{logical_id}.Arn"))
            .map(String::as_str)
            .ok_or_else(|| anyhow!("the template has no queue {logical_id}"))
    }
}

/// Creates the template's queues (dead-letter queues first) and table, for `parameters`
/// (Stage at least) on top of the template's defaults.
pub async fn create_resources(
    sdk: &SdkConfig,
    template: &Template,
    parameters: HashMap<String, String>,
) -> anyhow::Result<LocalResources> {
    let mut resolver = Resolver {
        parameters: template.parameter_defaults(),
        numbers: template.number_parameters(),
        ..Resolver::default()
    };
    resolver.parameters.extend(parameters);
    let stage = resolver
        .parameters
        .get("Stage")
        .cloned()
        .unwrap_or_default();
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut queue_urls = HashMap::new();
    let mut pending = template.resources_of("AWS::SQS::Queue");
    while !pending.is_empty() {
        let before = pending.len();
        let mut postponed = Vec::new();
        for queue in pending {
            match resolver.resolve(&serde_yaml_ng::Value::Mapping(queue.properties.clone())) {
                Ok(properties) => {
                    let (url, arn) = create_queue(&sqs, &queue.logical_id, &properties).await?;
                    resolver.refs.insert(queue.logical_id.clone(), url.clone());
                    resolver
                        .attributes
                        .insert(format!("{}.Arn", queue.logical_id), arn);
                    queue_urls.insert(queue.logical_id, url);
                }
                // Refers to a queue not created yet (a redrive target): next pass.
                Err(_) => postponed.push(queue),
            }
        }
        if postponed.len() == before {
            let names: Vec<_> = postponed.iter().map(|q| q.logical_id.as_str()).collect();
            bail!("queues {names:?} refer to something the local stack cannot resolve");
        }
        pending = postponed;
    }
    let tables = template.resources_of("AWS::DynamoDB::Table");
    let [table] = tables.as_slice() else {
        bail!(
            "the template must declare exactly one DynamoDB table, found {}",
            tables.len()
        );
    };
    let properties = resolver.resolve(&serde_yaml_ng::Value::Mapping(table.properties.clone()))?;
    let table_name = create_table(&aws_sdk_dynamodb::Client::new(sdk), &properties).await?;
    resolver
        .refs
        .insert(table.logical_id.clone(), table_name.clone());
    resolver.attributes.insert(
        format!("{}.Arn", table.logical_id),
        format!("arn:aws:dynamodb:{REGION}:123456789012:table/{table_name}"),
    );
    Ok(LocalResources {
        stage,
        resolver,
        queue_urls,
        table: table_name,
    })
}

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    logical_id: &str,
    properties: &Json,
) -> anyhow::Result<(String, String)> {
    let name = properties["QueueName"]
        .as_str()
        .ok_or_else(|| anyhow!("queue {logical_id} has no QueueName"))?;
    let mut request = sqs.create_queue().queue_name(name);
    if let Json::Object(map) = properties {
        for (key, value) in map {
            if key == "QueueName" || key == "Tags" {
                continue;
            }
            let value = match value {
                Json::Object(_) => value.to_string(),
                other => json_scalar(other),
            };
            request = request.attributes(QueueAttributeName::from(key.as_str()), value);
        }
    }
    let url = request
        .send()
        .await
        .with_context(|| format!("creating queue {name}"))?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| anyhow!("queue {name} has no ARN"))?;
    Ok((url, arn))
}

fn key_schema(value: &Json) -> anyhow::Result<Vec<KeySchemaElement>> {
    value
        .as_array()
        .ok_or_else(|| anyhow!("KeySchema is not a list"))?
        .iter()
        .map(|k| {
            Ok(KeySchemaElement::builder()
                .attribute_name(k["AttributeName"].as_str().unwrap_or_default())
                .key_type(KeyType::from(k["KeyType"].as_str().unwrap_or_default()))
                .build()?)
        })
        .collect()
}

async fn create_table(
    dynamodb: &aws_sdk_dynamodb::Client,
    properties: &Json,
) -> anyhow::Result<String> {
    let name = properties["TableName"]
        .as_str()
        .ok_or_else(|| anyhow!("the table has no TableName"))?
        .to_owned();
    let mut request = dynamodb
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::from(
            properties["BillingMode"]
                .as_str()
                .unwrap_or("PAY_PER_REQUEST"),
        ))
        .set_key_schema(Some(key_schema(&properties["KeySchema"])?));
    for definition in properties["AttributeDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(definition["AttributeName"].as_str().unwrap_or_default())
                .attribute_type(ScalarAttributeType::from(
                    definition["AttributeType"].as_str().unwrap_or_default(),
                ))
                .build()?,
        );
    }
    for index in properties["GlobalSecondaryIndexes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index["IndexName"].as_str().unwrap_or_default())
                .set_key_schema(Some(key_schema(&index["KeySchema"])?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            index["Projection"]["ProjectionType"]
                                .as_str()
                                .unwrap_or("ALL"),
                        ))
                        .build(),
                )
                .build()?,
        );
    }
    if properties["SSESpecification"]["SSEEnabled"].as_bool() == Some(true) {
        request = request.sse_specification(SseSpecification::builder().enabled(true).build());
    }
    request
        .send()
        .await
        .with_context(|| format!("creating table {name}"))?;
    if let Some(attribute) = properties["TimeToLiveSpecification"]["AttributeName"].as_str() {
        dynamodb
            .update_time_to_live()
            .table_name(&name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attribute)
                    .enabled(true)
                    .build()?,
            )
            .send()
            .await
            .context("enabling TTL")?;
    }
    if properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool()
        == Some(true)
    {
        dynamodb
            .update_continuous_backups()
            .table_name(&name)
            .point_in_time_recovery_specification(
                PointInTimeRecoverySpecification::builder()
                    .point_in_time_recovery_enabled(true)
                    .build()?,
            )
            .send()
            .await
            .context("enabling point-in-time recovery")?;
    }
    Ok(name)
}

/// Creates or replaces a secret's value in (local) Secrets Manager.
pub async fn put_secret(sdk: &SdkConfig, name: &str, value: &str) -> anyhow::Result<()> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let created = client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await;
    if created.is_err() {
        client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .with_context(|| format!("writing secret {name}"))?;
    }
    Ok(())
}
