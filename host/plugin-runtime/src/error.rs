//! Why a plugin failed to load, and why one call failed.

use std::fmt;

use crate::bindings::PluginError;

/// Why a component cannot be loaded as the plugin its manifest claims. Every variant's
/// message is meant for the person who uploaded it (the API returns it as a 400).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a WebAssembly component (garbage, a core module, truncated…).
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// A component that wasmtime refuses to compile (uses an unsupported feature…).
    #[error("the component does not compile: {0}")]
    Compile(String),
    /// The component does not fit the world its manifest claims: a missing export, an
    /// import the world or the manifest does not grant, a signature that differs.
    #[error("{0}")]
    World(String),
    /// The manifest itself is not acceptable (a limit above what this host allows, a
    /// capability its world cannot have, a world this host does not run yet).
    #[error("invalid manifest: {0}")]
    Manifest(String),
    /// The component cannot be instantiated within its limits (its start code traps,
    /// runs out of time or memory).
    #[error("the component fails to start: {0}")]
    Start(String),
    /// The settings the plugin is bound with are not acceptable (an allowed host that is
    /// not `*`, `host` or `host:port`).
    #[error("invalid plugin settings: {0}")]
    Settings(String),
    /// The host could not set the plugin up (linking failed unexpectedly).
    #[error("cannot set up the plugin: {0}")]
    Setup(String),
}

/// Why one call into a plugin failed. The plugin stays loaded; the next call is made as
/// usual (on a fresh instance when the failure was a trap of any kind).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The guest trapped (`unreachable`, a bad memory access, a stack overflow, …).
    #[error("the plugin trapped: {0}")]
    Trap(String),
    /// The call ran past its deadline and was interrupted.
    #[error("the plugin did not answer within its deadline")]
    Timeout,
    /// The guest tried to grow its memory past its cap.
    #[error("the plugin ran out of memory (its cap was reached)")]
    OutOfMemory,
    /// The plugin answered with its own error.
    #[error("the plugin reported an error: {}", DisplayPluginError(.0))]
    Plugin(PluginError),
    /// The plugin answered, but the answer breaks the contract (wrong number of
    /// decisions, an unknown target id, …).
    #[error("the plugin's answer is invalid: {0}")]
    InvalidResult(String),
    /// No instance could be made for the call (pool exhausted, start function failed…).
    #[error("the plugin could not be instantiated: {0}")]
    Instantiate(String),
    /// The plugin's contract version has no such call (a 0.1.0 plugin asked for
    /// something 0.2.0 added); nothing was called.
    #[error("{0}")]
    Unsupported(String),
}

impl CallError {
    /// A short stable name for metrics labels.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CallError::Trap(_) => ErrorKind::Trap,
            CallError::Timeout => ErrorKind::Timeout,
            CallError::OutOfMemory => ErrorKind::OutOfMemory,
            CallError::Plugin(_) => ErrorKind::Plugin,
            CallError::InvalidResult(_) => ErrorKind::InvalidResult,
            CallError::Instantiate(_) => ErrorKind::Instantiate,
            CallError::Unsupported(_) => ErrorKind::Unsupported,
        }
    }

    /// Whether the instance the call ran on must not be used again.
    pub fn poisons_instance(&self) -> bool {
        matches!(
            self,
            CallError::Trap(_)
                | CallError::Timeout
                | CallError::OutOfMemory
                | CallError::Instantiate(_)
        )
    }
}

/// [`CallError`] without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Trap,
    Timeout,
    OutOfMemory,
    Plugin,
    InvalidResult,
    Instantiate,
    Unsupported,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Trap,
        ErrorKind::Timeout,
        ErrorKind::OutOfMemory,
        ErrorKind::Plugin,
        ErrorKind::InvalidResult,
        ErrorKind::Instantiate,
        ErrorKind::Unsupported,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Trap => "trap",
            ErrorKind::Timeout => "timeout",
            ErrorKind::OutOfMemory => "out-of-memory",
            ErrorKind::Plugin => "plugin",
            ErrorKind::InvalidResult => "invalid-result",
            ErrorKind::Instantiate => "instantiate",
            ErrorKind::Unsupported => "unsupported",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `plugin-error` in words: `unavailable: backend down`.
pub struct DisplayPluginError<'a>(pub &'a PluginError);

impl fmt::Display for DisplayPluginError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, msg) = match self.0 {
            PluginError::InvalidInput(m) => ("invalid-input", m),
            PluginError::Unavailable(m) => ("unavailable", m),
            PluginError::Denied(m) => ("denied", m),
            PluginError::NotFound(m) => ("not-found", m),
            PluginError::Other(m) => ("other", m),
        };
        write!(f, "{kind}: {msg}")
    }
}
