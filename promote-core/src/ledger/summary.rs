//! The ledger summary: the part of the fold that `status` reads (builds, where each promotion stands,
//! which builds passed which stage, holds, fences), small enough to checkpoint beside a large ledger.
//!
//! [`LedgerView`](super::LedgerView) folds every entry through its summary, so a summary and a view of the
//! same entries always agree: there is one fold for these fields, not two.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::entry::{FinalState, GENESIS_HASH, Hold, LedgerEntry, LedgerEvent, PromotionId};
use crate::build::BuildId;

/// A registered build, as the summary keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BuildSummary {
    /// Its id.
    pub id: BuildId,
    /// Its label (version or short commit), as [`Build::label`](crate::Build::label) gives it.
    pub label: String,
}

/// A promotion, as the summary keeps it: where it stands, without its journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PromotionSummary {
    /// Its id.
    pub id: PromotionId,
    /// The build.
    pub build: BuildId,
    /// The stage.
    pub stage: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// How it finished (`None` while it is in progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<FinalState>,
}

impl PromotionSummary {
    /// Whether the promotion has not finished.
    pub fn in_progress(&self) -> bool {
        self.outcome.is_none()
    }
}

/// What `status` needs from a ledger, folded from its entries.
///
/// A backend may keep one up to date and return it from [`Ledger::summary`](super::Ledger::summary), so
/// that `status` does not fold the whole history. It serialises to a compact form (the indexes are rebuilt
/// when it is read back, and a form whose indexes do not hold together is refused).
#[derive(Debug, Clone, Default)]
pub struct LedgerSummary {
    head: Option<(u64, String)>,
    fences: BTreeMap<String, u64>,
    builds: Vec<BuildSummary>,
    build_index: HashMap<BuildId, usize>,
    promotions: Vec<PromotionSummary>,
    by_id: HashMap<PromotionId, usize>,
    /// Every promotion per stage and build, in start order.
    by_stage_build: HashMap<String, HashMap<BuildId, Vec<usize>>>,
    /// Unfinished promotions per stage.
    open: HashMap<String, BTreeSet<usize>>,
    /// Successful promotions per stage, in the order they finished; the last one is current.
    passed: BTreeMap<String, Vec<usize>>,
    /// Successful promotions per stage and build, in the order they finished.
    passed_by_build: HashMap<String, HashMap<BuildId, Vec<usize>>>,
    holds: BTreeMap<String, Hold>,
}

impl LedgerSummary {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds `entries` (which must follow the summary's head) into it.
    pub fn apply_all<'a>(&mut self, entries: impl IntoIterator<Item = &'a LedgerEntry>) {
        for entry in entries {
            self.apply(entry);
        }
    }

    /// Folds one entry into the summary. Promotions are numbered in the order they started; a
    /// [`LedgerView`](super::LedgerView) keeps its full records at the same positions.
    pub fn apply(&mut self, entry: &LedgerEntry) {
        self.head = Some((entry.seq, entry.hash.clone()));
        if let Some(fence) = &entry.fence {
            let newest = self.fences.entry(fence.stage.clone()).or_default();
            *newest = (*newest).max(fence.token);
        }
        match &entry.event {
            LedgerEvent::BuildRegistered { build } => {
                if !self.build_index.contains_key(&build.id) {
                    self.build_index.insert(build.id.clone(), self.builds.len());
                    self.builds.push(BuildSummary { id: build.id.clone(), label: build.label() });
                }
            }
            LedgerEvent::PromotionStarted { promotion, build, stage, .. } => {
                self.promotions.push(PromotionSummary {
                    id: promotion.clone(),
                    build: build.clone(),
                    stage: stage.clone(),
                    started_at: entry.at,
                    finished_at: None,
                    outcome: None,
                });
                self.index_started(self.promotions.len() - 1);
            }
            LedgerEvent::PromotionFinished { promotion, state } => {
                let Some(&index) = self.by_id.get(promotion) else {
                    return;
                };
                let record = &mut self.promotions[index];
                record.finished_at = Some(entry.at);
                record.outcome = Some(state.clone());
                if let Some(open) = self.open.get_mut(&record.stage) {
                    open.remove(&index);
                }
                if *state == FinalState::Succeeded {
                    self.passed.entry(record.stage.clone()).or_default().push(index);
                    self.index_passed(index);
                }
            }
            LedgerEvent::HoldPlaced { hold } => {
                self.holds.insert(hold.id.clone(), hold.clone());
            }
            LedgerEvent::HoldLifted { hold, .. } => {
                self.holds.remove(hold);
            }
            LedgerEvent::PromotionResumed { .. }
            | LedgerEvent::StepStarted { .. }
            | LedgerEvent::StepFinished { .. }
            | LedgerEvent::ApprovalRecorded { .. }
            | LedgerEvent::Attested { .. } => {}
        }
    }

    fn index_started(&mut self, index: usize) {
        let record = &self.promotions[index];
        self.by_id.insert(record.id.clone(), index);
        push_at(&mut self.by_stage_build, &record.stage, &record.build, index);
        if record.in_progress() {
            self.open.entry(record.stage.clone()).or_default().insert(index);
        }
    }

    fn index_passed(&mut self, index: usize) {
        let record = &self.promotions[index];
        push_at(&mut self.passed_by_build, &record.stage, &record.build, index);
    }

    /// The last entry's sequence number (0 for an empty ledger).
    pub fn head_seq(&self) -> u64 {
        self.head.as_ref().map_or(0, |(seq, _)| *seq)
    }

    /// The last entry's hash ([`GENESIS_HASH`] for an empty ledger).
    pub fn head_hash(&self) -> &str {
        self.head.as_ref().map_or(GENESIS_HASH, |(_, hash)| hash)
    }

    /// The newest fencing token seen for a stage.
    pub fn newest_fence(&self, stage: &str) -> Option<u64> {
        self.fences.get(stage).copied()
    }

    /// The newest fencing token seen for each stage.
    pub fn fences(&self) -> &BTreeMap<String, u64> {
        &self.fences
    }

    /// Replaces the fence table with one found by walking the ledger's lines: a summary read back from a
    /// checkpoint is trusted for what `status` shows, never for which tokens the ledger accepts.
    pub(super) fn replace_fences(&mut self, fences: BTreeMap<String, u64>) {
        self.fences = fences;
    }

    /// A registered build.
    pub fn build(&self, id: &BuildId) -> Option<&BuildSummary> {
        self.build_index.get(id).map(|&index| &self.builds[index])
    }

    /// Every registered build, oldest first.
    pub fn builds(&self) -> impl DoubleEndedIterator<Item = &BuildSummary> {
        self.builds.iter()
    }

    /// Every promotion, in the order they started.
    pub fn promotions(&self) -> &[PromotionSummary] {
        &self.promotions
    }

    /// A promotion.
    pub fn promotion(&self, id: &PromotionId) -> Option<&PromotionSummary> {
        self.position(id).map(|index| &self.promotions[index])
    }

    /// Every promotion of `build` into `stage`, oldest first.
    pub fn promotions_of<'a>(
        &'a self,
        stage: &str,
        build: &BuildId,
    ) -> impl DoubleEndedIterator<Item = &'a PromotionSummary> + use<'a> {
        self.started_indexes(stage, build).map(|index| &self.promotions[index])
    }

    /// The unfinished promotions into `stage`, oldest first.
    pub fn open_promotions<'a>(&'a self, stage: &str) -> impl Iterator<Item = &'a PromotionSummary> + use<'a> {
        self.open_indexes(stage).map(|index| &self.promotions[index])
    }

    /// The promotion that made the stage's current build current.
    pub fn current(&self, stage: &str) -> Option<&PromotionSummary> {
        self.current_index(stage).map(|index| &self.promotions[index])
    }

    /// The successful promotions of `build` into `stage`, in the order they finished.
    pub fn passes<'a>(
        &'a self,
        stage: &str,
        build: &BuildId,
    ) -> impl DoubleEndedIterator<Item = &'a PromotionSummary> + use<'a> {
        self.pass_indexes(stage, build).map(|index| &self.promotions[index])
    }

    /// Active holds on `stage`.
    pub fn holds<'a>(&'a self, stage: &'a str) -> impl Iterator<Item = &'a Hold> + 'a {
        self.holds.values().filter(move |hold| hold.stage == stage)
    }

    /// Every active hold.
    pub fn all_holds(&self) -> impl Iterator<Item = &Hold> {
        self.holds.values()
    }

    // Positions shared with the view's full records.

    pub(super) fn position(&self, id: &PromotionId) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    pub(super) fn started_indexes<'a>(
        &'a self,
        stage: &str,
        build: &BuildId,
    ) -> impl DoubleEndedIterator<Item = usize> + use<'a> {
        let indexes = self.by_stage_build.get(stage).and_then(|builds| builds.get(build));
        indexes.into_iter().flatten().copied()
    }

    pub(super) fn open_indexes<'a>(&'a self, stage: &str) -> impl Iterator<Item = usize> + use<'a> {
        self.open.get(stage).into_iter().flatten().copied()
    }

    pub(super) fn current_index(&self, stage: &str) -> Option<usize> {
        self.passed.get(stage)?.last().copied()
    }

    pub(super) fn passed_indexes<'a>(&'a self, stage: &str) -> impl Iterator<Item = usize> + use<'a> {
        self.passed.get(stage).into_iter().flatten().copied()
    }

    pub(super) fn pass_indexes<'a>(
        &'a self,
        stage: &str,
        build: &BuildId,
    ) -> impl DoubleEndedIterator<Item = usize> + use<'a> {
        let indexes = self.passed_by_build.get(stage).and_then(|builds| builds.get(build));
        indexes.into_iter().flatten().copied()
    }
}

/// Appends `index` to the list for `stage` and `build`, copying the keys only the first time they are seen
/// (rebuilding the indexes of a large checkpoint would otherwise copy them once per promotion).
fn push_at(index: &mut HashMap<String, HashMap<BuildId, Vec<usize>>>, stage: &str, build: &BuildId, at: usize) {
    if !index.contains_key(stage) {
        index.insert(stage.to_owned(), HashMap::new());
    }
    let builds = index.get_mut(stage).expect("inserted above");
    match builds.get_mut(build) {
        Some(list) => list.push(at),
        None => {
            builds.insert(build.clone(), vec![at]);
        }
    }
}

/// Two summaries are equal when what they record is: the indexes are derived from it.
impl PartialEq for LedgerSummary {
    fn eq(&self, other: &Self) -> bool {
        self.head == other.head
            && self.fences == other.fences
            && self.builds == other.builds
            && self.promotions == other.promotions
            && self.passed == other.passed
            && self.holds == other.holds
    }
}

/// The serialised form: the summary without its indexes.
#[derive(Serialize)]
struct Parts<'a> {
    head: &'a Option<(u64, String)>,
    fences: &'a BTreeMap<String, u64>,
    builds: &'a [BuildSummary],
    promotions: Vec<StoredPromotion>,
    passed: &'a BTreeMap<String, Vec<usize>>,
    holds: Vec<&'a Hold>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnedParts {
    head: Option<(u64, String)>,
    fences: BTreeMap<String, u64>,
    builds: Vec<BuildSummary>,
    promotions: Vec<StoredPromotion>,
    passed: BTreeMap<String, Vec<usize>>,
    holds: Vec<Hold>,
}

/// How a promotion is stored: its times as nanoseconds since the epoch, which read back several times faster
/// than RFC 3339 text (a checkpoint of a large ledger holds thousands of them); see [`stored_time`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredPromotion {
    id: PromotionId,
    build: BuildId,
    stage: String,
    #[serde(with = "stored_time")]
    started_at: DateTime<Utc>,
    #[serde(default, with = "stored_time::option", skip_serializing_if = "Option::is_none")]
    finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<FinalState>,
}

/// A promotion's time in a checkpoint: nanoseconds since the epoch where they fit in an `i64` (1677 to 2262),
/// RFC 3339 text otherwise. An entry may carry any time chrono represents; found by the `ledger` fuzz target
/// (`fuzz/artifacts/ledger/`): a ledger holding a promotion dated after 2262 or before 1677 could not be
/// checkpointed at all.
mod stored_time {
    use std::fmt;

    use chrono::{DateTime, Utc};
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        match time.timestamp_nanos_opt() {
            Some(nanos) => serializer.serialize_i64(nanos),
            None => serializer.collect_str(&time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
        deserializer.deserialize_any(TimeVisitor)
    }

    struct TimeVisitor;

    impl Visitor<'_> for TimeVisitor {
        type Value = DateTime<Utc>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("nanoseconds since the epoch, or an RFC 3339 time")
        }

        fn visit_i64<E: de::Error>(self, nanos: i64) -> Result<Self::Value, E> {
            Ok(DateTime::from_timestamp_nanos(nanos))
        }

        fn visit_u64<E: de::Error>(self, nanos: u64) -> Result<Self::Value, E> {
            let nanos = i64::try_from(nanos).map_err(|_| E::custom("nanoseconds since the epoch out of range"))?;
            self.visit_i64(nanos)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            DateTime::parse_from_rfc3339(text).map(|time| time.to_utc()).map_err(E::custom)
        }
    }

    pub(super) mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub(in super::super) fn serialize<S: Serializer>(
            time: &Option<DateTime<Utc>>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match time {
                Some(time) => super::serialize(time, serializer),
                None => serializer.serialize_none(),
            }
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            #[derive(Deserialize)]
            struct Stored(#[serde(with = "super")] DateTime<Utc>);
            Ok(Option::<Stored>::deserialize(deserializer)?.map(|Stored(time)| time))
        }
    }
}

impl From<&PromotionSummary> for StoredPromotion {
    fn from(p: &PromotionSummary) -> Self {
        StoredPromotion {
            id: p.id.clone(),
            build: p.build.clone(),
            stage: p.stage.clone(),
            started_at: p.started_at,
            finished_at: p.finished_at,
            outcome: p.outcome.clone(),
        }
    }
}

impl From<StoredPromotion> for PromotionSummary {
    fn from(p: StoredPromotion) -> Self {
        let StoredPromotion { id, build, stage, started_at, finished_at, outcome } = p;
        PromotionSummary { id, build, stage, started_at, finished_at, outcome }
    }
}

impl Serialize for LedgerSummary {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Parts {
            head: &self.head,
            fences: &self.fences,
            builds: &self.builds,
            promotions: self.promotions.iter().map(StoredPromotion::from).collect(),
            passed: &self.passed,
            holds: self.holds.values().collect(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for LedgerSummary {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let parts = OwnedParts::deserialize(deserializer)?;
        LedgerSummary::from_parts(parts).map_err(serde::de::Error::custom)
    }
}

impl LedgerSummary {
    /// Rebuilds the indexes, refusing parts that do not hold together (so that a damaged checkpoint
    /// cannot make a lookup fail later).
    fn from_parts(parts: OwnedParts) -> Result<Self, String> {
        let OwnedParts { head, fences, builds, promotions, passed, holds } = parts;
        let promotions = promotions.into_iter().map(PromotionSummary::from).collect();
        let mut summary = LedgerSummary { head, fences, builds, promotions, ..LedgerSummary::default() };
        for (index, build) in summary.builds.iter().enumerate() {
            if summary.build_index.insert(build.id.clone(), index).is_some() {
                return Err(format!("build {} is listed twice", build.id));
            }
        }
        for index in 0..summary.promotions.len() {
            summary.index_started(index);
        }
        for (stage, indexes) in &passed {
            for &index in indexes {
                let record = summary.promotions.get(index).ok_or_else(|| format!("no promotion number {index}"))?;
                if record.stage != *stage {
                    return Err(format!("promotion {} is listed as passing {stage}", record.id));
                }
            }
        }
        for index in passed.values().flatten() {
            summary.index_passed(*index);
        }
        summary.passed = passed;
        summary.holds = holds.into_iter().map(|hold| (hold.id.clone(), hold)).collect();
        Ok(summary)
    }
}
