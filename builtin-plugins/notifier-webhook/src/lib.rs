//! `notifier-webhook`, Tessera's built-in webhook notifier.
//!
//! Every task state change is POSTed as JSON ([`payload::body`]) to the configured `url`,
//! or, when that is unset, to the task's own notification URL. With the secret
//! `signing-key` set, the request carries `X-Tessera-Signature: sha256=<hex HMAC-SHA256
//! of the body under the key>` ([`payload::signature`]), so the receiver can check that
//! Tessera sent it. A 2xx answer is a delivery; what other answers and failures mean is
//! [`payload::verdict`] (the host retries what may work later).
//!
//! [`payload`] is plain Rust that builds and is tested natively; the component glue
//! (bindings from `tessera-plugin-sdk`) exists only on wasm32.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod payload;

#[cfg(target_arch = "wasm32")]
mod component;
