//! What goes to stdout: human tables, or one JSON document; colour only on a terminal without `NO_COLOR`.

use std::io::{IsTerminal, Write};

use promote_core::Error;
use promote_core::PromotionRecord;
use promote_core::ledger::{FinalState, PromotionState, Verdict};
use serde_json::{Value, json};

use crate::args::OutputFormat;
use crate::exit::{Exit, next_step};

/// A command's result: the JSON document, the text for people, and the exit code.
#[derive(Debug)]
pub(crate) struct Report {
    /// The document `--output json` prints.
    pub json: Value,
    /// What a person reads.
    pub human: String,
    /// How the command ended.
    pub exit: Exit,
}

impl Report {
    /// A report that ended as `exit`.
    pub(crate) fn new(exit: Exit, json: Value, human: impl Into<String>) -> Self {
        Report { json, human: human.into(), exit }
    }

    /// A report of something done.
    pub(crate) fn done(json: Value, human: impl Into<String>) -> Self {
        Self::new(Exit::Done, json, human)
    }
}

/// How stdout and stderr are written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    /// Human or JSON.
    pub format: OutputFormat,
    /// Whether stdout may carry ANSI colour.
    pub colour: bool,
}

impl Output {
    /// The output for `format`: colour when stdout is a terminal and `NO_COLOR` is unset or empty.
    pub(crate) fn new(format: OutputFormat) -> Self {
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        Output { format, colour: format == OutputFormat::Human && !no_colour && std::io::stdout().is_terminal() }
    }

    /// Prints the report on stdout.
    pub(crate) fn print(&self, report: &Report) {
        let mut stdout = std::io::stdout().lock();
        let _ = match self.format {
            OutputFormat::Json => {
                // Every document says how the command ended, as the process's exit code does.
                let mut document = report.json.clone();
                if let Value::Object(map) = &mut document {
                    map.insert("exit_code".into(), Value::from(report.exit.code()));
                }
                writeln!(stdout, "{document}")
            }
            OutputFormat::Human if report.human.is_empty() => Ok(()),
            OutputFormat::Human => writeln!(stdout, "{}", report.human.trim_end()),
        };
    }

    /// Prints an error: on stderr for people (what, where, what next), and as the JSON document on stdout.
    pub(crate) fn print_error(&self, error: &Error, exit: Exit, verbose: bool) {
        let hint = next_step(error);
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "promote: error: {}", error.root());
        if let Some(context) = error.context() {
            let _ = writeln!(stderr, "  where: {context}");
        }
        if let Some(hint) = &hint {
            let _ = writeln!(stderr, "  next:  {hint}");
        }
        if verbose {
            let _ = writeln!(
                stderr,
                "  kind: {} (exit {}, retryable: {}, may succeed later: {})",
                error.kind(),
                exit.code(),
                error.is_retryable(),
                error.may_succeed_later()
            );
            let mut source = std::error::Error::source(error.root());
            while let Some(cause) = source {
                let _ = writeln!(stderr, "  caused by: {cause}");
                source = cause.source();
            }
        }
        if self.format == OutputFormat::Json {
            let _ = writeln!(std::io::stdout().lock(), "{}", error_document(error, exit, hint.as_deref()));
        }
    }

    /// `text` in `style`, when colour is on.
    pub(crate) fn paint(&self, text: &str, style: Style) -> String {
        if !self.colour {
            return text.to_owned();
        }
        let code = match style {
            Style::Good => "32",
            Style::Warn => "33",
            Style::Bad => "31",
            Style::Dim => "2",
            Style::Bold => "1",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// A colour for a table cell.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Style {
    /// Succeeded, current.
    Good,
    /// Pending, held.
    Warn,
    /// Failed.
    Bad,
    /// Less important.
    Dim,
    /// Headers.
    Bold,
}

/// The JSON document of an error: `{"error": {kind, message, retryable, may_succeed_later, context, next},
/// "exit_code": N}`.
pub(crate) fn error_document(error: &Error, exit: Exit, next: Option<&str>) -> Value {
    let context = error.context().map(|c| {
        json!({
            "promotion": c.promotion, "stage": c.stage, "step": c.step, "artifact": c.artifact,
            "reference": c.reference, "source": c.source_name,
        })
    });
    json!({
        "error": {
            "kind": error.kind(),
            "message": error.to_string(),
            "retryable": error.is_retryable(),
            "may_succeed_later": error.may_succeed_later(),
            "context": context,
            "next": next,
        },
        "exit_code": exit.code(),
    })
}

/// A plain-text table: columns padded to their widest cell (by characters, before colour), two spaces
/// apart. `paint` styles a cell after padding, so colour never shifts the columns.
pub(crate) fn table(output: &Output, headers: &[&str], rows: &[Vec<(String, Option<Style>)>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, (cell, _)) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let pad = |text: &str, width: usize, last: bool| {
        if last { text.to_owned() } else { format!("{text}{}", " ".repeat(width - text.chars().count())) }
    };
    let mut out = String::new();
    let last = headers.len() - 1;
    let header: Vec<String> =
        headers.iter().enumerate().map(|(i, h)| output.paint(&pad(h, widths[i], i == last), Style::Bold)).collect();
    out.push_str(header.join("  ").trim_end());
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, (cell, style))| {
                let padded = pad(cell, widths[i], i == last);
                match style {
                    Some(style) => output.paint(&padded, *style),
                    None => padded,
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A gate's verdict in words: `pass`, `pending: …`, `fail: …`.
pub(crate) fn verdict_text(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Pass => "pass".into(),
        Verdict::Pending(reason) => format!("pending: {reason}"),
        Verdict::Fail(reason) => format!("fail: {reason}"),
    }
}

/// A promotion's outcome in one word: `succeeded`, `pending`, `failed` or `in_progress`.
pub(crate) fn outcome_word(state: &PromotionState) -> &'static str {
    match state {
        PromotionState::Finished(FinalState::Succeeded) => "succeeded",
        PromotionState::Finished(FinalState::Pending { .. }) => "pending",
        PromotionState::Finished(FinalState::Failed { .. }) => "failed",
        PromotionState::InProgress { .. } => "in_progress",
    }
}

/// A promotion record as JSON: the ledger's record, with `outcome` (one word, see [`outcome_word`]) added.
pub(crate) fn record_json(record: &PromotionRecord) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("outcome".into(), Value::from(outcome_word(&record.state)));
    }
    value
}

/// A cell without style.
pub(crate) fn cell(text: impl Into<String>) -> (String, Option<Style>) {
    (text.into(), None)
}

/// A styled cell.
pub(crate) fn styled(text: impl Into<String>, style: Style) -> (String, Option<Style>) {
    (text.into(), Some(style))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_by_characters_and_colour_keeps_columns() {
        let plain = Output { format: OutputFormat::Human, colour: false };
        let text =
            table(&plain, &["STAGE", "CURRENT"], &[vec![cell("dev"), cell("b-1")], vec![cell("prd"), cell("—")]]);
        assert_eq!(text, "STAGE  CURRENT\ndev    b-1\nprd    —\n");
        let coloured = Output { format: OutputFormat::Human, colour: true };
        let text = table(&coloured, &["A", "B"], &[vec![styled("x", Style::Good), cell("y")]]);
        assert!(text.contains("\x1b[32mx\x1b[0m  y"), "{text:?}");
    }

    #[test]
    fn errors_as_json_say_kind_code_and_context() {
        let error = Error::backend("oci-registry", promote_core::ErrorClass::Temporary, "503 from registry")
            .in_context(promote_core::ErrorContext::stage("prd").with_step("artifacts"));
        let document = error_document(&error, Exit::Unavailable, Some("run it again"));
        assert_eq!(document["exit_code"], 5);
        assert_eq!(document["error"]["kind"], "backend");
        assert_eq!(document["error"]["retryable"], true);
        assert_eq!(document["error"]["context"]["stage"], "prd");
        assert_eq!(document["error"]["next"], "run it again");
    }
}
