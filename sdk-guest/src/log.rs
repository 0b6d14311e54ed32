//! Logging through the host's structured logs (`tessera:plugin/log`, granted to every
//! plugin).
//!
//! ```ignore
//! use tessera_plugin_sdk::{info, warn};
//! info!("routing {} tasks", tasks.len());
//! tessera_plugin_sdk::log::warn("no targets");
//! ```
//!
//! The host adds the plugin's name and version and the task id, when there is one. Lines
//! below [`max_level`] are dropped in the plugin, before any formatting. Outside
//! WebAssembly (a plugin's native unit tests) lines go to standard error instead.

use core::sync::atomic::{AtomicU8, Ordering};

pub use crate::wit::log::Level;

// Trace = 0 … Error = 4, as in the WIT enum.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Trace as u8);

/// Drop lines below `level` (the host may filter further). The default keeps every line.
pub fn set_max_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// The level set with [`set_max_level`].
pub fn max_level() -> Level {
    match MAX_LEVEL.load(Ordering::Relaxed) {
        0 => Level::Trace,
        1 => Level::Debug,
        2 => Level::Info,
        3 => Level::Warn,
        _ => Level::Error,
    }
}

/// Whether a line at `level` would be written.
#[inline]
pub fn enabled(level: Level) -> bool {
    level as u8 >= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Write one line at `level`.
pub fn log(level: Level, message: &str) {
    if !enabled(level) {
        return;
    }
    #[cfg(target_arch = "wasm32")]
    crate::wit::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    std::eprintln!("[{}] {message}", level_name(level));
}

/// The level's name in lower case, as in the WIT (`"info"`).
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// Write one line at `trace`.
pub fn trace(message: &str) {
    log(Level::Trace, message)
}
/// Write one line at `debug`.
pub fn debug(message: &str) {
    log(Level::Debug, message)
}
/// Write one line at `info`.
pub fn info(message: &str) {
    log(Level::Info, message)
}
/// Write one line at `warn`.
pub fn warn(message: &str) {
    log(Level::Warn, message)
}
/// Write one line at `error`.
pub fn error(message: &str) {
    log(Level::Error, message)
}

/// Log a formatted line at a level: `log!(Level::Info, "{} tasks", n)`. The arguments are
/// formatted only when the level is enabled.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {{
        let level = $level;
        if $crate::log::enabled(level) {
            $crate::log::log(level, &$crate::__private::format!($($arg)+));
        }
    }};
}

/// Log a formatted line at `trace`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Trace, $($arg)+) };
}

/// Log a formatted line at `debug`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Debug, $($arg)+) };
}

/// Log a formatted line at `info`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Info, $($arg)+) };
}

/// Log a formatted line at `warn`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Warn, $($arg)+) };
}

/// Log a formatted line at `error`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Error, $($arg)+) };
}
