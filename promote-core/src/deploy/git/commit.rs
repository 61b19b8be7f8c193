//! The commit a promotion makes: a message that is evidence in itself (the stage, the build and its commit,
//! every artifact by digest, what changed), trailers a re-run recognises it by, and the promotion's actor as
//! its author.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::builder::Target;
use crate::deploy::{Bundle, Change, ChangeAction};

/// The build's id.
pub(super) const BUILD: &str = "Promote-Build";
/// The promotion's id.
pub(super) const PROMOTION: &str = "Promote-Promotion";
/// The hash of the bundle, as the ledger records it.
pub(super) const BUNDLE: &str = "Promote-Bundle";
/// The stage.
pub(super) const STAGE: &str = "Promote-Stage";
/// For a rollback: the promotion it reverts.
pub(super) const REVERTS: &str = "Promote-Reverts";

/// At most this many objects are listed in a message; the rest are counted.
const LISTED_OBJECTS: usize = 200;

/// A commit's trailers, by key (a key may repeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Trailers(BTreeMap<String, Vec<String>>);

impl Trailers {
    /// Parses `Key: value` lines, as `git log --format=%(trailers:only,unfold)` prints them.
    pub(super) fn parse(text: &str) -> Self {
        let mut trailers = BTreeMap::<String, Vec<String>>::new();
        for line in text.lines() {
            if let Some((key, value)) = line.split_once(':') {
                let key = key.trim();
                if !key.is_empty() && !key.contains(char::is_whitespace) {
                    trailers.entry(key.to_owned()).or_default().push(value.trim().to_owned());
                }
            }
        }
        Trailers(trailers)
    }

    /// The values of `key`.
    pub(super) fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }

    fn has(&self, key: &str, value: &str) -> bool {
        self.get(key).iter().any(|v| v == value)
    }
}

/// What identifies the commit of one apply: the promotion (with its bundle and stage) when the engine says
/// which promotion it is, else the bundle and the stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Identity {
    stage: String,
    bundle: String,
    promotion: Option<String>,
}

impl Identity {
    /// The identity of `bundle`'s commit.
    pub(super) fn of(bundle: &Bundle) -> Self {
        Identity {
            stage: bundle.stage().to_owned(),
            bundle: bundle.hash().to_owned(),
            promotion: bundle.context().map(|context| context.promotion.to_string()),
        }
    }

    /// The stage.
    pub(super) fn stage(&self) -> &str {
        &self.stage
    }

    /// Whether a commit with `trailers` is this apply's commit.
    pub(super) fn matches(&self, trailers: &Trailers) -> bool {
        trailers.has(STAGE, &self.stage)
            && trailers.has(BUNDLE, &self.bundle)
            && self.promotion.as_ref().is_none_or(|promotion| trailers.has(PROMOTION, promotion))
    }

    /// The trailer a search names (the promotion, else the bundle).
    pub(super) fn describe(&self) -> String {
        match &self.promotion {
            Some(promotion) => format!("{PROMOTION}: {promotion}"),
            None => format!("{BUNDLE}: {}", self.bundle),
        }
    }
}

/// The commit message for `bundle` written to `target`, with `changes`.
pub(super) fn message(bundle: &Bundle, target: &Target, changes: &[Change]) -> String {
    let stage = one_line(bundle.stage());
    let mut text = String::new();
    match bundle.context() {
        Some(context) => {
            let build = one_line(context.build.as_str());
            let commit = one_line(&context.commit);
            let short: String = commit.chars().take(12).collect();
            match &context.reverts {
                Some(reverts) => {
                    let _ = writeln!(
                        text,
                        "rollback {stage} to build {build} ({short}), reverting {}",
                        one_line(reverts.as_str())
                    );
                }
                None if context.is_rollback() => {
                    let _ = writeln!(text, "rollback {stage} to build {build} ({short})");
                }
                None => {
                    let _ = writeln!(text, "promote {stage}: build {build} ({short})");
                }
            }
            text.push('\n');
            let kind = if context.is_rollback() { "Rollback" } else { "Promotion" };
            let _ = writeln!(
                text,
                "{kind} {} of build {build} into stage {stage}, by {}.",
                one_line(context.promotion.as_str()),
                one_line(&context.actor)
            );
            if let Some(reverts) = &context.reverts {
                let replacing = match &context.kind {
                    crate::ledger::PromotionKind::Rollback { replacing: Some(build) } => {
                        format!(" (build {})", one_line(build.as_str()))
                    }
                    _ => String::new(),
                };
                let _ = writeln!(
                    text,
                    "It restores the tree of build {build} and reverts promotion {}{replacing}.",
                    one_line(reverts.as_str())
                );
            }
            text.push('\n');
            let _ = writeln!(text, "Build:   {build}");
            let _ = writeln!(text, "Commit:  {commit}");
            if let Some(version) = &context.version {
                let _ = writeln!(text, "Version: {}", one_line(version));
            }
            if !context.artifacts.is_empty() {
                text.push_str("Artifacts:\n");
                for (name, placed) in &context.artifacts {
                    let _ = writeln!(
                        text,
                        "  {}: {} ({})",
                        one_line(name),
                        placed.digest,
                        one_line(&placed.target.to_string())
                    );
                }
            }
        }
        None => {
            let _ = writeln!(text, "promote {stage}: bundle {}", bundle.hash());
            text.push('\n');
        }
    }
    let _ = writeln!(text, "Target:  {}", one_line(&target.describe()));
    let _ = writeln!(text, "Objects ({}, bundle {}):", bundle.objects().len(), bundle.hash());
    for change in changes.iter().take(LISTED_OBJECTS) {
        let action = match change.action {
            ChangeAction::Create => "create",
            ChangeAction::Update => "update",
            ChangeAction::Delete => "delete",
            ChangeAction::Unchanged => "same  ",
        };
        let _ = writeln!(text, "  {action} {}", one_line(&change.object));
    }
    if changes.len() > LISTED_OBJECTS {
        let _ = writeln!(text, "  … and {} more", changes.len() - LISTED_OBJECTS);
    }

    text.push('\n');
    if let Some(context) = bundle.context() {
        let _ = writeln!(text, "{BUILD}: {}", one_line(context.build.as_str()));
        let _ = writeln!(text, "{PROMOTION}: {}", one_line(context.promotion.as_str()));
    }
    let _ = writeln!(text, "{BUNDLE}: {}", bundle.hash());
    let _ = writeln!(text, "{STAGE}: {stage}");
    if let Some(reverts) = bundle.context().and_then(|context| context.reverts.as_ref()) {
        let _ = writeln!(text, "{REVERTS}: {}", one_line(reverts.as_str()));
    }
    text
}

/// The author git is given for `actor`: `Name <email>` as written when the actor is one, else the actor's
/// name with an empty email (`ci <>`), since an actor is not necessarily a person with an address.
pub(super) fn author(actor: &str) -> String {
    let clean = |text: &str| one_line(text).replace(['<', '>'], "").trim().to_owned();
    if let Some((name, rest)) = actor.split_once('<')
        && let Some(email) = rest.trim_end().strip_suffix('>')
        && !clean(name).is_empty()
    {
        return format!("{} <{}>", clean(name), clean(email));
    }
    match clean(actor) {
        name if name.is_empty() => "promote <>".to_owned(),
        name => format!("{name} <>"),
    }
}

/// `text` on one line: control characters (a newline would end a trailer) become spaces.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_parse_and_identify_a_commit() {
        let trailers = Trailers::parse(
            "Promote-Build: b-1\nPromote-Promotion: prd/b-1/2\nPromote-Bundle: sha256:ab\nPromote-Stage: prd\n",
        );
        assert_eq!(trailers.get(BUILD), ["b-1"]);
        let bundle = Bundle::new("prd", Vec::new());
        let by_bundle = Identity { stage: "prd".into(), bundle: "sha256:ab".into(), promotion: None };
        assert!(by_bundle.matches(&trailers));
        let by_promotion = Identity { promotion: Some("prd/b-1/2".into()), ..by_bundle.clone() };
        assert!(by_promotion.matches(&trailers));
        let other_attempt = Identity { promotion: Some("prd/b-1/3".into()), ..by_bundle.clone() };
        assert!(!other_attempt.matches(&trailers));
        assert!(!Identity::of(&bundle).matches(&trailers), "another bundle is another commit");
    }

    #[test]
    fn authors_come_from_the_actor() {
        assert_eq!(author("Alice Example <alice@example.com>"), "Alice Example <alice@example.com>");
        assert_eq!(author("ci"), "ci <>");
        assert_eq!(author("evil\nname <x>"), "evil name <x>");
        assert_eq!(author("a <b> c"), "a b c <>");
        assert_eq!(author(""), "promote <>");
    }
}
