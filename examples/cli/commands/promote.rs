//! `promote BUILD --to STAGE`.

use std::fmt::Write as _;

use promote_core::ledger::{FinalState, PromotionState};
use promote_core::{PromotionRecord, Result};
use serde_json::json;

use super::Context;
use crate::args::PromoteArgs;
use crate::exit::Exit;
use crate::output::{Report, record_json};

/// Promotes; progress goes to stderr while it runs.
pub(super) async fn run(context: &Context, args: PromoteArgs) -> Result<Report> {
    let actor = context.actor()?;
    let pipeline = context.pipeline().await?;
    let build = context.build(&pipeline, &args.build).await?;
    let progress = context.follow(&pipeline);
    let outcome = pipeline.promote(&build, &args.to, &actor.name).await;
    progress.finish().await;
    Ok(record_report(&outcome?))
}

/// The report of a finished (or interrupted) promotion or rollback: `{"promotion": PromotionRecord}`, the
/// record with its `outcome` in one word.
pub(super) fn record_report(record: &PromotionRecord) -> Report {
    let mut text = String::new();
    let state = match &record.state {
        PromotionState::Finished(FinalState::Succeeded) => "succeeded".to_owned(),
        PromotionState::Finished(FinalState::Pending { reasons }) => format!("pending: {}", reasons.join("; ")),
        PromotionState::Finished(FinalState::Failed { step, reason }) => format!("failed at {step}: {reason}"),
        PromotionState::InProgress { last_error } => match last_error {
            Some(error) => format!("interrupted: {error}; run the same command again to resume"),
            None => "in progress".to_owned(),
        },
    };
    let _ = writeln!(text, "{} {}: build {} in {} by {}", record.id, state, record.build, record.stage, record.actor);
    for (name, artifact) in &record.artifacts {
        let _ = writeln!(text, "  {name}: {}", artifact.target.pinned(&artifact.digest));
    }
    if let Some(hash) = &record.bundle_hash {
        let _ = writeln!(text, "  bundle {hash}");
    }
    Report::new(Exit::of_state(&record.state), json!({ "promotion": record_json(record) }), text)
}
