//! The ledger: the append-only, hash-chained system of record.
//!
//! A ledger stores [`LedgerEntry`]s. Everything else (current build per stage, builds that passed a stage,
//! history, approvals, holds) is a [`LedgerView`] folded from them, so it can always be rebuilt. The part of
//! the fold that `status` reads is a [`LedgerSummary`]; the view folds through it, and a backend may keep
//! one (the file ledger checkpoints it) so that `status` does not fold the whole history.

mod checkpoint;
mod entry;
mod file;
mod memory;
mod summary;
mod view;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

pub use entry::{
    Approval, AttestationRef, Fence, FinalState, GENESIS_HASH, GateEvidence, HashScheme, Hold, HoldScope, LedgerEntry,
    LedgerEvent, NewEntry, PlacedArtifact, PromotionId, PromotionKind, Step, StepDetail, StepOutcome, Verdict,
    verify_chain, verify_chain_with,
};
pub use file::{FileLedger, FileLedgerOptions, Recovery, UNKEYED_UNTIL_ENV};
pub use memory::MemoryLedger;
pub use summary::{BuildSummary, LedgerSummary, PromotionSummary};
pub use view::{LedgerView, PromotionRecord, PromotionState, StepRecord, Tenure};

use crate::error::{Error, Result};
use crate::integrity::IntegrityKey;

/// What a [`Ledger`] backend offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LedgerCapabilities {
    /// Entries survive the process (and, for files, a crash: they are fsynced before `append` returns).
    pub durable: bool,
    /// Several processes or machines may append to the same ledger safely.
    pub shared: bool,
}

impl LedgerCapabilities {
    /// A durable ledger shared by processes.
    pub fn durable_shared() -> Self {
        LedgerCapabilities { durable: true, shared: true }
    }
}

/// The system of record.
///
/// # Contract
/// - `append` writes `entries` atomically and in order after the ledger's current last entry, giving them
///   consecutive sequence numbers and chaining each to the one before with [`LedgerEntry::seal`]. It returns
///   them as recorded. It never rewrites or drops an existing entry.
/// - An entry carrying a [`Fence`] older than the newest token the ledger has seen for that stage is
///   refused with [`Error::Fenced`], and nothing of that call is written.
/// - When `append` returns `Ok`, the entries are as durable as [`LedgerCapabilities::durable`] says.
///   When it returns `Err`, none of them was recorded.
/// - `read_since(n)` returns every entry with a sequence number above `n`, in order. Damage (a torn last
///   record, a broken chain, an unparsable record) is [`Error::LedgerCorrupt`] naming where; it is never
///   skipped.
/// - `summary` returns `None`, or a [`LedgerSummary`] equal to the one folded from every entry the
///   ledger holds when it is called (including entries other writers appended).
#[async_trait]
pub trait Ledger: Debug + Send + Sync + 'static {
    /// What the ledger offers.
    fn capabilities(&self) -> LedgerCapabilities;

    /// Appends entries atomically, in order.
    async fn append(&self, entries: Vec<NewEntry>) -> Result<Vec<LedgerEntry>>;

    /// Every entry after sequence number `after`, in order.
    async fn read_since(&self, after: u64) -> Result<Vec<LedgerEntry>>;

    /// Where things stand, if the backend keeps a summary that is cheaper to get than folding every entry
    /// (the file ledger checkpoints one). `None`, the default, means: fold the entries. A wrapper around
    /// another ledger should forward this, or `status` falls back to folding.
    async fn summary(&self) -> Result<Option<Arc<LedgerSummary>>> {
        Ok(None)
    }
}

forward_to_inner!(Ledger {
    fn capabilities(&self) -> LedgerCapabilities {
        (**self).capabilities()
    }
    async fn append(&self, entries: Vec<NewEntry>) -> Result<Vec<LedgerEntry>> {
        (**self).append(entries).await
    }
    async fn read_since(&self, after: u64) -> Result<Vec<LedgerEntry>> {
        (**self).read_since(after).await
    }
    async fn summary(&self) -> Result<Option<Arc<LedgerSummary>>> {
        (**self).summary().await
    }
});

/// Conveniences on every [`Ledger`].
#[async_trait]
pub trait LedgerExt: Ledger {
    /// Reads the whole ledger and folds it into a view.
    async fn view(&self) -> Result<LedgerView> {
        let mut view = LedgerView::new();
        view.apply_all(self.read_since(0).await?);
        Ok(view)
    }

    /// Brings `view` up to date with entries appended since it was last folded.
    async fn refresh(&self, view: &mut LedgerView) -> Result<()> {
        let entries = self.read_since(view.head_seq()).await?;
        view.apply_all(entries);
        Ok(())
    }
}

impl<T: Ledger + ?Sized> LedgerExt for T {}

/// The end of a hash chain: the last sequence number and hash, and the newest fencing token per stage.
///
/// Backends keep one, call [`ChainTip::seal`] under their write lock, store what it returns, and then
/// [`ChainTip::advance`] over the stored entries.
#[derive(Debug, Clone, Default)]
pub struct ChainTip {
    seq: u64,
    hash: Option<String>,
    fences: HashMap<String, u64>,
}

impl ChainTip {
    /// The tip of an empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last sequence number (0 when empty).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The last hash ([`GENESIS_HASH`] when empty).
    pub fn hash(&self) -> &str {
        self.hash.as_deref().unwrap_or(GENESIS_HASH)
    }

    /// Moves the tip past a stored entry.
    pub fn advance(&mut self, entry: &LedgerEntry) {
        self.move_to(entry.seq, entry.hash.clone());
        if let Some(fence) = &entry.fence {
            self.note_fence(fence);
        }
    }

    /// Moves the tip to an entry whose fence, if it had one, was noted already.
    fn move_to(&mut self, seq: u64, hash: String) {
        self.seq = seq;
        self.hash = Some(hash);
    }

    fn note_fence(&mut self, fence: &Fence) {
        self.note_token(&fence.stage, fence.token);
    }

    fn note_token(&mut self, stage: &str, token: u64) {
        match self.fences.get_mut(stage) {
            Some(newest) => *newest = (*newest).max(token),
            None => {
                self.fences.insert(stage.to_owned(), token);
            }
        }
    }

    /// Seals `entries` after the tip, unkeyed, refusing any whose fence is older than one already seen for
    /// its stage. Returns each entry with the exact line a line-oriented backend writes. Does not move the
    /// tip.
    pub fn seal(&self, entries: Vec<NewEntry>) -> Result<Vec<(LedgerEntry, String)>> {
        self.seal_with(entries, None)
    }

    /// Seals `entries` after the tip as [`ChainTip::seal`] does, keyed with `key` when one is given (see
    /// [`LedgerEntry::seal_with`]).
    pub fn seal_with(&self, entries: Vec<NewEntry>, key: Option<&IntegrityKey>) -> Result<Vec<(LedgerEntry, String)>> {
        let mut fences = self.fences.clone();
        for entry in &entries {
            if let Some(fence) = &entry.fence {
                let newest = fences.get(&fence.stage).copied().unwrap_or(0);
                if fence.token < newest {
                    return Err(Error::Fenced { stage: fence.stage.clone(), token: fence.token, newest });
                }
                fences.insert(fence.stage.clone(), fence.token);
            }
        }
        let (mut seq, mut prev) = (self.seq, self.hash().to_owned());
        let mut sealed = Vec::with_capacity(entries.len());
        for entry in entries {
            seq += 1;
            let (entry, line) = LedgerEntry::seal_with(seq, &prev, entry, key);
            prev.clone_from(&entry.hash);
            sealed.push((entry, line));
        }
        Ok(sealed)
    }
}
