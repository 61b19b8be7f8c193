//! `promote`, the reference CLI: every capability of the library behind one binary, for people at a
//! terminal and for CI jobs (one JSON document with `--output json`, exit codes to branch on).
//!
//! It is also the project's end-to-end test subject (`examples/tests/cli_e2e.rs`). A tool author can copy
//! it: each command is one small module under `commands/`.

mod args;
mod builds;
mod commands;
mod exit;
mod identity;
mod output;
mod pipeline;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, GlobalArgs};
use crate::exit::Exit;
use crate::output::Output;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version print on stdout and succeed; usage errors are exit 2.
            let _ = error.print();
            if !error.use_stderr() {
                return ExitCode::from(Exit::Done.code());
            }
            if wants_json(std::env::args()) {
                let rendered = error.render().to_string();
                let message = rendered.lines().next().unwrap_or_default().trim_start_matches("error: ").to_owned();
                let document = serde_json::json!({
                    "error": { "kind": "usage", "message": message, "retryable": false,
                               "may_succeed_later": false, "context": null, "next": "see `promote --help`" },
                    "exit_code": Exit::Usage.code(),
                });
                println!("{document}");
            }
            return ExitCode::from(Exit::Usage.code());
        }
    };
    init_logging(&cli.global);
    let output = Output::new(cli.global.output);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("promote: error: cannot start the async runtime: {error}");
            return ExitCode::from(Exit::Unavailable.code());
        }
    };
    let verbose = cli.global.verbose > 0;
    match runtime.block_on(commands::run(cli, output)) {
        Ok(report) => {
            output.print(&report);
            ExitCode::from(report.exit.code())
        }
        Err(error) => {
            let exit = Exit::of(&error);
            output.print_error(&error, exit, verbose);
            ExitCode::from(exit.code())
        }
    }
}

/// Whether the (unparsable) command line asked for JSON, so that a usage error is a JSON document too.
fn wants_json(args: impl Iterator<Item = String>) -> bool {
    let args: Vec<String> = args.collect();
    args.windows(2).any(|pair| matches!(pair[0].as_str(), "-o" | "--output") && pair[1] == "json")
        || args.iter().any(|arg| arg == "--output=json" || arg == "-ojson")
}

/// Logs go to stderr: warnings by default, errors only with -q, debug with -v, trace with -vv; `RUST_LOG`
/// overrides all of them.
fn init_logging(global: &GlobalArgs) {
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "warn,promote_core=debug,promote_oci=debug,promote_aws=debug,promote_k8s=debug,promote=debug",
        (false, _) => "debug,promote_core=trace,promote_oci=trace,promote_aws=trace,promote_k8s=trace,promote=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

#[cfg(test)]
mod tests {
    use super::wants_json;

    #[test]
    fn json_is_found_in_a_command_line_clap_refused() {
        let args = |line: &str| line.split(' ').map(str::to_owned).collect::<Vec<_>>().into_iter();
        assert!(wants_json(args("promote promote --bogus -o json")));
        assert!(wants_json(args("promote --output=json promote")));
        assert!(!wants_json(args("promote promote --to prd")));
    }
}
