//! `hold STAGE --reason … [--scope auto|all]`.

use promote_core::ledger::HoldScope;
use promote_core::{HoldRequest, Result};
use serde_json::json;

use super::Context;
use crate::args::{HoldArgs, HoldScopeArg};
use crate::output::Report;

/// Places a hold.
pub(super) async fn run(context: &Context, args: HoldArgs) -> Result<Report> {
    let actor = context.actor()?;
    let pipeline = context.pipeline().await?;
    let scope = match args.scope {
        HoldScopeArg::Auto => HoldScope::Auto,
        HoldScopeArg::All => HoldScope::All,
    };
    let hold = pipeline.hold(HoldRequest::new(&args.stage, scope).reason(args.reason).placed_by(&actor.name)).await?;
    let text = format!(
        "{} placed on {}, holding {}: {}; lift it with `promote unhold {}`",
        hold.id,
        hold.stage,
        scope_text(hold.scope),
        hold.reason,
        hold.id
    );
    Ok(Report::done(json!({ "hold": hold }), text))
}

/// What a hold blocks, in words.
pub(super) fn scope_text(scope: HoldScope) -> &'static str {
    match scope {
        HoldScope::Auto => "automatic promotion",
        _ => "every promotion",
    }
}
