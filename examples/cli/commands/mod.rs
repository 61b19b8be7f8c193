//! One module per command. Each returns a [`Report`]: its JSON document, its text, its exit code.

mod approve;
mod completions;
mod copy;
mod history;
mod hold;
mod init;
mod ledger;
mod plan;
mod promote;
mod reconcile;
mod register;
mod rollback;
mod status;
mod unhold;
mod validate;

use std::path::PathBuf;

use promote_core::{BuildId, Error, Pipeline, Result};

use crate::args::{Cli, Command, LedgerCommand};
use crate::identity::{self, Actor};
use crate::output::{Output, Report};
use crate::progress::{ProgressMode, ProgressTask};

/// What every command may need: the spec's path, who acts, how to print.
#[derive(Debug)]
pub(crate) struct Context {
    /// The spec file.
    pub spec: PathBuf,
    /// `--as`, if given.
    actor_flag: Option<String>,
    /// Stdout's format and colour.
    pub output: Output,
    /// How progress is drawn on stderr.
    pub progress: ProgressMode,
}

impl Context {
    /// The acting identity; an error when nothing names anyone.
    pub(crate) fn actor(&self) -> Result<Actor> {
        identity::from_environment(self.actor_flag.as_deref())
            .ok_or_else(|| Error::invalid("actor", "", "nobody is named: pass --as NAME or set PROMOTE_ACTOR"))
    }

    /// The pipeline the spec describes.
    pub(crate) async fn pipeline(&self) -> Result<Pipeline> {
        crate::pipeline::load(&self.spec).await
    }

    /// The build `text` names (id, unique prefix or commit).
    pub(crate) async fn build(&self, pipeline: &Pipeline, text: &str) -> Result<BuildId> {
        let view = pipeline.view().await?;
        crate::builds::resolve(view.builds(), text)
    }

    /// Draws the pipeline's events on stderr until the returned task is finished.
    pub(crate) fn follow(&self, pipeline: &Pipeline) -> ProgressTask {
        ProgressTask::start(pipeline.subscribe(), self.progress)
    }
}

/// Runs the command `cli` names.
pub(crate) async fn run(cli: Cli, output: Output) -> Result<Report> {
    let context = Context {
        spec: cli.global.spec,
        actor_flag: cli.global.actor,
        output,
        progress: ProgressMode::detect(cli.global.quiet),
    };
    match cli.command {
        Command::Init(args) => init::run(&context, args),
        Command::Validate => validate::run(&context).await,
        Command::Register(args) => register::run(&context, args).await,
        Command::Status(args) => status::run(&context, args).await,
        Command::Plan(args) => plan::run(&context, args).await,
        Command::Promote(args) => promote::run(&context, args).await,
        Command::Approve(args) => approve::run(&context, args).await,
        Command::Hold(args) => hold::run(&context, args).await,
        Command::Unhold(args) => unhold::run(&context, args).await,
        Command::Rollback(args) => rollback::run(&context, args).await,
        Command::History(args) => history::run(&context, args).await,
        Command::Reconcile => reconcile::run(&context).await,
        Command::Copy(args) => copy::run(&context, args).await,
        Command::Ledger(LedgerCommand::Verify) => ledger::verify(&context).await,
        Command::Completions(args) => Ok(completions::run(args)),
    }
}
