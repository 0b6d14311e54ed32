//! Store state shared by every world: the plugin's identity, configuration, memory
//! limiter and log budget, and the host side of the `log` and `config` interfaces.
//!
//! Each world's bindings implement their generated `Host` traits by calling into here,
//! so the behaviour is the same whichever world a plugin fills.

use std::sync::Arc;

use wasmtime::ResourceLimiter;

use crate::manifest::{Manifest, PluginConfig};
use crate::metrics::PluginMetrics;

/// At most this many log lines per call; later ones are dropped (and counted).
const LOG_LINES_PER_CALL: u32 = 64;
/// Longer log messages are cut to this many bytes.
const LOG_MESSAGE_BYTES: usize = 4096;
/// Table elements one instance may have.
const TABLE_ELEMENTS: usize = 100_000;

/// What every instance of one plugin version shares.
pub(crate) struct PluginContext {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) config: PluginConfig,
    pub(crate) metrics: PluginMetrics,
}

impl PluginContext {
    /// Keeps only the secrets the manifest lists.
    pub(crate) fn new(manifest: &Manifest, mut config: PluginConfig) -> Self {
        config
            .secrets
            .retain(|name, _| manifest.secrets.iter().any(|s| s == name));
        PluginContext {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            config,
            metrics: PluginMetrics::default(),
        }
    }
}

/// A cap on all linear memories of one store together. A denied growth makes
/// `memory.grow` return -1 to the guest (which usually traps right after); the flag
/// tells the host that the failure of the call was an out-of-memory.
pub(crate) struct MemoryLimiter {
    cap: usize,
    used: usize,
    pub(crate) hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(cap: usize) -> Self {
        MemoryLimiter {
            cap,
            used: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let after = self.used.saturating_add(desired.saturating_sub(current));
        if after > self.cap || maximum.is_some_and(|m| desired > m) {
            self.hit |= after > self.cap;
            return Ok(false);
        }
        self.used = after;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS && maximum.is_none_or(|m| desired <= m))
    }
}

/// The data of one store (one instance).
pub(crate) struct HostState {
    pub(crate) ctx: Arc<PluginContext>,
    pub(crate) limiter: MemoryLimiter,
    /// The task the current call is about, for log lines (notifier, filer).
    pub(crate) task: Option<String>,
    log_lines: u32,
    log_dropped: u32,
}

impl HostState {
    pub(crate) fn new(ctx: Arc<PluginContext>, memory_cap: usize) -> Self {
        HostState {
            ctx,
            limiter: MemoryLimiter::new(memory_cap),
            task: None,
            log_lines: 0,
            log_dropped: 0,
        }
    }

    /// Resets the per-call state before a call on a reused instance.
    pub(crate) fn begin_call(&mut self) {
        self.limiter.hit = false;
        self.log_lines = 0;
        self.log_dropped = 0;
    }

    /// Reports lines dropped by the log budget, once per call.
    pub(crate) fn end_call(&mut self) {
        if self.log_dropped > 0 {
            tracing::warn!(
                target: "tessera::plugin",
                plugin = %self.ctx.name,
                version = %self.ctx.version,
                dropped = self.log_dropped,
                "plugin log lines over the budget of {LOG_LINES_PER_CALL} per call were dropped"
            );
        }
    }

    /// `log.log`: one line into the host's structured logs.
    pub(crate) fn log(&mut self, level: LogLevel, message: &str) {
        if self.log_lines >= LOG_LINES_PER_CALL {
            self.log_dropped += 1;
            return;
        }
        self.log_lines += 1;
        let message = truncate(message, LOG_MESSAGE_BYTES);
        let (plugin, version, task) = (&self.ctx.name, &self.ctx.version, self.task.as_deref());
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(target: "tessera::plugin", $level, plugin = %plugin, version = %version, task, "{message}")
            };
        }
        match level {
            LogLevel::Trace => emit!(tracing::Level::TRACE),
            LogLevel::Debug => emit!(tracing::Level::DEBUG),
            LogLevel::Info => emit!(tracing::Level::INFO),
            LogLevel::Warn => emit!(tracing::Level::WARN),
            LogLevel::Error => emit!(tracing::Level::ERROR),
        }
    }

    /// `config.get`.
    pub(crate) fn config_get(&self, key: &str) -> Option<String> {
        self.ctx.config.values.get(key).cloned()
    }

    /// `config.secret`: only secrets the manifest lists were kept at load.
    pub(crate) fn config_secret(&self, name: &str) -> Option<String> {
        self.ctx
            .config
            .secrets
            .get(name)
            .map(|s| s.expose().to_owned())
    }
}

/// `log.level`, independent of any one world's bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_caps_the_total() {
        let mut l = MemoryLimiter::new(100);
        assert!(l.memory_growing(0, 60, None).unwrap());
        assert!(!l.memory_growing(0, 60, None).unwrap()); // a second memory
        assert!(l.hit);
        assert!(l.memory_growing(60, 100, None).unwrap());
        assert!(!l.memory_growing(100, 101, None).unwrap());
    }

    #[test]
    fn truncates_on_char_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
