//! Host services offered to plugins (key/value, counters, log, clock) behind one trait, an
//! in-memory implementation, and the per-store state that serves them to a running instance.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::site::bourse::host::{clock, counters, kv, log};

/// Largest key a plugin may store.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value a plugin may store.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Longest log message kept; longer ones are cut.
pub const MAX_LOG_BYTES: usize = 4096;
/// Log lines one call may write; the rest are dropped and counted as one line saying so.
pub const MAX_LOG_LINES_PER_CALL: u32 = 64;

/// Severity of a plugin's log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The services a plugin reaches through its `bourse:host` imports. Every call names the
/// plugin, so an implementation keeps each plugin's keys and counters apart.
///
/// Calls happen on the thread running the plugin, inside its time limit: an implementation
/// backed by a network store must answer quickly or fail (a site call runs on a blocking
/// thread, see [`crate::SitePlugin::handle_blocking`]).
pub trait HostServices: Send + Sync + 'static {
    /// The value under `key` in the plugin's namespace.
    fn kv_get(&self, plugin: &str, key: &str) -> Option<Vec<u8>>;
    /// Stores a value; `Err` carries a reason the plugin receives.
    fn kv_put(&self, plugin: &str, key: &str, value: &[u8]) -> Result<(), String>;
    /// Removes a key; true when it existed.
    fn kv_delete(&self, plugin: &str, key: &str) -> bool;
    /// Adds `by` to a counter and returns the new value.
    fn counter_incr(&self, plugin: &str, name: &str, by: i64) -> i64;
    /// A counter's value, 0 when never incremented.
    fn counter_get(&self, plugin: &str, name: &str) -> i64;
    /// Writes a plugin's log line.
    fn log(&self, plugin: &str, level: LogLevel, message: &str) {
        match level {
            LogLevel::Trace => tracing::trace!(plugin, message, "plugin log"),
            LogLevel::Debug => tracing::debug!(plugin, message, "plugin log"),
            LogLevel::Info => tracing::info!(plugin, message, "plugin log"),
            LogLevel::Warn => tracing::warn!(plugin, message, "plugin log"),
            LogLevel::Error => tracing::error!(plugin, message, "plugin log"),
        }
    }
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// Host services kept in process memory, with a per-plugin cap on stored bytes. The embedded
/// default, and what the tests use.
pub struct InMemoryHost {
    max_bytes_per_plugin: usize,
    kv: Mutex<HashMap<String, Namespace>>,
    counters: Mutex<HashMap<(String, String), i64>>,
}

#[derive(Default)]
struct Namespace {
    bytes: usize,
    entries: HashMap<String, Vec<u8>>,
}

impl InMemoryHost {
    /// A store holding at most `max_bytes_per_plugin` bytes of keys and values per plugin.
    pub fn new(max_bytes_per_plugin: usize) -> Self {
        InMemoryHost {
            max_bytes_per_plugin,
            kv: Mutex::default(),
            counters: Mutex::default(),
        }
    }
}

impl Default for InMemoryHost {
    fn default() -> Self {
        Self::new(4 * 1024 * 1024)
    }
}

impl HostServices for InMemoryHost {
    fn kv_get(&self, plugin: &str, key: &str) -> Option<Vec<u8>> {
        self.kv.lock().get(plugin)?.entries.get(key).cloned()
    }

    fn kv_put(&self, plugin: &str, key: &str, value: &[u8]) -> Result<(), String> {
        let mut kv = self.kv.lock();
        let namespace = kv.entry(plugin.to_owned()).or_default();
        let old = namespace
            .entries
            .get(key)
            .map_or(0, |v| key.len() + v.len());
        let bytes = namespace.bytes - old + key.len() + value.len();
        if bytes > self.max_bytes_per_plugin {
            return Err(format!(
                "the plugin's store is full ({} of {} bytes)",
                namespace.bytes, self.max_bytes_per_plugin
            ));
        }
        namespace.bytes = bytes;
        namespace.entries.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn kv_delete(&self, plugin: &str, key: &str) -> bool {
        let mut kv = self.kv.lock();
        let Some(namespace) = kv.get_mut(plugin) else {
            return false;
        };
        match namespace.entries.remove(key) {
            Some(value) => {
                namespace.bytes -= key.len() + value.len();
                true
            }
            None => false,
        }
    }

    fn counter_incr(&self, plugin: &str, name: &str, by: i64) -> i64 {
        let mut counters = self.counters.lock();
        let value = counters
            .entry((plugin.to_owned(), name.to_owned()))
            .or_insert(0);
        *value = value.saturating_add(by);
        *value
    }

    fn counter_get(&self, plugin: &str, name: &str) -> i64 {
        // Hand-built key only for the lookup: the map is keyed by owned pairs.
        let counters = self.counters.lock();
        counters
            .get(&(plugin.to_owned(), name.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

/// Memory limits of one instance, remembering whether a growth was refused so that the trap a
/// guest raises when its allocator fails is reported as the memory cap, not as a plain trap.
pub(crate) struct Limiter {
    limits: StoreLimits,
    pub(crate) refused_growth: bool,
}

impl Limiter {
    pub(crate) fn new(memory_bytes: usize) -> Self {
        Limiter {
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .instances(64)
                .memories(64)
                .tables(64)
                .build(),
            refused_growth: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        self.refused_growth |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }
    fn tables(&self) -> usize {
        self.limits.tables()
    }
    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// What one store holds: the plugin's name, its host services, its limits and an empty WASI
/// context (no files, no network, no environment; output discarded).
pub(crate) struct StoreState {
    pub(crate) plugin: Arc<str>,
    pub(crate) host: Arc<dyn HostServices>,
    pub(crate) limiter: Limiter,
    pub(crate) log_lines: u32,
    pub(crate) clock: CallClock,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl StoreState {
    pub(crate) fn new(plugin: Arc<str>, host: Arc<dyn HostServices>, memory_bytes: usize) -> Self {
        StoreState {
            plugin,
            host,
            limiter: Limiter::new(memory_bytes),
            log_lines: 0,
            clock: CallClock::start(Duration::ZERO),
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl log::Host for StoreState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            return Ok(());
        }
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        let message = if self.log_lines == MAX_LOG_LINES_PER_CALL {
            "log limit reached: further lines of this call are dropped"
        } else {
            truncate_utf8(&message, MAX_LOG_BYTES)
        };
        self.host.log(&self.plugin, level, message);
        Ok(())
    }
}

impl clock::Host for StoreState {
    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(self.host.now_ms())
    }
}

impl kv::Host for StoreState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.host.kv_get(&self.plugin, &key))
    }

    fn put(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        if key.len() > MAX_KEY_BYTES {
            return Ok(Err(format!("a key is at most {MAX_KEY_BYTES} bytes")));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Ok(Err(format!("a value is at most {MAX_VALUE_BYTES} bytes")));
        }
        Ok(self.host.kv_put(&self.plugin, &key, &value))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<bool> {
        Ok(self.host.kv_delete(&self.plugin, &key))
    }
}

impl counters::Host for StoreState {
    fn incr(&mut self, name: String, by: i64) -> wasmtime::Result<i64> {
        Ok(self.host.counter_incr(&self.plugin, &name, by))
    }

    fn get(&mut self, name: String) -> wasmtime::Result<i64> {
        Ok(self.host.counter_get(&self.plugin, &name))
    }
}

/// A call's time budget. The limit is on the CPU time the calling thread spends in the call, so
/// that a thread the OS preempted on a busy machine is not cut off for time it never ran (on an
/// oversubscribed machine a 50 µs call can take 90 ms of wall time). Wall time is capped only
/// as a backstop, at ten times the limit and never under [`CallClock::MIN_WALL_CAP`].
pub(crate) struct CallClock {
    limit: Duration,
    started: Instant,
    cpu_started: Duration,
}

impl CallClock {
    pub(crate) const WALL_FACTOR: u32 = 10;
    pub(crate) const MIN_WALL_CAP: Duration = Duration::from_secs(1);

    pub(crate) fn start(limit: Duration) -> Self {
        CallClock {
            limit,
            started: Instant::now(),
            cpu_started: thread_cpu_time(),
        }
    }

    /// Whether the call has used up its time.
    pub(crate) fn expired(&self) -> bool {
        thread_cpu_time().saturating_sub(self.cpu_started) >= self.limit
            || self.started.elapsed() >= (self.limit * Self::WALL_FACTOR).max(Self::MIN_WALL_CAP)
    }
}

fn thread_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        now.tv_sec.max(0) as u64,
        now.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
