//! Rendering: environment-agnostic handlebars templates + a stage's config → a [`Bundle`].
//!
//! Strict mode: a variable a template uses that the context lacks is an error naming the template file
//! and line. Every artifact is available as `artifacts.<name>.image` (`repo@sha256:…`, never a tag), with
//! `.digest`, `.repository`, `.commit` and `.version`; config values as `config.<KEY>`; the stage as
//! `stage`; the build as `build.id`, `build.commit`, `build.version`.
//!
//! Helpers: `b64enc`, `quote`, `toJson`, `indent N text`, `default value fallback` (the fallback when the
//! value is missing, null or empty) and `required value "message"` (an error naming the key, the stage and
//! the line when it is missing, null or empty; the message is a literal).
//!
//! **Secrets never enter the template engine.** Each secret is an opaque token while templates render;
//! the values are filled in afterwards, so that nothing the template engine logs or reports can hold one.
//! A secret may therefore fill in values (as they are, quoted, base64-encoded, indented, inside `toJson`)
//! but cannot decide anything: an object's identity, the number of documents, a condition or a comparison
//! sees only the token. No error names a value: when only the filled-in rendering is wrong, the error says
//! which document and that a secret value broke it, nothing more.
//!
//! Rendering is bounded ([`RenderBudget`]): no partials or decorators, limited block nesting, `indent` at
//! most [`MAX_INDENT`] wide, a cap on each template's output, and a cap on the iterations of its
//! `{{#each}}` blocks.

mod budget;
mod documents;
mod functions;
mod opaque;

use std::collections::BTreeMap;
use std::path::Path;

use handlebars::{Context, Handlebars, RenderErrorReason};
use serde_json::{Map, Value, json};

pub use budget::{MAX_INDENT, RenderBudget};

use crate::build::Build;
use crate::config::{ConfigSet, ConfigValue};
use crate::deploy::{Bundle, RenderedObject};
use crate::error::{Error, Location, Resource, Result};
use crate::ledger::PlacedArtifact;
use documents::{Identity, check_names, identify, split_documents};
use functions::Function;
use opaque::{Fill, SecretTable};

/// A set of manifest templates.
#[derive(Debug, Clone)]
pub struct Templates {
    registry: Handlebars<'static>,
    names: Vec<String>,
    budget: RenderBudget,
}

impl Templates {
    /// Templates from `(file name, text)` pairs, rendered in name order, with the default [`RenderBudget`].
    pub fn from_sources<I, N, T>(sources: I) -> Result<Self>
    where
        I: IntoIterator<Item = (N, T)>,
        N: Into<String>,
        T: AsRef<str>,
    {
        Self::from_sources_with_budget(sources, RenderBudget::default())
    }

    /// Templates from `(file name, text)` pairs, bounded by `budget`.
    pub fn from_sources_with_budget<I, N, T>(sources: I, budget: RenderBudget) -> Result<Self>
    where
        I: IntoIterator<Item = (N, T)>,
        N: Into<String>,
        T: AsRef<str>,
    {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        // `log` would print a value at ERROR; templates have no use for it.
        registry.unregister_helper("log");
        for (name, function) in Function::ALL {
            registry.register_helper(name, Box::new(function));
        }
        registry.register_helper(budget::ITERATION_HELPER, Box::new(budget::IterationCounter));
        let mut names = Vec::new();
        for (name, text) in sources {
            let name = name.into();
            let text = text.as_ref();
            let at = |line: Option<usize>, column: Option<usize>, message: String| Error::Template {
                location: Location { file: name.clone().into(), line, column },
                message,
            };
            if let Some(problem) = opaque::check_free_of_markers(text) {
                return Err(at(None, None, format!("the template {problem}")));
            }
            let mut template = handlebars::Template::compile(text)
                .map_err(|error| at(error.pos().map(|p| p.0), error.pos().map(|p| p.1), error.reason().to_string()))?;
            budget::check_template(&template, &budget)
                .map_err(|refusal| at(refusal.line, refusal.column, refusal.message))?;
            budget::count_iterations(&mut template);
            registry.register_template(&name, template);
            names.push(name);
        }
        names.sort();
        Ok(Templates { registry, names, budget })
    }

    /// Every `*.yaml`, `*.yml` and `*.hbs` file in `dir`, named by their path.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_dir_shown_as(dir, dir)
    }

    /// Every `*.yaml`, `*.yml` and `*.hbs` file in `dir`, named `shown_as/<file name>` in errors and in the
    /// bundle: the path as the user wrote it (a spec names templates relative to its own directory).
    pub fn from_dir_shown_as(dir: &Path, shown_as: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut sources = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let path = entry.path();
            let template =
                path.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "yaml" | "yml" | "hbs"));
            if template {
                let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
                sources.push((shown_as.join(entry.file_name()).display().to_string(), text));
            }
        }
        if sources.is_empty() {
            return Err(Error::not_found(Resource::Template, format!("{}/*.yaml", shown_as.display())));
        }
        Self::from_sources(sources)
    }

    /// The same templates bounded by `budget`.
    pub fn with_budget(mut self, budget: RenderBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The template names, in render order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Renders every template for `stage` and validates each document: the real rendering for the deployer
    /// and the masked one for everything shown.
    pub fn render(
        &self,
        stage: &str,
        build: &Build,
        placed: &BTreeMap<String, PlacedArtifact>,
        config: &ConfigSet,
    ) -> Result<Bundle> {
        let mut secrets = SecretTable::default();
        let context = context(stage, build, placed, config, &mut secrets)?;
        let mut manifests = Vec::new();
        for name in &self.names {
            let text = self.render_one(name, stage, &context)?;
            for (index, document) in split_documents(&text).into_iter().enumerate() {
                let invalid =
                    |message: String| template_error(name, format!("rendered document {}: {message}", index + 1));
                let identity = identify(&document).map_err(|message| invalid(opaque::mask_for_message(&message)))?;
                let Identity { api_version, kind, name: object, namespace } = &identity;
                let decided_by_secret =
                    [api_version, kind, object].into_iter().chain(namespace).any(|f| opaque::is_opaque(f));
                if decided_by_secret {
                    return Err(secret_shapes_output(
                        name,
                        &format!("document {}'s apiVersion, kind, name or namespace", index + 1),
                    ));
                }
                check_names(&identity).map_err(|message| invalid(format!("{kind}/{object}: {message}")))?;
                let (real, masked) = if opaque::is_opaque(&document) {
                    let malformed = |_| invalid("internal error: a secret token did not resolve".into());
                    let real = opaque::resolve(&document, &secrets, Fill::Real).map_err(malformed)?;
                    let masked = opaque::resolve(&document, &secrets, Fill::Masked).map_err(malformed)?;
                    // Only the identity is compared: the filled-in document is never shown, even in an error.
                    let same_shape =
                        matches!(&split_documents(&real)[..], [one] if identify(one).ok().as_ref() == Some(&identity));
                    if !same_shape {
                        return Err(secret_shapes_output(
                            name,
                            &format!(
                                "document {} ({kind}/{object}): once filled in, it no longer parses as the same single YAML document (quote the value, or use b64enc)",
                                index + 1
                            ),
                        ));
                    }
                    (real, masked)
                } else {
                    (document.clone(), document)
                };
                manifests.push(RenderedObject::new(
                    identity.api_version,
                    identity.kind,
                    identity.name,
                    identity.namespace,
                    name.clone(),
                    real,
                    masked,
                ));
            }
        }
        Ok(Bundle::new(stage, manifests))
    }

    fn render_one(&self, name: &str, stage: &str, data: &Context) -> Result<String> {
        let mut output = budget::BoundedOutput::new(self.budget.max_output_bytes);
        budget::start_iterations(self.budget.max_iterations);
        // `…_with_context`: `render` would deep-copy the whole context on every call.
        let rendered = self.registry.render_with_context_to_write(name, data, &mut output);
        if let Err(error) = rendered {
            let message = match error.reason() {
                RenderErrorReason::MissingVariable(path) => missing_message(path.as_deref(), stage),
                RenderErrorReason::IOError(io) if io.to_string() == budget::OUTPUT_FULL => format!(
                    "the template renders to more than {} bytes (the render budget)",
                    self.budget.max_output_bytes
                ),
                RenderErrorReason::Other(text) if text == budget::ITERATIONS_SPENT => format!(
                    "the template's {{{{#each}}}} blocks iterate more than {} times (the render budget)",
                    self.budget.max_iterations
                ),
                other => opaque::mask_for_message(&other.to_string()),
            };
            return Err(Error::Template {
                location: Location {
                    file: error.template_name.clone().unwrap_or_else(|| name.to_owned()).into(),
                    line: error.line_no,
                    column: error.column_no,
                },
                message,
            });
        }
        // Helpers produce only UTF-8 strings.
        String::from_utf8(output.bytes).map_err(|_| template_error(name, "rendered output is not UTF-8".into()))
    }
}

fn template_error(template: &str, message: String) -> Error {
    Error::Template { location: Location { file: template.into(), line: None, column: None }, message }
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

/// The error for a secret whose value shapes the output, which masking would then hide.
fn secret_shapes_output(template: &str, what: &str) -> Error {
    template_error(
        template,
        format!(
            "a secret value decides {what}; secrets may only fill in values, because plans and logs show \
             the output with secrets masked"
        ),
    )
}

/// The template context. Secrets appear in it only as tokens of `secrets`.
fn context(
    stage: &str,
    build: &Build,
    placed: &BTreeMap<String, PlacedArtifact>,
    config: &ConfigSet,
    secrets: &mut SecretTable,
) -> Result<Context> {
    let reserved = |what: String, text: &str| match opaque::check_free_of_markers(text) {
        Some(problem) => Err(Error::invalid("template value", what, problem)),
        None => Ok(()),
    };
    let version = build.version.as_ref().map(ToString::to_string);
    let version_value = version.clone().map_or(Value::Null, Value::String);
    reserved("build.commit".into(), &build.commit)?;
    // Built as maps directly rather than with `json!`: a build may hold thousands of artifacts.
    let mut artifacts = Map::new();
    for (name, artifact) in &build.artifacts {
        let location = placed.get(name).map_or(&artifact.reference, |p| &p.target);
        let image = location.pinned(&artifact.digest).to_string();
        reserved(format!("artifacts.{name}.image"), &image)?;
        let fields = [
            ("image", Value::String(image)),
            ("digest", Value::String(artifact.digest.as_str().to_owned())),
            ("repository", Value::String(location.name())),
            ("commit", Value::String(build.commit.clone())),
            ("version", version_value.clone()),
        ];
        artifacts.insert(
            name.clone(),
            Value::Object(fields.into_iter().map(|(key, value)| (key.to_owned(), value)).collect()),
        );
    }
    let mut config_values = Map::new();
    for (key, entry) in config.iter() {
        let value = match &entry.value {
            ConfigValue::Plain(text) => {
                reserved(format!("config.{key}"), text)?;
                text.clone()
            }
            // An empty secret stays empty, so that `default` and `required` see it as unset.
            ConfigValue::Secret(secret) if secret.expose().is_empty() => String::new(),
            ConfigValue::Secret(secret) => secrets.token_for(secret),
        };
        config_values.insert(key.clone(), Value::String(value));
    }
    Ok(Context::from(json!({
        "stage": stage,
        "build": { "id": build.id.as_str(), "commit": build.commit, "version": version },
        "artifacts": artifacts,
        "config": config_values,
    })))
}
