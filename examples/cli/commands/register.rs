//! `register --commit SHA [--version V] [--label k=v]… --artifact name=REF…`.

use std::fmt::Write as _;

use promote_core::{ArtifactRef, BuildRequest, Error, Result, RevisionPolicy};
use serde_json::{Value, json};

use super::Context;
use crate::args::RegisterArgs;
use crate::output::Report;

/// Registers a build: every tag is resolved to its digest here, once.
pub(super) async fn run(context: &Context, args: RegisterArgs) -> Result<Report> {
    let actor = context.actor()?;
    let request = request(&args)?;
    let pipeline = context.pipeline().await?;
    let build = pipeline.register(request, &actor.name).await?;
    let mut text =
        format!("registered {} (commit {}, {})\n", build.id, crate::builds::short(&build.commit), build.label());
    for (name, artifact) in &build.artifacts {
        let _ = writeln!(text, "  {name}: {}", artifact.reference);
    }
    Ok(Report::done(json!({ "build": build }), text))
}

/// The request the arguments describe.
fn request(args: &RegisterArgs) -> Result<BuildRequest> {
    let mut request = BuildRequest::new(args.commit.trim());
    if let Some(version) = &args.version {
        let parsed = version
            .trim_start_matches('v')
            .parse()
            .map_err(|e| Error::invalid("version", version, format!("not a semantic version: {e}")))?;
        request = request.version(parsed);
    }
    if let Some(author) = &args.author {
        request = request.author(author);
    }
    for label in &args.labels {
        let (key, value) = split_pair("label", label)?;
        request = request.metadata(key, label_value(value));
    }
    for artifact in &args.artifacts {
        let (name, reference) = split_pair("artifact", artifact)?;
        request = request.artifact(name, ArtifactRef::parse(reference)?);
    }
    if args.allow_revision_mismatch {
        request = request.revision_policy(RevisionPolicy::Warn);
    }
    Ok(request)
}

fn split_pair<'a>(what: &'static str, text: &'a str) -> Result<(&'a str, &'a str)> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() && !value.trim().is_empty() => Ok((key.trim(), value.trim())),
        _ => Err(Error::invalid(what, text, "expected NAME=VALUE")),
    }
}

/// Numbers stay numbers (metric gates compare them), `true`/`false` booleans; the rest is text.
fn label_value(value: &str) -> Value {
    if let Ok(number) = value.parse::<i64>() {
        return json!(number);
    }
    if let Ok(number) = value.parse::<f64>()
        && number.is_finite()
    {
        return json!(number);
    }
    match value {
        "true" => json!(true),
        "false" => json!(false),
        _ => json!(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(artifacts: &[&str], labels: &[&str]) -> RegisterArgs {
        RegisterArgs {
            commit: "abcdef1234567".into(),
            version: Some("v1.2.3".into()),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            artifacts: artifacts.iter().map(|s| s.to_string()).collect(),
            author: None,
            allow_revision_mismatch: false,
        }
    }

    #[test]
    fn pairs_and_typed_labels() {
        let request = request(&args(&["web=registry.example/web:1"], &["coverage=91.5", "team=pay", "n=3"])).unwrap();
        assert_eq!(request.version.unwrap().to_string(), "1.2.3");
        assert_eq!(request.metadata["coverage"], json!(91.5));
        assert_eq!(request.metadata["n"], json!(3));
        assert_eq!(request.metadata["team"], json!("pay"));
        assert_eq!(request.artifacts["web"].to_string(), "registry.example/web:1");
    }

    #[test]
    fn malformed_pairs_are_usage_errors() {
        assert!(matches!(request(&args(&["web"], &[])), Err(Error::InvalidInput { .. })));
        assert!(matches!(request(&args(&["web=x"], &["=1"])), Err(Error::InvalidInput { .. })));
    }
}
