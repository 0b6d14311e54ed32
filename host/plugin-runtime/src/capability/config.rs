//! `tessera:plugin/config`, when the manifest grants `config`: the binding's values, and
//! the secrets the manifest lists (no other secret is ever handed to the plugin).

use wasmtime::component::Linker;

use crate::bindings::router::tessera::plugin::config;
use crate::capability::log::{Shared, setup};
use crate::error::LoadError;
use crate::host::HostState;
use crate::manifest::{Capability, Manifest};

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config_get(&key)
    }

    fn secret(&mut self, name: String) -> Option<String> {
        self.config_secret(&name)
    }
}

/// Links `config` when the manifest grants it.
pub(crate) fn link<T: 'static>(
    linker: &mut Linker<T>,
    manifest: &Manifest,
    host: fn(&mut T) -> &mut HostState,
) -> Result<(), LoadError> {
    if manifest.grants(Capability::Config) {
        config::add_to_linker::<_, Shared>(linker, host).map_err(setup)?;
    }
    Ok(())
}
