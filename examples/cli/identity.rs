//! Who acts: `--as`, `$PROMOTE_ACTOR`, the CI's user, or the OS user. Asserted by the caller, not proven.

/// CI variables naming the user who started the job, in the order they are tried.
const CI_ACTOR_VARIABLES: &[&str] = &[
    "GITHUB_ACTOR",
    "GITLAB_USER_LOGIN",
    "BUILDKITE_BUILD_CREATOR",
    "CIRCLE_USERNAME",
    "BITBUCKET_STEP_TRIGGERER_UUID",
    "BUILD_REQUESTEDFOREMAIL",
    "DRONE_COMMIT_AUTHOR",
    "CI_COMMIT_AUTHOR",
];

/// The OS user's variables.
const OS_USER_VARIABLES: &[&str] = &["USER", "LOGNAME", "USERNAME"];

/// Where the actor's name came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Actor {
    /// The name recorded in the ledger.
    pub name: String,
    /// `--as`, or the variable it was read from.
    pub source: String,
}

/// The actor from `--as`, else the environment as `lookup` reads it; `None` when nothing names anyone.
pub(crate) fn resolve(flag: Option<&str>, lookup: impl Fn(&str) -> Option<String>) -> Option<Actor> {
    if let Some(name) = flag.map(str::trim).filter(|name| !name.is_empty()) {
        return Some(Actor { name: name.to_owned(), source: "--as".into() });
    }
    std::iter::once("PROMOTE_ACTOR")
        .chain(CI_ACTOR_VARIABLES.iter().copied())
        .chain(OS_USER_VARIABLES.iter().copied())
        .find_map(|variable| {
            let value = lookup(variable)?;
            let value = value.trim();
            (!value.is_empty()).then(|| Actor { name: value.to_owned(), source: format!("${variable}") })
        })
}

/// The actor from `--as` or the process environment.
pub(crate) fn from_environment(flag: Option<&str>) -> Option<Actor> {
    resolve(flag, |variable| std::env::var(variable).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn the_flag_wins_then_promote_actor_then_ci_then_os() {
        let all = env(&[("PROMOTE_ACTOR", "bot"), ("GITHUB_ACTOR", "octocat"), ("USER", "root")]);
        assert_eq!(resolve(Some("alice"), &all).unwrap().name, "alice");
        assert_eq!(resolve(None, &all).unwrap(), Actor { name: "bot".into(), source: "$PROMOTE_ACTOR".into() });
        let ci = env(&[("GITLAB_USER_LOGIN", "gl-user"), ("USER", "runner")]);
        assert_eq!(resolve(None, &ci).unwrap().name, "gl-user");
        assert_eq!(resolve(None, env(&[("USER", "dana")])).unwrap().source, "$USER");
    }

    #[test]
    fn blank_values_name_nobody() {
        assert_eq!(resolve(Some("  "), env(&[("PROMOTE_ACTOR", " ")])), None);
        assert_eq!(resolve(None, env(&[("GITHUB_ACTOR", ""), ("LOGNAME", "lee")])).unwrap().name, "lee");
    }
}
