//! Tessera's domain model, shared by every other crate.
//!
//! Everything here is plain data and pure functions: no I/O, no async, no heavy
//! dependencies, so that the store, the executors and the HTTP layer can all depend on it
//! without dragging each other along.

pub mod agent;
pub mod error;
pub mod examples;
pub mod id;
pub mod identity;
pub mod objects;
pub mod operation;
pub mod page;
pub mod params;
pub mod plugin;
pub mod routing;
pub mod secret;
pub mod staging;
pub mod state;
pub mod task;
pub mod tes;
pub mod time_fmt;
pub mod units;
pub mod validate;
pub mod view;

pub use error::{ApiError, ErrorCode};
pub use state::State;
pub use task::{Event, TaskRecord};
