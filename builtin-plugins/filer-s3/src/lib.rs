//! `filer-s3`, Tessera's built-in filer for `s3://BUCKET/KEY` URLs, through the host's
//! object store (`tessera:plugin/object-store`; the host holds the credentials and
//! limits the plugin to the buckets its binding grants).
//!
//! - Stage-in of a FILE: the object `KEY` of `BUCKET`, streamed into the workspace file
//!   at the task's path. Of a DIRECTORY: every object under the prefix `KEY/` (listed a
//!   page of 1000 at a time), each to the task's path + `/` + the rest of its key.
//!   Folder markers (keys ending in `/`) are skipped; a prefix with no objects is
//!   `not-found`.
//! - Stage-out of a FILE: the workspace file put as the object `KEY`, streamed, with its
//!   size. Of a DIRECTORY: every regular file under it (recursively), each put at
//!   `KEY/` + its relative path.
//! - Errors of the store keep their kind (`not-found`, `denied`, `invalid-input`,
//!   `unavailable`, `other`) and name the bucket and key; a URL that is not
//!   `s3://BUCKET/KEY` is `invalid-input`.
//!
//! Bytes are spliced host-side ([`tessera_plugin_sdk::streams`] on wasm32), in steps of
//! `chunk-bytes` (default 1 MiB): an object of any size passes without going through the
//! plugin's memory.
//!
//! [`logic`] is plain Rust that builds and is tested natively; the component glue
//! (bindings from `tessera-plugin-sdk`) exists only on wasm32.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod logic;

#[cfg(target_arch = "wasm32")]
mod component;
