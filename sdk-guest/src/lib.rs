//! Write Tessera plugins in Rust.
//!
//! A Tessera plugin is a WebAssembly component that implements one *world* of the WIT
//! package `tessera:plugin@0.1.0` (`wit/plugin.wit` in the Tessera repository). This crate
//! has the generated bindings of every world, one module each, plus helpers:
//!
//! | world | module | trait to implement | export macro |
//! | --- | --- | --- | --- |
//! | `router` | [`router`] | [`router::Router`] | [`export_router!`] |
//! | `notifier` | [`notifier`] | [`notifier::Notifier`] | [`export_notifier!`] |
//! | `filer` | [`filer`] | [`filer::Filer`] | [`export_filer!`] |
//! | `engine-adapter` | [`engine_adapter`] | [`engine_adapter::EngineAdapter`] | [`export_engine_adapter!`] |
//!
//! Helpers: [`log`](mod@log) (and the [`info!`]-style macros) over the host's log, [`config`] for
//! configuration and secrets with typed parsing, [`PluginError`] constructors, for
//! routers [label-set helpers](router::label_names) (eligibility, naming labels in defer
//! reasons), for worlds with outgoing HTTP a blocking [`http`] client over `wasi:http`
//! (notifiers, filers, engine adapters) whose bodies can be streams, for filers the
//! [task's workspace](filer::workspace), and [`streams`] to copy one stream into another
//! in chunks (host-side splices).
//!
//! ```ignore
//! use tessera_plugin_sdk::router::{Decision, Request, Router};
//! use tessera_plugin_sdk::PluginError;
//!
//! /// Every task to the first target that can take it.
//! struct FirstFit;
//!
//! impl Router for FirstFit {
//!     fn route(mut request: Request) -> Result<Vec<Decision>, PluginError> {
//!         tessera_plugin_sdk::debug!("routing {} tasks", request.tasks.len());
//!         let mut decisions = Vec::with_capacity(request.tasks.len());
//!         for task in &request.tasks {
//!             match request.targets.iter().position(|t| t.can_take(task)) {
//!                 Some(i) => {
//!                     request.targets[i].take(task);
//!                     decisions.push(Decision::Assign(i as u32));
//!                 }
//!                 None => decisions.push(Decision::Defer(format!(
//!                     "no target with {} has room",
//!                     request.label_names(task.needs)
//!                 ))),
//!             }
//!         }
//!         Ok(decisions)
//!     }
//! }
//!
//! tessera_plugin_sdk::export_router!(FirstFit);
//! ```
//!
//! # How the bindings are laid out
//!
//! One `wit_bindgen::generate!` per world, each in its own module. The interfaces the
//! worlds share (`types`, `log`, `config`, `workspace`, `object-store` and the WASI
//! interfaces) are generated once, in [`wit`] and [`wasi`], from a world that only
//! imports them; each world module maps them there with `with:`, so `PluginError`,
//! `TaskInfo` and the rest are one type whatever the world. The export macros are
//! public (`pub_export_macro`), which makes wit-bindgen put each world's *exports*
//! into the plugin only when its export macro is invoked: a router that links this
//! crate does not claim to export `notify` or `filing`, and imports it never calls
//! are dropped when the component is made.
//!
//! # `no_std`
//!
//! This crate is `no_std` (it needs `alloc`). A plugin built with Rust's `std` on
//! `wasm32-wasip2` imports `wasi:cli/*`, `wasi:io/*` and more (std's panic and runtime
//! machinery), which no Tessera world grants, so the host refuses it. Make the plugin
//! `#![no_std]` and invoke [`no_std_runtime!`] once: it installs an allocator and a
//! panic handler that traps.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(not(target_arch = "wasm32"))]
extern crate std;

// Lets the generated code (and the export macros, expanded in the plugin's crate) name
// this crate by the same path from inside and outside.
extern crate self as tessera_plugin_sdk;

pub mod config;
mod error;
pub mod http;
mod labels;
pub mod log;
mod runtime;
pub mod streams;

pub use error::PluginError;
pub use wit::types::{Pair, TaskInfo};

/// Re-exports used by this crate's macros. Not a public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::runtime::Allocator;
    pub use crate::runtime::cabi_realloc;
    pub use alloc::format;
    pub use wit_bindgen;
}

/// The interfaces every world shares, generated once.
#[allow(missing_docs, clippy::all)]
mod shared {
    wit_bindgen::generate!({
        inline: "
            package tessera:sdk;
            world shared {
                import tessera:plugin/types@0.1.0;
                import tessera:plugin/log@0.1.0;
                import tessera:plugin/config@0.1.0;
                import tessera:plugin/workspace@0.1.0;
                import tessera:plugin/object-store@0.1.0;
                import wasi:http/outgoing-handler@0.2.12;
            }
        ",
        path: "../wit",
        world: "tessera:sdk/shared",
        runtime_path: "tessera_plugin_sdk::__private::wit_bindgen::rt",
        generate_all,
    });
}

/// Raw bindings of the `tessera:plugin` interfaces that worlds import (host
/// capabilities) or share (types). Most plugins use the helpers ([`crate::log`](mod@crate::log),
/// [`crate::config`]) instead.
pub mod wit {
    pub use crate::shared::tessera::plugin::*;
}

/// Raw bindings of the WASI interfaces some worlds import (`wasi:io`, `wasi:clocks`,
/// `wasi:http`): outgoing HTTP for notifiers, filers and engine adapters, and the
/// streams of `workspace` and `object-store`.
pub mod wasi {
    pub use crate::shared::wasi::*;
}

/// The `router` world: decide where queued tasks run.
///
/// Implement [`Router`](router::Router) and invoke [`export_router!`](crate::export_router).
/// Imports granted: log, config.
///
/// A [`Request`](router::Request) names every tag and group once in `labels`; tasks
/// (`needs`) and targets (`holds`) refer to them by bit in a [`LabelSet`](router::LabelSet).
/// A decision assigns a task to a target by its index in `request.targets`, or defers it
/// with a reason. Helpers: [`holds_all`](router::holds_all),
/// [`Target::can_take`](router::Target::can_take), [`Target::take`](router::Target::take),
/// [`label_names`](router::label_names) (`tag gpu=a100, group ops`, for reasons),
/// [`positions`](router::positions), [`labels_in`](router::labels_in).
pub mod router {
    #[allow(missing_docs, clippy::all)]
    mod bindings {
        wit_bindgen::generate!({
            world: "tessera:plugin/router@0.1.0",
            path: "../wit",
            with: {
                "tessera:plugin/types@0.1.0": crate::wit::types,
                "tessera:plugin/log@0.1.0": crate::wit::log,
                "tessera:plugin/config@0.1.0": crate::wit::config,
            },
            pub_export_macro: true,
            default_bindings_module: "tessera_plugin_sdk::router::bindings",
            runtime_path: "tessera_plugin_sdk::__private::wit_bindgen::rt",
        });
    }
    #[doc(hidden)]
    pub use bindings::*;

    pub use crate::labels::{holds_all, label_names, labels_in, positions};
    pub use crate::wit::types::{Pair, PluginError};
    pub use bindings::exports::tessera::plugin::routing::{
        Decision, Guest as Router, Label, LabelSet, Request, Target, Task,
    };
}

/// The `notifier` world: deliver task state changes.
///
/// Implement [`Notifier`](notifier::Notifier) and invoke
/// [`export_notifier!`](crate::export_notifier). Imports granted: log, config,
/// `wasi:http/outgoing-handler` (send requests with [`crate::http`]; raw bindings in
/// [`crate::wasi`]), to the hosts the binding allows.
///
/// Each [`Event`](notifier::Event) is one state change of a task. Return `Ok(())` once
/// it is delivered; an error makes the host retry later (deliveries are at least once),
/// so say with its kind whether retrying can help (`unavailable`) or not.
pub mod notifier {
    #[allow(missing_docs, clippy::all)]
    mod bindings {
        wit_bindgen::generate!({
            world: "tessera:plugin/notifier@0.1.0",
            path: "../wit",
            with: {
                "tessera:plugin/types@0.1.0": crate::wit::types,
                "tessera:plugin/log@0.1.0": crate::wit::log,
                "tessera:plugin/config@0.1.0": crate::wit::config,
                "wasi:io/poll@0.2.12": crate::wasi::io::poll,
                "wasi:io/error@0.2.12": crate::wasi::io::error,
                "wasi:io/streams@0.2.12": crate::wasi::io::streams,
                "wasi:clocks/monotonic-clock@0.2.12": crate::wasi::clocks::monotonic_clock,
                "wasi:http/types@0.2.12": crate::wasi::http::types,
                "wasi:http/outgoing-handler@0.2.12": crate::wasi::http::outgoing_handler,
            },
            pub_export_macro: true,
            default_bindings_module: "tessera_plugin_sdk::notifier::bindings",
            runtime_path: "tessera_plugin_sdk::__private::wit_bindgen::rt",
        });
    }
    #[doc(hidden)]
    pub use bindings::*;

    pub use crate::wit::types::{Pair, PluginError, TaskInfo};
    pub use bindings::exports::tessera::plugin::notify::{Event, Guest as Notifier};
}

/// The `filer` world: stage task inputs in and outputs out.
///
/// Implement [`Filer`](filer::Filer) and invoke [`export_filer!`](crate::export_filer).
/// Imports granted (what the manifest lists): log, config, workspace, object-store,
/// `wasi:http/outgoing-handler`.
///
/// `stage_in(url, path, kind)` copies `url` into the task's workspace at container path
/// `path`; `stage_out(path, url, kind)` copies it out; both return the files they staged
/// ([`StagedFile`](filer::StagedFile): url, container path, size). Files of the workspace
/// are streams ([`workspace`](filer::workspace)), and so are HTTP bodies
/// ([`crate::http::Request::send_from`], [`crate::http::Request::send_streaming`]) and
/// objects ([`object_store`](filer::object_store)): copy one into another with
/// [`crate::streams::copy`], which moves the bytes host-side.
///
/// ```ignore
/// use tessera_plugin_sdk::filer::{workspace, FileKind, Filer, PluginError, StagedFile};
/// use tessera_plugin_sdk::http::{Method, Request};
/// use tessera_plugin_sdk::streams;
///
/// struct Fetch;
///
/// impl Filer for Fetch {
///     fn stage_in(url: String, path: String, _kind: FileKind) -> Result<Vec<StagedFile>, PluginError> {
///         let response = Request::new(Method::Get, url.clone()).send_streaming()?;
///         let file = workspace::open_write(&path)?;
///         let size = response.copy_to(&file, streams::DEFAULT_CHUNK)?;
///         Ok(vec![StagedFile { url, path, size }])
///     }
///     fn stage_out(path: String, url: String, _kind: FileKind) -> Result<Vec<StagedFile>, PluginError> {
///         let size = workspace::file_size(&path)?;
///         let file = workspace::open_read(&path)?;
///         Request::new(Method::Put, url.clone()).send_from(&file, size, streams::DEFAULT_CHUNK)?;
///         Ok(vec![StagedFile { url, path, size }])
///     }
/// }
///
/// tessera_plugin_sdk::export_filer!(Fetch);
/// ```
pub mod filer {
    #[allow(missing_docs, clippy::all)]
    mod bindings {
        wit_bindgen::generate!({
            world: "tessera:plugin/filer@0.1.0",
            path: "../wit",
            with: {
                "tessera:plugin/types@0.1.0": crate::wit::types,
                "tessera:plugin/log@0.1.0": crate::wit::log,
                "tessera:plugin/config@0.1.0": crate::wit::config,
                "tessera:plugin/workspace@0.1.0": crate::wit::workspace,
                "tessera:plugin/object-store@0.1.0": crate::wit::object_store,
                "wasi:io/poll@0.2.12": crate::wasi::io::poll,
                "wasi:io/error@0.2.12": crate::wasi::io::error,
                "wasi:io/streams@0.2.12": crate::wasi::io::streams,
                "wasi:clocks/monotonic-clock@0.2.12": crate::wasi::clocks::monotonic_clock,
                "wasi:http/types@0.2.12": crate::wasi::http::types,
                "wasi:http/outgoing-handler@0.2.12": crate::wasi::http::outgoing_handler,
            },
            pub_export_macro: true,
            default_bindings_module: "tessera_plugin_sdk::filer::bindings",
            runtime_path: "tessera_plugin_sdk::__private::wit_bindgen::rt",
        });
    }
    #[doc(hidden)]
    pub use bindings::*;

    pub use crate::wit::object_store;
    pub use crate::wit::types::PluginError;
    pub use bindings::exports::tessera::plugin::filing::{FileKind, Guest as Filer, StagedFile};

    /// The task's workspace (granted with `workspace`): files by absolute container path.
    /// The host refuses paths outside the task's mounts, `..`, and symbolic links
    /// anywhere on the way (it never follows them), with `denied` or `invalid-input`.
    pub mod workspace {
        use alloc::format;

        use crate::wit::types::PluginError;
        pub use crate::wit::workspace::{Entry, open_read, open_write, walk};

        /// The size of the regular file at `path` (a walk of a file lists that file,
        /// with the relative path `""`), e.g. for `content-length`.
        pub fn file_size(path: &str) -> Result<u64, PluginError> {
            match walk(path)?.as_slice() {
                [one] if one.relative_path.is_empty() => Ok(one.size),
                _ => Err(PluginError::InvalidInput(format!(
                    "`{path}` is a directory, not a file"
                ))),
            }
        }
    }
}

/// The `engine-adapter` world: run workflows on an external engine.
///
/// Implement [`EngineAdapter`](engine_adapter::EngineAdapter) and invoke
/// [`export_engine_adapter!`](crate::export_engine_adapter). Imports granted: log,
/// config, `wasi:http/outgoing-handler`.
pub mod engine_adapter {
    #[allow(missing_docs, clippy::all)]
    mod bindings {
        wit_bindgen::generate!({
            world: "tessera:plugin/engine-adapter@0.1.0",
            path: "../wit",
            with: {
                "tessera:plugin/types@0.1.0": crate::wit::types,
                "tessera:plugin/log@0.1.0": crate::wit::log,
                "tessera:plugin/config@0.1.0": crate::wit::config,
                "wasi:io/poll@0.2.12": crate::wasi::io::poll,
                "wasi:io/error@0.2.12": crate::wasi::io::error,
                "wasi:io/streams@0.2.12": crate::wasi::io::streams,
                "wasi:clocks/monotonic-clock@0.2.12": crate::wasi::clocks::monotonic_clock,
                "wasi:http/types@0.2.12": crate::wasi::http::types,
                "wasi:http/outgoing-handler@0.2.12": crate::wasi::http::outgoing_handler,
            },
            pub_export_macro: true,
            default_bindings_module: "tessera_plugin_sdk::engine_adapter::bindings",
            runtime_path: "tessera_plugin_sdk::__private::wit_bindgen::rt",
        });
    }
    #[doc(hidden)]
    pub use bindings::*;

    pub use crate::wit::types::{Pair, PluginError};
    pub use bindings::exports::tessera::plugin::engine::{
        Guest as EngineAdapter, RunState, RunStatus, TaskRun,
    };
}

/// The worlds of `tessera:plugin@0.2.0` (`wit/0.2/plugin.wit`) whose exports changed:
/// routers see each task's group, filers answer `stat`, engine adapters report the task
/// graph, try numbers and messages, retry downstream and page logs. They import the same
/// 0.1.0 capabilities ([`crate::wit`], [`crate::wasi`], every helper of this crate); only
/// what the plugin implements differs. Notifiers are the same in both versions
/// ([`crate::notifier`]). Export with the world's macro and `v0_2`:
/// `tessera_plugin_sdk::export_engine_adapter!(MyAdapter, v0_2);`.
pub mod v0_2 {
    /// The `router` world of 0.2.0: as [`crate::router`], and [`Task`](router::Task) has
    /// `group`, the position in `request.labels` of the task's group label.
    pub mod router {
        #[allow(missing_docs, clippy::all)]
        mod bindings {
            wit_bindgen::generate!({
                // A world of another name than 0.1.0's, so the macros it defines
                // (named after the world) do not collide.
                inline: "
                    package tessera:sdk-v0-2;
                    world router-v0-2 { include tessera:plugin/router@0.2.0; }
                ",
                world: "tessera:sdk-v0-2/router-v0-2",
                path: "../wit/0.2",
                with: {
                    "tessera:plugin/types@0.1.0": crate::wit::types,
                    "tessera:plugin/log@0.1.0": crate::wit::log,
                    "tessera:plugin/config@0.1.0": crate::wit::config,
                },
                pub_export_macro: true,
                default_bindings_module: "tessera_plugin_sdk::v0_2::router::bindings",
                runtime_path: "tessera_plugin_sdk::__private::wit_bindgen::rt",
            });
        }
        #[doc(hidden)]
        pub use bindings::*;

        pub use crate::labels::{holds_all, labels_in, positions};
        pub use crate::wit::types::{Pair, PluginError};
        pub use bindings::exports::tessera::plugin0_2_0::routing::{
            Decision, Guest as Router, Label, LabelSet, Request, Target, Task,
        };

        impl Request {
            /// The name of `task`'s group (`""` for tasks without one), or `None` when
            /// its `group` names no group label.
            pub fn group_of(&self, task: &Task) -> Option<&str> {
                match self.labels.get(task.group as usize)? {
                    Label::Group(g) => Some(g),
                    Label::Tag(_) => None,
                }
            }
        }
    }

    /// The `filer` world of 0.2.0: as [`crate::filer`], and `stat`.
    pub mod filer {
        #[allow(missing_docs, clippy::all)]
        mod bindings {
            wit_bindgen::generate!({
                // A world of another name than 0.1.0's, so the macros it defines
                // (named after the world) do not collide.
                inline: "
                    package tessera:sdk-v0-2;
                    world filer-v0-2 { include tessera:plugin/filer@0.2.0; }
                ",
                world: "tessera:sdk-v0-2/filer-v0-2",
                path: "../wit/0.2",
                with: {
                    "tessera:plugin/types@0.1.0": crate::wit::types,
                    "tessera:plugin/log@0.1.0": crate::wit::log,
                    "tessera:plugin/config@0.1.0": crate::wit::config,
                    "tessera:plugin/workspace@0.1.0": crate::wit::workspace,
                    "tessera:plugin/object-store@0.1.0": crate::wit::object_store,
                    "wasi:io/poll@0.2.12": crate::wasi::io::poll,
                    "wasi:io/error@0.2.12": crate::wasi::io::error,
                    "wasi:io/streams@0.2.12": crate::wasi::io::streams,
                    "wasi:clocks/monotonic-clock@0.2.12": crate::wasi::clocks::monotonic_clock,
                    "wasi:http/types@0.2.12": crate::wasi::http::types,
                    "wasi:http/outgoing-handler@0.2.12": crate::wasi::http::outgoing_handler,
                },
                pub_export_macro: true,
                default_bindings_module: "tessera_plugin_sdk::v0_2::filer::bindings",
                runtime_path: "tessera_plugin_sdk::__private::wit_bindgen::rt",
            });
        }
        #[doc(hidden)]
        pub use bindings::*;

        pub use crate::filer::workspace;
        pub use crate::wit::object_store;
        pub use crate::wit::types::PluginError;
        pub use bindings::exports::tessera::plugin0_2_0::filing::{
            FileKind, Guest as Filer, StagedFile, UrlInfo,
        };
    }

    /// The `engine-adapter` world of 0.2.0: `validate` returns the task graph
    /// ([`TaskNode`](engine_adapter::TaskNode)s), task runs carry a try number and a
    /// message, `retry` can take everything downstream, `logs` pages
    /// ([`LogChunk`](engine_adapter::LogChunk)).
    pub mod engine_adapter {
        #[allow(missing_docs, clippy::all)]
        mod bindings {
            wit_bindgen::generate!({
                // A world of another name than 0.1.0's, so the macros it defines
                // (named after the world) do not collide.
                inline: "
                    package tessera:sdk-v0-2;
                    world engine-adapter-v0-2 { include tessera:plugin/engine-adapter@0.2.0; }
                ",
                world: "tessera:sdk-v0-2/engine-adapter-v0-2",
                path: "../wit/0.2",
                with: {
                    "tessera:plugin/types@0.1.0": crate::wit::types,
                    "tessera:plugin/log@0.1.0": crate::wit::log,
                    "tessera:plugin/config@0.1.0": crate::wit::config,
                    "wasi:io/poll@0.2.12": crate::wasi::io::poll,
                    "wasi:io/error@0.2.12": crate::wasi::io::error,
                    "wasi:io/streams@0.2.12": crate::wasi::io::streams,
                    "wasi:clocks/monotonic-clock@0.2.12": crate::wasi::clocks::monotonic_clock,
                    "wasi:http/types@0.2.12": crate::wasi::http::types,
                    "wasi:http/outgoing-handler@0.2.12": crate::wasi::http::outgoing_handler,
                },
                pub_export_macro: true,
                default_bindings_module: "tessera_plugin_sdk::v0_2::engine_adapter::bindings",
                runtime_path: "tessera_plugin_sdk::__private::wit_bindgen::rt",
            });
        }
        #[doc(hidden)]
        pub use bindings::*;

        pub use crate::wit::types::{Pair, PluginError};
        pub use bindings::exports::tessera::plugin0_2_0::engine::{
            Guest as EngineAdapter, LogChunk, RunStatus, State, TaskNode, TaskRun,
        };
    }
}

/// Make `$ty` (which implements [`router::Router`]) this component's router.
///
/// Invoke once, at the crate root of the plugin: `tessera_plugin_sdk::export_router!(MyRouter);`
#[macro_export]
macro_rules! export_router {
    ($ty:ident) => {
        $crate::router::export!($ty with_types_in $crate::router);
    };
    ($ty:ident, v0_2) => {
        $crate::v0_2::router::export!($ty with_types_in $crate::v0_2::router);
    };
}

/// Make `$ty` (which implements [`notifier::Notifier`]) this component's notifier.
#[macro_export]
macro_rules! export_notifier {
    ($ty:ident) => {
        $crate::notifier::export!($ty with_types_in $crate::notifier);
    };
}

/// Make `$ty` (which implements [`filer::Filer`]) this component's filer.
#[macro_export]
macro_rules! export_filer {
    ($ty:ident) => {
        $crate::filer::export!($ty with_types_in $crate::filer);
    };
    ($ty:ident, v0_2) => {
        $crate::v0_2::filer::export!($ty with_types_in $crate::v0_2::filer);
    };
}

/// Make `$ty` (which implements [`engine_adapter::EngineAdapter`]) this component's
/// engine adapter.
#[macro_export]
macro_rules! export_engine_adapter {
    ($ty:ident) => {
        $crate::engine_adapter::export!($ty with_types_in $crate::engine_adapter);
    };
    ($ty:ident, v0_2) => {
        $crate::v0_2::engine_adapter::export!($ty with_types_in $crate::v0_2::engine_adapter);
    };
}
