//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::EXIT_CODES_HELP;

/// `promote`: build-once image promotion from a terminal or a CI job.
#[derive(Debug, Parser)]
#[command(name = "promote", version, about, after_help = EXIT_CODES_HELP, max_term_width = 110)]
pub(crate) struct Cli {
    /// The options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options for every command.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// The pipeline spec.
    #[arg(short = 'f', long = "file", global = true, env = "PROMOTE_FILE", default_value = "promote.yaml")]
    pub spec: PathBuf,
    /// Who acts (default: $PROMOTE_ACTOR, then the CI's user variable, then the OS user). Asserted, not
    /// proven: see the README.
    #[arg(long = "as", global = true, value_name = "ACTOR")]
    pub actor: Option<String>,
    /// `human` tables, or one `json` document on stdout.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// More logging on stderr (-v: debug and error details, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr: no progress.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// How results are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Tables and sentences for people.
    Human,
    /// One JSON document, nothing else.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Write a starter promote.yaml, templates and per-stage config that run as they are.
    Init(InitArgs),
    /// Load the spec and render every stage's templates with placeholder artifacts.
    Validate,
    /// Register a build: resolve each artifact's tag once to its digest.
    Register(RegisterArgs),
    /// Stages and builds: what runs where, what may enter, what waits and why, holds.
    Status(StatusArgs),
    /// Dry run: gate verdicts, artifact actions, config provenance, the masked diff.
    Plan(PlanArgs),
    /// Promote a build into a stage.
    Promote(PromoteArgs),
    /// Approve a build for a stage.
    Approve(ApproveArgs),
    /// Place a hold on a stage.
    Hold(HoldArgs),
    /// Lift a hold.
    Unhold(UnholdArgs),
    /// Roll a stage back to an earlier build that passed it (and hold automatic promotion).
    Rollback(RollbackArgs),
    /// Promotion history.
    History(HistoryArgs),
    /// One auto-promotion pass over the `auto` stages (for a CI schedule).
    Reconcile,
    /// Copy an image by digest between registries or OCI layouts, crane-like.
    Copy(CopyArgs),
    /// Ledger operations.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Print shell completions.
    Completions(CompletionsArgs),
}

/// `init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The directory to write into (the spec goes where --file says, relative to it).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Overwrite files that exist.
    #[arg(long)]
    pub force: bool,
}

/// `status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Also evaluate each stage's entry gates now for its newest eligible build (a `plan` per stage; slower).
    #[arg(long)]
    pub gates: bool,
}

/// `register`.
#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// The commit the images were built from (7 to 64 hex digits).
    #[arg(long)]
    pub commit: String,
    /// The build's semantic version.
    #[arg(long)]
    pub version: Option<String>,
    /// Metadata recorded with the build (repeatable); numbers are kept as numbers for metric gates.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// An artifact (repeatable): its name in templates and the reference to resolve.
    #[arg(long = "artifact", value_name = "NAME=REF", required = true)]
    pub artifacts: Vec<String>,
    /// The build's author (the approval gates refuse their approval).
    #[arg(long)]
    pub author: Option<String>,
    /// Register even when an image declares another revision than --commit (a warning instead).
    #[arg(long)]
    pub allow_revision_mismatch: bool,
}

/// `plan`.
#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// The build: its id, a unique prefix of the id, or its commit.
    pub build: String,
    /// The target stage.
    #[arg(long)]
    pub to: String,
}

/// `promote`.
#[derive(Debug, Args)]
pub(crate) struct PromoteArgs {
    /// The build: its id, a unique prefix of the id, or its commit.
    pub build: String,
    /// The target stage.
    #[arg(long)]
    pub to: String,
}

/// `approve`.
#[derive(Debug, Args)]
pub(crate) struct ApproveArgs {
    /// The build: its id, a unique prefix of the id, or its commit.
    pub build: String,
    /// The stage the approval is for.
    #[arg(long)]
    pub stage: String,
    /// A comment recorded with the approval.
    #[arg(long)]
    pub comment: Option<String>,
}

/// Which promotions a hold blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum HoldScopeArg {
    /// Only automatic promotion (reconcile).
    Auto,
    /// Every promotion into the stage.
    All,
}

/// `hold`.
#[derive(Debug, Args)]
pub(crate) struct HoldArgs {
    /// The stage.
    pub stage: String,
    /// Why (recorded, shown by status).
    #[arg(long)]
    pub reason: String,
    /// What the hold blocks.
    #[arg(long, value_enum, default_value_t = HoldScopeArg::All)]
    pub scope: HoldScopeArg,
}

/// `unhold`.
#[derive(Debug, Args)]
pub(crate) struct UnholdArgs {
    /// The hold's id (as status shows it).
    pub hold: String,
}

/// `rollback`.
#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The stage.
    pub stage: String,
    /// The build to return to (default: the build the stage ran before the current one).
    #[arg(long = "to", value_name = "BUILD")]
    pub to: Option<String>,
}

/// `history`.
#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// Only this stage.
    #[arg(long)]
    pub stage: Option<String>,
    /// Only this build (id, unique prefix or commit).
    #[arg(long)]
    pub build: Option<String>,
}

/// `copy`.
#[derive(Debug, Args)]
pub(crate) struct CopyArgs {
    /// `registry/repo:tag`, `registry/repo@sha256:…`, `oci:DIR:TAG` or `oci:DIR@sha256:…`.
    pub source: String,
    /// Where to copy to, in the same forms.
    pub target: String,
    /// Plain HTTP for the registries named (loopback and trusted hosts only).
    #[arg(long)]
    pub insecure: bool,
    /// Also copy cosign-style signature tags of the image.
    #[arg(long)]
    pub all_tags_for_signatures: bool,
}

/// `ledger …`.
#[derive(Debug, Subcommand)]
pub(crate) enum LedgerCommand {
    /// Check the whole hash chain; print the record count and the head hash.
    Verify,
}

/// `completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("promote").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli =
            parse(&["promote", "abc123", "--to", "prd", "-o", "json", "--as", "alice", "-f", "x/p.yaml"]).unwrap();
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert_eq!(cli.global.actor.as_deref(), Some("alice"));
        assert_eq!(cli.global.spec, PathBuf::from("x/p.yaml"));
        match cli.command {
            Command::Promote(args) => assert_eq!((args.build.as_str(), args.to.as_str()), ("abc123", "prd")),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn register_needs_an_artifact_and_takes_many() {
        assert!(parse(&["register", "--commit", "abcdef1"]).is_err());
        let cli = parse(&[
            "register",
            "--commit",
            "abcdef1",
            "--artifact",
            "web=r/web:1",
            "--artifact",
            "api=r/api:1",
            "--label",
            "coverage=91",
        ])
        .unwrap();
        let Command::Register(args) = cli.command else { panic!("not register") };
        assert_eq!(args.artifacts, ["web=r/web:1", "api=r/api:1"]);
        assert_eq!(args.labels, ["coverage=91"]);
    }

    #[test]
    fn hold_scope_and_ledger_verify() {
        let cli = parse(&["hold", "prd", "--reason", "incident", "--scope", "auto"]).unwrap();
        let Command::Hold(args) = cli.command else { panic!("not hold") };
        assert_eq!(args.scope, HoldScopeArg::Auto);
        assert!(parse(&["hold", "prd"]).is_err(), "a hold must say why");
        assert!(matches!(parse(&["ledger", "verify"]).unwrap().command, Command::Ledger(LedgerCommand::Verify)));
    }

    #[test]
    fn verbose_and_quiet_exclude_each_other() {
        assert!(parse(&["status", "-v", "-q"]).is_err());
        assert_eq!(parse(&["status", "-vv"]).unwrap().global.verbose, 2);
    }
}
