//! For those who implement a backend rather than use one: the checks every store's contract requires, and
//! the ledger's hash chain for a ledger of your own. Users of `promote` do not need this module.
//!
//! A lock implementation builds its leases with [`Lease::new`](crate::lock::Lease::new), adding
//! [`Lease::lost_when`](crate::lock::Lease::lost_when) or [`Lease::lost_if`](crate::lock::Lease::lost_if)
//! when its locks can be lost while held. Every backend runs the conformance suites (feature
//! `conformance`) against itself.

pub use crate::ledger::{ChainTip, GENESIS_HASH, verify_chain, verify_chain_with};
pub use crate::store::{check_exists_args, check_promote_args};
