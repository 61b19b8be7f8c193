//! Artifact references: `registry/repository[:tag][@digest]`, parsed and printed the way docker and
//! crane write them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// The registry a reference without an explicit registry points at.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A parsed artifact reference.
///
/// Parsing follows docker's normalisation: a first path component counts as a registry only when it
/// contains a `.` or a `:`, or is `localhost`; otherwise the registry is `docker.io`, and a single-component
/// repository on docker.io gets the `library/` prefix. A reference with neither a tag nor a digest means
/// the `latest` tag. A registry must be a host name or a bracketed IPv6 address, with an optional port, and
/// one given to a constructor must read back as a registry (with a dot, a port, or `localhost`): anything
/// else is [`Error::InvalidInput`] naming the registry.
///
/// ```
/// use promote_core::ArtifactRef;
/// let r: ArtifactRef = "ghcr.io/acme/web:3f2c1a9".parse().unwrap();
/// assert_eq!(r.registry(), "ghcr.io");
/// assert_eq!(r.repository(), "acme/web");
/// assert_eq!(r.tag(), Some("3f2c1a9"));
/// assert_eq!(r.to_string(), "ghcr.io/acme/web:3f2c1a9");
/// assert_eq!("nginx".parse::<ArtifactRef>().unwrap().to_string(), "docker.io/library/nginx:latest");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ArtifactRef {
    /// Parses a reference.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::invalid("reference", input, reason);
        if input.is_empty() {
            return Err(invalid("empty reference"));
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((rest, digest)) => (rest, Some(Digest::parse(digest)?)),
            None => (input, None),
        };
        // A tag's colon comes after the last slash; a registry port's colon comes before it.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].find(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name_and_tag[..at], Some(name_and_tag[at + 1..].to_owned()))
            }
            None => (name_and_tag, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DEFAULT_REGISTRY.to_owned(), name.to_owned()),
        };
        validate_registry(&registry).map_err(|reason| invalid(&reason))?;
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        validate_repository(&repository).map_err(|reason| invalid(&reason))?;
        if let Some(tag) = &tag {
            validate_tag(tag).map_err(|reason| invalid(&reason))?;
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_owned()) } else { tag };
        Ok(ArtifactRef { registry, repository, tag, digest })
    }

    /// A reference to `digest` in `registry/repository`, with no tag.
    pub fn by_digest(registry: &str, repository: &str, digest: Digest) -> Result<Self> {
        validate_registry(registry).map_err(|reason| Error::invalid("registry", registry, reason))?;
        validate_repository(repository).map_err(|reason| Error::invalid("repository", repository, reason))?;
        Ok(ArtifactRef {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: None,
            digest: Some(digest),
        })
    }

    /// A reference to `tag` in `registry/repository`.
    pub fn by_tag(registry: &str, repository: &str, tag: &str) -> Result<Self> {
        validate_registry(registry).map_err(|reason| Error::invalid("registry", registry, reason))?;
        validate_repository(repository).map_err(|reason| Error::invalid("repository", repository, reason))?;
        validate_tag(tag).map_err(|reason| Error::invalid("tag", tag, reason))?;
        Ok(ArtifactRef {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: Some(tag.to_owned()),
            digest: None,
        })
    }

    /// The registry host (with port, if any).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository pinned to `digest`, without a tag: the form every step after registration uses.
    pub fn pinned(&self, digest: &Digest) -> ArtifactRef {
        ArtifactRef {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest.clone()),
        }
    }

    /// The same repository with `tag` and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<ArtifactRef> {
        ArtifactRef::by_tag(&self.registry, &self.repository, tag)
    }

    /// The same tag and digest in another registry and repository.
    pub fn in_repository(&self, registry: &str, repository: &str) -> Result<ArtifactRef> {
        validate_registry(registry).map_err(|reason| Error::invalid("registry", registry, reason))?;
        validate_repository(repository).map_err(|reason| Error::invalid("repository", repository, reason))?;
        Ok(ArtifactRef {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        })
    }

    /// Whether `other` names the same registry and repository.
    pub fn same_repository(&self, other: &ArtifactRef) -> bool {
        self.registry == other.registry && self.repository == other.repository
    }
}

/// A registry as the distribution reference grammar writes one: a host name (dot-separated labels of letters,
/// digits and inner hyphens) or a bracketed IPv6 address, then an optional port. It must also read back as a
/// registry from a printed reference: with a dot, a port, or `localhost`.
fn validate_registry(registry: &str) -> std::result::Result<(), String> {
    let (host, port) = match registry.strip_prefix('[') {
        Some(bracketed) => {
            let (address, after) = bracketed.split_once(']').ok_or("the registry's IPv6 address has no `]`")?;
            if address.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("registry `{registry}`: `{address}` is not an IPv6 address"));
            }
            match after {
                "" => (None, None),
                _ => (
                    None,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or("the registry's IPv6 address is followed by neither a port nor the path")?,
                    ),
                ),
            }
        }
        None => match registry.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        },
    };
    if let Some(host) = host {
        let label_ok = |label: &str| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(format!(
                "registry `{registry}` is not a host name: dot-separated labels of letters, digits and inner hyphens"
            ));
        }
        if port.is_none() && !host.contains('.') && host != "localhost" {
            return Err(format!(
                "registry `{registry}` has no dot, no port and is not `localhost`, so a reference would read it as \
                 a docker.io repository"
            ));
        }
    }
    if let Some(port) = port
        && !(port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|port| port > 0))
    {
        return Err(format!("registry `{registry}`: `{port}` is not a port number (1-65535)"));
    }
    Ok(())
}

fn validate_repository(repository: &str) -> std::result::Result<(), String> {
    if repository.is_empty() {
        return Err("empty repository".into());
    }
    if repository.len() > 255 {
        return Err("repository longer than 255 characters".into());
    }
    for component in repository.split('/') {
        let ok = !component.is_empty()
            && component
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
            && component.as_bytes()[0].is_ascii_alphanumeric()
            && component.as_bytes()[component.len() - 1].is_ascii_alphanumeric();
        if !ok {
            return Err(format!(
                "repository component `{component}` must be lowercase letters, digits and separators (. _ -)"
            ));
        }
    }
    Ok(())
}

fn validate_tag(tag: &str) -> std::result::Result<(), String> {
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok { Ok(()) } else { Err(format!("tag `{tag}` must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}")) }
}

impl fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArtifactRef({self})")
    }
}

impl FromStr for ArtifactRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ArtifactRef::parse(s)
    }
}

impl Serialize for ArtifactRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ArtifactRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ArtifactRef::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(input: &str, expected: &str) {
        let parsed = ArtifactRef::parse(input).unwrap();
        assert_eq!(parsed.to_string(), expected, "{input}");
        assert_eq!(ArtifactRef::parse(expected).unwrap(), parsed);
    }

    #[test]
    fn parses_like_docker() {
        roundtrip("nginx", "docker.io/library/nginx:latest");
        roundtrip("acme/web:1.2", "docker.io/acme/web:1.2");
        roundtrip("localhost:5000/web:dev", "localhost:5000/web:dev");
        roundtrip("localhost/web", "localhost/web:latest");
        roundtrip("127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000/a/b/c:v1");
        let digest = Digest::sha256_of(b"x");
        roundtrip(&format!("ghcr.io/acme/web@{digest}"), &format!("ghcr.io/acme/web@{digest}"));
        roundtrip(&format!("ghcr.io/acme/web:v1@{digest}"), &format!("ghcr.io/acme/web:v1@{digest}"));
        roundtrip("[::1]:5000/web:dev", "[::1]:5000/web:dev");
        roundtrip("Registry.Example.com:443/web", "Registry.Example.com:443/web:latest");
        roundtrip(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:v1",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:v1",
        );
    }

    #[test]
    fn refuses_registries_that_are_not_hosts() {
        for bad in [
            "ex ample.com/web",
            "http://ghcr.io/web",
            "ghcr.io:http/web",
            "ghcr.io:0/web",
            "ghcr.io:65536/web",
            "-ghcr.io/web",
            "ghcr..io/web",
            "gh_cr.io/web",
            "[::1/web",
            "[not-v6]:5000/web",
            "[::1]x/web",
        ] {
            let error = ArtifactRef::parse(bad).expect_err(bad);
            assert!(error.to_string().contains("registry"), "{bad}: {error}");
        }
        let digest = Digest::sha256_of(b"x");
        for bad in ["", "registry", "exa mple.com", "ghcr.io:", "ghcr.io/extra"] {
            assert!(ArtifactRef::by_digest(bad, "web", digest.clone()).is_err(), "{bad:?}");
            assert!(ArtifactRef::by_tag(bad, "web", "v1").is_err(), "{bad:?}");
        }
        let good = ArtifactRef::by_tag("localhost", "web", "v1").unwrap();
        assert_eq!(ArtifactRef::parse(&good.to_string()).unwrap(), good, "a constructed reference reads back");
        assert!(good.in_repository("registry", "web").is_err());
    }

    #[test]
    fn pinning_drops_the_tag() {
        let digest = Digest::sha256_of(b"x");
        let r = ArtifactRef::parse("ghcr.io/acme/web:v1").unwrap().pinned(&digest);
        assert_eq!(r.to_string(), format!("ghcr.io/acme/web@{digest}"));
        assert_eq!(r.tag(), None);
    }

    #[test]
    fn refuses_bad_references() {
        for bad in ["", "UPPER/case", "web:", "web:bad tag", "ghcr.io//web", "web@sha256:nothex", "-web"] {
            assert!(ArtifactRef::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
