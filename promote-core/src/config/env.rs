//! Config from environment variables, by prefix.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use super::file::check_required;
use super::{ConfigEntry, ConfigRequest, ConfigSet, ConfigSource, ConfigValue, Secret, SourceCapabilities};
use crate::error::Result;

/// The default prefix: `PROMOTE_PRD_DB_URL` is key `DB_URL` of stage `prd`.
pub const DEFAULT_ENV_PREFIX: &str = "PROMOTE_{STAGE}_";

/// A config source reading environment variables whose names start with a prefix.
///
/// The prefix may hold `{STAGE}` (the stage's name upper-cased, `-` turned into `_`: stage `eu-prd` gives
/// `EU_PRD`) or `{stage}` (the name as it is). The rest of the variable's name is the key, so with the
/// default prefix `PROMOTE_{STAGE}_`, `PROMOTE_PRD_DB_URL` is `DB_URL` for stage `prd`. A prefix without
/// a placeholder (`APP_`) gives the same values to every stage. Variables whose name or value is not
/// unicode are skipped.
///
/// Keys listed with [`EnvConfigSource::secret_keys`] are [`Secret`]s, or every key with
/// [`EnvConfigSource::all_secret`] (CI systems often pass secrets as variables). Keys listed with
/// [`EnvConfigSource::required`] must be present for every stage asked about, or loading fails with
/// [`Error::MissingConfig`](crate::Error::MissingConfig).
///
/// The environment is read at every load. The source is not versioned.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use promote_core::config::{ConfigRequest, ConfigSource, EnvConfigSource};
/// // A fixed set of variables stands in for the process environment here.
/// let source = EnvConfigSource::new("PROMOTE_{STAGE}_")
///     .secret_keys(["DB_PASSWORD"])
///     .with_vars([("PROMOTE_PRD_DB_URL", "postgres://db.prd"), ("PROMOTE_PRD_DB_PASSWORD", "hunter2")]);
/// let set = source.load(&ConfigRequest::new("prd")).await?;
/// assert_eq!(set.get("DB_URL").unwrap().value.expose(), "postgres://db.prd");
/// assert!(set.get("DB_PASSWORD").unwrap().value.is_secret());
/// # Ok::<(), promote_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct EnvConfigSource {
    name: String,
    prefix: String,
    secret_keys: BTreeSet<String>,
    all_secret: bool,
    required: Vec<String>,
    fixed: Option<FixedVars>,
}

/// A fixed set of variables. Its `Debug` shows names only: values may be secrets.
#[derive(Clone)]
struct FixedVars(BTreeMap<String, Secret>);

impl std::fmt::Debug for FixedVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl EnvConfigSource {
    /// A source reading the process environment with `prefix`, called `env:<prefix>`.
    pub fn new(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        EnvConfigSource {
            name: format!("env:{prefix}"),
            prefix,
            secret_keys: BTreeSet::new(),
            all_secret: false,
            required: Vec::new(),
            fixed: None,
        }
    }

    /// Names the source (in provenance, errors and `plan`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Marks keys (names without the prefix) as secret.
    pub fn secret_keys<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.secret_keys.extend(keys.into_iter().map(Into::into));
        self
    }

    /// Makes every key of this source secret.
    pub fn all_secret(mut self, all: bool) -> Self {
        self.all_secret = all;
        self
    }

    /// Keys this source must supply for every stage.
    pub fn required<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.required.extend(keys.into_iter().map(Into::into));
        self
    }

    /// Reads these variables instead of the process environment: for tests, and for embedders that
    /// gather the environment themselves.
    pub fn with_vars<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars = vars.into_iter().map(|(name, value)| (name.into(), Secret::new(value))).collect();
        self.fixed = Some(FixedVars(vars));
        self
    }

    /// The prefix for `stage`.
    pub fn prefix_for(&self, stage: &str) -> String {
        let upper: String =
            stage.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
        self.prefix.replace("{STAGE}", &upper).replace("{stage}", stage)
    }

    fn value(&self, key: &str, value: String) -> ConfigValue {
        if self.all_secret || self.secret_keys.contains(key) {
            ConfigValue::Secret(Secret::new(value))
        } else {
            ConfigValue::Plain(value)
        }
    }
}

#[async_trait]
impl ConfigSource for EnvConfigSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> SourceCapabilities {
        SourceCapabilities { versioned: false, secrets: true }
    }

    async fn load(&self, request: &ConfigRequest) -> Result<ConfigSet> {
        let prefix = self.prefix_for(&request.stage);
        let vars: Vec<(String, String)> = match &self.fixed {
            Some(FixedVars(vars)) => {
                vars.iter().map(|(name, value)| (name.clone(), value.expose().to_owned())).collect()
            }
            None => std::env::vars_os()
                .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
                .collect(),
        };
        let mut set = ConfigSet::new();
        for (name, value) in vars {
            let Some(key) = name.strip_prefix(&prefix).filter(|key| !key.is_empty()) else {
                continue;
            };
            set.insert(
                key.to_owned(),
                ConfigEntry { value: self.value(key, value), source: self.name.clone(), version: None },
            );
        }
        check_required(&set, &self.required, &request.stage, &self.name)?;
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_placeholder_is_upper_cased() {
        let source = EnvConfigSource::new(DEFAULT_ENV_PREFIX);
        assert_eq!(source.prefix_for("eu-prd"), "PROMOTE_EU_PRD_");
        assert_eq!(EnvConfigSource::new("APP_{stage}_").prefix_for("dev"), "APP_dev_");
    }

    #[test]
    fn fixed_vars_debug_shows_no_value() {
        let source = EnvConfigSource::new("X_").with_vars([("X_TOKEN", "s3cr3t-token")]);
        let shown = format!("{source:?}");
        assert!(shown.contains("X_TOKEN") && !shown.contains("s3cr3t-token"), "{shown}");
    }
}
