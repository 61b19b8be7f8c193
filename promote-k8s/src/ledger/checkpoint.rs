//! The checkpoint: the ledger's [`LedgerSummary`] as of the end of a segment, so that `status` reads the
//! checkpoint and the segments after it, not the whole history. It is a cache: it is used only when the
//! segment after it starts where it says the ledger stood, and the fences an appender enforces never come
//! from it.
//!
//! The summary is stored deflated (zlib), in `binaryData`: the JSON of a 100k-entry ledger's summary
//! (about 9,000 promotions) is a few MiB, deflated a few hundred KiB. One larger than one object may hold
//! goes into parts (`<ledger>-checkpoint-1`, …), written before the main object; a reader takes the parts
//! only if each names the head the main object names.

use std::io::{Read as _, Write as _};

use base64::Engine as _;
use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;

use kube::api::{Api, DynamicObject, PostParams};
use promote_core::error::Result;
use promote_core::ledger::LedgerSummary;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::segment::{FORMAT, LEDGER_LABEL, ROLE_LABEL, config_map_resource};
use crate::error::from_kube;
use crate::retry::retrying;

/// The most deflated summary bytes one object holds (a ConfigMap holds at most 1 MiB in all; these go into
/// `binaryData`, base64 in JSON).
const PART_BYTES: usize = 700 * 1024;
/// The key of the deflated summary (or part of it).
const SUMMARY_KEY: &str = "summary.json.z";

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
    let mut deflated = part_bytes(&main);
    for part in 1..head.parts {
        let Some(object) = get(api, &name(ledger, part)).await? else {
            return Ok(None);
        };
        if object.data["data"]["head"].as_str() != Some(head.head_hash.as_str()) {
            return Ok(None);
        }
        deflated.extend(part_bytes(&object));
    }
    let mut text = String::new();
    if ZlibDecoder::new(&deflated[..]).read_to_string(&mut text).is_err() {
        tracing::warn!(ledger, "the ledger checkpoint does not inflate; reading every segment");
        return Ok(None);
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
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::fast());
    let deflated = match encoder.write_all(text.as_bytes()).and_then(|()| encoder.finish()) {
        Ok(deflated) => deflated,
        Err(error) => {
            tracing::warn!(ledger, %error, "cannot deflate the ledger summary");
            return;
        }
    };
    let parts: Vec<&[u8]> = deflated.chunks(PART_BYTES).collect();
    let head = CheckpointHead {
        format: FORMAT,
        next_segment,
        head_seq: summary.head_seq(),
        head_hash: summary.head_hash().to_owned(),
        parts: parts.len(),
    };
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut objects: Vec<DynamicObject> = Vec::new();
    for (index, part) in parts.iter().enumerate().skip(1) {
        objects.push(object(ledger, index, json!({ "head": head.head_hash }), json!({ SUMMARY_KEY: encode(part) })));
    }
    let main = json!({ "checkpoint": serde_json::to_string(&head).expect("a checkpoint head serialises") });
    let main_bytes = json!({ SUMMARY_KEY: encode(parts.first().copied().unwrap_or_default()) });
    objects.push(object(ledger, 0, main, main_bytes));
    for object in objects {
        if let Err(error) = put(api, object).await {
            tracing::warn!(ledger, %error, "cannot write the ledger checkpoint");
            return;
        }
    }
}

fn object(ledger: &str, part: usize, data: serde_json::Value, binary: serde_json::Value) -> DynamicObject {
    let mut object = DynamicObject::new(&name(ledger, part), &config_map_resource());
    object.metadata.labels = Some(
        [
            (LEDGER_LABEL.to_owned(), ledger.to_owned()),
            (ROLE_LABEL.to_owned(), "checkpoint".to_owned()),
            ("app.kubernetes.io/managed-by".to_owned(), "promote".to_owned()),
        ]
        .into(),
    );
    object.data = json!({ "data": data, "binaryData": binary });
    object
}

/// The deflated bytes an object holds (none if they do not decode).
fn part_bytes(object: &DynamicObject) -> Vec<u8> {
    let text = object.data["binaryData"][SUMMARY_KEY].as_str().unwrap_or_default();
    base64::engine::general_purpose::STANDARD.decode(text).unwrap_or_default()
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
