//! Config from local files: YAML or dotenv, one file per stage or one file for every stage.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use marked_yaml::loader::LoaderOptions;
use marked_yaml::{Node, parse_yaml_with_options};

use super::{ConfigEntry, ConfigRequest, ConfigSet, ConfigSource, ConfigValue, Secret, SourceCapabilities};
use crate::error::{Error, ErrorClass, Result};

/// The placeholder a file path may hold, replaced by the stage's name.
pub const STAGE_PLACEHOLDER: &str = "{stage}";

/// How a config file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileFormat {
    /// YAML: a mapping of keys to scalar values (strings, numbers, booleans).
    Yaml,
    /// dotenv: `KEY=value` lines, `#` comments, quoting and `${VAR}` substitution of keys defined earlier
    /// in the file, as [`dotenvy`] reads them. Substitution from the process environment is off unless
    /// [`FileConfigSource::substitute_env`] turns it on.
    Dotenv,
}

impl FileFormat {
    /// The format a path's name implies: `.env`, `*.env` and `.env.*` are dotenv, anything else YAML.
    pub fn from_path(path: &Path) -> Self {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name == ".env" || name.ends_with(".env") || name.starts_with(".env.") {
            FileFormat::Dotenv
        } else {
            FileFormat::Yaml
        }
    }
}

/// A config source reading local YAML or dotenv files.
///
/// # Layout
/// - **One file per stage**: when the path holds `{stage}` (`config/{stage}.yaml`), each stage reads its
///   own file, whose top level is the stage's keys. A stage whose file does not exist gets no values (the
///   [`ConfigSource`] contract: an unknown stage is an empty set, not an error).
/// - **One file for every stage**: without `{stage}`, a YAML file's top level maps each stage's name to its
///   keys (`prd: { DB_HOST: … }`); a stage not in it gets no values. A dotenv file has no sections, so
///   without `{stage}` its values apply to every stage (shared defaults). The file must exist.
///
/// # Secrets
/// Keys listed with [`FileConfigSource::secret_keys`] are loaded as [`Secret`]s, and so is every key of a
/// separate [`FileConfigSource::secrets_file`] (same layout rules); a key in both takes the secrets file's
/// value. Values never appear in errors: a file that cannot be read or parsed is [`Error::ConfigSource`]
/// naming the stage, the source, the file, the line and the key.
///
/// # Required keys
/// Keys listed with [`FileConfigSource::required`] must be supplied by this source for every stage it is
/// asked about, or loading fails with [`Error::MissingConfig`].
///
/// Files are read at every load, so a deploy sees the files as they are then. The source is not
/// versioned: it reports no versions and ignores pins.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use promote_core::config::{ConfigRequest, ConfigSource, FileConfigSource};
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::write(dir.path().join("prd.yaml"), "DB_HOST: db.prd.internal\nDB_PASSWORD: hunter2\n").unwrap();
/// let source = FileConfigSource::new(dir.path().join("{stage}.yaml")).secret_keys(["DB_PASSWORD"]);
/// let set = source.load(&ConfigRequest::new("prd")).await?;
/// assert_eq!(set.get("DB_HOST").unwrap().value.expose(), "db.prd.internal");
/// assert!(set.get("DB_PASSWORD").unwrap().value.is_secret());
/// assert!(source.load(&ConfigRequest::new("qa")).await?.is_empty());
/// # Ok::<(), promote_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct FileConfigSource {
    name: String,
    path: PathBuf,
    format: FileFormat,
    secret_keys: BTreeSet<String>,
    secrets_path: Option<(PathBuf, FileFormat)>,
    required: Vec<String>,
    substitute_env: bool,
    within: Option<PathBuf>,
}

impl FileConfigSource {
    /// A source reading `path` (which may hold `{stage}`), in the format its name implies, called
    /// `file:<path>`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        FileConfigSource {
            name: format!("file:{}", path.display()),
            format: FileFormat::from_path(&path),
            path,
            secret_keys: BTreeSet::new(),
            secrets_path: None,
            required: Vec::new(),
            substitute_env: false,
            within: None,
        }
    }

    /// Lets a dotenv file's `${VAR}` take values from the process environment (off by default: a config
    /// file could otherwise copy any of the runner's variables, credentials included, into the config).
    pub fn substitute_env(mut self, allow: bool) -> Self {
        self.substitute_env = allow;
        self
    }

    /// Reads only files inside `dir`, through no symlink: for files named by someone the runner does not
    /// trust, where `config/prd.yaml` could be a link to `/proc/self/environ`.
    pub fn within(mut self, dir: impl Into<PathBuf>) -> Self {
        self.within = Some(dir.into());
        self
    }

    /// Names the source (in provenance, errors and `plan`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the format, overriding what the file name implies.
    pub fn format(mut self, format: FileFormat) -> Self {
        self.format = format;
        self
    }

    /// Marks keys of the main file as secret.
    pub fn secret_keys<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.secret_keys.extend(keys.into_iter().map(Into::into));
        self
    }

    /// A second file (same layout rules, format from its name) whose every key is secret.
    pub fn secrets_file(mut self, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        self.secrets_path = Some((path.clone(), FileFormat::from_path(&path)));
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

    fn error(&self, stage: &str, class: ErrorClass, message: String) -> Error {
        Error::ConfigSource { stage: stage.to_owned(), source_name: self.name.clone(), message, class }
    }

    /// Reads one file's `(key, value)` pairs for `stage`.
    fn read(&self, stage: &str, pattern: &Path, format: FileFormat) -> Result<Vec<(String, String)>> {
        let (path, per_stage) = stage_path(pattern, stage);
        if let Some(dir) = &self.within
            && let Some(reason) = outside(dir, &path)
        {
            return Err(self.error(stage, ErrorClass::Persistent, format!("refusing {}: {reason}", path.display())));
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && per_stage => {
                return Ok(Vec::new());
            }
            Err(error) => {
                let class = io_class(&error);
                return Err(self.error(stage, class, format!("cannot read {}: {error}", path.display())));
            }
        };
        let invalid = |line: Option<usize>, message: String| {
            let at = line.map_or_else(|| path.display().to_string(), |l| format!("{}:{l}", path.display()));
            self.error(stage, ErrorClass::Persistent, format!("{at}: {message}"))
        };
        match format {
            FileFormat::Yaml => read_yaml(&text, stage, per_stage, &invalid),
            FileFormat::Dotenv => {
                if !self.substitute_env {
                    refuse_env_substitution(&text, &invalid)?;
                }
                read_dotenv(&text, &invalid)
            }
        }
    }
}

/// Why `path` is not a file inside `dir` reached through no symlink, if it is not.
fn outside(dir: &Path, path: &Path) -> Option<String> {
    let Ok(relative) = path.strip_prefix(dir) else {
        return Some("it is not inside the spec's directory".into());
    };
    let mut current = dir.to_owned();
    for component in relative.components() {
        let std::path::Component::Normal(part) = component else {
            return Some("its path climbs out with `..`".into());
        };
        current.push(part);
        if std::fs::symlink_metadata(&current).is_ok_and(|meta| meta.file_type().is_symlink()) {
            return Some(format!("{} is a symlink", current.display()));
        }
    }
    None
}

/// Refuses a dotenv text that refers (`$NAME`, `${NAME}`, outside single quotes and not escaped) to a
/// variable set in the process environment, which dotenvy would substitute even over a key of the file.
fn refuse_env_substitution(text: &str, invalid: &dyn Fn(Option<usize>, String) -> Error) -> Result<()> {
    for (line, name) in substitutions(text) {
        if std::env::var_os(&name).is_some() {
            return Err(invalid(
                Some(line),
                format!(
                    "`${{{name}}}` would be read from the process environment; substitution from the environment \
                     is off (single-quote the value to keep a literal `$`, or allow it with substitute_env)"
                ),
            ));
        }
    }
    Ok(())
}

/// The variables a dotenv text substitutes, with their 1-based lines: dotenvy's quoting rules (nothing in
/// single quotes, `\$` escaped elsewhere), across multi-line quoted values.
fn substitutions(text: &str) -> Vec<(usize, String)> {
    let (mut found, mut line) = (Vec::new(), 1);
    let (mut single, mut double, mut comment) = (false, false, false);
    let mut chars = text.chars().peekable();
    let mut previous = '\n';
    while let Some(c) = chars.next() {
        let after_space = previous.is_whitespace();
        previous = c;
        match c {
            '\n' => {
                line += 1;
                comment = false;
            }
            _ if comment => {}
            // Only a `#` that starts a line or follows a space starts a comment; elsewhere it is text.
            '#' if !single && !double && after_space => comment = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '\\' if !single => {
                if chars.peek() == Some(&'\n') {
                    line += 1;
                }
                chars.next();
            }
            '$' if !single => {
                let braced = chars.peek() == Some(&'{');
                if braced {
                    chars.next();
                }
                let mut name = String::new();
                while let Some(&next) = chars.peek().filter(|c| c.is_ascii_alphanumeric() || **c == '_') {
                    name.push(next);
                    chars.next();
                }
                if !name.is_empty() {
                    found.push((line, name));
                }
            }
            _ => {}
        }
    }
    found
}

/// The file for `stage`, and whether the pattern is per stage.
fn stage_path(pattern: &Path, stage: &str) -> (PathBuf, bool) {
    match pattern.to_str() {
        Some(text) if text.contains(STAGE_PLACEHOLDER) => (PathBuf::from(text.replace(STAGE_PLACEHOLDER, stage)), true),
        _ => (pattern.to_owned(), false),
    }
}

fn line_of(node: &Node) -> Option<usize> {
    node.span().start().map(|mark| mark.line())
}

fn read_yaml(
    text: &str,
    stage: &str,
    per_stage: bool,
    invalid: &dyn Fn(Option<usize>, String) -> Error,
) -> Result<Vec<(String, String)>> {
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    // The loader's messages name positions and keys, never values.
    let root =
        parse_yaml_with_options(0, text, options).map_err(|error| invalid(None, format!("not valid YAML: {error}")))?;
    let top = root.as_mapping().ok_or_else(|| invalid(line_of(&root), "the top level must be a mapping".into()))?;
    let values = if per_stage {
        top
    } else {
        match top.get_node(stage) {
            None => return Ok(Vec::new()),
            Some(node) => node
                .as_mapping()
                .ok_or_else(|| invalid(line_of(node), format!("stage {stage}: must be a mapping of keys to values")))?,
        }
    };
    let mut pairs = Vec::new();
    for (key, node) in values.iter() {
        let value = node.as_scalar().ok_or_else(|| {
            invalid(line_of(node), format!("key {}: a value must be a string, number or boolean", key.as_str()))
        })?;
        pairs.push((key.as_str().to_owned(), value.as_str().to_owned()));
    }
    Ok(pairs)
}

fn read_dotenv(text: &str, invalid: &dyn Fn(Option<usize>, String) -> Error) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(pair) => pairs.push(pair),
            Err(dotenvy::Error::LineParse(line, _)) => {
                // The parser hands back the offending text, which may hold a value: report its line only.
                let first = line.lines().next().unwrap_or_default().trim_end();
                let number = text.lines().position(|l| l.trim_end() == first).map(|index| index + 1);
                return Err(invalid(number, "cannot parse this line as KEY=value (check its quoting)".into()));
            }
            Err(other) => {
                return Err(invalid(None, format!("cannot read it as dotenv: {}", dotenv_error_kind(&other))));
            }
        }
    }
    Ok(pairs)
}

/// What went wrong in a dotenv error, without the file content some of them carry.
fn dotenv_error_kind(error: &dotenvy::Error) -> &'static str {
    match error {
        dotenvy::Error::LineParse(..) => "a line does not parse",
        dotenvy::Error::Io(_) => "an I/O error",
        dotenvy::Error::EnvVar(_) => "a substituted variable is not valid unicode",
        _ => "an unknown error",
    }
}

/// Whether reading a file again may succeed.
pub(crate) fn io_class(error: &std::io::Error) -> ErrorClass {
    match error.kind() {
        std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            ErrorClass::Temporary
        }
        _ => ErrorClass::Persistent,
    }
}

/// Checks `required` keys against a loaded set.
pub(crate) fn check_required(set: &ConfigSet, required: &[String], stage: &str, source: &str) -> Result<()> {
    match required.iter().find(|key| set.get(key).is_none()) {
        Some(key) => {
            Err(Error::MissingConfig { stage: stage.to_owned(), key: key.clone(), source_names: source.to_owned() })
        }
        None => Ok(()),
    }
}

#[async_trait]
impl ConfigSource for FileConfigSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> SourceCapabilities {
        SourceCapabilities { versioned: false, secrets: true }
    }

    async fn load(&self, request: &ConfigRequest) -> Result<ConfigSet> {
        let stage = request.stage.as_str();
        let mut set = ConfigSet::new();
        let entry = |value| ConfigEntry { value, source: self.name.clone(), version: None };
        for (key, value) in self.read(stage, &self.path, self.format)? {
            let value = if self.secret_keys.contains(&key) {
                ConfigValue::Secret(Secret::new(value))
            } else {
                ConfigValue::Plain(value)
            };
            set.insert(key, entry(value));
        }
        if let Some((path, format)) = &self.secrets_path {
            for (key, value) in self.read(stage, path, *format)? {
                set.insert(key, entry(ConfigValue::Secret(Secret::new(value))));
            }
        }
        check_required(&set, &self.required, stage, &self.name)?;
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_follows_the_file_name() {
        for (name, format) in [
            (".env", FileFormat::Dotenv),
            ("prd.env", FileFormat::Dotenv),
            (".env.prd", FileFormat::Dotenv),
            ("{stage}.env", FileFormat::Dotenv),
            ("config.yaml", FileFormat::Yaml),
            ("config/{stage}.yml", FileFormat::Yaml),
        ] {
            assert_eq!(FileFormat::from_path(Path::new(name)), format, "{name}");
        }
    }

    #[test]
    fn dotenv_substitutions_are_found_where_dotenvy_makes_them() {
        let text = "A=$HOME\nB='$PATH'\nC=\"${USER}x\"\nD=\\$LITERAL\n# $COMMENTED\nE=\"multi\nline $SHELL\"\nF=x # $TRAILING\nG=x#$LANG\n";
        let names: Vec<(usize, String)> = substitutions(text);
        assert_eq!(
            names,
            [(1, "HOME".to_owned()), (3, "USER".to_owned()), (7, "SHELL".to_owned()), (9, "LANG".to_owned())],
            "single-quoted, escaped and commented references are not substitutions"
        );
    }

    #[test]
    fn a_dotenv_file_cannot_copy_the_process_environment() {
        let text = "TOKEN=${PATH}\n";
        let invalid = |line: Option<usize>, message: String| Error::invalid("test", format!("{line:?}"), message);
        let error = refuse_env_substitution(text, &invalid).unwrap_err().to_string();
        assert!(error.contains("Some(1)") && error.contains("`${PATH}`"), "{error}");
        let path = std::env::var("PATH").unwrap();
        assert!(!error.contains(&path), "the error names the variable, never its value");
        assert!(refuse_env_substitution("A=1\nB=${A}\nC='${PATH}'\n", &invalid).is_ok());
    }

    #[test]
    fn a_dotenv_parse_error_names_the_line_not_the_value() {
        let text = "A=1\n# comment\nB=\"unterminated s3cr3t\nC=3\n";
        let error = read_dotenv(text, &|line, message| Error::invalid("test", format!("{line:?}"), message))
            .unwrap_err()
            .to_string();
        assert!(error.contains("Some(3)"), "{error}");
        assert!(!error.contains("s3cr3t"), "{error}");
    }
}
