//! The bindings `wasmtime::component::bindgen!` generates from `wit/plugin.wit`, one
//! module per world. A leaf: nothing here depends on the rest of the runtime but the
//! object store's upload resource, which the filer world's bindings name.
//!
//! The router world's bindings are the home of the shared `types`, `log` and `config`
//! interfaces; the other worlds reuse them (`with:`), so `PluginError` and `TaskInfo`
//! are one type everywhere.

pub(crate) mod router {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "tessera:plugin/router",
        additional_derives: [PartialEq, Eq],
    });
}

pub(crate) mod notifier {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "tessera:plugin/notifier",
        additional_derives: [PartialEq, Eq],
        with: {
            "tessera:plugin/types": crate::bindings::router::tessera::plugin::types,
            "tessera:plugin/log": crate::bindings::router::tessera::plugin::log,
            "tessera:plugin/config": crate::bindings::router::tessera::plugin::config,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::sync::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

pub(crate) mod engine_adapter {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "tessera:plugin/engine-adapter",
        additional_derives: [PartialEq, Eq],
        with: {
            "tessera:plugin/types": crate::bindings::router::tessera::plugin::types,
            "tessera:plugin/log": crate::bindings::router::tessera::plugin::log,
            "tessera:plugin/config": crate::bindings::router::tessera::plugin::config,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::sync::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

pub(crate) mod filer {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "tessera:plugin/filer",
        additional_derives: [PartialEq, Eq],
        imports: { default: trappable },
        with: {
            "tessera:plugin/types": crate::bindings::router::tessera::plugin::types,
            "tessera:plugin/log": crate::bindings::router::tessera::plugin::log,
            "tessera:plugin/config": crate::bindings::router::tessera::plugin::config,
            "tessera:plugin/object-store.upload": crate::capability::object_stream::Upload,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::sync::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

/// The error every plugin function can return (`tessera:plugin/types.plugin-error`).
pub use router::tessera::plugin::types::PluginError;

/// The worlds of `tessera:plugin@0.2.0` (`wit/0.2`). Their imports are the 0.1.0
/// interfaces (the capabilities did not change), so they reuse 0.1.0's bindings and the
/// host serves one set of capabilities to both versions; only the exports are new.
pub(crate) mod v0_2 {
    pub(crate) mod router {
        wasmtime::component::bindgen!({
            path: "../../wit/0.2",
            world: "tessera:plugin/router@0.2.0",
            additional_derives: [PartialEq, Eq],
            with: {
                "tessera:plugin/types@0.1.0": crate::bindings::router::tessera::plugin::types,
                "tessera:plugin/log@0.1.0": crate::bindings::router::tessera::plugin::log,
                "tessera:plugin/config@0.1.0": crate::bindings::router::tessera::plugin::config,
            },
        });
    }

    pub(crate) mod engine_adapter {
        wasmtime::component::bindgen!({
            path: "../../wit/0.2",
            world: "tessera:plugin/engine-adapter@0.2.0",
            additional_derives: [PartialEq, Eq],
            with: {
                "tessera:plugin/types@0.1.0": crate::bindings::router::tessera::plugin::types,
                "tessera:plugin/log@0.1.0": crate::bindings::router::tessera::plugin::log,
                "tessera:plugin/config@0.1.0": crate::bindings::router::tessera::plugin::config,
                "wasi:http": wasmtime_wasi_http::p2::bindings::http,
                "wasi:io": wasmtime_wasi::p2::bindings::sync::io,
                "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            },
        });
    }

    pub(crate) mod filer {
        wasmtime::component::bindgen!({
            path: "../../wit/0.2",
            world: "tessera:plugin/filer@0.2.0",
            additional_derives: [PartialEq, Eq],
            imports: { default: trappable },
            with: {
                "tessera:plugin/types@0.1.0": crate::bindings::router::tessera::plugin::types,
                "tessera:plugin/log@0.1.0": crate::bindings::router::tessera::plugin::log,
                "tessera:plugin/config@0.1.0": crate::bindings::router::tessera::plugin::config,
                "tessera:plugin/workspace@0.1.0": crate::bindings::filer::tessera::plugin::workspace,
                "tessera:plugin/object-store@0.1.0": crate::bindings::filer::tessera::plugin::object_store,
                "wasi:http": wasmtime_wasi_http::p2::bindings::http,
                "wasi:io": wasmtime_wasi::p2::bindings::sync::io,
                "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            },
        });
    }
}
