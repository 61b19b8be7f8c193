//! Building a [`SecretsManagerSource`]: [`SecretsManagerConfig`], what a spec file can say
//! (`kind: secrets-manager`), and [`SecretsManagerBuilder`], which holds one and adds what only code can
//! give (an SDK configuration or client, static credentials, a retry policy). Each setting is declared
//! once, in the config.

use std::collections::BTreeMap;

use promote_core::Result;
use serde::Deserialize;

use super::SecretsManagerSource;
use super::spec::{SecretSpec, StageTemplate};
use crate::connection::{Connection, SpecConnection, connection_setters, policy_of};
use crate::error::SECRETS_MANAGER;

/// The `secrets-manager` kind of a spec file, and the settings a [`SecretsManagerBuilder`] holds.
///
/// ```
/// let config: promote_aws::SecretsManagerConfig = serde_json::from_str(r#"{
///     "region": "eu-west-1",
///     "stages": {"prd": [{"id": "prd/db-password", "format": "string", "key": "DB_PASSWORD"}]},
///     "template": {"stages": ["dev", "stg", "prd"], "secrets": [{"id": "{stage}/app"}]}
/// }"#).unwrap();
/// assert_eq!(config.stages["prd"][0].key.as_deref(), Some("DB_PASSWORD"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SecretsManagerConfig {
    /// The source's name in provenance and errors (default `secrets-manager`).
    pub name: Option<String>,
    /// The AWS region; otherwise the standard chain's.
    pub region: Option<String>,
    /// An endpoint URL replacing the public Secrets Manager endpoint (VPC endpoint).
    pub endpoint_url: Option<String>,
    /// A named profile of the shared AWS config files.
    pub profile: Option<String>,
    /// Attempts per call, the first included (see [`SecretsManagerBuilder::retry_policy`]).
    pub max_attempts: Option<u32>,
    /// The secrets of each stage.
    pub stages: BTreeMap<String, Vec<SecretSpec>>,
    /// Secrets every listed stage loads, named by a template.
    pub template: Option<StageTemplate>,
}

impl SecretsManagerConfig {
    /// The builder this configuration describes: the template's secrets first, then each stage's own (which
    /// override them where keys overlap).
    pub fn builder(&self) -> SecretsManagerBuilder {
        let mut settings = self.clone();
        let stages = std::mem::take(&mut settings.stages);
        let template = settings.template.take();
        let mut builder = SecretsManagerBuilder { settings, ..SecretsManagerBuilder::default() };
        if let Some(template) = template {
            builder = builder.template(template.stages, template.secrets);
        }
        for (stage, secrets) in stages {
            builder = builder.stage(stage, secrets);
        }
        builder
    }
}

/// Builds a [`SecretsManagerSource`]. Unset AWS settings come from the standard `aws-config` chain.
///
/// ```no_run
/// use promote_aws::{SecretSpec, SecretsManagerSource};
/// # async fn example() -> promote_core::Result<()> {
/// let source = SecretsManagerSource::builder()
///     .template(["dev", "stg", "prd"], [SecretSpec::json("{stage}/app")])
///     .stage("prd", [SecretSpec::string("prd/db-password", "DB_PASSWORD")])
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct SecretsManagerBuilder {
    /// The spec's settings; its `template` is already spread into `stages`.
    settings: SecretsManagerConfig,
    connection: Connection,
    client: Option<aws_sdk_secretsmanager::Client>,
}

connection_setters!(SecretsManagerBuilder, "Secrets Manager");

impl SecretsManagerBuilder {
    /// A builder with no stages: everything AWS comes from the standard chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// The source's name in provenance and errors (default `secrets-manager`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = Some(name.into());
        self
    }

    /// Adds secrets to a stage. Later secrets override earlier ones where their keys overlap.
    pub fn stage(mut self, stage: impl Into<String>, secrets: impl IntoIterator<Item = SecretSpec>) -> Self {
        self.settings.stages.entry(stage.into()).or_default().extend(secrets);
        self
    }

    /// Adds the same secrets, with `{stage}` in their ids, to each of `stages`.
    pub fn template(
        mut self,
        stages: impl IntoIterator<Item = impl Into<String>>,
        secrets: impl IntoIterator<Item = SecretSpec>,
    ) -> Self {
        let secrets: Vec<SecretSpec> = secrets.into_iter().collect();
        for stage in stages {
            self.settings.stages.entry(stage.into()).or_default().extend(secrets.iter().cloned());
        }
        self
    }

    /// Uses this Secrets Manager client as it is; the connection settings are then ignored.
    pub fn client(mut self, client: aws_sdk_secretsmanager::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Checks the secrets and builds the source, loading the AWS configuration.
    pub async fn build(self) -> Result<SecretsManagerSource> {
        let settings = self.settings;
        for spec in settings.stages.values().flatten() {
            spec.validate()?;
        }
        let client = match self.client {
            Some(client) => client,
            None => {
                let spec = SpecConnection {
                    region: settings.region.as_deref(),
                    endpoint_url: settings.endpoint_url.as_deref(),
                    profile: settings.profile.as_deref(),
                    max_attempts: settings.max_attempts,
                };
                aws_sdk_secretsmanager::Client::new(&self.connection.load(spec).await)
            }
        };
        let sdk_attempts = policy_of(client.config().retry_config()).max_attempts;
        Ok(SecretsManagerSource {
            client,
            sdk_attempts,
            name: settings.name.unwrap_or_else(|| SECRETS_MANAGER.to_owned()),
            stages: settings.stages,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused() {
        let error =
            serde_json::from_str::<SecretsManagerConfig>(r#"{"stages": {"prd": [{"id": "x", "formt": "json"}]}}"#)
                .unwrap_err();
        assert!(error.to_string().contains("formt"), "{error}");
    }

    #[test]
    fn a_stage_overrides_the_template() {
        let config: SecretsManagerConfig = serde_json::from_str(
            r#"{"template": {"stages": ["dev", "prd"], "secrets": [{"id": "{stage}/app"}]},
                "stages": {"prd": [{"id": "prd/db", "format": "string", "key": "DB"}]}}"#,
        )
        .unwrap();
        let builder = config.builder();
        let ids = |stage: &str| builder.settings.stages[stage].iter().map(|s| s.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids("dev"), ["{stage}/app"]);
        assert_eq!(ids("prd"), ["{stage}/app", "prd/db"], "the stage's own secrets come last and win");
    }
}
