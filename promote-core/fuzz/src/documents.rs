//! Target `documents`: rendered output split into YAML documents, each validated (identity, object names,
//! the shape a secret value leaves once filled in).
//!
//! Input: config lines (see `render::config`), a line `%%`, then a manifest text taken literally, except
//! that `$KEY` becomes `{{config.KEY}}`, `$"KEY` `{{quote config.KEY}}` and `$~KEY` `{{b64enc config.KEY}}`.
//! Handlebars syntax in the text is defused (`{{` becomes `{ {`), so that what reaches the document
//! splitter and validator is the fuzzed YAML itself with values filled in.

use crate::common::split;
use crate::render::{check, config};

/// Runs one input.
pub(crate) fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parts = split(text.as_bytes(), b"\n%%\n", 2);
    let (config_text, body) = match parts.as_slice() {
        [config_text, body] => (String::from_utf8_lossy(config_text), String::from_utf8_lossy(body)),
        _ => (Default::default(), text.clone()),
    };
    let config = config(&config_text);
    let template = with_placeholders(&body.replace("{{", "{ {"));
    check(&[("manifests/app.yaml".to_owned(), template)], &config);
}

fn with_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        let (helper, after) = match rest.as_bytes().first() {
            Some(b'"') => ("quote ", &rest[1..]),
            Some(b'~') => ("b64enc ", &rest[1..]),
            _ => ("", rest),
        };
        let key_len = after.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
        if key_len == 0 {
            out.push('$');
            continue;
        }
        out.push_str(&format!("{{{{{helper}config.{}}}}}", &after[..key_len]));
        rest = &after[key_len..];
    }
    out.push_str(rest);
    out
}
