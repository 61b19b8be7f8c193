//! Shared pieces of the promote benchmarks.
