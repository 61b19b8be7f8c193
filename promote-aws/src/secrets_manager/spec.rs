//! What a stage loads from Secrets Manager: [`SecretSpec`]s, their [`SecretFormat`], and [`StageTemplate`]s
//! that give every listed stage the same secrets.

use promote_core::{Error, Result};
use serde::Deserialize;

/// The staging label of a secret's current version.
pub const AWSCURRENT: &str = "AWSCURRENT";

/// How a secret's content becomes config keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretFormat {
    /// The secret is a JSON object; each member becomes a key.
    #[default]
    Json,
    /// The secret is one string, loaded under one key.
    String,
}

/// One secret a stage loads.
///
/// The id may contain `{stage}`, replaced by the stage's name, so that one template such as `{stage}/app`
/// serves every stage. Without a version stage or id, the `AWSCURRENT` version is loaded.
///
/// ```
/// use promote_aws::SecretSpec;
/// let app = SecretSpec::json("{stage}/app");
/// let token = SecretSpec::string("{stage}/api-token", "API_TOKEN").at_version_stage("AWSPREVIOUS");
/// assert_eq!(token.key.as_deref(), Some("API_TOKEN"));
/// # let _ = app;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SecretSpec {
    /// The secret's name or ARN; `{stage}` is replaced by the stage.
    pub id: String,
    /// How its content becomes keys.
    #[serde(default)]
    pub format: SecretFormat,
    /// For [`SecretFormat::String`]: the key the value is loaded under.
    #[serde(default)]
    pub key: Option<String>,
    /// For [`SecretFormat::Json`]: load only these members, each of which must be present.
    #[serde(default)]
    pub keys: Option<Vec<String>>,
    /// Load the version with this staging label (`AWSCURRENT` by default).
    #[serde(default)]
    pub version_stage: Option<String>,
    /// Load exactly this version.
    #[serde(default)]
    pub version_id: Option<String>,
}

impl SecretSpec {
    /// A secret holding a JSON object whose members become keys.
    pub fn json(id: impl Into<String>) -> Self {
        SecretSpec {
            id: id.into(),
            format: SecretFormat::Json,
            key: None,
            keys: None,
            version_stage: None,
            version_id: None,
        }
    }

    /// A secret holding one string, loaded under `key`.
    pub fn string(id: impl Into<String>, key: impl Into<String>) -> Self {
        SecretSpec { format: SecretFormat::String, key: Some(key.into()), ..SecretSpec::json(id) }
    }

    /// Loads only these members of a JSON secret; each must be present.
    pub fn with_keys(mut self, keys: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.keys = Some(keys.into_iter().map(Into::into).collect());
        self
    }

    /// Loads the version that carries this staging label.
    pub fn at_version_stage(mut self, label: impl Into<String>) -> Self {
        self.version_stage = Some(label.into());
        self
    }

    /// Loads exactly this version.
    pub fn at_version_id(mut self, version_id: impl Into<String>) -> Self {
        self.version_id = Some(version_id.into());
        self
    }

    /// Checks that the fields fit together.
    pub(crate) fn validate(&self) -> Result<()> {
        let refuse = |reason: &str| Err(Error::invalid("secret spec", self.id.clone(), reason));
        if self.id.trim().is_empty() {
            return refuse("the secret id is empty");
        }
        match self.format {
            SecretFormat::String if self.key.as_deref().is_none_or(str::is_empty) => {
                refuse("a `string` secret needs the `key` it is loaded under")
            }
            SecretFormat::String if self.keys.is_some() => refuse("`keys` selects members of a `json` secret"),
            SecretFormat::Json if self.key.is_some() => {
                refuse("`key` names a `string` secret; a `json` secret's members are its keys")
            }
            _ => Ok(()),
        }
    }
}

/// Secrets loaded for several stages from one id template.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StageTemplate {
    /// The stages the template applies to.
    pub stages: Vec<String>,
    /// The secrets, with `{stage}` in their ids.
    pub secrets: Vec<SecretSpec>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_that_do_not_fit_together_are_refused() {
        assert!(SecretSpec::json("a").validate().is_ok());
        assert!(SecretSpec::string("a", "KEY").validate().is_ok());
        let mut no_key = SecretSpec::string("a", "KEY");
        no_key.key = None;
        assert!(no_key.validate().is_err());
        let mut json_with_key = SecretSpec::json("a");
        json_with_key.key = Some("KEY".into());
        assert!(json_with_key.validate().is_err());
        assert!(SecretSpec::string("a", "K").with_keys(["X"]).validate().is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = serde_json::from_str::<SecretSpec>(r#"{"id": "x", "formt": "json"}"#).unwrap_err();
        assert!(error.to_string().contains("formt"), "{error}");
    }
}
