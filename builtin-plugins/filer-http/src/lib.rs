//! `filer-http`, Tessera's built-in filer for `http://` and `https://` URLs.
//!
//! - Stage-in of a FILE: `GET url`, following up to `max-redirects` redirects (default
//!   5; every host on the way must be among the binding's allowed hosts), and the body
//!   streamed into the workspace file at the task's path. A DIRECTORY cannot be staged
//!   in: plain HTTP has no listing (`invalid-input`).
//! - Stage-out of a FILE: `PUT url` with the workspace file as the body, streamed, with
//!   `content-length`. Of a DIRECTORY: every regular file under it (recursively), each
//!   to `url` + `/` + its relative path (segments percent-encoded, before any query).
//! - Answers: 2xx is success; 404 and 410 `not-found`, 401 and 403 `denied`, 408, 429
//!   and 5xx `unavailable` (the host may retry), anything else `invalid-input`; the
//!   error names the server by scheme and authority (never the path or query, which
//!   often carry tokens) and quotes the start of its answer.
//!
//! Bodies are spliced host-side ([`tessera_plugin_sdk::streams`] on wasm32), in steps of
//! `chunk-bytes` (default 1 MiB): a file of any size passes without going through the
//! plugin's memory.
//!
//! [`logic`] is plain Rust that builds and is tested natively; the component glue
//! (bindings from `tessera-plugin-sdk`) exists only on wasm32.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod logic;

#[cfg(target_arch = "wasm32")]
mod component;
