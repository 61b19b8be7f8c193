//! Shared pieces of the promote examples.
