//! `rollback STAGE [--to BUILD]`.

use promote_core::Result;

use super::Context;
use crate::args::RollbackArgs;
use crate::output::Report;

/// Rolls the stage back (which holds automatic promotion into it).
pub(super) async fn run(context: &Context, args: RollbackArgs) -> Result<Report> {
    let actor = context.actor()?;
    let pipeline = context.pipeline().await?;
    let to = match &args.to {
        Some(text) => Some(context.build(&pipeline, text).await?),
        None => None,
    };
    let progress = context.follow(&pipeline);
    let outcome = pipeline.rollback(to.as_ref(), &args.stage, &actor.name).await;
    progress.finish().await;
    let mut report = super::promote::record_report(&outcome?);
    if report.exit == crate::exit::Exit::Done {
        report.human.push_str(&format!("automatic promotion into {} is held until `promote unhold`\n", args.stage));
    }
    Ok(report)
}
