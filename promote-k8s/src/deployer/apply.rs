//! Server-side apply of one object: for real or as a dry run (`dryRun=All`), with one field manager and
//! `force` as the stage says. A conflict with another manager is an error naming each field and manager.

use kube::Client;
use kube::api::{Patch, PatchParams};
use promote_core::error::{Error, Result};
use serde_json::Value;

use super::objects::{Desired, refused};
use crate::error::{from_kube, is_missing_namespace, status};
use crate::retry::retrying;

/// How an apply went wrong, when the caller can act on it.
pub(crate) enum ApplyFailure {
    /// The object's namespace does not exist (a dry run before the namespace is created).
    MissingNamespace,
    /// Anything else, already a core error.
    Failed(Error),
}

/// Applies `desired` and returns the object as the server stored it (or, in a dry run, would store it).
pub(crate) async fn apply(
    client: &Client,
    stage: &str,
    desired: &Desired,
    field_manager: &str,
    force: bool,
    dry_run: bool,
) -> std::result::Result<Value, ApplyFailure> {
    let api = desired.rt.api(client, desired.reference.namespace.as_deref());
    let mut params = PatchParams::apply(field_manager);
    params.force = force;
    params.dry_run = dry_run;
    let patch = Patch::Apply(&desired.body);
    let applied = retrying(|| api.patch(&desired.reference.name, &params, &patch)).await;
    match applied {
        Ok(object) => Ok(serde_json::to_value(object).unwrap_or_default()),
        Err(error) if is_missing_namespace(&error) => Err(ApplyFailure::MissingNamespace),
        Err(error) => Err(ApplyFailure::Failed(apply_error(stage, desired, error))),
    }
}

/// The core error for a failed apply of `desired`. A server message about an object whose content is
/// secret is withheld: it may quote a value.
pub(crate) fn apply_error(stage: &str, desired: &Desired, error: kube::Error) -> Error {
    let object = format!("{} ({})", desired.key, desired.reference);
    let Some(status) = status(&error) else {
        return from_kube(error, &format!("apply {object}"));
    };
    match status.code {
        409 if conflicts(status).next().is_some() => {
            let fields: Vec<String> =
                conflicts(status).map(|(field, manager)| format!("{field} (owned by {manager})")).collect();
            refused(
                stage,
                format!(
                    "{object}: server-side apply conflicts with another field manager on {}. Another tool manages \
                     these fields: remove them from the bundle, or set force_conflicts: true on this stage to take \
                     them over",
                    fields.join(", ")
                ),
            )
        }
        400 | 422 => {
            let detail = if desired.secret {
                let fields: Vec<&str> = status
                    .details
                    .iter()
                    .flat_map(|d| d.causes.iter())
                    .map(|c| c.field.as_str())
                    .filter(|f| !f.is_empty())
                    .collect();
                let fields =
                    if fields.is_empty() { String::new() } else { format!(" (fields: {})", fields.join(", ")) };
                format!(
                    "{}{fields}; the server's message is withheld because the object holds secret values",
                    status.reason
                )
            } else {
                status.message.clone()
            };
            refused(
                stage,
                format!("{object} was refused by the API server ({} {}): {detail}", status.code, status.reason),
            )
        }
        _ if desired.secret && !matches!(status.code, 401 | 403 | 404 | 429 | 500..=599) => {
            refused(stage, format!("{object}: the API server answered {} {}", status.code, status.reason))
        }
        _ => from_kube(error, &format!("apply {object}")),
    }
}

/// The `(field, manager)` pairs of an apply conflict, from the `FieldManagerConflict` causes of its Status
/// (`conflict with "helm" using apps/v1` on `.spec.replicas`).
fn conflicts(status: &kube::core::Status) -> impl Iterator<Item = (String, String)> + '_ {
    status.details.iter().flat_map(|d| d.causes.iter()).filter(|c| c.reason == "FieldManagerConflict").map(|cause| {
        let manager = cause.message.split('"').nth(1).unwrap_or(cause.message.as_str()).to_owned();
        (cause.field.clone(), manager)
    })
}

/// Whether an apply error leaves the promotion failed (a refusal) rather than open for a re-run.
pub(crate) fn into_result<T>(
    result: std::result::Result<T, ApplyFailure>,
    stage: &str,
    desired: &Desired,
) -> Result<T> {
    result.map_err(|failure| match failure {
        ApplyFailure::Failed(error) => error,
        ApplyFailure::MissingNamespace => refused(
            stage,
            format!(
                "{}: namespace {} does not exist: create it, add a Namespace object to the bundle, or set \
                 create_namespace: true on the stage's deployer",
                desired.key,
                desired.reference.namespace.as_deref().unwrap_or_default()
            ),
        ),
    })
}
