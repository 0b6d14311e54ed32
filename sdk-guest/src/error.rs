//! Constructors and accessors for [`PluginError`], the error every slot returns.

use alloc::string::String;

pub use crate::wit::types::PluginError;

impl PluginError {
    /// The input cannot be handled as given (a bad URL, a bad configuration value).
    pub fn invalid_input(message: impl Into<String>) -> Self {
        PluginError::InvalidInput(message.into())
    }

    /// Something the plugin depends on is not reachable now; the host may retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        PluginError::Unavailable(message.into())
    }

    /// The plugin's grant or the remote side refused the operation.
    pub fn denied(message: impl Into<String>) -> Self {
        PluginError::Denied(message.into())
    }

    /// What was asked for does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        PluginError::NotFound(message.into())
    }

    /// Anything else, in words a person can act on.
    pub fn other(message: impl Into<String>) -> Self {
        PluginError::Other(message.into())
    }

    /// The case's name as in the WIT (`"invalid-input"`).
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::InvalidInput(_) => "invalid-input",
            PluginError::Unavailable(_) => "unavailable",
            PluginError::Denied(_) => "denied",
            PluginError::NotFound(_) => "not-found",
            PluginError::Other(_) => "other",
        }
    }

    /// The message, without the case.
    pub fn message(&self) -> &str {
        match self {
            PluginError::InvalidInput(m)
            | PluginError::Unavailable(m)
            | PluginError::Denied(m)
            | PluginError::NotFound(m)
            | PluginError::Other(m) => m,
        }
    }
}

impl PartialEq for PluginError {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind() && self.message() == other.message()
    }
}

impl Eq for PluginError {}
