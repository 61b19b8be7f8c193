//! An in-memory ledger, for tests and examples.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{ChainTip, Ledger, LedgerCapabilities, LedgerEntry, NewEntry};
use crate::error::Result;

/// An in-memory ledger. It honours the whole [`Ledger`] contract except durability.
#[derive(Debug, Clone, Default)]
pub struct MemoryLedger {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    tip: ChainTip,
    entries: Vec<LedgerEntry>,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.state.lock().expect("ledger poisoned").entries.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    fn capabilities(&self) -> LedgerCapabilities {
        LedgerCapabilities { durable: false, shared: false }
    }

    async fn append(&self, entries: Vec<NewEntry>) -> Result<Vec<LedgerEntry>> {
        let mut state = self.state.lock().expect("ledger poisoned");
        let sealed: Vec<LedgerEntry> = state.tip.seal(entries)?.into_iter().map(|(entry, _)| entry).collect();
        for entry in &sealed {
            state.tip.advance(entry);
        }
        state.entries.extend(sealed.iter().cloned());
        Ok(sealed)
    }

    async fn read_since(&self, after: u64) -> Result<Vec<LedgerEntry>> {
        let state = self.state.lock().expect("ledger poisoned");
        // Sequence numbers start at 1 and have no gaps, so `after` is also an index.
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(state.entries.len());
        Ok(state.entries[start..].to_vec())
    }
}
