//! The wasm runtime: one engine with epoch interruption and fuel, the ticker thread that
//! advances the epoch, the host services, and compilation of verified modules into linked,
//! pre-instantiated plugins.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::hooks::exports::bourse::exchange_hooks::{
    bid_filter, floor_rule, request_filter,
};
use crate::bindings::site::exports::bourse::site::handler;
use crate::bindings::{hooks as hooks_world, site as site_world};
use crate::host::{HostServices, InMemoryHost, StoreState};
use crate::manifest::{Hook, HostService, InterfaceKind, Manifest};
use crate::signing::{Refusal, RefusalReason, Verified};

/// How the runtime runs plugins.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Interval of the epoch ticker: the granularity of per-call time limits.
    pub epoch_tick: Duration,
    /// Instances kept ready per active plugin version.
    pub pool_size: usize,
    /// Failures within `failure_window` that quarantine a plugin.
    pub quarantine_after: u32,
    pub failure_window: Duration,
    /// How long a replaced version may take to finish its in-flight calls.
    pub drain_timeout: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            epoch_tick: Duration::from_millis(1),
            pool_size: 4,
            quarantine_after: 5,
            failure_window: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// The engine and what every plugin shares. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) config: RuntimeConfig,
    pub(crate) host: Arc<dyn HostServices>,
    pub(crate) epoch: Arc<EpochTicker>,
    ticker: Option<JoinHandle<()>>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.epoch.stop.store(true, Ordering::SeqCst);
        if let Some(ticker) = self.ticker.take() {
            ticker.thread().unpark();
            let _ = ticker.join();
        }
    }
}

/// The thread that advances the engine's epoch, which is what cuts a call off at its time
/// limit. It ticks while guest code runs or has run lately, and sleeps once no guest has been
/// entered for [`EpochTicker::IDLE_TICKS`] ticks and none is running, so that an exchange whose
/// plugins are idle (or that has none installed) is not woken a thousand times a second for
/// nothing.
pub(crate) struct EpochTicker {
    /// Bumped by every guest entry; the ticker compares it between ticks.
    entries: AtomicU64,
    /// Guest calls and instantiations under way: one may need ticks for as long as its wall
    /// cap, so the ticker never sleeps under one.
    inside: AtomicU64,
    asleep: AtomicBool,
    stop: AtomicBool,
    thread: OnceLock<Thread>,
}

/// Held while guest code may run; see [`EpochTicker::enter`].
pub(crate) struct InGuest<'a>(&'a EpochTicker);

impl Drop for InGuest<'_> {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EpochTicker {
    /// Quiet ticks before the ticker sleeps: long enough that a busy exchange, which calls
    /// its plugins many times a millisecond, never pays a wake-up per call.
    const IDLE_TICKS: u32 = 200;

    /// To hold while guest code may run: keeps the ticker ticking, waking it if it slept.
    pub(crate) fn enter(&self) -> InGuest<'_> {
        self.inside.fetch_add(1, Ordering::SeqCst);
        self.entries.fetch_add(1, Ordering::SeqCst);
        if self.asleep.load(Ordering::SeqCst)
            && let Some(thread) = self.thread.get()
        {
            thread.unpark();
        }
        InGuest(self)
    }

    fn quiet_since(&self, seen: u64) -> bool {
        self.entries.load(Ordering::SeqCst) == seen && self.inside.load(Ordering::SeqCst) == 0
    }

    fn run(&self, engine: &Engine, tick: Duration) {
        let mut seen = self.entries.load(Ordering::SeqCst);
        let mut quiet: u32 = 0;
        while !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(tick);
            engine.increment_epoch();
            if !self.quiet_since(seen) {
                seen = self.entries.load(Ordering::SeqCst);
                quiet = 0;
                continue;
            }
            quiet += 1;
            if quiet < Self::IDLE_TICKS {
                continue;
            }
            // Announce the sleep, then look once more: an entry before the announcement is
            // seen here, one after it sees `asleep` and unparks (a token left before `park`
            // makes it return at once).
            self.asleep.store(true, Ordering::SeqCst);
            if self.quiet_since(seen) && !self.stop.load(Ordering::SeqCst) {
                std::thread::park();
            }
            self.asleep.store(false, Ordering::SeqCst);
            seen = self.entries.load(Ordering::SeqCst);
            quiet = 0;
        }
    }
}

/// The runtime could not start.
#[derive(Debug, thiserror::Error)]
#[error("the wasm runtime cannot start: {0}")]
pub struct RuntimeError(String);

impl Runtime {
    /// A runtime with in-memory host services.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        Self::with_host(config, Arc::new(InMemoryHost::default()))
    }

    /// A runtime whose plugins reach `host` for key/value, counters, logging and the clock.
    pub fn with_host(
        config: RuntimeConfig,
        host: Arc<dyn HostServices>,
    ) -> Result<Runtime, RuntimeError> {
        if config.epoch_tick.is_zero() || config.pool_size == 0 || config.quarantine_after == 0 {
            return Err(RuntimeError(
                "epoch_tick, pool_size and quarantine_after must not be zero".into(),
            ));
        }
        let mut wasm = Config::new();
        wasm.epoch_interruption(true);
        wasm.consume_fuel(true);
        wasm.wasm_component_model(true);
        let engine = Engine::new(&wasm).map_err(|e| RuntimeError(e.to_string()))?;
        let epoch = Arc::new(EpochTicker {
            entries: AtomicU64::new(0),
            inside: AtomicU64::new(0),
            asleep: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let ticker = {
            let engine = engine.clone();
            let epoch = epoch.clone();
            let tick = config.epoch_tick;
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || epoch.run(&engine, tick))
                .map_err(|e| RuntimeError(format!("no epoch ticker thread: {e}")))?
        };
        let _ = epoch.thread.set(ticker.thread().clone());
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                config,
                host,
                epoch,
                ticker: Some(ticker),
            }),
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Whether the epoch ticker is awake: it sleeps while no plugin has been called lately.
    pub fn epoch_ticking(&self) -> bool {
        !self.inner.epoch.asleep.load(Ordering::SeqCst)
    }

    /// Compiles a verified module, checks its imports against the manifest's host services
    /// and its exports against its hooks, and links it. Slow (milliseconds to seconds): call
    /// it off the request path.
    pub(crate) fn compile(&self, verified: &Verified) -> Result<Compiled, Refusal> {
        let manifest = &verified.manifest;
        let component = Component::new(&self.inner.engine, &verified.module).map_err(|e| {
            Refusal::new(
                RefusalReason::CompileError,
                format!("does not compile: {e:#}"),
            )
        })?;
        check_host_imports(&self.inner.engine, &component, manifest)?;
        let linker = self.linker(manifest).map_err(|e| {
            Refusal::new(
                RefusalReason::CompileError,
                format!("cannot build the linker: {e:#}"),
            )
        })?;
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            Refusal::new(RefusalReason::CompileError, format!("does not link: {e:#}"))
        })?;
        let exports = match manifest.interface.kind {
            InterfaceKind::ExchangeHooks => {
                let missing = |hook: Hook, e: wasmtime::Error| {
                    Refusal::new(
                        RefusalReason::WrongInterface,
                        format!(
                            "advertises hook `{}` but does not export it: {e}",
                            hook.as_str()
                        ),
                    )
                };
                let wants = |hook| manifest.hooks.contains(&hook);
                ExportIndices::Hooks {
                    request_filter: if wants(Hook::RequestFilter) {
                        Some(
                            request_filter::GuestIndices::new(&pre)
                                .map_err(|e| missing(Hook::RequestFilter, e))?,
                        )
                    } else {
                        None
                    },
                    bid_filter: if wants(Hook::BidFilter) {
                        Some(
                            bid_filter::GuestIndices::new(&pre)
                                .map_err(|e| missing(Hook::BidFilter, e))?,
                        )
                    } else {
                        None
                    },
                    floor_rule: if wants(Hook::FloorRule) {
                        Some(
                            floor_rule::GuestIndices::new(&pre)
                                .map_err(|e| missing(Hook::FloorRule, e))?,
                        )
                    } else {
                        None
                    },
                }
            }
            InterfaceKind::Site => {
                ExportIndices::Site(handler::GuestIndices::new(&pre).map_err(|e| {
                    Refusal::new(
                        RefusalReason::WrongInterface,
                        format!("a site plugin must export bourse:site/handler: {e}"),
                    )
                })?)
            }
        };
        Ok(Compiled {
            manifest: manifest.clone(),
            signer: verified.signer.clone(),
            module_sha256: verified.module_sha256.clone(),
            pre,
            exports,
        })
    }

    /// WASI (nothing granted) plus exactly the host services the manifest declares.
    fn linker(&self, manifest: &Manifest) -> wasmtime::Result<Linker<StoreState>> {
        use site_world::bourse::host::{clock, counters, kv, log};
        let mut linker = Linker::new(&self.inner.engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        for service in &manifest.host_services {
            match service {
                HostService::Log => {
                    log::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |s| s)?
                }
                HostService::Clock => {
                    clock::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |s| s)?
                }
                HostService::Kv => kv::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |s| s)?,
                HostService::Counters => {
                    counters::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |s| s)?
                }
            }
        }
        match manifest.interface.kind {
            InterfaceKind::ExchangeHooks => {
                hooks_world::bourse::exchange_hooks::types::add_to_linker::<_, HasSelf<StoreState>>(
                    &mut linker,
                    |s| s,
                )?
            }
            InterfaceKind::Site => site_world::bourse::site::http::add_to_linker::<
                _,
                HasSelf<StoreState>,
            >(&mut linker, |s| s)?,
        }
        Ok(linker)
    }
}

impl site_world::bourse::site::http::Host for StoreState {}
impl hooks_world::bourse::exchange_hooks::types::Host for StoreState {}

/// Refuses a module importing a `bourse:host` service its manifest does not declare, with a
/// reason that names it (the linker alone would only say that an import is missing).
fn check_host_imports(
    engine: &wasmtime::Engine,
    component: &Component,
    manifest: &Manifest,
) -> Result<(), Refusal> {
    for (name, _) in component.component_type().imports(engine) {
        let Some(rest) = name.strip_prefix("bourse:host/") else {
            continue;
        };
        let service = rest.split('@').next().unwrap_or(rest);
        let declared = manifest.host_services.iter().any(|s| s.as_str() == service);
        if !declared {
            return Err(Refusal::new(
                RefusalReason::InvalidManifest,
                format!(
                    "host-services: the module imports `{name}`, which the manifest does not declare"
                ),
            ));
        }
    }
    Ok(())
}

/// Where each export lives, looked up once per compiled module.
#[derive(Clone)]
pub(crate) enum ExportIndices {
    Hooks {
        request_filter: Option<request_filter::GuestIndices>,
        bid_filter: Option<bid_filter::GuestIndices>,
        floor_rule: Option<floor_rule::GuestIndices>,
    },
    Site(handler::GuestIndices),
}

/// A compiled, linked module ready to instantiate.
pub(crate) struct Compiled {
    pub(crate) manifest: Manifest,
    pub(crate) signer: String,
    pub(crate) module_sha256: String,
    pub(crate) pre: InstancePre<StoreState>,
    pub(crate) exports: ExportIndices,
}
