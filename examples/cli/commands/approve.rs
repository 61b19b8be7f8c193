//! `approve BUILD --stage STAGE [--comment …]`.

use promote_core::{ApprovalOptions, Identity, Result};
use serde_json::json;

use super::Context;
use crate::args::ApproveArgs;
use crate::output::Report;

/// Records an approval by the acting identity.
pub(super) async fn run(context: &Context, args: ApproveArgs) -> Result<Report> {
    let actor = context.actor()?;
    let pipeline = context.pipeline().await?;
    let build = context.build(&pipeline, &args.build).await?;
    let mut options = ApprovalOptions::new();
    if let Some(comment) = args.comment {
        options = options.comment(comment);
    }
    let approval = pipeline.approve(&build, &args.stage, &Identity::new(&actor.name), options).await?;
    let text =
        format!("{} approved {} for {} (as {}, from {})", actor.name, build, args.stage, actor.name, actor.source);
    Ok(Report::done(json!({ "approval": approval }), text))
}
