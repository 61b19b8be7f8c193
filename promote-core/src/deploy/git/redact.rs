//! What git says, made safe to show: credentials in URLs stripped, and any secret value of the bundle being
//! pushed masked (a server-side hook may echo a file's content back).

use crate::config::{Redactor, Secret};
use crate::deploy::Bundle;

/// Masks what must not leave the process in git's output: the userinfo of every URL (`https://token@host`),
/// and the secret values rendered into a bundle.
#[derive(Debug, Clone, Default)]
pub(super) struct OutputRedactor {
    secrets: Redactor,
}

impl OutputRedactor {
    /// A redactor for git's output while `bundle` (if any) is being written or pushed.
    pub(super) fn for_bundle(bundle: Option<&Bundle>) -> Self {
        let mut secrets = Redactor::default();
        for manifest in bundle.into_iter().flat_map(Bundle::objects).filter(|m| m.holds_secrets()) {
            secrets.extend(secret_fragments(manifest.expose_content(), manifest.masked()).into_iter().map(Secret::new));
        }
        OutputRedactor { secrets }
    }

    /// `text` with secret values masked and credentials stripped from URLs.
    pub(super) fn redact(&self, text: &str) -> String {
        strip_userinfo(&self.secrets.redact(text))
    }
}

/// The parts of `content` that its masked rendering replaced: for each line that differs, what lies between
/// the prefix and suffix the two lines share. When the two renderings do not pair line by line (a secret
/// spanning lines), every line of `content` absent from `masked` counts as a whole.
fn secret_fragments(content: &str, masked: &str) -> Vec<String> {
    let real: Vec<&str> = content.lines().collect();
    let shown: Vec<&str> = masked.lines().collect();
    if real.len() != shown.len() {
        return real
            .iter()
            .filter(|line| !shown.contains(line))
            .map(|line| line.trim())
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect();
    }
    let mut fragments = Vec::new();
    for (line, masked_line) in real.iter().zip(&shown).filter(|(a, b)| a != b) {
        let prefix = common_prefix(line, masked_line);
        let rest = &line[prefix..];
        let suffix = common_suffix(rest, &masked_line[prefix..]);
        let fragment = &rest[..rest.len() - suffix];
        if !fragment.is_empty() {
            fragments.push(fragment.to_owned());
        }
    }
    fragments
}

/// The length in bytes of the longest common prefix of `a` and `b`, on a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices().zip(b.chars()).find(|((_, x), y)| x != y).map_or_else(|| a.len().min(b.len()), |((i, _), _)| i)
}

/// The length in bytes of the longest common suffix of `a` and `b`, on a character boundary.
fn common_suffix(a: &str, b: &str) -> usize {
    let mut length = 0;
    for (x, y) in a.chars().rev().zip(b.chars().rev()) {
        if x != y {
            break;
        }
        length += x.len_utf8();
    }
    length
}

/// `text` with the userinfo (`user:password@`, `token@`) of every `scheme://` URL removed: git echoes the
/// remote's URL in its messages, and a URL may carry credentials.
pub(super) fn strip_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| matches!(c, '/' | '\'' | '"' | '>' | ')' | '`') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@') {
            Some(userinfo_end) => out.push_str(&authority[userinfo_end + 1..]),
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::RenderedObject;

    #[test]
    fn credentials_in_urls_are_stripped_and_the_rest_kept() {
        assert_eq!(
            strip_userinfo("fatal: unable to access 'https://ci:gh_t0ken@git.example/shop.git/': 403"),
            "fatal: unable to access 'https://git.example/shop.git/': 403"
        );
        assert_eq!(
            strip_userinfo("To https://x-access-token@host/a\n ssh://git@h:22/r"),
            "To https://host/a\n ssh://h:22/r"
        );
        assert_eq!(strip_userinfo("no url here, user@host:path stays"), "no url here, user@host:path stays");
        assert_eq!(strip_userinfo("trailing https://u:p@"), "trailing https://");
    }

    #[test]
    fn secret_values_of_the_bundle_are_masked_in_output() {
        let content = "kind: Secret\nstringData:\n  password: hunter2-x\n  url: postgres://app:hunter2-x@db\n";
        let masked = "kind: Secret\nstringData:\n  password: [redacted]\n  url: postgres://app:[redacted]@db\n";
        let manifest = RenderedObject::new(
            "v1".into(),
            "Secret".into(),
            "db".into(),
            None,
            "a.yaml".into(),
            content.into(),
            masked.into(),
        );
        let bundle = Bundle::new("dev", vec![manifest]);
        let redactor = OutputRedactor::for_bundle(Some(&bundle));
        let said = redactor.redact("remote: rejected password: hunter2-x at https://tok@host/x");
        assert_eq!(said, "remote: rejected password: [redacted] at https://host/x");
    }

    #[test]
    fn a_secret_spanning_lines_masks_each_of_its_lines() {
        let fragments = secret_fragments("a: |\n  line-one\n  line-two\nb: 1\n", "a: [redacted]\nb: 1\n");
        assert!(fragments.contains(&"line-one".to_owned()) && fragments.contains(&"line-two".to_owned()));
        assert!(!fragments.contains(&"b: 1".to_owned()));
    }
}
