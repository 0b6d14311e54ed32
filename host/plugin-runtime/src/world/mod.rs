//! One module per world: each a `PluginWorld` that links what its manifest grants and
//! makes its calls.

pub(crate) mod engine_adapter;
pub(crate) mod filer;
pub(crate) mod notifier;
pub(crate) mod router;
