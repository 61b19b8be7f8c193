//! The spec kinds of the local config sources: `file` and `env`.
//!
//! ```yaml
//! config:
//!   - kind: file                      # YAML or dotenv; format from the name, or `format: yaml|dotenv`
//!     path: config/{stage}.yaml       # one file per stage; without {stage}: one file, a map per stage
//!     secret_keys: [DB_PASSWORD]      # these keys are secrets
//!     secrets_path: secrets/{stage}.env   # every key of this file is a secret
//!     required: [DB_HOST]             # this source must supply these for every stage
//!     substitute_env: false           # dotenv `${VAR}` from the process environment (off by default)
//!   - kind: env
//!     prefix: "PROMOTE_{STAGE}_"      # the default: PROMOTE_PRD_DB_URL is DB_URL of stage prd
//!     secret_keys: [DB_PASSWORD]      # or `secret: true` for every key
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::config::{ConfigSource, DEFAULT_ENV_PREFIX, EnvConfigSource, FileConfigSource, FileFormat};
use crate::spec::SpecRegistry;

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum FormatSetting {
    Yaml,
    Dotenv,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    path: PathBuf,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    format: Option<FormatSetting>,
    #[serde(default)]
    secret_keys: Vec<String>,
    #[serde(default)]
    secrets_path: Option<PathBuf>,
    #[serde(default)]
    required: Vec<String>,
    #[serde(default)]
    substitute_env: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvSettings {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    secret_keys: Vec<String>,
    #[serde(default)]
    secret: bool,
    #[serde(default)]
    required: Vec<String>,
}

/// Registers config kinds `file` and `env`.
pub(crate) fn register(registry: &mut SpecRegistry) {
    registry.register_config("file", |spec| async move {
        let settings: FileSettings = spec.parse()?;
        let mut source = FileConfigSource::new(spec.resolve_path("path", &settings.path)?)
            .secret_keys(settings.secret_keys)
            .required(settings.required);
        // Provenance names the file as the spec wrote it, not as resolved on this machine.
        source = source.named(settings.name.unwrap_or_else(|| format!("file:{}", settings.path.display())));
        if let Some(format) = settings.format {
            source = source.format(match format {
                FormatSetting::Yaml => FileFormat::Yaml,
                FormatSetting::Dotenv => FileFormat::Dotenv,
            });
        }
        if let Some(path) = settings.secrets_path {
            source = source.secrets_file(spec.resolve_path("secrets_path", &path)?);
        }
        if settings.substitute_env {
            spec.refuse_setting_if_untrusted("substitute_env", "copies the runner's environment into the config")?;
            source = source.substitute_env(true);
        }
        if !spec.policy().is_trusted() {
            // `{stage}` files are named only at load: each is checked then, against links out of the directory.
            source = source.within(spec.spec_dir());
        }
        Ok(Arc::new(source) as Arc<dyn ConfigSource>)
    });
    registry.register_config("env", |spec| async move {
        let settings: EnvSettings = spec.parse()?;
        let prefix = settings.prefix.unwrap_or_else(|| DEFAULT_ENV_PREFIX.to_owned());
        if prefix.is_empty() {
            return Err(spec.error_at("prefix", "an empty prefix would read every variable of the process"));
        }
        if !spec.policy().is_trusted() && !prefix.starts_with(crate::spec::UNTRUSTED_ENV_PREFIX) {
            return Err(spec.error_at(
                "prefix",
                format!(
                    "an untrusted spec may read only variables starting with {}",
                    crate::spec::UNTRUSTED_ENV_PREFIX
                ),
            ));
        }
        let mut source = EnvConfigSource::new(prefix)
            .secret_keys(settings.secret_keys)
            .all_secret(settings.secret)
            .required(settings.required);
        if let Some(name) = settings.name {
            source = source.named(name);
        }
        Ok(Arc::new(source) as Arc<dyn ConfigSource>)
    });
}
