//! `BUILD` arguments: a build id, a unique prefix of one, or a commit (full or abbreviated).

use promote_core::error::Resource;
use promote_core::{Build, BuildId, Error, Result};

/// The one build `text` names among `builds`. An ambiguous prefix is an error listing the candidates.
pub(crate) fn resolve<'a>(builds: impl IntoIterator<Item = &'a Build>, text: &str) -> Result<BuildId> {
    let text = text.trim();
    let with_prefix = if text.starts_with("b-") { text.to_owned() } else { format!("b-{text}") };
    let mut exact = None;
    let mut candidates: Vec<&Build> = Vec::new();
    for build in builds {
        let id = build.id.as_str();
        if id == text || id == with_prefix {
            exact = Some(build.id.clone());
        }
        let names_commit = text.len() >= 7 && build.commit.starts_with(&text.to_ascii_lowercase());
        if (text.len() >= 3 && (id.starts_with(text) || id.starts_with(&with_prefix))) || names_commit {
            candidates.push(build);
        }
    }
    if let Some(id) = exact {
        return Ok(id);
    }
    match candidates.as_slice() {
        [] => Err(Error::not_found(Resource::Build, text)),
        [one] => Ok(one.id.clone()),
        many => {
            let listed: Vec<String> =
                many.iter().map(|b| format!("{} (commit {}, {})", b.id, short(&b.commit), b.label())).collect();
            Err(Error::invalid(
                "build",
                text,
                format!("ambiguous: {} builds match: {}; give more of the id", many.len(), listed.join(", ")),
            ))
        }
    }
}

/// The first 12 characters of a commit.
pub(crate) fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(id: &str, commit: &str) -> Build {
        // `Build` is non-exhaustive: made as the ledger reads it back.
        serde_json::from_value(serde_json::json!({
            "id": id, "commit": commit, "artifacts": {}, "registered_at": "2026-01-01T00:00:00Z",
        }))
        .unwrap()
    }

    #[test]
    fn id_prefix_or_commit() {
        let builds = [
            build("b-dc49a20b724cc92f", "3f2c1a9e0b4d5566778899aabbccddeeff001122"),
            build("b-dc11000000000000", "aaaaaaa000000000000000000000000000000000"),
            build("b-0123456789abcdef", "3f2c1a9ffffffffffffffffffffffffffffffff0"),
        ];
        assert_eq!(resolve(&builds, "b-dc49a20b724cc92f").unwrap().as_str(), "b-dc49a20b724cc92f");
        assert_eq!(resolve(&builds, "dc49").unwrap().as_str(), "b-dc49a20b724cc92f");
        assert_eq!(resolve(&builds, "b-0123").unwrap().as_str(), "b-0123456789abcdef");
        assert_eq!(resolve(&builds, "aaaaaaa").unwrap().as_str(), "b-dc11000000000000");
        assert_eq!(resolve(&builds, "3f2c1a9e0b4d").unwrap().as_str(), "b-dc49a20b724cc92f");
    }

    #[test]
    fn ambiguity_lists_the_candidates_and_unknown_is_not_found() {
        let builds = [
            build("b-dc49a20b724cc92f", "3f2c1a9e0b4d5566778899aabbccddeeff001122"),
            build("b-dc11000000000000", "aaaaaaa000000000000000000000000000000000"),
        ];
        let error = resolve(&builds, "b-dc").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("b-dc49a20b724cc92f") && text.contains("b-dc11000000000000"), "{text}");
        assert!(matches!(resolve(&builds, "ffffffff").unwrap_err(), Error::NotFound { .. }));
    }
}
