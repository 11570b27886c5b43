//! The webhook signing secret from AWS Secrets Manager: `AWSCURRENT`, and `AWSPREVIOUS` while
//! it exists, so deliveries signed with the old secret keep verifying while the sender is being
//! switched to the new one.

use aws_sdk_secretsmanager::Client;

use crate::error::BoxError;
use crate::stage::registry::receive::SecretSource;

pub struct SecretsManagerSecret {
    client: Client,
    secret_id: String,
}

impl SecretsManagerSecret {
    pub fn new(client: Client, secret_id: &str) -> Self {
        SecretsManagerSecret {
            client,
            secret_id: secret_id.to_owned(),
        }
    }

    /// The current value as a token (an API or Git token, trimmed): read once, at cold start.
    pub async fn token(&self) -> Result<secrecy::SecretString, BoxError> {
        let value = self
            .stage("AWSCURRENT")
            .await?
            .ok_or_else(|| format!("secret {} has no AWSCURRENT value", self.secret_id))?;
        let value = String::from_utf8(value)
            .map_err(|_| format!("secret {} is not UTF-8", self.secret_id))?;
        if value.trim().is_empty() {
            return Err(format!("secret {} is empty", self.secret_id).into());
        }
        Ok(secrecy::SecretString::from(value.trim().to_owned()))
    }

    async fn stage(&self, stage: &str) -> Result<Option<Vec<u8>>, BoxError> {
        match self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage(stage)
            .send()
            .await
        {
            Ok(v) => Ok(v
                .secret_string()
                .map(|s| s.as_bytes().to_vec())
                .or_else(|| v.secret_binary().map(|b| b.as_ref().to_vec()))),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(Box::new(e)),
        }
    }
}

impl SecretSource for SecretsManagerSecret {
    async fn secrets(&self) -> Result<Vec<Vec<u8>>, BoxError> {
        let current = self
            .stage("AWSCURRENT")
            .await?
            .ok_or_else(|| format!("secret {} has no AWSCURRENT value", self.secret_id))?;
        let mut out = vec![current];
        // Best effort: a failure to read the previous value must not refuse current deliveries.
        if let Ok(Some(prev)) = self.stage("AWSPREVIOUS").await
            && prev != out[0]
        {
            out.push(prev);
        }
        Ok(out)
    }
}
