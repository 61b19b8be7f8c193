//! A test kit for people who test their own code with promote (feature `testing`; not a stable API): a
//! ledger scene to unit-test gates against, backends that fail on demand, and a log capture for sweeps
//! that check no secret reaches a log; with `failpoints`, what a crash test checks at each failpoint.

#[cfg(feature = "failpoints")]
pub mod crash;
pub mod faults;
pub mod leak;
pub mod scene;
