//! The wiring the functions share, built once at cold start, outside the handler: the config
//! named by `ERPSYNC_CONFIG`, the AWS SDK config from the standard chain, one secrets cache,
//! and from them the state store (`TABLE_NAME`), the ERP client (`ERP_URL`, its key re-read
//! from Secrets Manager when the ERP refuses it) and the channels' Admin API clients. The
//! adapters stay unaware of each other: this crate is the one place that knows them all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use erpsync_aws::dynamo::DynamoStore;
use erpsync_aws::env;
use erpsync_aws::secrets::SecretCache;
use erpsync_connectors::TrytonClient;
use erpsync_connectors::shopify::{ShopifyAdmin, admin_clients};
use erpsync_core::config::{ChannelConfig, Config};

/// How long a secret read from Secrets Manager is used before it is read again.
const SECRETS_TTL: Duration = Duration::from_secs(300);

pub struct Wiring {
    pub config: Config,
    pub sdk: SdkConfig,
    pub secrets: Arc<SecretCache>,
}

impl Wiring {
    pub async fn from_env() -> anyhow::Result<Self> {
        let config = env::load_config()?;
        let sdk = env::sdk_config().await;
        let secrets = Arc::new(SecretCache::new(
            aws_sdk_secretsmanager::Client::new(&sdk),
            SECRETS_TTL,
        ));
        Ok(Self {
            config,
            sdk,
            secrets,
        })
    }

    /// The sync-state table named by `TABLE_NAME`.
    pub fn store(&self) -> anyhow::Result<DynamoStore> {
        Ok(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            env::required("TABLE_NAME")?,
        ))
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }

    /// A client of the ERP at `ERP_URL`, with its own reference cache; its key is read now
    /// and again whenever the ERP refuses it (a rotation needs no redeploy).
    pub async fn erp(&self) -> anyhow::Result<TrytonClient> {
        let secret = &self.config.erp.api_key_secret;
        let key = self.secrets.current(secret).await?;
        Ok(
            TrytonClient::new(&env::required("ERP_URL")?, key, self.config.erp.clone())?
                .with_key_source(self.secrets.credential(secret)),
        )
    }

    /// [`Self::erp`], logged in also as the `[erp.rpc]` user when the config names one (the
    /// payments flow's one JSON-RPC step). Only the function that records payments reads
    /// that password, so only it is granted the secret.
    pub async fn payments_erp(&self) -> anyhow::Result<TrytonClient> {
        let erp = self.erp().await?;
        Ok(match &self.config.erp.rpc {
            Some(rpc) => erp.with_rpc_login(self.secrets.current(&rpc.password_secret).await?),
            None => erp,
        })
    }

    /// The Admin API clients of the channels `wanted` picks (those with an Admin API), by
    /// channel id, each with its token from Secrets Manager.
    pub async fn admin_clients(
        &self,
        wanted: impl Fn(&ChannelConfig) -> bool,
    ) -> anyhow::Result<HashMap<String, ShopifyAdmin>> {
        let secrets = &self.secrets;
        admin_clients(&self.config, wanted, |name| async move {
            secrets.current(&name).await.map_err(anyhow::Error::from)
        })
        .await
    }
}
