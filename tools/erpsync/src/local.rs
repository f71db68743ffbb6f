//! A local deployment of the template on the local stack: the two demo stores in the Shopify
//! sandbox, the example config pointed at them, the template's queues and table in moto, the
//! secrets, and each function's environment as the template gives it. `make demo` and
//! `make bench` run the real function binaries against it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use aws_config::SdkConfig;
use erpsync_core::config::Config;
use sandbox::{Plan, Sandbox, ShopSetup};

use crate::roles::{StageRoles, create_roles};
use crate::stack::{LocalResources, Tryton, aws_environment, create_resources, put_secret};
use crate::template::Template;

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
                .and_then(|r| {
                    r.metadata
                        .get("BuildProperties")?
                        .get("Binary")?
                        .as_str()
                        .map(str::to_owned)
                })
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
}
