//! `ledger verify`: the full chain check.

use promote_core::backend::{GENESIS_HASH, verify_chain_with};
use promote_core::{IntegrityKey, Result};
use serde_json::json;

use super::Context;
use crate::output::Report;

/// Reads every entry and checks the chain from the first to the head (with the ledger key, when
/// `PROMOTE_LEDGER_KEY_FILE` names one). Prints the count and the head hash; a break is exit 1.
pub(super) async fn verify(context: &Context) -> Result<Report> {
    let pipeline = context.pipeline().await?;
    let entries = pipeline.ledger().read_since(0).await?;
    let key = IntegrityKey::from_env()?;
    let name = context.spec.display().to_string();
    verify_chain_with(&format!("ledger of {name}"), (0, GENESIS_HASH), &entries, key.as_ref())?;
    let head = entries.last().map_or(GENESIS_HASH, |entry| entry.hash.as_str());
    let text =
        format!("ledger ok: {} records, head {head}{}", entries.len(), if key.is_some() { " (keyed)" } else { "" });
    Ok(Report::done(json!({ "ok": true, "records": entries.len(), "head": head, "keyed": key.is_some() }), text))
}
