//! `router-default`, Tessera's built-in router.
//!
//! FIFO within priority: higher `priority` first, then the oldest task first. A target is
//! eligible for a task when it holds every label the task needs (its placement tags and
//! its group: `needs & !holds == 0`), and has a free slot, enough free CPU cores and
//! enough free memory. The task goes to the eligible target with the most free slots
//! (ties: the first in the list); otherwise it is deferred with a reason that says what
//! is missing, naming the labels (`no target holds tag gpu=a100`).
//!
//! [`logic`] is the decision itself, plain Rust that builds and is tested natively; the
//! component glue (bindings from `tessera-plugin-sdk`) exists only on wasm32.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod logic;

#[cfg(target_arch = "wasm32")]
mod component;
