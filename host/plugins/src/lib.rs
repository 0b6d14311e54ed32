//! Tessera's plugin runtime: WebAssembly components loaded against `wit/plugin.wit`
//! (`tessera:plugin@0.1.0`) and run in wasmtime, sandboxed.
//!
//! - [`PluginRuntime`]: one engine for every plugin, with epoch interruption (a ticker
//!   thread advances the epoch every [`RuntimeConfig::epoch_tick`], 1 ms by default), the
//!   pooling instance allocator with copy-on-write memory images, and a compile cache
//!   keyed by content and engine compatibility whose entries are authenticated with an
//!   HMAC under a per-installation key.
//! - Loading validates the component against the world its [`Manifest`] claims: the
//!   world's interface must be exported, and only what the manifest grants may be
//!   imported ([`LoadError`] says which import or export is wrong).
//! - Calls run under the manifest's deadline and memory cap; a trap, timeout,
//!   out-of-memory or malformed answer fails that call with a [`CallError`].
//!
//! Worlds: `router` ([`RouterPlugin`], [`WarmRouter`]). A routing call takes a
//! [`RouteRequest`]: every tag and group is named once in `labels` ([`Label`]), tasks
//! ([`RouteTask::needs`]) and targets ([`RouteTarget::holds`]) refer to them by bit in a
//! [`LabelSet`] (at most 64 labels per request), and the answer is one [`Decision`] per
//! task: `Assign(i)` for `request.targets[i]`, or `Defer(reason)`.
//!
//! The other worlds plug in the same way: a `bindgen!` module next to `router.rs`, its
//! `Host` traits implemented on the shared store state (`host.rs`), and a `load_*` method
//! on the runtime.

mod cache;
mod error;
mod host;
mod manifest;
mod metrics;
mod router;
mod runtime;
mod validate;

pub use error::{CallError, DisplayPluginError, ErrorKind, LoadError};
pub use manifest::{
    Capability, DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT, Limits, Manifest, PluginConfig, Secret,
    World,
};
pub use metrics::{LatencyHistogram, MetricsSnapshot, PluginMetrics};
pub use router::{
    Decision, Label, LabelSet, Pair, PluginError, RouteRequest, RouteTarget, RouteTask,
    RouterPlugin, WarmRouter,
};
pub use runtime::{
    CacheStats, CompiledComponent, ComponentInfo, Origin, PluginRuntime, RuntimeConfig,
    RuntimeError,
};
pub use validate::Interfaces;

// Callers share plugins and the runtime across threads, and keep warm routers in
// per-tenant slots (moved between threads).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<PluginRuntime>();
    send_sync::<RouterPlugin>();
    send::<WarmRouter>();
};
