//! Host services. Each call reaches the bourse host; only services named in the plugin's
//! manifest are linked, so a plugin that calls another one is refused at load, not at run time.
//!
//! Hooks may call [`log`] and [`clock`]; sites may call all four.

/// Logging into the host's log, tagged with the plugin's name.
pub mod log {
    use crate::site::bindings::bourse::host::log::{Level, log};

    /// Logs at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The host's clock.
pub mod clock {
    /// Milliseconds since the Unix epoch (UTC).
    pub fn now_ms() -> u64 {
        crate::site::bindings::bourse::host::clock::now_ms()
    }
}

/// The plugin's private key/value store (sites only).
pub mod kv {
    use crate::site::bindings::bourse::host::kv;

    /// The value under `key`.
    pub fn get(key: &str) -> Option<Vec<u8>> {
        kv::get(key)
    }
    /// Stores `value` under `key`; fails with the host's reason (size or quota).
    pub fn put(key: &str, value: &[u8]) -> Result<(), String> {
        kv::put(key, value)
    }
    /// Removes `key`; true when it existed.
    pub fn delete(key: &str) -> bool {
        kv::delete(key)
    }
}

/// The plugin's private counters (sites only).
pub mod counters {
    use crate::site::bindings::bourse::host::counters;

    /// Adds `by` and returns the new value.
    pub fn incr(name: &str, by: i64) -> i64 {
        counters::incr(name, by)
    }
    /// The current value.
    pub fn get(name: &str) -> i64 {
        counters::get(name)
    }
}
