//! Rendered text → documents, each checked for an identity a deployer can use.

/// What identifies a rendered object: `apiVersion`, `kind`, `metadata.name`, `metadata.namespace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Identity {
    pub(super) api_version: String,
    pub(super) kind: String,
    pub(super) name: String,
    pub(super) namespace: Option<String>,
}

/// Splits a multi-document YAML text on `---` lines, dropping documents that hold only comments.
pub(super) fn split_documents(text: &str) -> Vec<String> {
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

/// Reads the identity of a rendered document. The message says what is wrong, never with a value other
/// than the identity fields themselves.
pub(super) fn identify(document: &str) -> Result<Identity, String> {
    let node = marked_yaml::parse_yaml(0, document).map_err(|error| format!("is not valid YAML: {error}"))?;
    let mapping = node.as_mapping().ok_or("is not a mapping")?;
    let field = |key: &str| mapping.get_scalar(key).map(|s| s.as_str().to_owned());
    let api_version = field("apiVersion").ok_or("has no apiVersion")?;
    let kind = field("kind").ok_or("has no kind")?;
    let metadata = mapping.get_mapping("metadata").ok_or("has no metadata")?;
    let name = metadata.get_scalar("name").map(|s| s.as_str().to_owned()).ok_or("has no metadata.name")?;
    let namespace = metadata.get_scalar("namespace").map(|s| s.as_str().to_owned());
    Ok(Identity { api_version, kind, name, namespace })
}

/// The naming rule Kubernetes applies to an object's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameRule {
    /// RFC 1123 label: at most 63 of `a-z`, `0-9`, `-`, starting and ending alphanumeric.
    Label,
    /// RFC 1035 label: a 1123 label that starts with a letter.
    Rfc1035Label,
    /// RFC 1123 subdomain: at most 253 characters, labels joined by `.`.
    Subdomain,
    /// Any path segment: not `.` or `..`, no `/` or `%` (RBAC objects, which allow `:`).
    PathSegment,
}

impl NameRule {
    fn for_kind(api_version: &str, kind: &str) -> NameRule {
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        match (group, kind) {
            ("", "Namespace") => NameRule::Label,
            ("", "Service") => NameRule::Rfc1035Label,
            ("rbac.authorization.k8s.io", "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding") => {
                NameRule::PathSegment
            }
            // Built-in kinds and custom resources alike: the API server's default.
            _ => NameRule::Subdomain,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            NameRule::Label => {
                "a DNS-1123 label (at most 63 lowercase letters, digits and '-', starting and ending with a letter \
                 or digit)"
            }
            NameRule::Rfc1035Label => {
                "a DNS-1035 label (at most 63 lowercase letters, digits and '-', starting with a letter and ending \
                 with a letter or digit)"
            }
            NameRule::Subdomain => {
                "a DNS-1123 subdomain (at most 253 lowercase letters, digits, '-' and '.', each part starting and \
                 ending with a letter or digit)"
            }
            NameRule::PathSegment => "a path segment (not `.` or `..`, without `/` or `%`)",
        }
    }

    fn allows(self, name: &str) -> bool {
        match self {
            NameRule::Label => is_label(name),
            NameRule::Rfc1035Label => is_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase()),
            NameRule::Subdomain => name.len() <= 253 && name.split('.').all(is_label),
            NameRule::PathSegment => !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%']),
        }
    }
}

fn is_label(text: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !text.is_empty()
        && text.len() <= 63
        && text.chars().all(|c| alphanumeric(c) || c == '-')
        && text.starts_with(alphanumeric)
        && text.ends_with(alphanumeric)
}

/// Checks the name and namespace with the rules the Kubernetes API server applies, so that an object no
/// deployer could apply is refused when it is rendered, before anything is changed.
pub(super) fn check_names(identity: &Identity) -> Result<(), String> {
    let rule = NameRule::for_kind(&identity.api_version, &identity.kind);
    if !rule.allows(&identity.name) {
        return Err(format!(
            "metadata.name `{}` is not a valid {} name: it must be {}",
            identity.name,
            identity.kind,
            rule.describe()
        ));
    }
    if let Some(namespace) = &identity.namespace
        && !NameRule::Label.allows(namespace)
    {
        return Err(format!(
            "metadata.namespace `{namespace}` is not a valid namespace: it must be {}",
            NameRule::Label.describe()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(api_version: &str, kind: &str, name: &str, namespace: Option<&str>) -> Identity {
        Identity {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            namespace: namespace.map(Into::into),
        }
    }

    #[test]
    fn names_follow_the_api_servers_rules_per_kind() {
        let ok = |v, k, n| check_names(&identity(v, k, n, None)).is_ok();
        assert!(ok("apps/v1", "Deployment", "web.v2"));
        assert!(!ok("apps/v1", "Deployment", "../../x"));
        assert!(!ok("apps/v1", "Deployment", "Web"));
        let long = "a".repeat(254);
        assert!(!ok("v1", "ConfigMap", &long));
        assert!(ok("v1", "Namespace", "shop-prd"));
        assert!(!ok("v1", "Namespace", "shop.prd"));
        assert!(!ok("v1", "Service", "1web"));
        assert!(ok("rbac.authorization.k8s.io/v1", "ClusterRole", "system:promote"));
        assert!(!ok("rbac.authorization.k8s.io/v1", "Role", ".."));
        assert!(ok("example.com/v1", "Widget", "a-b"));
        assert!(!ok("example.com/v1", "Widget", "a/b"));
        let error = check_names(&identity("v1", "ConfigMap", "cfg", Some("../prd"))).unwrap_err();
        assert!(error.contains("metadata.namespace `../prd`"), "{error}");
    }
}
