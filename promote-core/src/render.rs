//! Rendering: environment-agnostic handlebars templates + a stage's config → a [`Bundle`].
//!
//! Strict mode: a variable a template uses that the context lacks is an error naming the template file
//! and line. Every artifact is available as `artifacts.<name>.image` (`repo@sha256:…`, never a tag), with
//! `.digest`, `.repository`, `.commit` and `.version`; config values as `config.<KEY>`; the stage as
//! `stage`; the build as `build.id`, `build.commit`, `build.version`.

use std::collections::BTreeMap;
use std::path::Path;

use handlebars::Handlebars;
use serde_json::{Map, Value, json};

use crate::build::Build;
use crate::config::{ConfigSet, REDACTED};
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
mod manifest_functions {
    #![allow(missing_docs, unreachable_pub)]
    use base64::Engine as _;
    use handlebars::handlebars_helper;

    handlebars_helper!(b64enc: |text: str| base64::engine::general_purpose::STANDARD.encode(text));
    handlebars_helper!(quote: |text: str| serde_json::to_string(text).unwrap_or_default());
    handlebars_helper!(to_json: |value: Json| value.to_string());
    handlebars_helper!(indent: |width: u64, text: str| {
        let pad = " ".repeat(width as usize);
        text.lines().map(|line| format!("{pad}{line}")).collect::<Vec<_>>().join("\n")
    });
}
use manifest_functions::{b64enc, indent, quote, to_json};

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
        registry.register_helper("b64enc", Box::new(b64enc));
        registry.register_helper("quote", Box::new(quote));
        registry.register_helper("toJson", Box::new(to_json));
        registry.register_helper("indent", Box::new(indent));
        let mut names = Vec::new();
        for (name, text) in sources {
            let name = name.into();
            registry
                .register_template_string(&name, text.as_ref())
                .map_err(|error| Error::Template {
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
            let template = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "hbs"));
            if template {
                let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
                sources.push((path.display().to_string(), text));
            }
        }
        if sources.is_empty() {
            return Err(Error::not_found(
                Resource::Template,
                format!("{}/*.yaml", dir.display()),
            ));
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
        let real = context(stage, build, placed, config, false);
        let masked = context(stage, build, placed, config, true);
        let mut manifests = Vec::new();
        for name in &self.names {
            let text = self.render_one(name, &real)?;
            let masked_text = self.render_one(name, &masked)?;
            let documents = split_documents(&text);
            let masked_documents = split_documents(&masked_text);
            for (index, (document, masked_document)) in
                documents.iter().zip(masked_documents).enumerate()
            {
                let (api_version, kind, object, namespace) = identify(name, index, document)?;
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

    fn render_one(&self, name: &str, data: &Value) -> Result<String> {
        self.registry
            .render(name, data)
            .map_err(|error| Error::Template {
                location: Location {
                    file: error
                        .template_name
                        .clone()
                        .unwrap_or_else(|| name.to_owned())
                        .into(),
                    line: error.line_no,
                    column: error.column_no,
                },
                message: error.reason().to_string(),
            })
    }
}

fn context(
    stage: &str,
    build: &Build,
    placed: &BTreeMap<String, PlacedArtifact>,
    config: &ConfigSet,
    mask: bool,
) -> Value {
    let version = build.version.as_ref().map(ToString::to_string);
    let artifacts: Map<String, Value> = build
        .artifacts
        .iter()
        .map(|(name, artifact)| {
            let location = placed.get(name).map_or(&artifact.reference, |p| &p.target);
            let image = location.pinned(&artifact.digest);
            let value = json!({
                "image": image.to_string(),
                "digest": artifact.digest.as_str(),
                "repository": location.name(),
                "commit": build.commit,
                "version": version,
            });
            (name.clone(), value)
        })
        .collect();
    let config: Map<String, Value> = config
        .iter()
        .map(|(key, entry)| {
            let value = if mask {
                entry.value.display_value()
            } else {
                entry.value.expose()
            };
            (key.clone(), Value::String(value.to_owned()))
        })
        .collect();
    let _ = REDACTED;
    json!({
        "stage": stage,
        "build": { "id": build.id.as_str(), "commit": build.commit, "version": version },
        "artifacts": artifacts,
        "config": config,
    })
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
    documents.retain(|doc| {
        doc.lines()
            .any(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
    });
    documents
}

/// Reads apiVersion, kind, metadata.name and metadata.namespace from a rendered document.
fn identify(
    template: &str,
    index: usize,
    document: &str,
) -> Result<(String, String, String, Option<String>)> {
    let invalid = |message: String| Error::Template {
        location: Location {
            file: template.into(),
            line: None,
            column: None,
        },
        message: format!("rendered document {}: {message}", index + 1),
    };
    let node = marked_yaml::parse_yaml(0, document)
        .map_err(|error| invalid(format!("is not valid YAML: {error}")))?;
    let mapping = node
        .as_mapping()
        .ok_or_else(|| invalid("is not a mapping".into()))?;
    let field = |key: &str| mapping.get_scalar(key).map(|s| s.as_str().to_owned());
    let api_version = field("apiVersion").ok_or_else(|| invalid("has no apiVersion".into()))?;
    let kind = field("kind").ok_or_else(|| invalid("has no kind".into()))?;
    let metadata = mapping
        .get_mapping("metadata")
        .ok_or_else(|| invalid("has no metadata".into()))?;
    let name = metadata
        .get_scalar("name")
        .map(|s| s.as_str().to_owned())
        .ok_or_else(|| invalid("has no metadata.name".into()))?;
    let namespace = metadata
        .get_scalar("namespace")
        .map(|s| s.as_str().to_owned());
    Ok((api_version, kind, name, namespace))
}
