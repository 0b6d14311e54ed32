//! The engine, the epoch ticker, compilation and the compiled-artifact cache.

use std::hash::Hash;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::cache::{ArtifactCache, CacheKey, Lookup, Sha256Hasher, hex, sha256};
use crate::error::LoadError;
use crate::manifest::{Manifest, PluginConfig, World};
use crate::validate::{self, Interfaces};
use tessera_objstore::ObjectStore;

/// How the runtime is set up. The defaults suit one host process on a small machine.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached (e.g. `<data-dir>/plugin-cache`); `None`
    /// compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// How often the epoch advances. A call's deadline is a whole number of ticks, so a
    /// call with timeout `t` is interrupted after at least `t` and at most `t + tick`
    /// (plus the time to reach the next loop back-edge or function entry, which is
    /// immediate for compiled code). Default 1 ms, which costs one wake-up of the
    /// ticker thread per millisecond.
    pub epoch_tick: Duration,
    /// Instances that may exist at once, all plugins together (fresh calls in flight plus
    /// warm instances kept by callers). A call beyond that fails with
    /// [`crate::CallError::Instantiate`].
    pub max_instances: u32,
    /// The largest memory cap a manifest may ask for (per instance, all memories).
    pub max_memory_bytes: u64,
    /// The longest call timeout a router's manifest may ask for: routing waits on it for
    /// every task of a group.
    pub max_router_timeout: Duration,
    /// The longest call timeout any other plugin's manifest may ask for.
    pub max_timeout: Duration,
    /// Bytes of each memory slot reset with `memset` (only the pages actually dirtied,
    /// found with `PAGEMAP_SCAN` where the kernel has it) instead of `madvise` when an
    /// instance is dropped: keeps small instances cheap to recycle.
    pub keep_resident_bytes: usize,
}

impl RuntimeConfig {
    /// The longest call timeout a plugin of `world` may declare.
    pub fn max_timeout(&self, world: World) -> Duration {
        match world {
            World::Router => self.max_router_timeout,
            _ => self.max_timeout,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            epoch_tick: Duration::from_millis(1),
            max_instances: 1000,
            max_memory_bytes: 1 << 30,
            max_router_timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(600),
            keep_resident_bytes: 512 << 10,
        }
    }
}

/// Counters of the compile cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Components compiled from source (cache misses, rejected entries, no cache).
    pub compiled: u64,
    /// Components loaded from an authenticated cache entry.
    pub hits: u64,
    /// Cache entries refused (failed authentication or deserialization) and recompiled.
    pub rejected: u64,
    /// Entries that could not be written (the load itself still succeeded).
    pub write_errors: u64,
}

#[derive(Default)]
struct CacheCounters {
    compiled: AtomicU64,
    hits: AtomicU64,
    rejected: AtomicU64,
    write_errors: AtomicU64,
}

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled now.
    Compiled,
    /// Loaded from the cache.
    Cached,
}

/// A compiled (not yet validated) component with what the API shows about it.
#[derive(Clone)]
pub struct CompiledComponent {
    pub(crate) component: Component,
    pub info: ComponentInfo,
}

/// What is known about a compiled component.
#[derive(Debug, Clone)]
pub struct ComponentInfo {
    /// SHA-256 of the component's bytes, hex.
    pub sha256: String,
    /// Size of the component's bytes.
    pub size: usize,
    pub origin: Origin,
    /// Time to compile, or to load from the cache.
    pub load_time: Duration,
    pub interfaces: Interfaces,
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) config: RuntimeConfig,
    engine_hash: [u8; 32],
    cache: Option<ArtifactCache>,
    counters: CacheCounters,
    ticker: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.ticker.lock().ok().and_then(|mut t| t.take()) {
            drop(stop);
            let _ = handle.join();
        }
    }
}

impl RuntimeInner {
    /// The epoch deadline (in ticks) that guarantees at least `timeout`.
    pub(crate) fn deadline_ticks(&self, timeout: Duration) -> u64 {
        let tick = self.config.epoch_tick.as_nanos().max(1);
        let ticks = timeout.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX / 2) + 1
    }
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the plugin runtime: {0}")]
pub struct RuntimeError(String);

/// The plugin runtime: one engine shared by every plugin, a pooling instance allocator,
/// an epoch ticker thread for deadlines, and the compile cache. Cheap to clone.
///
/// Loading compiles (or reads the cache) and is CPU-heavy: call it off the request path
/// (e.g. in `spawn_blocking`). Calls are synchronous and short.
#[derive(Clone)]
pub struct PluginRuntime {
    pub(crate) inner: Arc<RuntimeInner>,
}

impl PluginRuntime {
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let mut pool = PoolingAllocationConfig::new();
        let n = config.max_instances.max(1);
        pool.total_component_instances(n)
            // A component made by wit-component has its main module plus a few small
            // shim modules; an adapted wasip1 module has one more memory. componentize-py
            // links CPython as dozens of core instances (38 for the example router).
            .total_core_instances(n.saturating_mul(8))
            .max_core_instances_per_component(64)
            .total_memories(n)
            .max_memories_per_component(2)
            .total_tables(n.saturating_mul(2))
            .max_tables_per_component(4)
            .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX))
            .linear_memory_keep_resident(config.keep_resident_bytes)
            .table_keep_resident(64 << 10)
            .pagemap_scan(Enabled::Auto);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_init_cow(true)
            .parallel_compilation(true)
            .debug_info(false)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&wasm).map_err(|e| RuntimeError(format!("{e:#}")))?;

        let mut h = Sha256Hasher::default();
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_hash: [u8; 32] = sha2::Digest::finalize(h.0).into();

        let cache = match &config.cache_dir {
            Some(dir) => Some(
                ArtifactCache::open(dir)
                    .map_err(|e| RuntimeError(format!("plugin cache {}: {e}", dir.display())))?,
            ),
            None => None,
        };

        let inner = Arc::new(RuntimeInner {
            engine: engine.clone(),
            config: config.clone(),
            engine_hash,
            cache,
            counters: CacheCounters::default(),
            ticker: Mutex::new(None),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let tick = config.epoch_tick.max(Duration::from_micros(100));
        let handle = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || epoch_ticker(engine, tick, stopped))
            .map_err(|e| RuntimeError(format!("cannot start the epoch thread: {e}")))?;
        *inner.ticker.lock().expect("fresh mutex") = Some((stop, handle));
        Ok(PluginRuntime { inner })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    pub fn cache_stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        CacheStats {
            compiled: c.compiled.load(Relaxed),
            hits: c.hits.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            write_errors: c.write_errors.load(Relaxed),
        }
    }

    /// Compiles `bytes` (a component binary), or loads the compiled artifact from the
    /// cache when this installation already compiled the same bytes with a compatible
    /// engine.
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledComponent, LoadError> {
        check_header(bytes)?;
        let start = Instant::now();
        let key = CacheKey {
            component_sha256: sha256(bytes),
            engine: self.inner.engine_hash,
        };
        let engine = &self.inner.engine;
        let counters = &self.inner.counters;

        let mut cached = None;
        if let Some(cache) = &self.inner.cache {
            match cache.load(&key) {
                Lookup::Hit(artifact) => {
                    // SAFETY: `Component::deserialize` trusts its input to be an artifact
                    // that wasmtime produced, as it maps the machine code in it and runs it.
                    // `cache.load` returns `Hit` only for a file whose HMAC-SHA256 tag
                    // verifies under this installation's secret key (32 random bytes, mode
                    // 0600 in a 0700 directory), over the component hash, the engine
                    // compatibility hash and every byte of the artifact. Only
                    // `ArtifactCache::store` computes such tags, and only this function
                    // calls it, with the output of `Component::serialize` for a component
                    // this process compiled from exactly these bytes on an engine with this
                    // compatibility hash. The bytes were read into memory before they were
                    // checked, so the file cannot change between the check and the use.
                    match unsafe { Component::deserialize(engine, &artifact) } {
                        Ok(c) => {
                            counters.hits.fetch_add(1, Relaxed);
                            cached = Some(c);
                        }
                        Err(e) => {
                            counters.rejected.fetch_add(1, Relaxed);
                            tracing::warn!(error = %format!("{e:#}"), "cached plugin artifact does not load; recompiling");
                        }
                    }
                }
                Lookup::Miss => {}
                Lookup::Rejected(why) => {
                    counters.rejected.fetch_add(1, Relaxed);
                    tracing::warn!(reason = %why, "rejected a plugin cache entry; recompiling");
                }
            }
        }

        let (component, origin) = match cached {
            Some(c) => (c, Origin::Cached),
            None => {
                let c = Component::from_binary(engine, bytes).map_err(compile_error)?;
                counters.compiled.fetch_add(1, Relaxed);
                if let Some(cache) = &self.inner.cache {
                    let stored = c
                        .serialize()
                        .map_err(|e| std::io::Error::other(format!("{e:#}")))
                        .and_then(|artifact| cache.store(&key, &artifact));
                    if let Err(e) = stored {
                        counters.write_errors.fetch_add(1, Relaxed);
                        tracing::warn!(error = %e, dir = %cache.dir().display(), "cannot write the plugin cache");
                    }
                }
                (c, Origin::Compiled)
            }
        };
        // Build the copy-on-write memory images now rather than on the first call.
        component
            .initialize_copy_on_write_image()
            .map_err(|e| LoadError::Setup(format!("{e:#}")))?;
        let info = ComponentInfo {
            sha256: hex(&key.component_sha256),
            size: bytes.len(),
            origin,
            load_time: start.elapsed(),
            interfaces: validate::interfaces(engine, &component),
        };
        Ok(CompiledComponent { component, info })
    }

    /// Checks a compiled component against `manifest` (its world, exports, imports and
    /// grants) without setting anything up.
    pub fn validate(
        &self,
        manifest: &Manifest,
        compiled: &CompiledComponent,
    ) -> Result<(), LoadError> {
        validate::check_manifest(
            manifest,
            self.inner.config.max_memory_bytes,
            self.inner.config.max_timeout(manifest.world),
        )?;
        validate::check_world(&self.inner.engine, &compiled.component, manifest)
    }

    /// Compiles `bytes` for a plugin of `world`, after checking the manifest (cheap)
    /// before compiling (not).
    fn compile_for(
        &self,
        manifest: &Manifest,
        world: World,
        bytes: &[u8],
    ) -> Result<CompiledComponent, LoadError> {
        check_world_is(manifest, world)?;
        validate::check_manifest(
            manifest,
            self.inner.config.max_memory_bytes,
            self.inner.config.max_timeout(manifest.world),
        )?;
        self.compile(bytes)
    }

    /// [`PluginRuntime::validate`] for a plugin that is to serve `world`.
    fn validate_for(
        &self,
        manifest: &Manifest,
        world: World,
        compiled: &CompiledComponent,
    ) -> Result<(), LoadError> {
        check_world_is(manifest, world)?;
        self.validate(manifest, compiled)
    }

    /// Compiles (or loads from the cache), validates and links a plugin of world `P`
    /// (`RouterPlugin`, `NotifierPlugin`, `FilerPlugin`, `EngineAdapterPlugin`) with what its
    /// binding grants.
    pub fn load<P: PluginWorld>(
        &self,
        manifest: Manifest,
        bytes: &[u8],
        grants: Grants,
    ) -> Result<P, LoadError> {
        let compiled = self.compile_for(&manifest, P::WORLD, bytes)?;
        self.link(manifest, compiled, grants)
    }

    /// Validates and links an already compiled component as a plugin of world `P` (for
    /// a caller that compiled it earlier, e.g. at upload, and activates it now).
    pub fn link<P: PluginWorld>(
        &self,
        manifest: Manifest,
        compiled: CompiledComponent,
        grants: Grants,
    ) -> Result<P, LoadError> {
        self.validate_for(&manifest, P::WORLD, &compiled)?;
        P::link_validated(self, manifest, compiled, grants)
    }
}

/// What a binding grants a plugin, each meaningful only with the manifest's capability
/// (without it nothing of that interface is linked, and a component importing it is
/// refused):
/// - `config` (`config`): values, and secrets (only those the manifest lists reach it);
/// - `allowed_hosts` (`http`): where its outgoing requests may go: `host` (on the scheme's
///   default port, 80 or 443), `host:port`, `[v6-address]:port`, or `*` for any host at
///   a public address (internal hosts must be named; see `capability/http.rs`). A
///   request elsewhere fails with `HTTP-request-denied` (or `destination-IP-prohibited`)
///   and no connection is made. An entry of another form is a [`LoadError::Settings`];
/// - `object_store` and `buckets` (`object-store`): the store behind
///   `tessera:plugin/object-store` and the buckets the plugin may use (exact names, or
///   `*`); a call on any other bucket fails with `denied`, and without a store every
///   call fails with `unavailable`. A bucket that is not a name is a
///   [`LoadError::Settings`].
///
/// `workspace` needs nothing here: each filer call gets the task's
/// [`crate::FilerWorkspace`].
#[derive(Clone, Default)]
pub struct Grants {
    pub config: PluginConfig,
    pub allowed_hosts: Vec<String>,
    pub object_store: Option<Arc<dyn ObjectStore>>,
    pub buckets: Vec<String>,
}

impl Grants {
    /// Only configuration (what a router can be granted).
    pub fn config(config: PluginConfig) -> Grants {
        Grants {
            config,
            ..Grants::default()
        }
    }
}

/// A kind of loaded plugin: one per world, each linked the same way
/// ([`PluginRuntime::link`]), with the capabilities its manifest and binding grant.
pub trait PluginWorld: Sized {
    /// The world plugins of this kind fill.
    const WORLD: World;

    /// Links a component that [`PluginRuntime::link`] compiled and validated for
    /// [`Self::WORLD`]; call that instead.
    fn link_validated(
        runtime: &PluginRuntime,
        manifest: Manifest,
        compiled: CompiledComponent,
        grants: Grants,
    ) -> Result<Self, LoadError>;
}

fn check_world_is(manifest: &Manifest, world: World) -> Result<(), LoadError> {
    if manifest.world == world {
        return Ok(());
    }
    Err(LoadError::Manifest(format!(
        "the manifest claims the {} world, not {world}",
        manifest.world
    )))
}

fn epoch_ticker(engine: Engine, tick: Duration, stop: mpsc::Receiver<()>) {
    // Advance by the real time elapsed, not by the number of wake-ups, so late wake-ups
    // do not stretch deadlines.
    let start = Instant::now();
    let tick_ns = tick.as_nanos().max(1);
    let mut issued: u128 = 0;
    loop {
        let next_ns = u64::try_from(tick_ns * (issued + 1)).unwrap_or(u64::MAX);
        let wait = Duration::from_nanos(next_ns).saturating_sub(start.elapsed());
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {
                let due = start.elapsed().as_nanos() / tick_ns;
                while issued < due {
                    engine.increment_epoch();
                    issued += 1;
                }
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Tells garbage and core modules apart from components before wasmtime sees them.
fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8; 4] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(LoadError::NotAComponent(format!(
            "{} bytes that do not start with the WebAssembly magic number",
            bytes.len()
        )));
    }
    match (&bytes[4..6], &bytes[6..8]) {
        (_, [1, 0]) => Ok(()),
        ([1, 0], [0, 0]) => Err(LoadError::NotAComponent(
            "this is a core WebAssembly module; make a component of it (e.g. \
             `wasm-tools component new`, or build for wasm32-wasip2)"
                .into(),
        )),
        (v, l) => Err(LoadError::NotAComponent(format!(
            "unknown WebAssembly version/layer {:02x}{:02x}/{:02x}{:02x}",
            v[0], v[1], l[0], l[1]
        ))),
    }
}

fn compile_error(e: wasmtime::Error) -> LoadError {
    let msg = format!("{e:#}");
    // wasmparser's messages ("unexpected end-of-file (at offset 0x…)", "invalid …")
    // mean the bytes are not a well-formed component; the rest are compile failures.
    if msg.contains("offset 0x") {
        LoadError::NotAComponent(msg)
    } else {
        LoadError::Compile(msg)
    }
}
