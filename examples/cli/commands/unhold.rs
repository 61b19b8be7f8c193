//! `unhold HOLD`.

use promote_core::Result;
use serde_json::json;

use super::Context;
use crate::args::UnholdArgs;
use crate::output::Report;

/// Lifts a hold by id.
pub(super) async fn run(context: &Context, args: UnholdArgs) -> Result<Report> {
    let actor = context.actor()?;
    let pipeline = context.pipeline().await?;
    let stage =
        pipeline.status().await?.stages.into_iter().flat_map(|s| s.holds).find(|h| h.id == args.hold).map(|h| h.stage);
    pipeline.lift_hold(&args.hold, &actor.name).await?;
    let text = format!("{} lifted{}", args.hold, stage.as_ref().map(|s| format!(" from {s}")).unwrap_or_default());
    Ok(Report::done(json!({ "lifted": args.hold, "stage": stage }), text))
}
