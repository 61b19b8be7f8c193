//! Target `templates`: hostile handlebars templates against the render budget.
//!
//! Input: config lines (see `render::config`), then up to four templates, each after a line `%%`. Loading
//! and rendering must end in a bundle or an error: no abort, no stack overflow, no unbounded time or memory
//! (the fuzzer's timeout and memory limit stand for those), and no secret value in any error.

use crate::common::split;
use crate::render::{check, config};

/// Runs one input.
pub(crate) fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parts = split(text.as_bytes(), b"\n%%\n", 5);
    let (config_text, templates) = parts.split_first().expect("split yields a part");
    let config = config(&String::from_utf8_lossy(config_text));
    let sources: Vec<(String, String)> = templates
        .iter()
        .enumerate()
        .map(|(index, text)| (format!("manifests/t{index}.yaml"), String::from_utf8_lossy(text).into_owned()))
        .collect();
    check(&sources, &config);
}
