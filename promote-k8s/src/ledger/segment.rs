//! A segment: a labelled ConfigMap holding a run of consecutive ledger entries, one sealed line each, and
//! where the run starts (its first sequence number, the hash it follows, the newest fencing token per stage
//! before it).

use std::collections::BTreeMap;

use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use promote_core::backend::verify_chain;
use promote_core::error::{Error, Result};
use promote_core::ledger::LedgerEntry;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The label naming the ledger an object belongs to.
pub(super) const LEDGER_LABEL: &str = "promote.dev/ledger";
/// The label saying what the object is (`segment`, `checkpoint`).
pub(super) const ROLE_LABEL: &str = "promote.dev/ledger-role";
/// The label holding a segment's number.
const INDEX_LABEL: &str = "promote.dev/ledger-segment";
/// The format of segments and checkpoints this code writes.
pub(super) const FORMAT: u32 = 1;

/// The ConfigMap resource.
pub(super) fn config_map_resource() -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        plural: "configmaps".into(),
    }
}

/// The ConfigMaps of one namespace.
pub(super) fn config_maps(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &config_map_resource())
}

/// Where a segment's run of entries starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SegmentStart {
    pub(super) format: u32,
    /// The first entry's sequence number.
    pub(super) first_seq: u64,
    /// The hash the first entry follows.
    pub(super) prev: String,
    /// The newest fencing token per stage among every entry before this segment: the fences an appender
    /// enforces come from here and from the segment's own entries, never from the checkpoint.
    pub(super) fences: BTreeMap<String, u64>,
    /// The segment is full once its lines reach this many bytes; then, and only then, the next segment may
    /// be created. Fullness is read from the segment's own content, never from a writer's settings, so every
    /// writer agrees on it: nobody appends to a full segment, so nobody appends after the first entries of
    /// the next one.
    pub(super) full_at: usize,
}

/// A segment as read.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    pub(super) index: u64,
    pub(super) object: DynamicObject,
    pub(super) start: SegmentStart,
    /// Its sealed lines, each ending in `\n`.
    pub(super) lines: String,
    pub(super) entries: Vec<LedgerEntry>,
}

impl Segment {
    /// The segment's object name.
    pub(super) fn name(ledger: &str, index: u64) -> String {
        format!("{ledger}-{index:06}")
    }

    /// Reads a segment, checking each line's hash and that the lines chain from its start.
    pub(super) fn read(namespace: &str, index: u64, mut object: DynamicObject) -> Result<Segment> {
        // Members of a list carry no kind: the object is written back as it is read.
        object.types = Some(kube::api::TypeMeta { api_version: "v1".into(), kind: "ConfigMap".into() });
        let shown = format!("ConfigMap {namespace}/{}", object.metadata.name.as_deref().unwrap_or_default());
        let corrupt = |line: u64, reason: String| Error::LedgerCorrupt { path: shown.clone(), line, reason };
        let data = &object.data["data"];
        let start: SegmentStart =
            data["start"].as_str().ok_or_else(|| corrupt(0, "the segment has no `start`".into())).and_then(|text| {
                serde_json::from_str(text).map_err(|e| corrupt(0, format!("the segment's `start` does not parse: {e}")))
            })?;
        if start.format != FORMAT {
            return Err(corrupt(start.first_seq, format!("segment format {} is not {FORMAT}", start.format)));
        }
        let lines = data["entries"].as_str().unwrap_or_default().to_owned();
        let mut entries = Vec::new();
        for (offset, line) in lines.lines().enumerate() {
            let seq = start.first_seq + offset as u64;
            entries.push(LedgerEntry::parse_line(line).map_err(|error| match error {
                promote_core::Error::LedgerCorrupt { reason, .. } => corrupt(seq, reason),
                other => corrupt(seq, other.to_string()),
            })?);
        }
        if entries.is_empty() {
            return Err(corrupt(start.first_seq, "the segment holds no entry".into()));
        }
        if !lines.ends_with('\n') {
            return Err(corrupt(start.first_seq + entries.len() as u64 - 1, "the last line is torn".into()));
        }
        verify_chain(&shown, (start.first_seq - 1, &start.prev), &entries)?;
        Ok(Segment { index, object, start, lines, entries })
    }

    /// Checks that the segment follows (`seq`, `hash`), and, when they are known, that the fences it says
    /// came before it are those.
    pub(super) fn check_follows(
        &self,
        namespace: &str,
        seq: u64,
        hash: &str,
        fences: Option<&BTreeMap<String, u64>>,
    ) -> Result<()> {
        let name = self.object.metadata.name.as_deref().unwrap_or_default();
        let corrupt = |reason: &str| Error::LedgerCorrupt {
            path: format!("ConfigMap {namespace}/{name}"),
            line: self.start.first_seq,
            reason: reason.to_owned(),
        };
        if self.start.first_seq != seq + 1 {
            return Err(corrupt(&format!(
                "the segment starts at {} but {} was expected",
                self.start.first_seq,
                seq + 1
            )));
        }
        if self.start.prev != hash {
            return Err(corrupt("the segment does not follow the one before it (hash chain broken)"));
        }
        if fences.is_some_and(|fences| *fences != self.start.fences) {
            return Err(corrupt("the fences the segment records do not match the entries before it"));
        }
        Ok(())
    }

    /// A new segment object.
    pub(super) fn new_object(ledger: &str, index: u64, start: &SegmentStart, lines: &str) -> DynamicObject {
        let mut object = DynamicObject::new(&Segment::name(ledger, index), &config_map_resource());
        object.metadata.labels = Some(
            [
                (LEDGER_LABEL.to_owned(), ledger.to_owned()),
                (ROLE_LABEL.to_owned(), "segment".to_owned()),
                (INDEX_LABEL.to_owned(), index.to_string()),
                ("app.kubernetes.io/managed-by".to_owned(), "promote".to_owned()),
            ]
            .into(),
        );
        let start = serde_json::to_string(start).expect("a segment start serialises");
        object.data = json!({ "data": { "start": start, "entries": lines } });
        object
    }

    /// Whether the segment takes no more entries.
    pub(super) fn is_full(&self) -> bool {
        self.lines.len() >= self.start.full_at
    }

    /// This segment's object with `more` lines appended, its resourceVersion kept as the precondition.
    pub(super) fn appended(&self, more: &str) -> DynamicObject {
        let mut object = self.object.clone();
        object.data["data"]["entries"] = json!(format!("{}{more}", self.lines));
        object
    }

    /// The segment's number, from its label.
    pub(super) fn index_of(object: &DynamicObject) -> Option<u64> {
        object.metadata.labels.as_ref()?.get(INDEX_LABEL)?.parse().ok()
    }
}
