//! What the workspace's tests and benches share, written once: free loopback ports, skip-or-fail when a tool
//! is missing, child processes killed on drop, test binaries run again as their own children, the `docker-registry` and `moto_server` launchers, a
//! fault-injecting proxy skeleton, and deterministic random blobs. Workspace-only (`publish = false`): not
//! an API of promote.
//!
//! Every service binds 127.0.0.1 only, every wait is bounded, and every child is killed when its guard drops.

pub mod blobs;
pub mod ci;
pub mod moto;
pub mod net;
pub mod process;
pub mod proxy;
pub mod registry;
pub mod storm;

pub use blobs::random_bytes;
pub use ci::{find_binary, require};
pub use moto::Moto;
pub use net::{free_port, wait_for_port};
pub use process::ChildGuard;
pub use registry::Registry;
