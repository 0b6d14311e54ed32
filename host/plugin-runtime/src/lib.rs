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
//! `notifier` ([`NotifierPlugin`]): [`NotifierPlugin::deliver`] hands one [`NotifyEvent`]
//! to a fresh instance. With the `http` grant the plugin gets
//! `wasi:http/outgoing-handler` and just the WASI pieces it needs (`wasi:http/types`,
//! `wasi:io/{error,poll,streams}`, `wasi:clocks/monotonic-clock`); the host sends its
//! requests itself, only to the binding's allowed hosts (anything else fails with
//! `HTTP-request-denied` before a connection is made), with connect and response
//! timeouts cut to the call's deadline, and every blocking wait of the guest in the host
//! (poll, blocking stream reads and writes) ends at that deadline too, since epochs only
//! interrupt running WebAssembly. Notifiers have their own store state, so routers' stores
//! stay as small as they were.
//!
//! `filer` ([`FilerPlugin`]): [`FilerPlugin::stage_in`] and [`FilerPlugin::stage_out`]
//! copy one URL into or out of a task's [`FilerWorkspace`] on a fresh instance. The
//! workspace is the list of mounts the host built for the task (container path prefix →
//! host directory); `tessera:plugin/workspace` opens files only under them, every path
//! component opened with `O_NOFOLLOW` relative to the one before (no `..`, no symbolic
//! links, no FIFOs or devices), and its streams are `wasi:io` streams over the files.
//! `tessera:plugin/object-store` is served by a `tessera_objstore::ObjectStore` given at link time
//! (plain Rust, blocking, streaming: a `Read` per get, an upload per put),
//! limited to the binding's buckets. The `http` grant is as for notifiers. Every stream
//! (file, object, HTTP body) can be spliced into another host-side, so staging large
//! files never passes them through the plugin's memory.
//!
//! `engine-adapter` ([`EngineAdapterPlugin`]): `validate`, `submit`, `status`, `cancel`, `retry`
//! and `logs` of workflow runs on an external engine, each on a fresh instance, with the
//! same imports and grants as notifiers.
//!
//! Layers, each depending only on those above it (`scripts/check-module-cycles.sh` checks
//! that no module imports one that imports it back):
//! - `bindings`: what `bindgen!` generates for each world (a leaf);
//! - `error`, `manifest`, `metrics`, `cache`, `validate`, `host`, `trap`: plain parts;
//! - `runtime`: the engine, compilation, the cache, and one generic path to load any
//!   world ([`PluginRuntime::load`] / [`PluginRuntime::link`] for a [`PluginWorld`]);
//! - `capability/*`: one module per grantable capability (`log`, `config`, `io`, `http`,
//!   `object_store`, `workspace`), each serving its interfaces to any store data that
//!   gives it its part of the state, linked only when granted;
//! - `per_call`: the store of one call and what the fresh-instance worlds share;
//! - `world/*`: one module per world, each a [`PluginWorld`] implementation.
//!
//! A new world plugs in the same way: a `bindgen!` module in `bindings`, its store state
//! giving each capability it links its part, and a `PluginWorld` implementation.

mod bindings;
mod cache;
mod capability;
mod error;
mod host;
mod manifest;
mod metrics;
mod per_call;
mod runtime;
mod trap;
mod validate;
mod world;

pub use bindings::PluginError;
pub use capability::http::{BadAllowedHost, check_allowed_host};
pub use capability::workspace::{FilerWorkspace, MountError};
pub use error::{CallError, DisplayPluginError, ErrorKind, LoadError};
pub use manifest::{
    Capability, DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT, Limits, Manifest, PluginConfig, Secret,
    World,
};
pub use metrics::{LatencyHistogram, MetricsSnapshot, PluginMetrics};
pub use runtime::{
    CacheStats, CompiledComponent, ComponentInfo, Grants, Origin, PluginRuntime, PluginWorld,
    RuntimeConfig, RuntimeError,
};
pub use tessera_core::plugin::Contract;
pub use validate::Interfaces;
pub use world::engine_adapter::{
    EngineAdapterPlugin, LogChunk, RunState, RunStatus, TaskNode, TaskRun,
};
pub use world::filer::{FileKind, FilerPlugin, StagedFile, UrlInfo};
pub use world::notifier::{NotifierPlugin, NotifyEvent, TaskInfo};
pub use world::router::{
    Decision, Label, LabelSet, Pair, RouteRequest, RouteTarget, RouteTask, RouterPlugin, WarmRouter,
};

// Callers share plugins and the runtime across threads, and keep warm routers in
// per-tenant slots (moved between threads).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<PluginRuntime>();
    send_sync::<RouterPlugin>();
    send_sync::<NotifierPlugin>();
    send_sync::<FilerPlugin>();
    send_sync::<EngineAdapterPlugin>();
    send_sync::<FilerWorkspace>();
    send::<WarmRouter>();
};
