//! The core's spec kinds: how each local backend is built from its settings. The spec registry is the top
//! layer: the backends know nothing of it, and their kinds live here.

mod config;
mod deploy;
mod gate;

use super::SpecRegistry;

/// Registers the config, deployer and gate kinds.
pub(super) fn register(registry: &mut SpecRegistry) {
    config::register(registry);
    deploy::register(registry);
    gate::register(registry);
}
