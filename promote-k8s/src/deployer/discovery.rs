//! Which resource types the cluster serves, from API discovery: cached per deployer, and refreshed when a
//! kind is unknown (a CRD created since, possibly by the same bundle).

use std::collections::HashMap;
use std::sync::Arc;

use kube::Client;
use kube::discovery::{Discovery, Scope};
use promote_core::error::Result;
use tokio::sync::Mutex;

use super::objects::{GroupKind, ResourceType};
use crate::error::from_kube;
use crate::retry::retrying;

/// The resource types one discovery found.
#[derive(Debug, Default)]
pub(crate) struct Discovered {
    by_version: HashMap<(String, String, String), ResourceType>,
    preferred: HashMap<GroupKind, ResourceType>,
}

impl Discovered {
    /// The type of `kind` at `group`/`version`.
    pub(crate) fn resolve(&self, group: &str, version: &str, kind: &str) -> Option<&ResourceType> {
        self.by_version.get(&(group.to_owned(), version.to_owned(), kind.to_owned()))
    }

    /// The type of a group and kind at its preferred version (to list or delete objects of it).
    pub(crate) fn preferred(&self, group_kind: &GroupKind) -> Option<&ResourceType> {
        self.preferred.get(group_kind)
    }

    fn from_discovery(discovery: &Discovery) -> Self {
        let mut found = Discovered::default();
        for group in discovery.groups() {
            for version in group.versions() {
                for (api, capabilities) in group.versioned_resources(version) {
                    let rt = ResourceType { namespaced: capabilities.scope == Scope::Namespaced, api };
                    found.by_version.insert((rt.api.group.clone(), rt.api.version.clone(), rt.api.kind.clone()), rt);
                }
            }
            for (api, capabilities) in group.recommended_resources() {
                let rt = ResourceType { namespaced: capabilities.scope == Scope::Namespaced, api };
                found.preferred.insert(rt.group_kind(), rt);
            }
        }
        found
    }
}

/// Discovery results, fetched on first use and kept until a refresh.
pub(crate) struct KindCache {
    client: Client,
    cached: Mutex<Option<Arc<Discovered>>>,
}

impl KindCache {
    pub(crate) fn new(client: Client) -> Self {
        KindCache { client, cached: Mutex::new(None) }
    }

    /// The cached types, discovering them first if nothing is cached.
    pub(crate) async fn current(&self) -> Result<Arc<Discovered>> {
        let mut cached = self.cached.lock().await;
        if let Some(found) = cached.as_ref() {
            return Ok(found.clone());
        }
        let found = Arc::new(self.discover().await?);
        *cached = Some(found.clone());
        Ok(found)
    }

    /// Discovers again (after a kind was not found, or CRDs were created).
    pub(crate) async fn refresh(&self) -> Result<Arc<Discovered>> {
        let mut cached = self.cached.lock().await;
        let found = Arc::new(self.discover().await?);
        *cached = Some(found.clone());
        Ok(found)
    }

    async fn discover(&self) -> Result<Discovered> {
        // Aggregated discovery (Kubernetes 1.26+) takes two requests; older servers need one per group.
        let aggregated = retrying(|| Discovery::new(self.client.clone()).run_aggregated()).await;
        let discovery = match aggregated {
            Ok(discovery) => discovery,
            Err(error) => {
                tracing::debug!(%error, "aggregated discovery failed; discovering group by group");
                retrying(|| Discovery::new(self.client.clone()).run())
                    .await
                    .map_err(|e| from_kube(e, "discover the cluster's resource types"))?
            }
        };
        Ok(Discovered::from_discovery(&discovery))
    }
}
