//! Rendering: environment-agnostic handlebars templates + a stage's config → a [`Bundle`].
//!
//! Strict mode: a variable a template uses that the context lacks is an error naming the template file
//! and line. Every artifact is available as `artifacts.<name>.image` (`repo@sha256:…`, never a tag), with
//! `.digest`, `.repository`, `.commit` and `.version`; config values as `config.<KEY>`; the stage as
//! `stage`; the build as `build.id`, `build.commit`, `build.version`.
//!
//! Helpers: `b64enc`, `quote`, `toJson`, `indent N text`, `default value fallback` (the fallback when the
//! value is missing, null or empty) and `required value "message"` (an error naming the key, the stage and
//! the line when it is missing, null or empty). A secret may fill in values but not decide an object's
//! identity or the number of documents, because plans and logs show the rendering with secrets masked.

use std::collections::BTreeMap;
use std::path::Path;

use handlebars::{Context, Handlebars, RenderErrorReason};
use serde_json::{Map, Value, json};

use crate::build::Build;
use crate::config::ConfigSet;
use crate::deploy::{Bundle, Manifest};
use crate::error::{Error, Location, Resource, Result};
use crate::ledger::PlacedArtifact;

/// A set of manifest templates.
#[derive(Debug, Clone)]
pub struct Templates {
    registry: Handlebars<'static>,
    names: Vec<String>,
}

/// The helpers a manifest author needs, registered on every template set.
///
/// They are written by hand rather than with `handlebars_helper!` so that, in strict mode, a missing
/// argument is reported by its path (`config.DB_URL`) rather than as a helper's unnamed parameter, and so
/// that `default` and `required` can see that an argument is missing instead of failing before they run.
mod manifest_functions {
    use base64::Engine as _;
    use handlebars::{
        Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, RenderErrorReason, ScopedJson,
    };
    use serde_json::Value;

    /// One helper.
    #[derive(Debug, Clone, Copy)]
    pub(super) enum Function {
        /// `{{b64enc value}}`: base64 of the text.
        B64enc,
        /// `{{quote value}}`: the text as a double-quoted string, escaped (valid YAML and JSON).
        Quote,
        /// `{{toJson value}}`: the value as JSON.
        ToJson,
        /// `{{indent width text}}`: every line of the text indented by `width` spaces.
        Indent,
        /// `{{default value fallback}}`: the value, or the fallback when it is missing, null or empty.
        Default,
        /// `{{required value "message"}}`: the value, or an error naming it when missing, null or empty.
        Required,
    }

    impl Function {
        /// Every helper, by the name templates call it.
        pub(super) const ALL: [(&'static str, Function); 6] = [
            ("b64enc", Function::B64enc),
            ("quote", Function::Quote),
            ("toJson", Function::ToJson),
            ("indent", Function::Indent),
            ("default", Function::Default),
            ("required", Function::Required),
        ];
    }

    fn other(message: String) -> RenderError {
        RenderErrorReason::Other(message).into()
    }

    /// Argument `index`, which must be present and set.
    fn argument<'a>(h: &'a Helper<'_>, index: usize, what: &str) -> Result<&'a Value, RenderError> {
        match h.param(index) {
            None => Err(other(format!("{} needs {what} as argument {}", h.name(), index + 1))),
            Some(param) if param.is_value_missing() => {
                Err(RenderErrorReason::MissingVariable(param.relative_path().cloned()).into())
            }
            Some(param) => Ok(param.value()),
        }
    }

    /// A scalar as text: strings as they are, numbers and booleans printed, null as "".
    fn text(h: &Helper<'_>, value: &Value, what: &str) -> Result<String, RenderError> {
        match value {
            Value::String(text) => Ok(text.clone()),
            Value::Null => Ok(String::new()),
            Value::Bool(_) | Value::Number(_) => Ok(value.to_string()),
            Value::Array(_) | Value::Object(_) => {
                Err(other(format!("{} needs text as {what}, not a list or a map (use toJson)", h.name())))
            }
        }
    }

    fn unset(param: Option<&handlebars::PathAndJson<'_>>) -> bool {
        param.is_none_or(|p| {
            p.is_value_missing() || matches!(p.value(), Value::Null) || p.value().as_str().is_some_and(str::is_empty)
        })
    }

    impl HelperDef for Function {
        fn call_inner<'reg: 'rc, 'rc>(
            &self,
            h: &Helper<'rc>,
            _: &'reg Handlebars<'reg>,
            context: &'rc Context,
            _: &mut RenderContext<'reg, 'rc>,
        ) -> Result<ScopedJson<'rc>, RenderError> {
            let value = match self {
                Function::B64enc => {
                    let text = text(h, argument(h, 0, "a value")?, "its argument")?;
                    Value::String(base64::engine::general_purpose::STANDARD.encode(text))
                }
                Function::Quote => {
                    let text = text(h, argument(h, 0, "a value")?, "its argument")?;
                    Value::String(Value::String(text).to_string())
                }
                Function::ToJson => Value::String(argument(h, 0, "a value")?.to_string()),
                Function::Indent => {
                    let width = argument(h, 0, "a width")?
                        .as_u64()
                        .ok_or_else(|| other("indent needs a number of spaces as argument 1".into()))?;
                    let text = text(h, argument(h, 1, "a text")?, "argument 2")?;
                    let pad = " ".repeat(usize::try_from(width).unwrap_or(0));
                    let lines: Vec<String> = text.lines().map(|line| format!("{pad}{line}")).collect();
                    Value::String(lines.join("\n"))
                }
                Function::Default => {
                    if unset(h.param(0)) {
                        argument(h, 1, "a fallback value")?.clone()
                    } else {
                        argument(h, 0, "a value")?.clone()
                    }
                }
                Function::Required => {
                    let message = h
                        .param(1)
                        .map(|param| match param.value() {
                            Value::String(text) => format!(": {text}"),
                            other => format!(": {other}"),
                        })
                        .unwrap_or_default();
                    if unset(h.param(0)) {
                        let path = h
                            .param(0)
                            .and_then(|p| p.relative_path().cloned())
                            .unwrap_or_else(|| "its argument".into());
                        let stage = context.data().get("stage").and_then(Value::as_str);
                        let what = match (path.strip_prefix("config."), stage) {
                            (Some(key), Some(stage)) => {
                                format!("config key {key} is required for stage {stage}")
                            }
                            _ => format!("{path} is required"),
                        };
                        return Err(other(format!("{what} but is not set{message}")));
                    }
                    argument(h, 0, "a value")?.clone()
                }
            };
            Ok(ScopedJson::Derived(value))
        }
    }
}
use manifest_functions::Function;

impl Templates {
    /// Templates from `(file name, text)` pairs, rendered in name order.
    pub fn from_sources<I, N, T>(sources: I) -> Result<Self>
    where
        I: IntoIterator<Item = (N, T)>,
        N: Into<String>,
        T: AsRef<str>,
    {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        for (name, function) in Function::ALL {
            registry.register_helper(name, Box::new(function));
        }
        let mut names = Vec::new();
        for (name, text) in sources {
            let name = name.into();
            registry.register_template_string(&name, text.as_ref()).map_err(|error| Error::Template {
                location: Location {
                    file: name.clone().into(),
                    line: error.pos().map(|p| p.0),
                    column: error.pos().map(|p| p.1),
                },
                message: error.reason().to_string(),
            })?;
            names.push(name);
        }
        names.sort();
        Ok(Templates { registry, names })
    }

    /// Every `*.yaml`, `*.yml` and `*.hbs` file in `dir`, named by their path.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut sources = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let template =
                path.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "yaml" | "yml" | "hbs"));
            if template {
                let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
                sources.push((path.display().to_string(), text));
            }
        }
        if sources.is_empty() {
            return Err(Error::not_found(Resource::Template, format!("{}/*.yaml", dir.display())));
        }
        Self::from_sources(sources)
    }

    /// The template names, in render order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Renders every template for `stage`, once with real values and once with secrets masked, and
    /// validates each document.
    pub fn render(
        &self,
        stage: &str,
        build: &Build,
        placed: &BTreeMap<String, PlacedArtifact>,
        config: &ConfigSet,
    ) -> Result<Bundle> {
        let (real, masked) = contexts(stage, build, placed, config);
        let mut manifests = Vec::new();
        for name in &self.names {
            let text = self.render_one(name, stage, &real)?;
            let masked_text = self.render_one(name, stage, &masked)?;
            let documents = split_documents(&text);
            let masked_documents = split_documents(&masked_text);
            if documents.len() != masked_documents.len() {
                return Err(secret_shapes_output(name, "the number of YAML documents"));
            }
            for (index, (document, masked_document)) in documents.iter().zip(masked_documents).enumerate() {
                let identity = identify(name, index, document)?;
                // Object identities are shown in plans, logs and events: they must not hold a secret.
                if identify(name, index, &masked_document).ok().as_ref() != Some(&identity) {
                    return Err(secret_shapes_output(
                        name,
                        &format!("document {}'s apiVersion, kind, name or namespace", index + 1),
                    ));
                }
                let (api_version, kind, object, namespace) = identity;
                manifests.push(Manifest::new(
                    api_version,
                    kind,
                    object,
                    namespace,
                    name.clone(),
                    document.to_string(),
                    masked_document.to_string(),
                ));
            }
        }
        Ok(Bundle::new(stage, manifests))
    }

    fn render_one(&self, name: &str, stage: &str, data: &Context) -> Result<String> {
        // `render_with_context`, not `render`: the latter deep-copies the whole context on every call.
        self.registry.render_with_context(name, data).map_err(|error| Error::Template {
            location: Location {
                file: error.template_name.clone().unwrap_or_else(|| name.to_owned()).into(),
                line: error.line_no,
                column: error.column_no,
            },
            message: match error.reason() {
                RenderErrorReason::MissingVariable(path) => missing_message(path.as_deref(), stage),
                other => other.to_string(),
            },
        })
    }
}

/// What strict mode says about a variable the context lacks.
fn missing_message(path: Option<&str>, stage: &str) -> String {
    match path {
        Some(path) => match path.strip_prefix("config.") {
            Some(key) => format!(
                "config key {key} is not set for stage {stage}: no config source of the stage supplies it \
                 (strict mode; write {{{{default config.{key} \"…\"}}}} if it is optional)"
            ),
            None => format!("`{path}` is not set (strict mode refuses a variable the context lacks)"),
        },
        None => "a variable the template uses is not set (strict mode)".to_owned(),
    }
}

/// The error for a secret whose value changes the shape of the output, which masking would then hide.
fn secret_shapes_output(template: &str, what: &str) -> Error {
    Error::Template {
        location: Location { file: template.into(), line: None, column: None },
        message: format!(
            "a secret value changes {what}; secrets may only fill in values, because plans and logs show \
             the output with secrets masked"
        ),
    }
}

/// The template contexts: one with real config values, one with secrets masked. They differ only in
/// `config`, so the rest (one entry per artifact) is built once.
fn contexts(
    stage: &str,
    build: &Build,
    placed: &BTreeMap<String, PlacedArtifact>,
    config: &ConfigSet,
) -> (Context, Context) {
    let version = build.version.as_ref().map(ToString::to_string);
    let version_value = version.clone().map_or(Value::Null, Value::String);
    // Built as maps directly rather than with `json!`: a build may hold thousands of artifacts.
    let artifacts: Map<String, Value> = build
        .artifacts
        .iter()
        .map(|(name, artifact)| {
            let location = placed.get(name).map_or(&artifact.reference, |p| &p.target);
            let fields = [
                ("image", Value::String(location.pinned(&artifact.digest).to_string())),
                ("digest", Value::String(artifact.digest.as_str().to_owned())),
                ("repository", Value::String(location.name())),
                ("commit", Value::String(build.commit.clone())),
                ("version", version_value.clone()),
            ];
            (name.clone(), Value::Object(fields.into_iter().map(|(key, value)| (key.to_owned(), value)).collect()))
        })
        .collect();
    let config_values = |mask: bool| -> Map<String, Value> {
        config
            .iter()
            .map(|(key, entry)| {
                let value = if mask { entry.value.display_value() } else { entry.value.expose() };
                (key.clone(), Value::String(value.to_owned()))
            })
            .collect()
    };
    let context = |artifacts: Map<String, Value>, mask: bool| {
        Context::from(json!({
            "stage": stage,
            "build": { "id": build.id.as_str(), "commit": build.commit, "version": version },
            "artifacts": artifacts,
            "config": config_values(mask),
        }))
    };
    (context(artifacts.clone(), false), context(artifacts, true))
}

/// Splits a multi-document YAML text on `---` lines, dropping documents that hold only comments.
fn split_documents(text: &str) -> Vec<String> {
    let mut documents = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            documents.push(String::new());
        } else {
            let current = documents.last_mut().expect("never empty");
            current.push_str(line);
            current.push('\n');
        }
    }
    documents.retain(|doc| doc.lines().any(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#')));
    documents
}

/// Reads apiVersion, kind, metadata.name and metadata.namespace from a rendered document.
fn identify(template: &str, index: usize, document: &str) -> Result<(String, String, String, Option<String>)> {
    let invalid = |message: String| Error::Template {
        location: Location { file: template.into(), line: None, column: None },
        message: format!("rendered document {}: {message}", index + 1),
    };
    let node = marked_yaml::parse_yaml(0, document).map_err(|error| invalid(format!("is not valid YAML: {error}")))?;
    let mapping = node.as_mapping().ok_or_else(|| invalid("is not a mapping".into()))?;
    let field = |key: &str| mapping.get_scalar(key).map(|s| s.as_str().to_owned());
    let api_version = field("apiVersion").ok_or_else(|| invalid("has no apiVersion".into()))?;
    let kind = field("kind").ok_or_else(|| invalid("has no kind".into()))?;
    let metadata = mapping.get_mapping("metadata").ok_or_else(|| invalid("has no metadata".into()))?;
    let name = metadata
        .get_scalar("name")
        .map(|s| s.as_str().to_owned())
        .ok_or_else(|| invalid("has no metadata.name".into()))?;
    let namespace = metadata.get_scalar("namespace").map(|s| s.as_str().to_owned());
    Ok((api_version, kind, name, namespace))
}
