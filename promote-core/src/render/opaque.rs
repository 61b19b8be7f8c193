//! Secrets as opaque tokens while templates render.
//!
//! Handlebars logs every helper call with its resolved parameters (at DEBUG, through the `log` crate), and
//! its errors quote values. So no secret value ever enters the handlebars context: each secret is replaced
//! by a token, and helpers that transform text (`b64enc`, `quote`, `indent`, `toJson`) wrap a text holding
//! tokens in a deferred operation instead of transforming it. After rendering, [`resolve`] evaluates the
//! tokens and operations twice: with the real values (what a deployer applies) and with every secret
//! masked (what plans, diffs and logs show).
//!
//! Tokens and operations are delimited by Unicode private-use characters, which templates and plain values
//! may not contain (see [`check_free_of_markers`]). The grammar is
//! `OPEN name SEP payload CLOSE`, where `name` is `s<index>` for a secret, or an operation (`b64`, `esc`,
//! `ind<width>`) whose payload is itself text with tokens and operations.

use std::fmt::Write as _;

use base64::Engine as _;

use super::budget::MAX_INDENT;
use crate::config::{REDACTED, Secret};

/// Starts a token or an operation.
pub(super) const OPEN: char = '\u{F8F0}';
/// Ends a token or an operation.
pub(super) const CLOSE: char = '\u{F8F1}';
/// Separates a token's name from its payload.
pub(super) const SEP: char = '\u{F8F2}';

/// The secrets of one render, by token index.
#[derive(Debug, Default)]
pub(super) struct SecretTable {
    secrets: Vec<Secret>,
}

impl SecretTable {
    /// The token that stands for `secret` in the template context.
    pub(super) fn token_for(&mut self, secret: &Secret) -> String {
        let index = self.secrets.len();
        self.secrets.push(secret.clone());
        format!("{OPEN}s{index}{SEP}{CLOSE}")
    }
}

/// Whether `text` holds a token or an operation.
pub(super) fn is_opaque(text: &str) -> bool {
    text.contains(OPEN)
}

/// A deferred operation, applied once the secrets are filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation {
    /// Base64 of the text.
    Base64,
    /// The text escaped as the inside of a JSON (and YAML double-quoted) string, without the quotes.
    JsonEscape,
    /// Every line of the text indented by this many spaces.
    Indent(usize),
}

impl Operation {
    fn name(self) -> String {
        match self {
            Operation::Base64 => "b64".into(),
            Operation::JsonEscape => "esc".into(),
            Operation::Indent(width) => format!("ind{width}"),
        }
    }

    fn parse(name: &str) -> Option<Operation> {
        match name {
            "b64" => Some(Operation::Base64),
            "esc" => Some(Operation::JsonEscape),
            _ => name.strip_prefix("ind")?.parse().ok().filter(|w| *w <= MAX_INDENT).map(Operation::Indent),
        }
    }

    /// Applies the operation to resolved text.
    pub(super) fn apply(self, text: &str) -> String {
        match self {
            Operation::Base64 => base64::engine::general_purpose::STANDARD.encode(text),
            Operation::JsonEscape => {
                let quoted = serde_json::Value::String(text.to_owned()).to_string();
                quoted[1..quoted.len() - 1].to_owned()
            }
            Operation::Indent(width) => {
                let pad = " ".repeat(width);
                text.lines().map(|line| format!("{pad}{line}")).collect::<Vec<_>>().join("\n")
            }
        }
    }

    /// The operation deferred over `text`, which holds tokens.
    pub(super) fn defer(self, text: &str) -> String {
        format!("{OPEN}{}{SEP}{text}{CLOSE}", self.name())
    }
}

/// `text` with every top-level token or operation wrapped in `operation`, the plain parts left as they are.
pub(super) fn wrap_each(text: &str, operation: Operation) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let end = matching_close(&rest[start..]).map_or(rest.len(), |end| start + end);
        out.push_str(&operation.defer(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The byte offset just past the `CLOSE` that matches the `OPEN` at the start of `text`.
fn matching_close(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (at, c) in text.char_indices() {
        match c {
            OPEN => depth += 1,
            CLOSE => {
                depth -= 1;
                if depth == 0 {
                    return Some(at + CLOSE.len_utf8());
                }
            }
            _ => {}
        }
    }
    None
}

/// How tokens are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fill {
    /// With the secrets' values: for deployers only.
    Real,
    /// With `[redacted]`: safe to show.
    Masked,
}

/// A text whose tokens do not form a well-nested grammar: only a template bug in this module can cause it.
#[derive(Debug)]
pub(super) struct Malformed;

/// `text` with every token and operation evaluated.
pub(super) fn resolve(text: &str, secrets: &SecretTable, fill: Fill) -> Result<String, Malformed> {
    if !is_opaque(text) {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let end = start + matching_close(&rest[start..]).ok_or(Malformed)?;
        let inner = &rest[start + OPEN.len_utf8()..end - CLOSE.len_utf8()];
        let (name, payload) = inner.split_once(SEP).ok_or(Malformed)?;
        if let Some(index) = name.strip_prefix('s') {
            let secret = index.parse::<usize>().ok().and_then(|i| secrets.secrets.get(i)).ok_or(Malformed)?;
            out.push_str(match fill {
                Fill::Real => secret.expose(),
                Fill::Masked => REDACTED,
            });
        } else {
            let operation = Operation::parse(name).ok_or(Malformed)?;
            out.push_str(&operation.apply(&resolve(payload, secrets, fill)?));
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `text` with every token or operation shown as `[redacted]`, for messages (errors name no value).
pub(super) fn mask_for_message(text: &str) -> String {
    if !is_opaque(text) {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let end = matching_close(&rest[start..]).map_or(rest.len(), |end| start + end);
        out.push_str(REDACTED);
        rest = &rest[end..];
    }
    out.push_str(rest);
    // A stray marker (never produced by this module) is dropped rather than printed.
    out.retain(|c| !matches!(c, OPEN | CLOSE | SEP));
    out
}

/// The first marker character in `text`, if any: templates and plain values may not hold one, so that
/// nothing can forge a token.
pub(super) fn check_free_of_markers(text: &str) -> Option<String> {
    text.char_indices().find(|&(_, c)| matches!(c, OPEN | CLOSE | SEP)).map(|(at, c)| {
        let mut message = String::new();
        let _ = write!(message, "holds the reserved character U+{:04X} at byte {at}", u32::from(c));
        message
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(values: &[&str]) -> (SecretTable, Vec<String>) {
        let mut table = SecretTable::default();
        let tokens = values.iter().map(|v| table.token_for(&Secret::new(*v))).collect();
        (table, tokens)
    }

    #[test]
    fn tokens_resolve_to_values_or_masks() {
        let (secrets, tokens) = table(&["hunter2"]);
        let text = format!("password: {}\n", tokens[0]);
        assert_eq!(resolve(&text, &secrets, Fill::Real).unwrap(), "password: hunter2\n");
        assert_eq!(resolve(&text, &secrets, Fill::Masked).unwrap(), "password: [redacted]\n");
        assert!(!text.contains("hunter2"));
    }

    #[test]
    fn deferred_operations_apply_to_the_filled_in_text() {
        let (secrets, tokens) = table(&["a\"b\nc"]);
        let b64 = Operation::Base64.defer(&format!("user:{}", tokens[0]));
        assert_eq!(resolve(&b64, &secrets, Fill::Real).unwrap(), "dXNlcjphImIKYw==");
        let quoted = format!("\"{}\"", wrap_each(&format!("x{}y", tokens[0]), Operation::JsonEscape));
        assert_eq!(resolve(&quoted, &secrets, Fill::Real).unwrap(), r#""xa\"b\ncy""#);
        let indented = Operation::Indent(2).defer(&tokens[0]);
        assert_eq!(resolve(&indented, &secrets, Fill::Real).unwrap(), "  a\"b\n  c");
        // Nested: base64 of a quoted secret.
        let nested = Operation::Base64.defer(&quoted);
        assert_eq!(resolve(&nested, &secrets, Fill::Masked).unwrap(), "InhbcmVkYWN0ZWRdeSI=");
    }

    #[test]
    fn messages_show_no_token_and_no_value() {
        let (_, tokens) = table(&["hunter2"]);
        let message = format!("Partial not found {}", Operation::Base64.defer(&tokens[0]));
        assert_eq!(mask_for_message(&message), "Partial not found [redacted]");
    }

    #[test]
    fn forged_or_broken_markers_are_refused() {
        let (secrets, _) = table(&["hunter2"]);
        assert!(resolve(&format!("{OPEN}s9{SEP}{CLOSE}"), &secrets, Fill::Real).is_err());
        assert!(resolve(&format!("{OPEN}s0"), &secrets, Fill::Real).is_err());
        assert!(check_free_of_markers("fine").is_none());
        assert!(check_free_of_markers(&format!("a{OPEN}")).unwrap().contains("U+F8F0"));
    }
}
