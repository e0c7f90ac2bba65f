//! One installed version of a plugin, live: its pool of ready instances, the limits every call
//! runs under, failure counting and quarantine, and the typed calls ([`HookSet`],
//! [`SitePlugin`]) the exchange and the route table make.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use parking_lot::Mutex;
use wasmtime::{Store, UpdateDeadline};

use crate::bindings::hooks::bourse::exchange_hooks::types::{
    BidDecision, BidView, FloorContext, RequestDecision, RequestView, Verdict,
};
use crate::bindings::hooks::exports::bourse::exchange_hooks::{
    bid_filter, floor_rule, request_filter,
};
use crate::bindings::site::bourse::site::http::{Request as SiteRequest, Response as SiteResponse};
use crate::bindings::site::exports::bourse::site::handler;
use crate::host::{CallClock, StoreState};
use crate::manifest::{Hook, Manifest};
use crate::metrics::PluginMetrics;
use crate::runtime::{Compiled, ExportIndices, RuntimeInner};

/// Time instantiation may take at least (start-up code runs then, off the request path).
const INSTANTIATE_TIME: Duration = Duration::from_millis(250);

/// Most enrichment pairs a request filter may return.
pub const MAX_ENRICHMENTS: usize = 32;

/// What a call was for; a fixed label of the call metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    RequestFilter,
    BidFilter,
    FloorRule,
    Site,
}

impl CallKind {
    pub const ALL: [CallKind; 4] = [
        CallKind::RequestFilter,
        CallKind::BidFilter,
        CallKind::FloorRule,
        CallKind::Site,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::RequestFilter => "request_filter",
            CallKind::BidFilter => "bid_filter",
            CallKind::FloorRule => "floor_rule",
            CallKind::Site => "site",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a call gave no usable answer. The caller skips the hook for this request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookErrorKind {
    /// Ran past its time per call (epoch deadline).
    Timeout,
    /// Used all its fuel.
    FuelExhausted,
    /// Tried to grow its memory past its cap.
    MemoryLimit,
    /// Trapped (a panic, an out-of-bounds access, `unreachable`).
    Trap,
    /// Returned an answer that breaks the interface's rules.
    BadOutput,
    /// No instance could be created.
    Instantiate,
    /// Quarantined: not called at all.
    Quarantined,
    /// The plugin does not advertise this hook.
    NotAdvertised,
}

impl HookErrorKind {
    /// The kinds counted as failures (and toward quarantine).
    pub const COUNTED: [HookErrorKind; 6] = [
        HookErrorKind::Timeout,
        HookErrorKind::FuelExhausted,
        HookErrorKind::MemoryLimit,
        HookErrorKind::Trap,
        HookErrorKind::BadOutput,
        HookErrorKind::Instantiate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HookErrorKind::Timeout => "timeout",
            HookErrorKind::FuelExhausted => "fuel_exhausted",
            HookErrorKind::MemoryLimit => "memory_limit",
            HookErrorKind::Trap => "trap",
            HookErrorKind::BadOutput => "bad_output",
            HookErrorKind::Instantiate => "instantiate",
            HookErrorKind::Quarantined => "quarantined",
            HookErrorKind::NotAdvertised => "not_advertised",
        }
    }
}

/// A call that gave no usable answer.
#[derive(Clone, Debug, thiserror::Error)]
#[error("plugin {plugin}: {}: {detail}", kind.as_str())]
pub struct HookError {
    pub plugin: Arc<str>,
    pub kind: HookErrorKind,
    pub detail: String,
}

/// Quarantine bookkeeping of one version: failures within the current window.
struct Health {
    quarantined: AtomicBool,
    window: Mutex<FailureWindow>,
}

struct FailureWindow {
    started: Instant,
    failures: u32,
    reason: Option<String>,
}

/// A ready instance: its store and the exports looked up in it.
struct Instance {
    store: Store<StoreState>,
    exports: Exports,
}

enum Exports {
    Hooks {
        request_filter: Option<request_filter::Guest>,
        bid_filter: Option<bid_filter::Guest>,
        floor_rule: Option<floor_rule::Guest>,
    },
    Site(handler::Guest),
}

/// One installed version of a plugin, live.
pub struct Generation {
    pub(crate) name: Arc<str>,
    pub(crate) compiled: Compiled,
    runtime: Arc<RuntimeInner>,
    pool: ArrayQueue<Instance>,
    in_flight: AtomicUsize,
    health: Health,
    pub(crate) metrics: PluginMetrics,
}

impl Generation {
    pub(crate) fn new(
        runtime: Arc<RuntimeInner>,
        compiled: Compiled,
        metrics: PluginMetrics,
    ) -> Generation {
        let pool_size = runtime.config.pool_size;
        Generation {
            name: compiled.manifest.name.as_str().into(),
            compiled,
            runtime,
            pool: ArrayQueue::new(pool_size),
            in_flight: AtomicUsize::new(0),
            health: Health {
                quarantined: AtomicBool::new(false),
                window: Mutex::new(FailureWindow {
                    started: Instant::now(),
                    failures: 0,
                    reason: None,
                }),
            },
            metrics,
        }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.compiled.manifest
    }

    /// The trusted name of the key that signed this version.
    pub fn signer(&self) -> &str {
        &self.compiled.signer
    }

    pub fn module_sha256(&self) -> &str {
        &self.compiled.module_sha256
    }

    /// Calls running in this version right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn is_quarantined(&self) -> bool {
        self.health.quarantined.load(Ordering::Acquire)
    }

    /// Why the version was quarantined.
    pub fn quarantine_reason(&self) -> Option<String> {
        self.is_quarantined()
            .then(|| self.health.window.lock().reason.clone())
            .flatten()
    }

    /// Fills the pool with ready instances.
    pub(crate) fn warm(&self) -> Result<(), HookError> {
        while self.pool.len() < self.pool.capacity() {
            let instance = self.instantiate()?;
            if self.pool.push(instance).is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Drops every pooled instance, freeing their memory (a standby version keeps only its
    /// compiled code).
    pub(crate) fn release_instances(&self) {
        while self.pool.pop().is_some() {}
    }

    /// Lifts a quarantine and forgets past failures.
    pub(crate) fn lift_quarantine(&self) {
        let mut window = self.health.window.lock();
        window.failures = 0;
        window.started = Instant::now();
        window.reason = None;
        self.health.quarantined.store(false, Ordering::Release);
    }

    fn instantiate(&self) -> Result<Instance, HookError> {
        self.metrics.instances.inc();
        let limits = self.compiled.manifest.limits;
        let state = StoreState::new(
            self.name.clone(),
            self.runtime.host.clone(),
            usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
        );
        // Instantiation runs guest code (its start and initialisers) under the epoch too.
        let _in_guest = self.runtime.epoch.enter();
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|state| &mut state.limiter);
        // Past the epoch deadline, look at the call's CPU time each tick: preemption does not
        // count against a plugin.
        store.epoch_deadline_callback(|store| {
            Ok(if store.data().clock.expired() {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Continue(1)
            })
        });
        let call_time = Duration::from_millis(u64::from(limits.time_per_call_ms));
        self.arm(&mut store, call_time.max(INSTANTIATE_TIME));
        let failed = |e: wasmtime::Error, store: &Store<StoreState>| {
            let kind = classify(&e, store);
            let kind = if kind == HookErrorKind::Trap {
                HookErrorKind::Instantiate
            } else {
                kind
            };
            self.error(kind, format!("cannot instantiate: {e:#}"))
        };
        let instance = match self.compiled.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => return Err(failed(e, &store)),
        };
        let exports = match &self.compiled.exports {
            ExportIndices::Hooks {
                request_filter,
                bid_filter,
                floor_rule,
            } => {
                let loaded = (|| {
                    Ok::<_, wasmtime::Error>(Exports::Hooks {
                        request_filter: request_filter
                            .as_ref()
                            .map(|i| i.load(&mut store, &instance))
                            .transpose()?,
                        bid_filter: bid_filter
                            .as_ref()
                            .map(|i| i.load(&mut store, &instance))
                            .transpose()?,
                        floor_rule: floor_rule
                            .as_ref()
                            .map(|i| i.load(&mut store, &instance))
                            .transpose()?,
                    })
                })();
                loaded.map_err(|e| failed(e, &store))?
            }
            ExportIndices::Site(indices) => Exports::Site(
                indices
                    .load(&mut store, &instance)
                    .map_err(|e| failed(e, &store))?,
            ),
        };
        Ok(Instance { store, exports })
    }

    /// Sets the fuel, the time budget and the first epoch deadline of one call and clears the
    /// per-call flags.
    fn arm(&self, store: &mut Store<StoreState>, time: Duration) {
        // `set_fuel` fails only when fuel is off; the engine always has it on.
        let _ = store.set_fuel(self.compiled.manifest.limits.fuel_per_call);
        let tick = self.runtime.config.epoch_tick.as_micros().max(1);
        let ticks = time.as_micros().div_ceil(tick);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX).max(1));
        let state = store.data_mut();
        state.clock = CallClock::start(time);
        state.limiter.refused_growth = false;
        state.log_lines = 0;
    }

    fn error(&self, kind: HookErrorKind, detail: String) -> HookError {
        HookError {
            plugin: self.name.clone(),
            kind,
            detail,
        }
    }

    /// Runs one call on a pooled instance under the plugin's limits. A failed instance is
    /// dropped (its state may be broken) and the failure counted.
    fn call<R: Send>(
        &self,
        kind: CallKind,
        f: impl Fn(&mut Store<StoreState>, &Exports) -> Option<wasmtime::Result<R>> + Sync,
    ) -> Result<R, HookError> {
        if self.is_quarantined() {
            return Err(self.error(
                HookErrorKind::Quarantined,
                self.quarantine_reason().unwrap_or_default(),
            ));
        }
        let started = Instant::now();
        let _in_guest = self.runtime.epoch.enter();
        let mut instance = match self.pool.pop() {
            Some(instance) => instance,
            None => self.instantiate().inspect_err(|e| self.failed(e))?,
        };
        let call_time =
            Duration::from_millis(u64::from(self.compiled.manifest.limits.time_per_call_ms));
        self.arm(&mut instance.store, call_time);
        let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f(&mut instance.store, &instance.exports)
        }));
        let result = match first {
            Ok(result) => result,
            // The guest used a WASI call (writing to its discarded stderr, as a panicking guest
            // does) that wasmtime-wasi's synchronous bindings serve with a tokio `block_on`,
            // which panics on an async worker thread. Rare, so the fast path stays a plain
            // call: only then is the call made again, on a fresh instance, on a thread of its
            // own (outside any runtime) where that works.
            Err(panic) if tokio::runtime::Handle::try_current().is_ok() => {
                drop(panic);
                drop(instance);
                instance = self.instantiate().inspect_err(|e| self.failed(e))?;
                let retried = std::thread::scope(|scope| {
                    scope
                        .spawn(|| {
                            self.arm(&mut instance.store, call_time);
                            f(&mut instance.store, &instance.exports)
                        })
                        .join()
                });
                match retried {
                    Ok(result) => result,
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if result.is_some() {
            let metrics = &self.metrics.calls[kind.index()];
            metrics.calls.inc();
            metrics.duration.observe(started.elapsed().as_secs_f64());
        }
        match result {
            // The export was not loaded: the manifest does not advertise this hook.
            None => {
                let _ = self.pool.push(instance);
                Err(self.error(
                    HookErrorKind::NotAdvertised,
                    format!("does not advertise `{}`", kind.as_str()),
                ))
            }
            Some(Ok(value)) => {
                let _ = self.pool.push(instance);
                Ok(value)
            }
            Some(Err(e)) => {
                let error = self.error(classify(&e, &instance.store), format!("{e:#}"));
                drop(instance);
                self.failed(&error);
                Err(error)
            }
        }
    }

    /// Counts a failure; quarantines the version when the window holds too many.
    fn failed(&self, error: &HookError) {
        self.metrics.error(error.kind);
        let config = &self.runtime.config;
        let mut window = self.health.window.lock();
        if window.started.elapsed() > config.failure_window {
            window.started = Instant::now();
            window.failures = 0;
        }
        window.failures += 1;
        tracing::warn!(plugin = %self.name, kind = error.kind.as_str(), detail = %error.detail, "plugin call failed");
        if window.failures >= config.quarantine_after && !self.is_quarantined() {
            let reason = format!(
                "{} failures within {:?}, the last: {}: {}",
                window.failures,
                config.failure_window,
                error.kind.as_str(),
                error.detail
            );
            tracing::error!(plugin = %self.name, reason = %reason, "plugin quarantined");
            window.reason = Some(reason);
            self.health.quarantined.store(true, Ordering::Release);
            self.metrics.quarantines.inc();
            self.metrics
                .set_state(crate::registry::PluginState::Quarantined);
        }
    }

    /// A bad answer: counted like a trap, the instance kept (its state is sound).
    fn bad_output(&self, detail: String) -> HookError {
        let error = self.error(HookErrorKind::BadOutput, detail);
        self.failed(&error);
        error
    }

    /// Probe calls of every advertised hook with a small synthetic request, so that a version
    /// that fails at once never becomes active.
    pub(crate) fn probe(self: &Arc<Self>) -> Result<(), HookError> {
        let hooks = HookSet::new(self.clone());
        let request = RequestView {
            id: "warm-up".into(),
            site_domain: Some("example.com".into()),
            app_domain: None,
            publisher_id: Some("warm-up".into()),
            country: Some("USA".into()),
            device_type: Some(2),
            user_id_present: false,
            imps: Vec::new(),
        };
        for hook in &self.compiled.manifest.hooks {
            match hook {
                Hook::RequestFilter => hooks.filter_request(&request).map(drop)?,
                Hook::BidFilter => hooks.filter_bids(&request, &[]).map(drop)?,
                Hook::FloorRule => hooks
                    .floor(&FloorContext {
                        placement_id: "warm-up".into(),
                        publisher_id: "warm-up".into(),
                        country: Some("USA".into()),
                        hour: 12,
                        device_type: Some(2),
                        current_floor: 0.1,
                    })
                    .map(drop)?,
            }
        }
        Ok(())
    }
}

/// Names the failure behind a wasmtime error: the time limit, fuel, the memory cap (a refused
/// growth followed by the guest's abort) or a plain trap.
fn classify(error: &wasmtime::Error, store: &Store<StoreState>) -> HookErrorKind {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => HookErrorKind::Timeout,
        Some(wasmtime::Trap::OutOfFuel) => HookErrorKind::FuelExhausted,
        _ if store.data().limiter.refused_growth => HookErrorKind::MemoryLimit,
        _ => HookErrorKind::Trap,
    }
}

/// Holds a version busy while a call runs, so that a swap can wait for it to drain.
struct InFlight(Arc<Generation>);

impl InFlight {
    fn new(generation: Arc<Generation>) -> Self {
        generation.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(generation)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The exchange hooks of one plugin version. Holding it keeps that version alive and counted
/// as in flight: take one per request, not for longer.
pub struct HookSet {
    token: InFlight,
}

impl HookSet {
    pub(crate) fn new(generation: Arc<Generation>) -> Self {
        HookSet {
            token: InFlight::new(generation),
        }
    }

    fn generation(&self) -> &Generation {
        &self.token.0
    }

    pub fn name(&self) -> &str {
        &self.generation().name
    }

    pub fn version(&self) -> &semver::Version {
        &self.generation().compiled.manifest.version
    }

    /// Whether the plugin advertises `hook`.
    pub fn advertises(&self, hook: Hook) -> bool {
        self.generation().compiled.manifest.hooks.contains(&hook)
    }

    /// Keep or drop a request, with enrichment pairs.
    pub fn filter_request(&self, request: &RequestView) -> Result<RequestDecision, HookError> {
        let generation = self.generation();
        let decision =
            generation.call(CallKind::RequestFilter, |store, exports| match exports {
                Exports::Hooks {
                    request_filter: Some(guest),
                    ..
                } => Some(guest.call_filter_request(store, request)),
                _ => None,
            })?;
        if decision.enrich.len() > MAX_ENRICHMENTS {
            return Err(generation.bad_output(format!(
                "{} enrichment pairs, at most {MAX_ENRICHMENTS}",
                decision.enrich.len()
            )));
        }
        if let Some(pair) = decision
            .enrich
            .iter()
            .find(|p| p.key.is_empty() || p.key.len() > 64)
        {
            return Err(generation.bad_output(format!(
                "enrichment key `{}` must be 1-64 bytes",
                pair.key.escape_default()
            )));
        }
        Ok(decision)
    }

    /// One decision per bid, in order.
    pub fn filter_bids(
        &self,
        request: &RequestView,
        bids: &[BidView],
    ) -> Result<Vec<BidDecision>, HookError> {
        let generation = self.generation();
        let decisions = generation.call(CallKind::BidFilter, |store, exports| match exports {
            Exports::Hooks {
                bid_filter: Some(guest),
                ..
            } => Some(guest.call_filter_bids(store, request, bids)),
            _ => None,
        })?;
        if decisions.len() != bids.len() {
            return Err(generation.bad_output(format!(
                "{} decisions for {} bids",
                decisions.len(),
                bids.len()
            )));
        }
        if let Some(price) = decisions.iter().find_map(|d| match d {
            BidDecision::Adjust(p) if !p.is_finite() || *p < 0.0 => Some(*p),
            _ => None,
        }) {
            return Err(generation.bad_output(format!("adjusted price {price} is not a price")));
        }
        Ok(decisions)
    }

    /// The impression's floor.
    pub fn floor(&self, context: &FloorContext) -> Result<f64, HookError> {
        let generation = self.generation();
        let floor = generation.call(CallKind::FloorRule, |store, exports| match exports {
            Exports::Hooks {
                floor_rule: Some(guest),
                ..
            } => Some(guest.call_floor(store, context)),
            _ => None,
        })?;
        if !floor.is_finite() || floor < 0.0 {
            return Err(generation.bad_output(format!("floor {floor} is not a price")));
        }
        Ok(floor)
    }
}

impl Verdict {
    pub fn is_keep(&self) -> bool {
        matches!(self, Verdict::Keep)
    }
}

/// A site plugin version. Like [`HookSet`], hold it for one request.
pub struct SitePlugin {
    token: InFlight,
}

impl SitePlugin {
    pub(crate) fn new(generation: Arc<Generation>) -> Self {
        SitePlugin {
            token: InFlight::new(generation),
        }
    }

    pub fn name(&self) -> &str {
        &self.token.0.name
    }

    pub fn version(&self) -> &semver::Version {
        &self.token.0.compiled.manifest.version
    }

    /// Answers one request on this thread. The answer is checked: a status outside 100-599 or
    /// a header HTTP cannot carry is a bad output.
    pub fn handle(&self, request: &SiteRequest) -> Result<http::Response<Vec<u8>>, HookError> {
        let generation = &self.token.0;
        let response = generation.call(CallKind::Site, |store, exports| match exports {
            Exports::Site(guest) => Some(guest.call_handle(store, request)),
            Exports::Hooks { .. } => None,
        })?;
        to_http(response).map_err(|detail| generation.bad_output(detail))
    }

    /// [`handle`](Self::handle) on a blocking thread, so that host services may block and a
    /// slow plugin never holds an async worker.
    pub async fn handle_blocking(
        self,
        request: SiteRequest,
    ) -> Result<http::Response<Vec<u8>>, HookError> {
        let name = self.token.0.name.clone();
        tokio::task::spawn_blocking(move || self.handle(&request))
            .await
            .unwrap_or_else(|e| {
                Err(HookError {
                    plugin: name,
                    kind: HookErrorKind::Trap,
                    detail: e.to_string(),
                })
            })
    }
}

fn to_http(response: SiteResponse) -> Result<http::Response<Vec<u8>>, String> {
    let status = http::StatusCode::from_u16(response.status)
        .ok()
        .filter(|s| (100..600).contains(&s.as_u16()))
        .ok_or_else(|| format!("status {} is not an HTTP status", response.status))?;
    let mut builder = http::Response::builder().status(status);
    for header in &response.headers {
        let name = http::HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| format!("`{}` is not a header name", header.name.escape_default()))?;
        let value = http::HeaderValue::from_str(&header.value)
            .map_err(|_| format!("header `{name}` has a value HTTP cannot carry"))?;
        builder = builder.header(name, value);
    }
    builder.body(response.body).map_err(|e| e.to_string())
}

/// Builds a site request from an HTTP request's parts and its (already bounded) body. Headers
/// whose value is not UTF-8 are left out.
pub fn site_request(parts: &http::request::Parts, body: Vec<u8>) -> SiteRequest {
    use crate::bindings::site::bourse::site::http::Header;
    SiteRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some(Header {
                    name: name.as_str().to_owned(),
                    value: value.to_str().ok()?.to_owned(),
                })
            })
            .collect(),
        body,
    }
}
