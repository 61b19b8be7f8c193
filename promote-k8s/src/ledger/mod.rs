//! `KubernetesLedger`: the ledger in labelled ConfigMaps of one namespace, the way Helm keeps releases.
//!
//! - **Segments.** Entries are stored as sealed lines (the file ledger's exact lines) in ConfigMaps named
//!   `<ledger>-000001`, `<ledger>-000002`, …, each holding at most [`DEFAULT_SEGMENT_BYTES`] of lines by
//!   default (a ConfigMap holds at most 1 MiB; an append rewrites its segment, and etcd keeps each
//!   revision until compaction, so smaller segments make cheaper appends): a 100k-entry ledger is about
//!   2,000 objects, not 100k.
//! - **Conditional appends.** An append replaces the head segment with a precondition on the
//!   resourceVersion it read, or, when the head is full, creates the next segment (a name only one writer
//!   can create). Two writers can never both append at one sequence number: the loser gets 409, reads the
//!   new head, and seals its entries again after it. One append is one write.
//! - **The chain and fences** are checked as the file ledger checks them: every line's hash, every link,
//!   on every read; a stale fencing token is refused ([`Error::Fenced`]) before anything is written. The
//!   newest token per stage comes from the head segment (each segment records the fences before it, in
//!   the same write as its entries, and a full read checks those records against the entries).
//! - **A write whose answer is lost** (a reset, a body cut short, a gateway timeout: the server may have
//!   applied it) is settled by reading its segment back: the entries are there, sealed as this writer
//!   sealed them, and the append succeeded; or they are not, and it failed. When even that read fails, the
//!   append fails (retryably) with its outcome unknown, and the handle remembers it: appending the same
//!   entries again returns them as recorded if they did land, instead of writing them twice.
//! - **The checkpoint** (`<ledger>-checkpoint`) keeps the [`LedgerSummary`] as of the end of a segment,
//!   rewritten whenever a new segment is started. `status` reads it, the head segment and the (missing)
//!   segment after it: three requests, however long the history.

mod checkpoint;
mod segment;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use promote_core::backend::{ChainTip, GENESIS_HASH, verify_chain};
use promote_core::error::{Error, Result};
use promote_core::ledger::{Ledger, LedgerCapabilities, LedgerEntry, LedgerSummary, NewEntry};
use tokio::sync::Mutex;

use crate::connection::{Connection, connection_setters};
use crate::error::{from_kube, is_temporary};
use crate::label::check_label;
use crate::retry::retrying;
use segment::{LEDGER_LABEL, ROLE_LABEL, Segment, SegmentStart, config_maps};

/// How many bytes of entries a segment holds by default before the next one is started.
pub const DEFAULT_SEGMENT_BYTES: usize = 16 * 1024;
/// The most a segment may be set to hold before it is full.
const MAX_SEGMENT_BYTES: usize = 512 * 1024;
/// The most bytes one append may write: a segment not yet full may take it, and stays under a ConfigMap's
/// 1 MiB (metadata included).
const MAX_APPEND_BYTES: usize = 256 * 1024;
/// How many times one append goes after a head that keeps moving before it gives up (as a temporary error).
const APPEND_RACES: usize = 200;
/// How many segment reads one catch-up makes at most (a reader far behind the head reads one per segment).
const CATCH_UP_READS: usize = 100_000;

/// A ledger shared by runners on many machines, in ConfigMaps. How it works: the crate docs, "Shared state for runners on many machines".
///
/// ```rust,no_run
/// # async fn demo() -> promote_core::Result<()> {
/// use promote_k8s::KubernetesLedger;
/// let ledger = KubernetesLedger::builder().namespace("promote-system").name("shop").build().await?;
/// # let _ = ledger; Ok(()) }
/// ```
#[derive(Clone)]
pub struct KubernetesLedger {
    api: Api<DynamicObject>,
    namespace: String,
    name: String,
    segment_bytes: usize,
    checkpoints: bool,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for KubernetesLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesLedger")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("segment_bytes", &self.segment_bytes)
            .finish_non_exhaustive()
    }
}

/// What this handle knows of the ledger: up to the end of `head`.
#[derive(Debug, Default)]
struct State {
    tip: ChainTip,
    /// The newest fencing token per stage, up to the tip.
    fences: BTreeMap<String, u64>,
    summary: Arc<LedgerSummary>,
    /// The last segment; `None` until the ledger was read, or while it is empty.
    head: Option<Segment>,
    loaded: bool,
    /// An append whose write may or may not have been applied (its answer and the read after it were lost).
    unconfirmed: Option<Unconfirmed>,
}

/// The entries of an append whose outcome is unknown, and how they were sealed.
#[derive(Debug, Clone)]
struct Unconfirmed {
    entries: Vec<NewEntry>,
    recorded: Vec<LedgerEntry>,
}

/// What a failed write's segment, read back, says about it.
enum Settled {
    /// The entries are there: the write was applied.
    Written,
    /// They are not: nothing was written.
    NotWritten,
}

impl State {
    /// Moves past `entries`, which follow the tip.
    fn advance(&mut self, entries: &[LedgerEntry]) {
        let summary = Arc::make_mut(&mut self.summary);
        for entry in entries {
            self.tip.advance(entry);
            if let Some(fence) = &entry.fence {
                let newest = self.fences.entry(fence.stage.clone()).or_default();
                *newest = (*newest).max(fence.token);
            }
            if entry.seq > summary.head_seq() {
                summary.apply(entry);
            }
        }
    }
}

impl KubernetesLedger {
    /// A builder: namespace `default`, ledger `promote`, segments of [`DEFAULT_SEGMENT_BYTES`], checkpoints on.
    pub fn builder() -> KubernetesLedgerBuilder {
        KubernetesLedgerBuilder {
            settings: LedgerSettings {
                namespace: "default".into(),
                name: "promote".into(),
                context: None,
                kubeconfig: None,
            },
            connection: None,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            checkpoints: true,
        }
    }

    fn shown(&self) -> String {
        format!("ledger {} in namespace {}", self.name, self.namespace)
    }

    async fn get(&self, name: &str) -> Result<Option<DynamicObject>> {
        retrying(|| self.api.get_opt(name))
            .await
            .map_err(|e| from_kube(e, &format!("read ConfigMap {name} in namespace {}", self.namespace)))
    }

    async fn segment(&self, index: u64) -> Result<Option<Segment>> {
        match self.get(&Segment::name(&self.name, index)).await? {
            Some(object) => Segment::read(&self.namespace, index, object).map(Some),
            None => Ok(None),
        }
    }

    /// Every segment, in order, with one LIST.
    async fn all_segments(&self) -> Result<Vec<Segment>> {
        let params = ListParams::default().labels(&format!("{LEDGER_LABEL}={},{ROLE_LABEL}=segment", self.name));
        let list = retrying(|| self.api.list(&params))
            .await
            .map_err(|e| from_kube(e, &format!("list the segments of {}", self.shown())))?;
        let mut segments = Vec::with_capacity(list.items.len());
        for object in list.items {
            let Some(index) = Segment::index_of(&object) else { continue };
            segments.push(Segment::read(&self.namespace, index, object)?);
        }
        segments.sort_by_key(|segment| segment.index);
        for (position, segment) in segments.iter().enumerate() {
            if segment.index != position as u64 + 1 {
                return Err(Error::LedgerCorrupt {
                    path: self.shown(),
                    line: segment.start.first_seq,
                    reason: format!("segment {} is missing", position + 1),
                });
            }
        }
        Ok(segments)
    }

    /// Brings `state` up to the ledger's end: from the checkpoint the first time (or from every segment if
    /// there is none that fits), then by reading the head segment again and the segments after it.
    async fn refresh(&self, state: &mut State) -> Result<()> {
        if !state.loaded {
            return self.load(state).await;
        }
        self.catch_up(state, true).await
    }

    /// Reads the head again (when `reread_head`) and every segment after it. Two reads are not one
    /// snapshot: a next segment that starts past the tip means the head grew (and filled) between them, so
    /// the head is read again.
    async fn catch_up(&self, state: &mut State, mut reread_head: bool) -> Result<()> {
        for _ in 0..CATCH_UP_READS {
            if reread_head && let Some(head) = &state.head {
                let again = self.segment(head.index).await?.ok_or_else(|| self.vanished(head.index))?;
                let known = head.entries.len();
                if again.start != head.start || again.entries.get(..known) != Some(&head.entries[..]) {
                    return Err(Error::LedgerCorrupt {
                        path: self.shown(),
                        line: head.start.first_seq,
                        reason: "the head segment was rewritten: entries already read changed".into(),
                    });
                }
                state.advance(&again.entries[known..]);
                state.head = Some(again);
            }
            let index = state.head.as_ref().map_or(1, |head| head.index + 1);
            match self.segment(index).await? {
                None => return Ok(()),
                Some(next) if state.head.is_some() && next.start.first_seq > state.tip.seq() + 1 => reread_head = true,
                Some(next) => {
                    self.follow(state, next)?;
                    reread_head = false;
                }
            }
        }
        Err(Error::backend(
            crate::error::BACKEND,
            promote_core::ErrorClass::Temporary,
            format!("{}: still more segments after {CATCH_UP_READS} reads", self.shown()),
        ))
    }

    /// Takes `segment`, the one after the state's head, as the new head.
    fn follow(&self, state: &mut State, segment: Segment) -> Result<()> {
        segment.check_follows(&self.namespace, state.tip.seq(), state.tip.hash(), Some(&state.fences))?;
        state.advance(&segment.entries);
        state.head = Some(segment);
        Ok(())
    }

    fn vanished(&self, index: u64) -> Error {
        Error::LedgerCorrupt {
            path: self.shown(),
            line: 0,
            reason: format!("segment {} was deleted", Segment::name(&self.name, index)),
        }
    }

    /// The first read: the checkpoint, the segment it ends before, and those after; or every segment.
    async fn load(&self, state: &mut State) -> Result<()> {
        if let Some(checkpoint) = checkpoint::load(&self.api, &self.name).await? {
            let next = checkpoint.head.next_segment;
            if let Some(segment) = self.segment(next).await?
                && segment
                    .check_follows(&self.namespace, checkpoint.head.head_seq, &checkpoint.head.head_hash, None)
                    .is_ok()
            {
                // The fences before the segment are its own record of them, not the checkpoint's.
                *state = State {
                    fences: segment.start.fences.clone(),
                    summary: Arc::new(checkpoint.summary),
                    loaded: true,
                    unconfirmed: state.unconfirmed.take(),
                    ..State::default()
                };
                state.advance(&segment.entries);
                state.head = Some(segment);
                return self.catch_up(state, false).await;
            }
            tracing::warn!(ledger = %self.shown(), "the checkpoint does not match the segments; reading them all");
        }
        let mut fresh = State { loaded: true, ..State::default() };
        for segment in self.all_segments().await? {
            self.follow(&mut fresh, segment)?;
        }
        fresh.unconfirmed = state.unconfirmed.take();
        *state = fresh;
        // The list is one snapshot; a segment started since is read next.
        self.catch_up(state, false).await
    }

    /// Seals and writes `entries` after the state's tip: `Ok(None)` when another writer got there first.
    async fn try_append(&self, state: &mut State, entries: &[NewEntry]) -> Result<Option<Vec<LedgerEntry>>> {
        for entry in entries {
            if let Some(fence) = &entry.fence {
                let newest = state.fences.get(&fence.stage).copied().unwrap_or(0);
                if fence.token < newest {
                    return Err(Error::Fenced { stage: fence.stage.clone(), token: fence.token, newest });
                }
            }
        }
        let sealed = state.tip.seal(entries.to_vec())?;
        let mut lines = String::new();
        for (_, line) in &sealed {
            lines.push_str(line);
            lines.push('\n');
        }
        if lines.len() > MAX_APPEND_BYTES {
            return Err(Error::invalid(
                "ledger append",
                format!("{} entries", sealed.len()),
                format!("{} bytes is more than one ConfigMap holds; append fewer entries at once", lines.len()),
            ));
        }
        let recorded: Vec<LedgerEntry> = sealed.into_iter().map(|(entry, _)| entry).collect();
        let fits = state.head.as_ref().is_some_and(|head| !head.is_full());
        let (index, written, started) = match &state.head {
            Some(head) if fits => {
                let object = head.appended(&lines);
                let name = Segment::name(&self.name, head.index);
                (head.index, self.api.replace(&name, &PostParams::default(), &object).await, false)
            }
            head => {
                let index = head.as_ref().map_or(1, |head| head.index + 1);
                let start = SegmentStart {
                    format: segment::FORMAT,
                    first_seq: state.tip.seq() + 1,
                    prev: state.tip.hash().to_owned(),
                    fences: state.fences.clone(),
                    full_at: self.segment_bytes,
                };
                let object = Segment::new_object(&self.name, index, &start, &lines);
                (index, self.api.create(&PostParams::default(), &object).await, true)
            }
        };
        let object = match written {
            Ok(object) => object,
            Err(kube::Error::Api(status)) if status.code == 409 => return Ok(None),
            Err(error) => {
                let doing = format!("append to segment {} of {}", Segment::name(&self.name, index), self.shown());
                if !is_temporary(&error) {
                    return Err(from_kube(error, &doing));
                }
                // The server may have applied the write and its answer been lost: read the segment back.
                let expected = match (&state.head, started) {
                    (Some(head), false) => format!("{}{lines}", head.lines),
                    _ => lines,
                };
                return match self.settle(index, &expected).await {
                    Ok(Settled::Written) => {
                        // Read the ledger afresh next time: the segment may hold more than this writer knows.
                        *state = State::default();
                        Ok(Some(recorded))
                    }
                    Ok(Settled::NotWritten) => Err(from_kube(error, &doing)),
                    Err(_) => {
                        state.unconfirmed = Some(Unconfirmed { entries: entries.to_vec(), recorded });
                        Err(from_kube(
                            error,
                            &format!(
                                "{doing} (the outcome is unknown: appending the same entries again does not write \
                                 them twice)"
                            ),
                        ))
                    }
                };
            }
        };
        let before = started.then(|| state.summary.clone());
        let segment = Segment::read(&self.namespace, index, object)?;
        state.advance(&recorded);
        state.head = Some(segment);
        if let Some(covered) = before.filter(|_| self.checkpoints && index > 1) {
            checkpoint::store(&self.api, &self.name, index, &covered).await;
        }
        Ok(Some(recorded))
    }

    /// Whether segment `index` now starts with `expected` (its lines up to and including a write's, sealed
    /// by this writer: a match can only be that write).
    async fn settle(&self, index: u64, expected: &str) -> Result<Settled> {
        Ok(match self.segment(index).await? {
            Some(segment) if segment.lines.starts_with(expected) => Settled::Written,
            _ => Settled::NotWritten,
        })
    }

    /// The entries after `after`, from the state's head back through the segments before it.
    async fn entries_since(&self, state: &State, after: u64) -> Result<Vec<LedgerEntry>> {
        let Some(head) = state.head.clone() else { return Ok(Vec::new()) };
        // Back from the head to the segment holding `after + 1`, each linked to the one after it.
        let mut segments = vec![head];
        while let Some(later) =
            segments.last().filter(|segment| segment.start.first_seq > after + 1 && segment.index > 1)
        {
            let index = later.index - 1;
            let earlier = self.segment(index).await?.ok_or_else(|| self.vanished(index))?;
            let last = earlier.entries.last().expect("a segment read holds an entry");
            later.check_follows(&self.namespace, last.seq, &last.hash, None)?;
            segments.push(earlier);
        }
        let entries = segments.iter().rev().flat_map(|segment| segment.entries.iter());
        Ok(entries.filter(|entry| entry.seq > after).cloned().collect())
    }

    /// For an append of the same entries as one whose outcome was unknown: those entries as recorded if that
    /// write was applied after all. Forgets the unknown append either way once the ledger could be read.
    async fn landed(&self, state: &mut State, entries: &[NewEntry]) -> Result<Option<Vec<LedgerEntry>>> {
        let Some(pending) = state.unconfirmed.clone() else { return Ok(None) };
        if pending.entries != entries {
            state.unconfirmed = None;
            return Ok(None);
        }
        self.refresh(state).await?;
        let after = pending.recorded.first().map_or(0, |first| first.seq - 1);
        let found = self.entries_since(state, after).await?;
        state.unconfirmed = None;
        Ok(found.starts_with(&pending.recorded).then_some(pending.recorded))
    }

    /// Writes a checkpoint of the ledger as it stands, whatever the schedule (after a bulk import, say).
    pub async fn checkpoint(&self) -> Result<()> {
        let mut state = self.state.lock().await;
        self.refresh(&mut state).await?;
        if let Some(head) = &state.head {
            // The summary as of the end of the segment before the head.
            let before_head = head.start.first_seq - 1;
            let mut summary = LedgerSummary::new();
            if before_head > 0 {
                let entries = self.read_all().await?;
                summary.apply_all(entries.iter().take_while(|e| e.seq <= before_head));
            }
            checkpoint::store(&self.api, &self.name, head.index, &summary).await;
        }
        Ok(())
    }

    /// Every entry, the whole chain and the fences each segment records checked.
    async fn read_all(&self) -> Result<Vec<LedgerEntry>> {
        let mut check = State { loaded: true, ..State::default() };
        let mut entries = Vec::new();
        for segment in self.all_segments().await? {
            entries.extend(segment.entries.iter().cloned());
            self.follow(&mut check, segment)?;
        }
        verify_chain(&self.shown(), (0, GENESIS_HASH), &entries)?;
        Ok(entries)
    }
}

#[async_trait]
impl Ledger for KubernetesLedger {
    fn capabilities(&self) -> LedgerCapabilities {
        LedgerCapabilities::durable_shared()
    }

    async fn append(&self, entries: Vec<NewEntry>) -> Result<Vec<LedgerEntry>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut state = self.state.lock().await;
        if !state.loaded {
            self.load(&mut state).await?;
        }
        if let Some(recorded) = self.landed(&mut state, &entries).await? {
            return Ok(recorded);
        }
        for race in 0..APPEND_RACES {
            if let Some(recorded) = self.try_append(&mut state, &entries).await? {
                return Ok(recorded);
            }
            // Another writer appended first: read the new head, then seal after it.
            if race > 2 {
                tokio::time::sleep(Duration::from_millis(5 * (race as u64 % 8))).await;
            }
            self.refresh(&mut state).await?;
        }
        Err(Error::backend(
            crate::error::BACKEND,
            promote_core::ErrorClass::Temporary,
            format!("{}: other writers kept appending first ({APPEND_RACES} attempts)", self.shown()),
        ))
    }

    async fn read_since(&self, after: u64) -> Result<Vec<LedgerEntry>> {
        if after == 0 {
            return self.read_all().await;
        }
        let mut state = self.state.lock().await;
        self.refresh(&mut state).await?;
        self.entries_since(&state, after).await
    }

    async fn summary(&self) -> Result<Option<Arc<LedgerSummary>>> {
        let mut state = self.state.lock().await;
        self.refresh(&mut state).await?;
        Ok(Some(state.summary.clone()))
    }
}

/// The ledger's settings, as the spec kind reads them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LedgerSettings {
    /// The namespace of its ConfigMaps.
    pub(crate) namespace: String,
    /// The ledger's name: its objects are `<name>-000001`, … and `<name>-checkpoint`.
    #[serde(default = "default_name")]
    pub(crate) name: String,
    /// A kubeconfig context instead of the current one.
    #[serde(default)]
    pub(crate) context: Option<String>,
    /// A kubeconfig file instead of the default.
    #[serde(default)]
    pub(crate) kubeconfig: Option<std::path::PathBuf>,
}

fn default_name() -> String {
    "promote".into()
}

/// Builds a [`KubernetesLedger`].
#[derive(Debug)]
pub struct KubernetesLedgerBuilder {
    settings: LedgerSettings,
    /// A client or a spec's connection; `None`: the settings' kubeconfig and context.
    connection: Option<Connection>,
    segment_bytes: usize,
    checkpoints: bool,
}

connection_setters!(KubernetesLedgerBuilder);

impl KubernetesLedgerBuilder {
    /// The namespace of the ledger's ConfigMaps.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.settings.namespace = namespace.into();
        self
    }

    /// The ledger's name (default `promote`): several ledgers may share a namespace.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// How many bytes of entries make a segment full, so that the next is started (default
    /// [`DEFAULT_SEGMENT_BYTES`], at most 512 KiB). The last append may take a segment past it. Recorded in
    /// each segment when it is created: writers with other settings agree on when a segment is full.
    pub fn segment_bytes(mut self, bytes: usize) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// Whether a checkpoint is written each time a segment is started (default true). Without one, `status`
    /// lists every segment.
    pub fn checkpoints(mut self, enabled: bool) -> Self {
        self.checkpoints = enabled;
        self
    }

    pub(crate) fn settings(mut self, settings: LedgerSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The ledger. Reads configuration files; sends no request.
    pub async fn build(mut self) -> Result<KubernetesLedger> {
        for (setting, value) in [("namespace", &self.settings.namespace), ("name", &self.settings.name)] {
            if let Err(why) = check_label(value) {
                return Err(Error::invalid("Kubernetes ledger setting", setting, format!("`{value}`: {why}")));
            }
        }
        if self.segment_bytes == 0 || self.segment_bytes > MAX_SEGMENT_BYTES {
            return Err(Error::invalid("Kubernetes ledger setting", "segment_bytes", "must be 1 byte to 512 KiB"));
        }
        let connection = self.take_connection();
        let client = connection.connect().await?;
        Ok(KubernetesLedger {
            api: config_maps(&client, &self.settings.namespace),
            namespace: self.settings.namespace,
            name: self.settings.name,
            segment_bytes: self.segment_bytes,
            checkpoints: self.checkpoints,
            state: Arc::default(),
        })
    }
}
