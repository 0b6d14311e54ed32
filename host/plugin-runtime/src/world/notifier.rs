//! The `notifier` world: bindings, linking (`log` always, `config` and outgoing HTTP when
//! granted), and deliveries, each on a fresh instance.
//!
//! The store of a delivery is [`HttpState`]: the shared host state plus what `wasi:http`
//! needs (a resource table, the HTTP hooks, a monotonic clock and the call's deadline
//! for blocking host calls).

use std::sync::Arc;

use crate::error::{CallError, LoadError};
use crate::manifest::{Manifest, PluginConfig, World};
use crate::metrics::PluginMetrics;
use crate::per_call::{HttpState, HttpWorld};
use crate::runtime::{
    CompiledComponent, ComponentInfo, Grants, PluginRuntime, PluginWorld, RuntimeInner,
};

use crate::bindings::notifier::{Notifier, NotifierIndices, NotifierPre};

pub use crate::bindings::notifier::exports::tessera::plugin::notify::Event as NotifyEvent;
pub use crate::bindings::router::tessera::plugin::types::TaskInfo;

/// A loaded notifier plugin version: compiled, validated, linked (`InstancePre`), with
/// its metrics and (with the `http` grant) the hosts it may send requests to. Cheap to
/// clone; `Send + Sync`.
#[derive(Clone)]
pub struct NotifierPlugin {
    inner: Arc<HttpWorld<NotifierPre<HttpState>>>,
}

impl NotifierPlugin {
    pub(crate) fn new(
        runtime: Arc<RuntimeInner>,
        manifest: Manifest,
        compiled: CompiledComponent,
        config: PluginConfig,
        allowed_hosts: Vec<String>,
    ) -> Result<Self, LoadError> {
        let world = HttpWorld::load(
            runtime,
            manifest,
            compiled,
            config,
            allowed_hosts,
            "notifier",
            NotifierPre::new,
            NotifierPre::instance_pre,
            |pre, store, instance| {
                NotifierIndices::new(pre)?.load(store, instance)?;
                Ok(())
            },
        )?;
        Ok(NotifierPlugin {
            inner: Arc::new(world),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.inner.calls.manifest
    }

    pub fn info(&self) -> &ComponentInfo {
        &self.inner.calls.info
    }

    pub fn metrics(&self) -> &PluginMetrics {
        self.inner.calls.metrics()
    }

    /// The authorities this binding lets the plugin send requests to, as given at link
    /// time (meaningful only with the `http` grant).
    pub fn allowed_hosts(&self) -> &[String] {
        &self.inner.calls.allowed_hosts
    }

    /// Delivers one event on a fresh instance that is dropped afterwards (with every
    /// request it left open).
    ///
    /// Blocks the calling thread for up to the manifest's timeout (outgoing requests
    /// included): call it from a blocking context (`spawn_blocking` or a plain thread),
    /// not from an async task. An error of any kind means the event was not delivered;
    /// the plugin's own error says whether trying again can help
    /// ([`PluginError::Unavailable`](crate::PluginError::Unavailable)) or not.
    pub fn deliver(&self, event: &NotifyEvent) -> Result<(), CallError> {
        let calls = &self.inner.calls;
        calls.call(
            calls.store(Some(event.task.id.clone()), HttpState::new),
            |store| self.inner.pre.instantiate(store),
            |notifier: &Notifier, store| {
                notifier.tessera_plugin_notify().call_deliver(store, event)
            },
        )
    }
}

impl PluginWorld for NotifierPlugin {
    const WORLD: World = World::Notifier;

    fn link_validated(
        runtime: &PluginRuntime,
        manifest: Manifest,
        compiled: CompiledComponent,
        grants: Grants,
    ) -> Result<Self, LoadError> {
        NotifierPlugin::new(
            runtime.inner.clone(),
            manifest,
            compiled,
            grants.config,
            grants.allowed_hosts,
        )
    }
}
