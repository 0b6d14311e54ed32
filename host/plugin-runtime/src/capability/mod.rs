//! What a plugin can be granted, one module per capability: each serves its interfaces
//! to whatever store data gives it its part of the state, and is linked into a world only
//! when the manifest grants it (the host links nothing else, so a component importing
//! more is refused). The way Spin composes host capabilities.
//!
//! - `log` (always) and `config` (values and the secrets the manifest lists);
//! - `io`: `wasi:io` streams and polling, and the monotonic clock, every blocking wait
//!   bounded by the call's deadline (needed by the capabilities that stream);
//! - `http`: outgoing HTTP to the hosts the binding allows;
//! - `object_store` (over `object_stream`): the host's object store, in the buckets the
//!   binding grants;
//! - `workspace`: the files of the task a filer stages for.

pub(crate) mod config;
pub(crate) mod http;
pub(crate) mod io;
pub(crate) mod log;
pub(crate) mod object_store;
pub(crate) mod object_stream;
pub(crate) mod workspace;
