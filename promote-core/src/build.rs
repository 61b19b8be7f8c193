//! Builds: the bundle of artifacts one commit produced, registered once and promoted by digest.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::reference::ArtifactRef;
use crate::store::Artifact;

/// A build's id: `b-` and 16 hex characters of a hash over its artifacts' names, repositories and digests.
///
/// Registering the same digests again gives the same id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BuildId(String);

impl BuildId {
    /// The id of a build made of these artifacts.
    pub fn of(artifacts: &BTreeMap<String, Artifact>) -> Self {
        let mut hasher = Sha256::new();
        for (name, artifact) in artifacts {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(artifact.reference.name().as_bytes());
            hasher.update([0]);
            hasher.update(artifact.digest.as_str().as_bytes());
            hasher.update([0xff]);
        }
        BuildId(format!("b-{}", &hex::encode(hasher.finalize())[..16]))
    }

    /// Parses a build id as printed.
    pub fn parse(input: &str) -> Result<Self> {
        let ok = input.len() == 18
            && input.starts_with("b-")
            && input[2..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok { Ok(BuildId(input.to_owned())) } else { Err(Error::invalid("build id", input, "expected b-<16 hex>")) }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What to do when an image's declared revision differs from the build's commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevisionPolicy {
    /// Refuse the registration ([`Error::RevisionMismatch`]). The default.
    #[default]
    Enforce,
    /// Register anyway, and keep both in the record.
    Warn,
}

/// A registered build: named artifacts, each pinned to a digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Build {
    /// The content-addressed id.
    pub id: BuildId,
    /// The commit the artifacts were built from.
    pub commit: String,
    /// The build's version, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<semver::Version>,
    /// The artifacts by name (`web`, `worker`), each pinned to its digest.
    pub artifacts: BTreeMap<String, Artifact>,
    /// The build's author, when known (approval gates may forbid self-approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Metadata recorded at registration: metrics such as `coverage`, links, anything a gate reads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// When it was registered.
    pub registered_at: DateTime<Utc>,
}

impl Build {
    /// A numeric metric from the metadata, if present.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metadata.get(name)?.as_f64()
    }

    /// A short label for people: the version if there is one, else the commit's first 7 characters.
    pub fn label(&self) -> String {
        match &self.version {
            Some(version) => version.to_string(),
            None => self.commit.chars().take(7).collect(),
        }
    }
}

/// What a CI job hands to `register`: the commit and the tags it pushed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BuildRequest {
    /// The commit the images were built from.
    pub commit: String,
    /// The version, if the project versions its builds.
    pub version: Option<semver::Version>,
    /// Each artifact's name and the reference (usually a commit tag) the build pushed it to.
    pub artifacts: BTreeMap<String, ArtifactRef>,
    /// The author, if known.
    pub author: Option<String>,
    /// Metrics and other metadata.
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// What to do when an image declares another revision.
    pub revision_policy: RevisionPolicy,
}

impl BuildRequest {
    /// A request for the build of `commit`.
    pub fn new(commit: impl Into<String>) -> Self {
        BuildRequest {
            commit: commit.into(),
            version: None,
            artifacts: BTreeMap::new(),
            author: None,
            metadata: BTreeMap::new(),
            revision_policy: RevisionPolicy::Enforce,
        }
    }

    /// Adds an artifact by name and reference.
    pub fn artifact(mut self, name: impl Into<String>, reference: ArtifactRef) -> Self {
        self.artifacts.insert(name.into(), reference);
        self
    }

    /// Sets the version.
    pub fn version(mut self, version: semver::Version) -> Self {
        self.version = Some(version);
        self
    }

    /// Sets the author.
    pub fn author(mut self, author: impl Into<String>) -> Self {
        self.author = Some(author.into());
        self
    }

    /// Adds a metadata value (a metric, a link).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the revision policy.
    pub fn revision_policy(mut self, policy: RevisionPolicy) -> Self {
        self.revision_policy = policy;
        self
    }

    /// Checks the commit: a git object id, abbreviated or whole, of 7 to 64 hexadecimal digits. It is
    /// substituted into tags, URLs, commit messages and command environments, so nothing else is accepted.
    pub fn check_commit(commit: &str) -> crate::Result<()> {
        let hex = commit.bytes().all(|b| b.is_ascii_hexdigit());
        if (7..=64).contains(&commit.len()) && hex {
            Ok(())
        } else {
            Err(crate::Error::invalid(
                "commit",
                commit.chars().take(80).collect::<String>(),
                "a commit is 7 to 64 hexadecimal digits (a git object id, abbreviated or whole)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BuildRequest;

    #[test]
    fn a_commit_is_a_git_object_id() {
        for good in ["3f2c1a9", "3F2C1A9", &"a".repeat(40), &"0".repeat(64)] {
            assert!(BuildRequest::check_commit(good).is_ok(), "{good}");
        }
        for bad in ["3f2c1a", "main", "3f2c1a9/../x", "3f2c1a9 x", &"a".repeat(65), "3f2c1a9?build=1&x=", ""] {
            assert!(BuildRequest::check_commit(bad).is_err(), "{bad}");
        }
    }
}
