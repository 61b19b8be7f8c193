//! The one public error type of `promote`.
//!
//! Every backend maps its own failures into [`Error`]. Each variant means something a caller can act on,
//! and carries the context (stage, artifact, file and line) that says where. No variant ever carries a
//! secret value: backends put names (keys, repositories, references) in errors, never values.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::digest::Digest;

/// Result alias used throughout `promote`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed source error from a backend, kept for `std::error::Error::source`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of thing was not found, already existed, or was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Resource {
    /// An artifact reference (tag or digest) in a store.
    Artifact,
    /// A repository in a registry.
    Repository,
    /// A build registered in the ledger.
    Build,
    /// A stage of the pipeline.
    Stage,
    /// A promotion record.
    Promotion,
    /// A configuration key.
    ConfigKey,
    /// A secret in a secret store.
    Secret,
    /// A hold on a stage.
    Hold,
    /// A template file.
    Template,
    /// A deployed object.
    Object,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Artifact => "artifact",
            Resource::Repository => "repository",
            Resource::Build => "build",
            Resource::Stage => "stage",
            Resource::Promotion => "promotion",
            Resource::ConfigKey => "config key",
            Resource::Secret => "secret",
            Resource::Hold => "hold",
            Resource::Template => "template",
            Resource::Object => "object",
        })
    }
}

/// How a backend failure behaves if the same call is made again.
///
/// Retry layers trust only this: they retry [`ErrorClass::Temporary`] and nothing else, and what they gave
/// up on is [`ErrorClass::Exhausted`], so that no layer above repeats the storm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The same call may succeed if made again now (throttling, a 5xx, a reset connection).
    Temporary,
    /// A temporary failure that a retry layer already retried until its policy was spent: the service may
    /// recover later, but retrying at once would repeat what was tried.
    Exhausted,
    /// The call will fail again until something outside changes (permissions, a missing resource).
    Persistent,
}

impl ErrorClass {
    /// The class of an HTTP status: 408, 429 and 5xx (but 501 and 505) are temporary, the rest persistent.
    ///
    /// ```
    /// use promote_core::ErrorClass;
    /// assert_eq!(ErrorClass::from_http_status(503), ErrorClass::Temporary);
    /// assert_eq!(ErrorClass::from_http_status(429), ErrorClass::Temporary);
    /// assert_eq!(ErrorClass::from_http_status(403), ErrorClass::Persistent);
    /// assert_eq!(ErrorClass::from_http_status(501), ErrorClass::Persistent);
    /// ```
    pub fn from_http_status(status: u16) -> ErrorClass {
        match status {
            408 | 429 => ErrorClass::Temporary,
            501 | 505 => ErrorClass::Persistent,
            500..=599 => ErrorClass::Temporary,
            _ => ErrorClass::Persistent,
        }
    }
}

/// Why an approval was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApprovalRefusal {
    /// The identity is not on the stage's allow-list.
    NotAllowed,
    /// The same identity already approved this build for this stage.
    Duplicate,
    /// The approver requested the promotion or authored the build.
    SelfApproval,
    /// The approval arrived after its validity window.
    Expired,
    /// The stage has no manual approval gate, so there is nothing to approve.
    NoApprovalGate,
}

impl fmt::Display for ApprovalRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApprovalRefusal::NotAllowed => "the identity is not an allowed promoter",
            ApprovalRefusal::Duplicate => "the identity has already approved this build",
            ApprovalRefusal::SelfApproval => "self-approval is not allowed",
            ApprovalRefusal::Expired => "the approval has expired",
            ApprovalRefusal::NoApprovalGate => "the stage has no approval gate",
        })
    }
}

/// A place in a user's file: the file, and the 1-based line and column when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as the user named it.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

/// Where an error happened: the promotion, stage, step and artifact it broke. Every part is optional;
/// the engine fills in what it knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorContext {
    /// The promotion's id (`stage/build/attempt`).
    pub promotion: Option<String>,
    /// The stage.
    pub stage: Option<String>,
    /// The step of the promotion (`artifacts`, `render`, `deploy`…).
    pub step: Option<String>,
    /// The artifact's name in the build.
    pub artifact: Option<String>,
    /// The reference being read or written when it failed.
    pub reference: Option<String>,
    /// The backend that raised it, by its name in the pipeline (a config source's name).
    pub source_name: Option<String>,
}

impl ErrorContext {
    /// A context naming a stage.
    pub fn stage(stage: impl Into<String>) -> Self {
        ErrorContext { stage: Some(stage.into()), ..Self::default() }
    }

    /// Names the promotion.
    pub fn with_promotion(mut self, promotion: impl fmt::Display) -> Self {
        self.promotion = Some(promotion.to_string());
        self
    }

    /// Names the step.
    pub fn with_step(mut self, step: impl fmt::Display) -> Self {
        self.step = Some(step.to_string());
        self
    }

    /// Names the backend that raised the error.
    pub fn with_source(mut self, source_name: impl Into<String>) -> Self {
        self.source_name = Some(source_name.into());
        self
    }

    /// Names the artifact and the reference it was read from or written to.
    pub fn with_artifact(mut self, artifact: impl Into<String>, reference: impl fmt::Display) -> Self {
        self.artifact = Some(artifact.into());
        self.reference = Some(reference.to_string());
        self
    }
}

impl fmt::Display for ErrorContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        match (&self.promotion, &self.stage) {
            (Some(promotion), _) => parts.push(format!("promotion {promotion}")),
            (None, Some(stage)) => parts.push(format!("stage {stage}")),
            (None, None) => {}
        }
        if let Some(step) = &self.step {
            parts.push(format!("step {step}"));
        }
        if let Some(source) = &self.source_name {
            parts.push(format!("source {source}"));
        }
        match (&self.artifact, &self.reference) {
            (Some(artifact), Some(reference)) => parts.push(format!("artifact {artifact} ({reference})")),
            (Some(artifact), None) => parts.push(format!("artifact {artifact}")),
            (None, Some(reference)) => parts.push(reference.clone()),
            (None, None) => {}
        }
        f.write_str(&parts.join(", "))
    }
}

/// The error type of every `promote` API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input that does not parse: a digest, a reference, a stage name, a version.
    #[error("invalid {what} `{input}`: {reason}")]
    InvalidInput {
        /// What was being parsed ("digest", "reference", …).
        what: &'static str,
        /// The offending input.
        input: String,
        /// Why it was refused.
        reason: String,
    },

    /// A spec file (`promote.yaml`) is malformed: unknown key, unknown kind, wrong type.
    #[error("{location}: {key}: {message}")]
    Spec {
        /// Where in the file.
        location: Location,
        /// The key path that was wrong (`stages[1].gates[0].kind`).
        key: String,
        /// What was wrong.
        message: String,
    },

    /// Something named does not exist.
    #[error("{resource} not found: {name}")]
    NotFound {
        /// What kind of thing.
        resource: Resource,
        /// Its name, reference or key (never a value).
        name: String,
    },

    /// Something that must be unique already exists, with different content.
    #[error("{resource} already exists: {name}: {detail}")]
    AlreadyExists {
        /// What kind of thing.
        resource: Resource,
        /// Its name.
        name: String,
        /// What differs.
        detail: String,
    },

    /// An immutable tag is held by another digest.
    #[error(
        "tag {reference} is immutable and holds {existing}, not {wanted} (with immutable tags each build needs \
         its own tag: use a placement such as `tag: \"{{stage}}-{{commit}}\"`)"
    )]
    TagConflict {
        /// The tag reference.
        reference: String,
        /// The digest the tag already holds.
        existing: Digest,
        /// The digest we tried to put there.
        wanted: Digest,
    },

    /// After a write, the target does not resolve to the digest that was written.
    #[error("digest moved at {reference}: expected {expected}, found {actual}")]
    DigestMismatch {
        /// The reference that was checked.
        reference: String,
        /// The digest we promoted.
        expected: Digest,
        /// The digest the target resolves to.
        actual: Digest,
    },

    /// An image declares a source revision different from the build's commit.
    #[error("artifact {artifact} was built from revision {found}, but the build claims commit {expected}")]
    RevisionMismatch {
        /// The artifact name in the build.
        artifact: String,
        /// The build's commit.
        expected: String,
        /// The revision annotation on the image.
        found: String,
    },

    /// The build may not enter the stage: it has not passed the stage(s) before it.
    #[error("build {build} is not eligible for stage {stage}: {reason}")]
    NotEligible {
        /// The build id.
        build: String,
        /// The target stage.
        stage: String,
        /// Why.
        reason: String,
    },

    /// A hold blocks promotion into the stage.
    #[error("stage {stage} is held: {reason} (placed by {placed_by})")]
    Held {
        /// The stage.
        stage: String,
        /// The hold's reason.
        reason: String,
        /// Who placed it.
        placed_by: String,
    },

    /// At least one entry gate is pending; the promotion stopped before touching anything.
    #[error("promotion of {build} to {stage} is pending: {}", reasons.join("; "))]
    GatePending {
        /// The build id.
        build: String,
        /// The stage.
        stage: String,
        /// One reason per pending gate, prefixed with the gate's name.
        reasons: Vec<String>,
    },

    /// A gate failed.
    #[error("gate {gate} failed for {build} in stage {stage}: {reason}")]
    GateFailed {
        /// The build id.
        build: String,
        /// The stage.
        stage: String,
        /// The gate's name.
        gate: String,
        /// Why.
        reason: String,
    },

    /// An approval was refused; nothing was recorded.
    #[error("approval by {approver} of {build} for stage {stage} refused: {reason}")]
    ApprovalRefused {
        /// The build id.
        build: String,
        /// The stage.
        stage: String,
        /// The identity that tried to approve.
        approver: String,
        /// Why it was refused.
        reason: ApprovalRefusal,
    },

    /// Another promotion holds the stage's lock.
    #[error("stage {stage} is locked by {holder}")]
    Locked {
        /// The stage.
        stage: String,
        /// Who holds the lock.
        holder: String,
    },

    /// The stage's lock was lost while the promotion ran (its lease expired and another runner took it, or
    /// its lock file was removed); the promotion stopped before its next side effect and stays open for
    /// whoever holds the lock now.
    #[error("the lock on stage {stage} held by {holder} (token {token}) was lost; stopped before the next change")]
    LockLost {
        /// The stage.
        stage: String,
        /// Who held it.
        holder: String,
        /// The lost lease's fencing token.
        token: u64,
    },

    /// A write carried a fencing token older than one the ledger has already seen for the stage.
    #[error("stale fencing token {token} for stage {stage}: the ledger has seen {newest}")]
    Fenced {
        /// The stage.
        stage: String,
        /// The token that was refused.
        token: u64,
        /// The newest token seen.
        newest: u64,
    },

    /// A configuration key a template or stage needs is missing from every source.
    #[error("stage {stage}: config key {key} is missing (sources: {source_names})")]
    MissingConfig {
        /// The stage.
        stage: String,
        /// The key.
        key: String,
        /// The sources that were consulted, comma-separated.
        source_names: String,
    },

    /// A config source could not be read.
    #[error("stage {stage}: config source {source_name}: {message}")]
    ConfigSource {
        /// The stage.
        stage: String,
        /// The source that failed.
        source_name: String,
        /// What went wrong (never a value).
        message: String,
        /// Whether a retry may help.
        class: ErrorClass,
    },

    /// A template failed to render (missing variable, bad helper call, invalid output).
    #[error("{location}: {message}")]
    Template {
        /// The template file and line.
        location: Location,
        /// What went wrong.
        message: String,
    },

    /// A deployment did not become healthy, or was rejected.
    #[error("deploy to stage {stage} failed: {reason}")]
    DeployFailed {
        /// The stage.
        stage: String,
        /// Why (a pod's reason, a timeout).
        reason: String,
    },

    /// The ledger's content is damaged: a torn last record, a broken hash chain, unparsable data.
    #[error("ledger {path} is corrupt at line {line}: {reason}")]
    LedgerCorrupt {
        /// The ledger's file or name.
        path: String,
        /// The 1-based line (or record number) where it breaks.
        line: u64,
        /// What is wrong.
        reason: String,
    },

    /// The backend refused the caller's credentials or permissions.
    #[error("{backend}: permission denied: {message}")]
    PermissionDenied {
        /// Which backend.
        backend: &'static str,
        /// What was refused.
        message: String,
    },

    /// The backend cannot do this operation. See its `capabilities()`.
    #[error("{backend} does not support {operation}")]
    NotSupported {
        /// Which backend.
        backend: &'static str,
        /// The operation.
        operation: String,
    },

    /// An operation took longer than allowed.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        what: String,
        /// The limit.
        after: Duration,
    },

    /// A local file or directory that promote keeps state in, or writes to, is unsafe to use or holds what
    /// promote never writes there: a state directory others can write to, a symlink where promote expects
    /// a file or directory of its own, a damaged or forged deploy index, a lock file whose token cannot grow.
    /// Nothing was written or removed through it. The location names the file (and the line, when known).
    #[error("{location}: {reason}")]
    UnsafeFile {
        /// The file or directory, and the line in it when known.
        location: Location,
        /// Why it was refused.
        reason: String,
    },

    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A backend's error, with the promotion, stage, step and artifact it broke. [`Error::root`] is the
    /// backend's own error, still matchable; [`Error::is_retryable`] answers for it.
    #[error("{context}: {source}")]
    Context {
        /// Where it happened.
        context: Box<ErrorContext>,
        /// What happened.
        #[source]
        source: Box<Error>,
    },

    /// Any other backend failure, classified for retry.
    #[error("{backend}: {message}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// What went wrong.
        message: String,
        /// Whether a retry may help.
        class: ErrorClass,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// Whether the call may succeed later without anything else changing: it is retryable, or a retry
    /// layer gave up on a temporary failure ([`ErrorClass::Exhausted`]). The engine leaves a promotion open
    /// for a later re-run on such errors, and ends it as failed on the others.
    pub fn may_succeed_later(&self) -> bool {
        match self {
            Error::Context { source, .. } => source.may_succeed_later(),
            Error::Backend { class, .. } | Error::ConfigSource { class, .. } => *class != ErrorClass::Persistent,
            other => other.is_retryable(),
        }
    }

    /// This error as a retry layer that gave up on it reports it: a temporary backend failure becomes
    /// [`ErrorClass::Exhausted`], saying how many attempts were made; other errors are unchanged.
    pub fn exhausted(self, attempts: u32) -> Error {
        match self {
            Error::Context { context, source } => {
                Error::Context { context, source: Box::new(source.exhausted(attempts)) }
            }
            Error::Backend { backend, message, class: ErrorClass::Temporary, source } => Error::Backend {
                backend,
                message: format!("{message} (gave up after {attempts} attempts)"),
                class: ErrorClass::Exhausted,
                source,
            },
            Error::ConfigSource { stage, source_name, message, class: ErrorClass::Temporary } => Error::ConfigSource {
                stage,
                source_name,
                message: format!("{message} (gave up after {attempts} attempts)"),
                class: ErrorClass::Exhausted,
            },
            other => other,
        }
    }

    /// Whether making the same call again may succeed without anything else changing.
    ///
    /// Lock contention, pending gates, timeouts, digest mismatches and temporary backend failures are
    /// retryable; bad input, missing things, refusals and corruption are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Context { source, .. } => source.is_retryable(),
            // A digest that moved, or bytes that did not match their digest, is another writer or a broken
            // transfer: placing or fetching again may succeed, and is checked again.
            Error::Locked { .. }
            | Error::LockLost { .. }
            | Error::GatePending { .. }
            | Error::Timeout { .. }
            | Error::DigestMismatch { .. } => true,
            Error::Backend { class, .. } | Error::ConfigSource { class, .. } => *class == ErrorClass::Temporary,
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }

    /// The error itself, without the context the engine wrapped around it: what the backend raised.
    ///
    /// ```
    /// use promote_core::error::{Error, ErrorContext, Resource};
    /// let error = Error::not_found(Resource::Artifact, "registry.example/web:1").in_context(
    ///     ErrorContext::stage("prd").with_step("artifacts").with_artifact("web", "registry.example/web:1"),
    /// );
    /// assert!(matches!(error.root(), Error::NotFound { resource: Resource::Artifact, .. }));
    /// assert_eq!(error.context().and_then(|c| c.artifact.as_deref()), Some("web"));
    /// ```
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            other => other,
        }
    }

    /// The root error, by value.
    pub fn into_root(self) -> Error {
        match self {
            Error::Context { source, .. } => source.into_root(),
            other => other,
        }
    }

    /// The context the engine attached, if any (the outermost).
    pub fn context(&self) -> Option<&ErrorContext> {
        match self {
            Error::Context { context, .. } => Some(context),
            _ => None,
        }
    }

    /// This error with `context` around it. An error that already has a context keeps it, completed with
    /// the parts it lacked, so that contexts never nest.
    pub fn in_context(self, context: ErrorContext) -> Error {
        match self {
            Error::Context { context: inner, source } => {
                let inner = *inner;
                let merged = ErrorContext {
                    promotion: inner.promotion.or(context.promotion),
                    stage: inner.stage.or(context.stage),
                    step: inner.step.or(context.step),
                    artifact: inner.artifact.or(context.artifact),
                    reference: inner.reference.or(context.reference),
                    source_name: inner.source_name.or(context.source_name),
                };
                Error::Context { context: Box::new(merged), source }
            }
            other => Error::Context { context: Box::new(context), source: Box::new(other) },
        }
    }

    /// The variant's name in snake case (`not_found`, `gate_pending`…), the root's for a wrapped error: a
    /// stable word for scripts (a CLI's JSON output, a metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Context { source, .. } => source.kind(),
            Error::InvalidInput { .. } => "invalid_input",
            Error::Spec { .. } => "spec",
            Error::NotFound { .. } => "not_found",
            Error::AlreadyExists { .. } => "already_exists",
            Error::TagConflict { .. } => "tag_conflict",
            Error::DigestMismatch { .. } => "digest_mismatch",
            Error::RevisionMismatch { .. } => "revision_mismatch",
            Error::NotEligible { .. } => "not_eligible",
            Error::Held { .. } => "held",
            Error::GatePending { .. } => "gate_pending",
            Error::GateFailed { .. } => "gate_failed",
            Error::ApprovalRefused { .. } => "approval_refused",
            Error::Locked { .. } => "locked",
            Error::Fenced { .. } => "fenced",
            Error::LockLost { .. } => "lock_lost",
            Error::MissingConfig { .. } => "missing_config",
            Error::ConfigSource { .. } => "config_source",
            Error::Template { .. } => "template",
            Error::DeployFailed { .. } => "deploy_failed",
            Error::LedgerCorrupt { .. } => "ledger_corrupt",
            Error::PermissionDenied { .. } => "permission_denied",
            Error::NotSupported { .. } => "not_supported",
            Error::Timeout { .. } => "timeout",
            Error::UnsafeFile { .. } => "unsafe_file",
            Error::Io { .. } => "io",
            Error::Backend { .. } => "backend",
        }
    }

    /// Shorthand for [`Error::DigestMismatch`].
    pub fn digest_mismatch(reference: impl Into<String>, expected: Digest, actual: Digest) -> Self {
        Error::DigestMismatch { reference: reference.into(), expected, actual }
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(resource: Resource, name: impl Into<String>) -> Self {
        Error::NotFound { resource, name: name.into() }
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(what: &'static str, input: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput { what, input: input.into(), reason: reason.into() }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// Shorthand for a [`Error::Backend`] failure without a source.
    pub fn backend(backend: &'static str, class: ErrorClass, message: impl Into<String>) -> Self {
        Error::Backend { backend, message: message.into(), class, source: None }
    }
}

/// An error serialises as `{"kind": …, "message": …, "retryable": …, "may_succeed_later": …}`: what a
/// script needs, with the message a person reads. (Errors never hold a secret value.)
impl serde::Serialize for Error {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut out = serializer.serialize_struct("Error", 4)?;
        out.serialize_field("kind", self.kind())?;
        out.serialize_field("message", &self.to_string())?;
        out.serialize_field("retryable", &self.is_retryable())?;
        out.serialize_field("may_succeed_later", &self.may_succeed_later())?;
        out.end()
    }
}

/// An error inside a report that is cloned, compared and serialised (a reconcile outcome, say). Two are
/// equal when they say the same thing.
#[derive(Debug, Clone)]
pub struct SharedError(std::sync::Arc<Error>);

impl SharedError {
    /// The error.
    pub fn error(&self) -> &Error {
        &self.0
    }
}

impl From<Error> for SharedError {
    fn from(error: Error) -> Self {
        SharedError(std::sync::Arc::new(error))
    }
}

impl std::ops::Deref for SharedError {
    type Target = Error;
    fn deref(&self) -> &Error {
        &self.0
    }
}

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for SharedError {
    fn eq(&self, other: &Self) -> bool {
        self.0.kind() == other.0.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl serde::Serialize for SharedError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_follows_the_class() {
        assert!(Error::backend("x", ErrorClass::Temporary, "503").is_retryable());
        assert!(!Error::backend("x", ErrorClass::Persistent, "403").is_retryable());
        assert!(Error::Locked { stage: "prd".into(), holder: "ci".into() }.is_retryable());
        assert!(!Error::not_found(Resource::Stage, "qa").is_retryable());
    }

    #[test]
    fn spec_errors_name_file_line_and_key() {
        let error = Error::Spec {
            location: Location { file: "promote.yaml".into(), line: Some(12), column: Some(5) },
            key: "stages[1].gates[0].kind".into(),
            message: "unknown gate kind `aproval`".into(),
        };
        assert_eq!(error.to_string(), "promote.yaml:12:5: stages[1].gates[0].kind: unknown gate kind `aproval`");
    }
}
