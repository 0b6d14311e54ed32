//! `tessera:plugin/log`, granted to every plugin: lines go to the host's log with the
//! plugin's name and version (and the task it works for), within a per-call budget.

use wasmtime::component::{HasData, Linker};

use crate::bindings::router::tessera::plugin::log;
use crate::error::LoadError;
use crate::host::{HostState, LogLevel};

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        HostState::log(self, level, &message);
    }
}

/// [`HasData`] for interfaces served by the shared [`HostState`].
pub(crate) struct Shared;

impl HasData for Shared {
    type Data<'a> = &'a mut HostState;
}

/// Links `log` (and the `types` interface, which has no functions).
pub(crate) fn link<T: 'static>(
    linker: &mut Linker<T>,
    host: fn(&mut T) -> &mut HostState,
) -> Result<(), LoadError> {
    log::add_to_linker::<_, Shared>(linker, host).map_err(setup)
}

/// A linking failure: the host's fault, not the plugin's.
pub(crate) fn setup(e: wasmtime::Error) -> LoadError {
    LoadError::Setup(format!("{e:#}"))
}

impl crate::bindings::router::tessera::plugin::types::Host for HostState {}
