//! A local deployment of the template on the local stack: the two demo stores in the Shopify
//! sandbox, the example config pointed at them, the template's queues and table in moto, the
//! secrets, and each function's environment as the template gives it. `make demo` and
//! `make bench` run the real function binaries against it; `make demo` and `erpsync stack up`
//! run the whole of it ([`LocalStack`]), the functions under `cargo lambda watch`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_config::SdkConfig;
use erpsync_core::config::Config;
use sandbox::{Plan, Sandbox, ShopSetup};
use tokio::process::Command;

use crate::esm::{EventSourceMapping, HttpInvoker, SqsTrigger};
use crate::roles::{StageRoles, create_roles};
use crate::stack::{
    LocalResources, Moto, Service, Tryton, aws_environment, create_resources, free_port,
    put_secret, sdk_config, stack_dir,
};
use crate::template::{Function, Template};

/// The demo's two Shopify stores in the sandbox: their domains and the location each has.
pub const SHOPS: [(&str, &str); 2] = [
    ("erpsync-uk.myshopify.com", "gid://shopify/Location/1"),
    ("erpsync-eu.myshopify.com", "gid://shopify/Location/2"),
];
pub const SKUS: [&str; 5] = [
    "IPOD2008GREEN",
    "IPOD2008RED",
    "IPOD2008BLACK",
    "WOOL-SOCKS",
    "IPOD-TRIO",
];
/// The courier's webhook secret: accented, as EasyPost normalises it (NFKD).
pub const COURIER_SECRET: &str = "démo-easypost-secret";

pub struct LocalDeployment {
    pub sdk: SdkConfig,
    pub sandbox: Sandbox,
    pub config: Config,
    pub config_path: PathBuf,
    pub template: Template,
    pub resources: LocalResources,
    /// Each function's role (and the operator's), as the template declares them, assumed.
    pub roles: StageRoles,
    run_dir: PathBuf,
    /// Channel id -> its webhook secret.
    pub webhook_secrets: HashMap<String, String>,
}

impl LocalDeployment {
    /// Deploys stage `stage` on moto (through `sdk`) and `tryton`, with the example config
    /// written to `run_dir`.
    pub async fn start(
        root: &Path,
        run_dir: &Path,
        sdk: SdkConfig,
        tryton: &Tryton,
        stage: &str,
    ) -> anyhow::Result<Self> {
        // The shops' Admin API is the sandbox's: the config is the example with its store
        // URLs pointed there.
        let sandbox = Sandbox::start("127.0.0.1:0").await?;
        let mut config_text = std::fs::read_to_string(root.join("config/erpsync.example.toml"))?;
        for (domain, location) in SHOPS {
            sandbox.shops.add(ShopSetup::with_skus(
                domain,
                location,
                &SKUS,
                Plan::Standard.bucket_size(),
                Plan::Standard.restore_rate(),
            ));
            config_text =
                config_text.replace(&format!("https://{domain}"), &sandbox.admin_url(domain));
        }
        let config_path = run_dir.join("erpsync.toml");
        std::fs::write(&config_path, &config_text)?;
        let config = Config::from_toml(&config_text)?;
        let template = Template::project()?;
        let parameters = HashMap::from([
            ("Stage".to_owned(), stage.to_owned()),
            ("ErpUrl".to_owned(), tryton.url.clone()),
            ("ConfigPath".to_owned(), config_path.display().to_string()),
        ]);
        let resources = create_resources(&sdk, &template, parameters).await?;
        let roles = create_roles(&sdk, &resources).await?;
        put_secret(&sdk, &config.erp.api_key_secret, &tryton.api_key).await?;
        if let Some(rpc) = &config.erp.rpc {
            put_secret(&sdk, &rpc.password_secret, &tryton.rpc_password).await?;
        }
        let mut webhook_secrets = HashMap::new();
        for channel in &config.channels {
            let secret = format!("{stage}-webhook-secret-{}", channel.id);
            put_secret(&sdk, &channel.webhook_secret, &secret).await?;
            webhook_secrets.insert(channel.id.to_string(), secret);
            if let Some(api) = &channel.admin_api {
                let domain = SHOPS
                    .iter()
                    .find(|(d, _)| api.url.ends_with(d))
                    .map(|(d, _)| *d)
                    .unwrap_or_default();
                put_secret(&sdk, &api.access_token_secret, &format!("shpat_{domain}")).await?;
            }
        }
        if let Some(courier) = &config.courier {
            put_secret(&sdk, &courier.webhook_secret, COURIER_SECRET).await?;
        }
        Ok(Self {
            sdk,
            sandbox,
            config,
            config_path,
            template,
            resources,
            roles,
            run_dir: run_dir.to_owned(),
            webhook_secrets,
        })
    }

    /// The environment the template gives `functions` (logical ids), with AWS reached at
    /// `aws_endpoint` through the standard chain, each function as its own role. One function
    /// gets its role's credentials as the standard variables. Several served by one process
    /// (cargo lambda watch, whose functions share its environment) get a profile whose
    /// `credential_process` prints the role of the function it runs in: cargo lambda sets
    /// `AWS_LAMBDA_FUNCTION_NAME` to the function's binary, and a credentials file per
    /// binary is written under the run directory.
    pub fn environment(
        &self,
        functions: &[&str],
        aws_endpoint: &str,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let credentials = match functions {
            [function] => self.roles.get(function)?.environment(),
            _ => self.credential_process(functions)?,
        };
        let mut environment: BTreeMap<String, String> = aws_environment(aws_endpoint, credentials)
            .into_iter()
            .collect();
        for function in functions {
            environment.extend(
                self.template
                    .function_environment(function, &self.resources.resolver)
                    .with_context(|| format!("the environment of {function}"))?,
            );
        }
        Ok(environment)
    }

    /// The shared AWS config of `functions` served together (see [`Self::environment`]).
    fn credential_process(&self, functions: &[&str]) -> anyhow::Result<Vec<(String, String)>> {
        let directory = self.run_dir.join("credentials");
        std::fs::create_dir_all(&directory)?;
        for function in functions {
            let binary = self
                .template
                .resources()
                .into_iter()
                .find(|r| r.logical_id == *function)
                .and_then(|r| r.binary().map(str::to_owned))
                .with_context(|| format!("{function} names no Binary in its Metadata"))?;
            std::fs::write(
                directory.join(format!("{binary}.json")),
                self.roles.get(function)?.process_output(),
            )?;
        }
        let config = self.run_dir.join("aws-config");
        // A function not written above finds no file: its SDK calls fail, loudly.
        std::fs::write(
            &config,
            format!(
                "[default]\ncredential_process = cat \"{}/$AWS_LAMBDA_FUNCTION_NAME.json\"\n",
                directory.display()
            ),
        )?;
        let empty = self.run_dir.join("aws-credentials");
        std::fs::write(&empty, "")?;
        Ok(vec![
            ("AWS_CONFIG_FILE".to_owned(), config.display().to_string()),
            (
                "AWS_SHARED_CREDENTIALS_FILE".to_owned(),
                empty.display().to_string(),
            ),
        ])
    }

    pub fn webhook_secret(&self, channel: &str) -> String {
        self.webhook_secrets
            .get(channel)
            .cloned()
            .unwrap_or_default()
    }

    /// The template's functions in groups whose environments agree, in template order. One
    /// `cargo lambda watch` gives every function it serves one environment, and the template
    /// gives some functions one variable with different values (`MAX_RECEIVE_COUNT`, each
    /// its own queue's), so each group gets a watch of its own.
    pub fn environment_groups(&self) -> anyhow::Result<Vec<Vec<Function>>> {
        let mut groups: Vec<(BTreeMap<String, String>, Vec<Function>)> = Vec::new();
        for function in self.template.functions()? {
            let own = self
                .template
                .function_environment(&function.logical_id, &self.resources.resolver)
                .with_context(|| format!("the environment of {}", function.logical_id))?;
            let agrees = |shared: &BTreeMap<String, String>| {
                own.iter()
                    .all(|(name, value)| shared.get(name).is_none_or(|v| v == value))
            };
            match groups.iter_mut().find(|(shared, _)| agrees(shared)) {
                Some((shared, members)) => {
                    shared.extend(own);
                    members.push(function);
                }
                None => groups.push((own, vec![function])),
            }
        }
        Ok(groups.into_iter().map(|(_, members)| members).collect())
    }

    /// Serves every function of the template under `cargo lambda watch` on loopback, each with
    /// the environment and the role the template gives it, AWS reached at `aws_endpoint`;
    /// answers once every watch answers.
    pub async fn serve(&self, root: &Path, aws_endpoint: &str) -> anyhow::Result<Functions> {
        let mut functions = Functions {
            bases: BTreeMap::new(),
            watches: Vec::new(),
        };
        let groups = self.environment_groups()?;
        for (index, group) in groups.iter().enumerate() {
            let logical_ids: Vec<&str> = group.iter().map(|f| f.logical_id.as_str()).collect();
            let environment = self.environment(&logical_ids, aws_endpoint)?;
            let port = free_port()?;
            let mut watch = Command::new("cargo");
            watch
                .current_dir(root)
                .args([
                    "lambda",
                    "watch",
                    "--invoke-address",
                    "127.0.0.1",
                    "--invoke-port",
                    &port.to_string(),
                    "--ignore-changes",
                ])
                // Only the functions' own roles: nothing inherited from whoever runs the stack.
                .env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY")
                .env_remove("AWS_SESSION_TOKEN")
                .env_remove("AWS_PROFILE")
                .envs(&environment);
            // cargo-lambda comes from the stack's venv (`make setup`), not from the user's PATH.
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![stack_dir().join("venv/bin")];
            paths.extend(std::env::split_paths(&path));
            watch.env("PATH", std::env::join_paths(paths)?);
            let log = match index {
                0 => "cargo-lambda.log".to_owned(),
                n => format!("cargo-lambda-{}.log", n + 1),
            };
            functions.watches.push(Service::spawn(
                "cargo lambda watch",
                &mut watch,
                &self.run_dir.join(log),
            )?);
            for function in group {
                functions
                    .bases
                    .insert(function.binary.clone(), format!("http://127.0.0.1:{port}"));
            }
        }
        let http = reqwest::Client::new();
        let started = Instant::now();
        let bases: std::collections::BTreeSet<String> = functions.bases.values().cloned().collect();
        for base in &bases {
            while http.get(base).send().await.is_err() {
                if started.elapsed() > Duration::from_secs(120) {
                    functions.stop().await;
                    bail!(
                        "cargo lambda watch did not start (its log is in {})",
                        self.run_dir.display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(functions)
    }
}

/// The functions of a deployment served by `cargo lambda watch` (see
/// [`LocalDeployment::serve`]).
pub struct Functions {
    /// Binary -> `http://127.0.0.1:<port>` of the watch serving it.
    bases: BTreeMap<String, String>,
    watches: Vec<Service>,
}

impl Functions {
    /// Where the function's watch listens: its invoke API and its function URL.
    pub fn base(&self, binary: &str) -> anyhow::Result<&str> {
        self.bases
            .get(binary)
            .map(String::as_str)
            .with_context(|| format!("no function {binary} is served"))
    }

    /// Every function's binary and the base its watch listens on.
    pub fn bases(&self) -> &BTreeMap<String, String> {
        &self.bases
    }

    /// The function's URL as `cargo lambda watch` serves it (function URL requests).
    pub fn url(&self, binary: &str) -> anyhow::Result<String> {
        Ok(format!("{}/lambda-url/{binary}/", self.base(binary)?))
    }

    /// Invokes the function through its watch's invoke API.
    pub fn invoker(&self, binary: &str) -> anyhow::Result<Arc<HttpInvoker>> {
        Ok(Arc::new(HttpInvoker::new(self.base(binary)?, binary)))
    }

    /// The watches' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.watches.iter().filter_map(Service::pid).collect()
    }

    /// Stops every watch and the functions it runs.
    pub async fn stop(&mut self) {
        for watch in &mut self.watches {
            watch.terminate(Duration::from_secs(10)).await;
        }
    }
}

/// The whole local deployment: moto, a Tryton on a copy of the seeded database, the
/// deployment of one stage and its functions served. What `make demo` and `erpsync stack up`
/// run; the event source mappings and the schedules are theirs to drive.
pub struct LocalStack {
    pub moto: Moto,
    pub tryton: Tryton,
    pub deployment: LocalDeployment,
    pub functions: Functions,
}

impl LocalStack {
    /// Starts every part, logging to `run_dir`. A part that started before one that failed is
    /// killed as it is dropped.
    pub async fn start(root: &Path, run_dir: &Path, stage: &str) -> anyhow::Result<Self> {
        let dir = stack_dir();
        let venv = dir.join("venv");
        let moto = Moto::start(&venv, run_dir).await?;
        let tryton =
            Tryton::start(&venv, &dir.join("tryton-template"), &run_dir.join("tryton")).await?;
        let deployment = LocalDeployment::start(
            root,
            run_dir,
            sdk_config(&moto.endpoint).await,
            &tryton,
            stage,
        )
        .await?;
        let functions = deployment.serve(root, &moto.endpoint).await?;
        Ok(Self {
            moto,
            tryton,
            deployment,
            functions,
        })
    }

    /// The event source mapping of `queue` (a logical id), as the template declares it.
    pub async fn mapping(&self, queue: &str) -> anyhow::Result<EventSourceMapping> {
        let trigger = self
            .deployment
            .template
            .sqs_triggers()?
            .into_iter()
            .find(|t| t.queue == queue)
            .with_context(|| format!("no function is fed from {queue}"))?;
        self.mapping_of(&trigger).await
    }

    /// The event source mapping of `trigger`: it polls with its function's role, as on AWS.
    pub async fn mapping_of(&self, trigger: &SqsTrigger) -> anyhow::Result<EventSourceMapping> {
        let resources = &self.deployment.resources;
        let sdk = self
            .deployment
            .roles
            .get(&trigger.function)?
            .sdk_config(&self.moto.endpoint)
            .await;
        Ok(EventSourceMapping {
            sqs: aws_sdk_sqs::Client::new(&sdk),
            queue_url: resources.queue_url(&trigger.queue)?.to_owned(),
            queue_arn: resources.queue_arn(&trigger.queue)?.to_owned(),
            batch_size: trigger.batch_size,
            invoker: self.functions.invoker(&trigger.binary)?,
        })
    }

    /// Stops the functions, then Tryton and moto.
    pub async fn stop(&mut self) {
        self.functions.stop().await;
        self.tryton.stop().await;
        self.moto.stop().await;
    }
}
