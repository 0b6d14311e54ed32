//! This plugin's configuration and secrets (`tessera:plugin/config`), with typed parsing.
//!
//! Every value is a string in the binding's configuration; the typed getters parse it
//! with [`FromStr`] and turn a missing required key or a value that does not parse into
//! [`PluginError::InvalidInput`] naming the key, so a plugin can use `?`:
//!
//! ```ignore
//! use tessera_plugin_sdk::config;
//! let url: String = config::require("url")?;
//! let retries: u32 = config::parse_or("retries", 3)?;
//! let verbose = config::flag("verbose")?;          // true/false/yes/no/on/off/1/0
//! let hosts = config::list("allowed-hosts");        // comma-separated, trimmed
//! let token = config::require_secret("token")?;
//! ```
//!
//! Outside WebAssembly (a plugin's native unit tests) the values come from
//! [`set_for_tests`] instead of the host.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Display;
use core::str::FromStr;

use crate::PluginError;

/// The value of a configuration key, if set.
pub fn get(key: &str) -> Option<String> {
    imp::get(key)
}

/// The value of a secret, if set and if the manifest lists it. Never log it.
pub fn secret(name: &str) -> Option<String> {
    imp::secret(name)
}

/// The value of `key`, or `default` when it is not set.
pub fn get_or(key: &str, default: &str) -> String {
    get(key).unwrap_or_else(|| default.to_string())
}

/// The value of `key`; `invalid-input` when it is not set.
pub fn require(key: &str) -> Result<String, PluginError> {
    get(key).ok_or_else(|| missing("configuration key", key))
}

/// The secret `name`; `invalid-input` when it is not set (or the manifest does not list
/// it).
pub fn require_secret(name: &str) -> Result<String, PluginError> {
    secret(name).ok_or_else(|| missing("secret", name))
}

/// The value of `key` parsed as `T`: `Ok(None)` when it is not set, `invalid-input` when
/// it does not parse. Surrounding whitespace is ignored.
pub fn parse<T>(key: &str) -> Result<Option<T>, PluginError>
where
    T: FromStr,
    T::Err: Display,
{
    match get(key) {
        None => Ok(None),
        Some(raw) => parse_value(key, &raw).map(Some),
    }
}

/// The value of `key` parsed as `T`, or `default` when it is not set; `invalid-input`
/// when it is set and does not parse.
pub fn parse_or<T>(key: &str, default: T) -> Result<T, PluginError>
where
    T: FromStr,
    T::Err: Display,
{
    Ok(parse(key)?.unwrap_or(default))
}

/// The value of `key` parsed as `T`; `invalid-input` when it is not set or does not
/// parse.
pub fn require_parse<T>(key: &str) -> Result<T, PluginError>
where
    T: FromStr,
    T::Err: Display,
{
    parse(key)?.ok_or_else(|| missing("configuration key", key))
}

/// A boolean key: `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0` (any case); `false`
/// when it is not set, `invalid-input` for anything else.
pub fn flag(key: &str) -> Result<bool, PluginError> {
    let Some(raw) = get(key) else {
        return Ok(false);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" | "" => Ok(false),
        _ => Err(PluginError::InvalidInput(crate::__private::format!(
            "configuration key `{key}`: `{raw}` is not a boolean (true/false, yes/no, on/off, 1/0)"
        ))),
    }
}

/// A comma-separated list: items trimmed, empty items dropped; empty when not set.
pub fn list(key: &str) -> Vec<String> {
    get(key)
        .map(|raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(ToString::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Parse one value as `T`, turning a failure into `invalid-input` that names `key`, the
/// value and the expected type. For values that do not come from [`get`] (e.g. split
/// out of a list).
pub fn parse_value<T>(key: &str, raw: &str) -> Result<T, PluginError>
where
    T: FromStr,
    T::Err: Display,
{
    raw.trim().parse::<T>().map_err(|e| {
        PluginError::InvalidInput(crate::__private::format!(
            "configuration key `{key}`: cannot parse `{raw}` as {}: {e}",
            short_type_name::<T>()
        ))
    })
}

fn missing(what: &str, key: &str) -> PluginError {
    PluginError::InvalidInput(crate::__private::format!("{what} `{key}` is not set"))
}

/// `core::time::Duration` → `Duration`; `alloc::string::String` → `String`.
fn short_type_name<T>() -> &'static str {
    let full = core::any::type_name::<T>();
    // Keep generics readable: only strip the path of the outermost type.
    let head = full.split('<').next().unwrap_or(full);
    match head.rfind("::") {
        Some(i) => &full[i + 2..],
        None => full,
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use alloc::string::String;

    pub fn get(key: &str) -> Option<String> {
        crate::wit::config::get(key)
    }

    pub fn secret(name: &str) -> Option<String> {
        crate::wit::config::secret(name)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use alloc::string::String;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    pub static CONFIG: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
    pub static SECRETS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

    pub fn get(key: &str) -> Option<String> {
        CONFIG.lock().unwrap().get(key).cloned()
    }

    pub fn secret(name: &str) -> Option<String> {
        SECRETS.lock().unwrap().get(name).cloned()
    }
}

/// Outside WebAssembly only: replace the configuration and secrets that [`get`] and
/// [`secret`] return, for a plugin's native unit tests. (They are process-wide: tests
/// that set different values should not run in parallel.)
#[cfg(not(target_arch = "wasm32"))]
pub fn set_for_tests<'a>(
    config: impl IntoIterator<Item = (&'a str, &'a str)>,
    secrets: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    *imp::CONFIG.lock().unwrap() = config
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    *imp::SECRETS.lock().unwrap() = secrets
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    // The configuration is process-wide; keep these tests from interleaving.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn typed_getters() {
        let _g = SERIAL.lock().unwrap();
        set_for_tests(
            [
                ("n", " 42 "),
                ("bad", "forty"),
                ("on", "Yes"),
                ("hosts", "a, b,,c "),
            ],
            [("token", "s3cret")],
        );
        assert_eq!(parse::<u32>("n").unwrap(), Some(42));
        assert_eq!(parse::<u32>("absent").unwrap(), None);
        assert_eq!(parse_or::<u32>("absent", 7).unwrap(), 7);
        assert_eq!(require_parse::<u64>("n").unwrap(), 42);
        let err = parse::<u32>("bad").unwrap_err();
        assert_eq!(err.kind(), "invalid-input");
        assert_eq!(
            err.message(),
            "configuration key `bad`: cannot parse `forty` as u32: invalid digit found in string"
        );
        assert_eq!(
            require("absent").unwrap_err(),
            PluginError::invalid_input("configuration key `absent` is not set")
        );
        assert!(flag("on").unwrap());
        assert!(!flag("absent").unwrap());
        assert_eq!(flag("bad").unwrap_err().kind(), "invalid-input");
        assert_eq!(list("hosts"), ["a", "b", "c"]);
        assert!(list("absent").is_empty());
        assert_eq!(get_or("absent", "d"), "d");
        assert_eq!(require_secret("token").unwrap(), "s3cret");
        assert_eq!(
            require_secret("nope").unwrap_err().message(),
            "secret `nope` is not set"
        );
    }

    #[test]
    fn type_names_are_short() {
        assert_eq!(short_type_name::<u32>(), "u32");
        assert_eq!(short_type_name::<String>(), "String");
        assert_eq!(short_type_name::<core::net::Ipv4Addr>(), "Ipv4Addr");
    }
}
