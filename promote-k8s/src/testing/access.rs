//! Optional RBAC-like enforcement: a bearer token names a user and the verbs it may use on which resources.

use std::collections::HashMap;

use super::resources::ResourceType;
use super::status::ApiError;

/// One allow rule, like an RBAC `PolicyRule`: `"*"` in any list matches everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    /// Verbs: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verbs: Vec<String>,
    /// API groups (`""` for core, `"apps"`, ...).
    pub api_groups: Vec<String>,
    /// Resources by plural, with `"deployments/status"` for a subresource.
    pub resources: Vec<String>,
    /// Namespaces the rule applies in; empty means every namespace and the cluster scope.
    pub namespaces: Vec<String>,
}

impl AccessRule {
    /// A rule allowing `verbs` on `resources` of `api_group`, in every namespace.
    pub fn new(api_group: &str, resources: &[&str], verbs: &[&str]) -> Self {
        AccessRule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            api_groups: vec![api_group.to_string()],
            resources: resources.iter().map(|s| s.to_string()).collect(),
            namespaces: Vec::new(),
        }
    }

    /// Limits the rule to these namespaces (like a RoleBinding in each).
    pub fn in_namespaces(mut self, namespaces: &[&str]) -> Self {
        self.namespaces = namespaces.iter().map(|s| s.to_string()).collect();
        self
    }

    fn allows(&self, verb: &str, group: &str, resource: &str, namespace: Option<&str>) -> bool {
        let any = |list: &[String], value: &str| list.iter().any(|v| v == "*" || v == value);
        any(&self.verbs, verb)
            && any(&self.api_groups, group)
            && any(&self.resources, resource)
            && (self.namespaces.is_empty() || namespace.is_some_and(|ns| any(&self.namespaces, ns)))
    }
}

#[derive(Debug, Clone)]
struct Subject {
    user: String,
    rules: Vec<AccessRule>,
}

/// Tokens with restricted access. A request whose token is not registered is not restricted.
#[derive(Debug, Default)]
pub(crate) struct AccessControl {
    by_token: HashMap<String, Subject>,
}

/// What a request asks to do, in RBAC terms.
pub(crate) struct Attributes<'a> {
    pub(crate) verb: &'a str,
    pub(crate) resource: &'a ResourceType,
    pub(crate) subresource: Option<&'a str>,
    pub(crate) name: &'a str,
    pub(crate) namespace: Option<&'a str>,
}

impl AccessControl {
    pub(crate) fn restrict(&mut self, token: &str, user: &str, rules: Vec<AccessRule>) {
        self.by_token.insert(token.to_string(), Subject { user: user.to_string(), rules });
    }

    pub(crate) fn check(&self, token: Option<&str>, attrs: &Attributes<'_>) -> Result<(), ApiError> {
        let Some(subject) = token.and_then(|t| self.by_token.get(t)) else { return Ok(()) };
        let resource = match attrs.subresource {
            Some(sub) => format!("{}/{sub}", attrs.resource.plural),
            None => attrs.resource.plural.clone(),
        };
        if subject.rules.iter().any(|r| r.allows(attrs.verb, &attrs.resource.group, &resource, attrs.namespace)) {
            return Ok(());
        }
        Err(ApiError::forbidden(
            &subject.user,
            attrs.verb,
            attrs.resource,
            attrs.subresource,
            attrs.name,
            attrs.namespace,
        ))
    }
}
