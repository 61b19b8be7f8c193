//! The checkpoint: the ledger's [`LedgerSummary`] as of the end of a segment, so that `status` reads the
//! checkpoint and the segments after it, not the whole history. It is a cache: it is used only when the
//! segment after it starts where it says the ledger stood, and the fences an appender enforces never come
//! from it.
//!
//! A summary larger than one object may hold goes into parts (`<ledger>-checkpoint-1`, …), written before
//! the main object; a reader takes the parts only if each names the head the main object names.

use kube::api::{Api, DynamicObject, PostParams};
use promote_core::error::Result;
use promote_core::ledger::LedgerSummary;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::segment::{FORMAT, LEDGER_LABEL, ROLE_LABEL, config_map_resource};
use crate::error::from_kube;
use crate::retry::retrying;

/// The most summary text one object holds (a ConfigMap holds at most 1 MiB in all).
const PART_BYTES: usize = 900 * 1024;

/// What the main object says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckpointHead {
    pub(super) format: u32,
    /// The first segment the summary does not cover.
    pub(super) next_segment: u64,
    /// The last entry it covers.
    pub(super) head_seq: u64,
    /// That entry's hash.
    pub(super) head_hash: String,
    /// How many objects the summary text is split over (the main one included).
    pub(super) parts: usize,
}

/// A checkpoint as read.
#[derive(Debug)]
pub(super) struct Checkpoint {
    pub(super) head: CheckpointHead,
    pub(super) summary: LedgerSummary,
}

fn name(ledger: &str, part: usize) -> String {
    if part == 0 { format!("{ledger}-checkpoint") } else { format!("{ledger}-checkpoint-{part}") }
}

/// Reads the checkpoint: `None` when there is none or it does not hold together (a half-written one).
/// Requests: one, plus one per extra part.
pub(super) async fn load(api: &Api<DynamicObject>, ledger: &str) -> Result<Option<Checkpoint>> {
    let Some(main) = get(api, &name(ledger, 0)).await? else {
        return Ok(None);
    };
    let Some(head) =
        main.data["data"]["checkpoint"].as_str().and_then(|t| serde_json::from_str::<CheckpointHead>(t).ok())
    else {
        tracing::warn!(ledger, "the ledger checkpoint does not parse; reading every segment");
        return Ok(None);
    };
    let mut text = main.data["data"]["summary"].as_str().unwrap_or_default().to_owned();
    for part in 1..head.parts {
        let Some(object) = get(api, &name(ledger, part)).await? else {
            return Ok(None);
        };
        if object.data["data"]["head"].as_str() != Some(head.head_hash.as_str()) {
            return Ok(None);
        }
        text.push_str(object.data["data"]["summary"].as_str().unwrap_or_default());
    }
    match serde_json::from_str::<LedgerSummary>(&text) {
        Ok(summary) if head.format == FORMAT && summary.head_seq() == head.head_seq => {
            Ok(Some(Checkpoint { head, summary }))
        }
        _ => {
            tracing::warn!(ledger, "the ledger checkpoint does not hold together; reading every segment");
            Ok(None)
        }
    }
}

/// Writes a checkpoint of `summary`, which covers every segment before `next_segment`. A failure is
/// logged, not returned: the checkpoint is a cache.
pub(super) async fn store(api: &Api<DynamicObject>, ledger: &str, next_segment: u64, summary: &LedgerSummary) {
    let text = match serde_json::to_string(summary) {
        Ok(text) => text,
        Err(error) => {
            tracing::warn!(ledger, %error, "cannot serialise the ledger summary");
            return;
        }
    };
    let parts = split(&text);
    let head = CheckpointHead {
        format: FORMAT,
        next_segment,
        head_seq: summary.head_seq(),
        head_hash: summary.head_hash().to_owned(),
        parts: parts.len(),
    };
    let mut objects: Vec<DynamicObject> = Vec::new();
    for (index, part) in parts.iter().enumerate().skip(1) {
        objects.push(object(ledger, index, json!({ "head": head.head_hash, "summary": part })));
    }
    let main = json!({
        "checkpoint": serde_json::to_string(&head).expect("a checkpoint head serialises"),
        "summary": parts[0],
    });
    objects.push(object(ledger, 0, main));
    for object in objects {
        if let Err(error) = put(api, object).await {
            tracing::warn!(ledger, %error, "cannot write the ledger checkpoint");
            return;
        }
    }
}

fn object(ledger: &str, part: usize, data: serde_json::Value) -> DynamicObject {
    let mut object = DynamicObject::new(&name(ledger, part), &config_map_resource());
    object.metadata.labels = Some(
        [
            (LEDGER_LABEL.to_owned(), ledger.to_owned()),
            (ROLE_LABEL.to_owned(), "checkpoint".to_owned()),
            ("app.kubernetes.io/managed-by".to_owned(), "promote".to_owned()),
        ]
        .into(),
    );
    object.data = json!({ "data": data });
    object
}

/// `text` in pieces of at most [`PART_BYTES`], cut between characters.
fn split(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.len() > PART_BYTES {
        let mut cut = PART_BYTES;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (part, tail) = rest.split_at(cut);
        parts.push(part);
        rest = tail;
    }
    parts.push(rest);
    parts
}

async fn get(api: &Api<DynamicObject>, name: &str) -> Result<Option<DynamicObject>> {
    retrying(|| api.get_opt(name)).await.map_err(|e| from_kube(e, &format!("read ConfigMap {name}")))
}

/// Creates the object, or replaces it unconditionally: a checkpoint overwritten by an older one is still
/// right, only less far along.
async fn put(api: &Api<DynamicObject>, object: DynamicObject) -> std::result::Result<(), kube::Error> {
    let name = object.metadata.name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            api.replace(&name, &PostParams::default(), &object).await.map(|_| ())
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_cut_between_characters_and_join_back() {
        let text = "é".repeat(PART_BYTES);
        let parts = split(&text);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.len() <= PART_BYTES));
        assert_eq!(parts.concat(), text);
        assert_eq!(split("{}"), ["{}"]);
    }
}
