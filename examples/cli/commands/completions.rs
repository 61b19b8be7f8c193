//! `completions SHELL`.

use clap::CommandFactory;
use serde_json::json;

use crate::args::{Cli, CompletionsArgs};
use crate::output::Report;

/// The completion script for the shell (with `--output json`: `{"shell": …, "script": …}`).
pub(super) fn run(args: CompletionsArgs) -> Report {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "promote", &mut script);
    let script = String::from_utf8_lossy(&script).into_owned();
    Report::done(json!({ "shell": args.shell.to_string(), "script": script }), script)
}
