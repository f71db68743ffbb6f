//! Secrets from AWS Secrets Manager, cached per container. A secret's value is either the
//! secret itself or, during a rotation, a JSON array of all the values to accept. Values are
//! held as `SecretString` and never appear in logs or errors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};
use secrecy::SecretString;
use tokio::sync::RwLock;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {name:?} could not be read: {detail}")]
    Unavailable { name: String, detail: String },
    /// IAM refused the read: the role lacks `secretsmanager:GetSecretValue` on it.
    #[error("secret {name:?} may not be read by this function: {detail}")]
    AccessDenied { name: String, detail: String },
    #[error("secret {name:?} is empty or not a string / JSON array of strings")]
    Malformed { name: String },
}

pub type SecretValues = Arc<Vec<SecretString>>;

pub struct SecretCache {
    client: Client,
    entries: RwLock<HashMap<String, (SecretValues, Instant)>>,
    /// A failed signature may mean the secret was rotated; re-read it, at most this often.
    refresh_after: Duration,
}

impl SecretCache {
    pub fn new(client: Client, refresh_after: Duration) -> Self {
        Self {
            client,
            entries: RwLock::new(HashMap::new()),
            refresh_after,
        }
    }

    pub async fn get(&self, name: &str) -> Result<SecretValues, SecretError> {
        if let Some((values, _)) = self.entries.read().await.get(name) {
            return Ok(values.clone());
        }
        self.load(name).await
    }

    /// A secret that holds one value (API keys and tokens): its current value.
    pub async fn current(&self, name: &str) -> Result<SecretString, SecretError> {
        self.get(name)
            .await?
            .first()
            .cloned()
            .ok_or_else(|| SecretError::Malformed {
                name: name.to_owned(),
            })
    }

    /// Re-reads the secret if the cached copy is old enough; `None` when it is still fresh.
    pub async fn refresh_if_stale(&self, name: &str) -> Result<Option<SecretValues>, SecretError> {
        let stale = match self.entries.read().await.get(name) {
            Some((_, loaded)) => loaded.elapsed() >= self.refresh_after,
            None => true,
        };
        if stale {
            self.load(name).await.map(Some)
        } else {
            Ok(None)
        }
    }

    /// One of its secrets as a credential read again when refused (the ERP's REST key).
    pub fn credential(
        self: &Arc<Self>,
        name: &str,
    ) -> Arc<dyn erpsync_core::ports::CredentialSource> {
        Arc::new(SecretCredential {
            cache: self.clone(),
            name: name.to_owned(),
        })
    }

    /// Reads the secret afresh, whatever the cached copy's age.
    pub async fn reload(&self, name: &str) -> Result<SecretValues, SecretError> {
        self.load(name).await
    }

    async fn load(&self, name: &str) -> Result<SecretValues, SecretError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .map_err(|e| {
                let name = name.to_owned();
                if crate::error::is_access_denied(&e) {
                    let detail = e.message().unwrap_or("access denied").to_owned();
                    SecretError::AccessDenied { name, detail }
                } else {
                    let detail = DisplayErrorContext(e).to_string();
                    SecretError::Unavailable { name, detail }
                }
            })?;
        let values = Arc::new(parse_secret_values(
            name,
            output.secret_string().unwrap_or_default(),
        )?);
        self.entries
            .write()
            .await
            .insert(name.to_owned(), (values.clone(), Instant::now()));
        Ok(values)
    }
}

pub fn parse_secret_values(name: &str, text: &str) -> Result<Vec<SecretString>, SecretError> {
    let malformed = || SecretError::Malformed {
        name: name.to_owned(),
    };
    let trimmed = text.trim();
    let values: Vec<String> = if trimmed.starts_with('[') {
        serde_json::from_str(trimmed).map_err(|_| malformed())?
    } else {
        vec![trimmed.to_owned()]
    };
    if values.is_empty() || values.iter().any(|v| v.is_empty()) {
        return Err(malformed());
    }
    Ok(values.into_iter().map(SecretString::from).collect())
}

/// One secret of the cache as a credential the ERP client reads again when refused.
pub struct SecretCredential {
    pub cache: Arc<SecretCache>,
    pub name: String,
}

#[async_trait::async_trait]
impl erpsync_core::ports::CredentialSource for SecretCredential {
    async fn reread(&self) -> Result<SecretString, erpsync_core::SyncError> {
        let values = self.cache.reload(&self.name).await.map_err(|e| {
            erpsync_core::SyncError::dependency_down("secret_unavailable", e.to_string())
        })?;
        values.first().cloned().ok_or_else(|| {
            erpsync_core::SyncError::permanent(
                "secret_malformed",
                format!("secret {} holds no value", self.name),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn a_plain_value_or_a_rotation_array_is_accepted() {
        let one = parse_secret_values("s", "abc").unwrap_or_default();
        assert_eq!(one.len(), 1);
        let two = parse_secret_values("s", r#"["new", "old"]"#).unwrap_or_default();
        assert_eq!(
            two.iter().map(|s| s.expose_secret()).collect::<Vec<_>>(),
            ["new", "old"]
        );
    }

    #[test]
    fn errors_never_contain_the_value() {
        let err = parse_secret_values("s", "[\"hunter2\", ")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(parse_secret_values("s", "  ").is_err());
    }
}
