//! A test kit for people who test their own code with promote (feature `testing`; not a stable API): a
//! ledger scene to unit-test gates against, and backends that fail on demand.

pub mod faults;
pub mod scene;
