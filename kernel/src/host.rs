//! The plugin host: the running instances, and the one path by which a config becomes them.
//! Starting the process, applying a new config and stopping are all a *transition* from the
//! instances that run to the ones a config asks for: instances whose table is unchanged keep
//! serving; changed ones start a new generation on their state; new ones build their state and
//! start; removed ones drain and stop. Every new generation is started before anything is
//! swapped; if one fails, all of them are dropped and nothing changes.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::PluginConfig;
use crate::plugin::{AnyConfig, AnyState, ErasedPlugin, PluginCtx, PluginError};
use crate::routes::{Generation, Inflight, MountPoint, Route, RouteTable, StatusCounters};
use crate::serve::Shared;
use crate::{ConfigCenter, Handler, Mount};

/// One running plugin instance: `[plugins.<name>]`.
pub(crate) struct Instance {
    pub(crate) name: Arc<str>,
    pub(crate) kind: Arc<dyn ErasedPlugin>,
    /// The table as written (kernel keys included): an apply restarts the instance only when
    /// it changed.
    pub(crate) raw: toml::Table,
    pub(crate) mount: Mount,
    state: AnyState,
    pub(crate) generation: Arc<Generation>,
    /// Handed to every generation as `PluginCtx::lifetime`.
    lifetime: CancellationToken,
}

/// What `Running::apply` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Instances whose table changed and now serve from a new generation.
    pub restarted: Vec<String>,
    /// Instances whose table did not change; their generation keeps serving.
    pub unchanged: Vec<String>,
    /// Instances that were not running and now are.
    pub added: Vec<String>,
    /// Instances that no longer run (draining, then stopped).
    pub removed: Vec<String>,
}

/// One instance a transition brings up.
struct Pending {
    config: PluginConfig,
    /// Where it comes from: an existing instance (index) or a new one.
    existing: Option<usize>,
    /// A new instance's fresh state and lifetime.
    fresh: Option<(AnyState, CancellationToken)>,
    generation: Arc<Generation>,
}

/// Plugin lifecycle operations shared by start, apply and shutdown.
pub(crate) struct Host {
    /// The registered plugin kinds and extensions.
    pub(crate) registered: crate::config::Registered,
    /// The running extensions.
    pub(crate) extensions: crate::Extensions,
    pub(crate) center: ConfigCenter,
    pub(crate) shared: Arc<Shared>,
    pub(crate) services: bourse_services::Services,
    /// Parent of every generation's and instance's tokens.
    pub(crate) root: CancellationToken,
    /// Background drains of retired generations and stops of removed instances.
    pub(crate) retiring: TaskTracker,
}

impl Host {
    /// The running state of extension number `index` (in registration order).
    pub(crate) fn extension_state(&self, index: usize) -> Arc<dyn std::any::Any + Send + Sync> {
        let id = self.registered.extensions[index].type_id();
        self.extensions
            .state(id)
            .expect("every registered extension runs")
    }

    /// Stops every extension, last registered first, by `deadline`.
    pub(crate) async fn stop_extensions(&self, deadline: Instant) {
        for (index, extension) in self.registered.extensions.iter().enumerate().rev() {
            let shared = self.extension_state(index);
            if tokio::time::timeout_at(deadline, extension.stop(&shared, deadline))
                .await
                .is_err()
            {
                tracing::warn!(extension = extension.name(), "stop cut off at the deadline");
            }
        }
    }

    /// Brings `current` to what `wanted` asks for. On success the new instances are installed
    /// (routes swapped, generations activated) and what they replace is retiring; on failure
    /// nothing changed and every problem is returned.
    pub(crate) async fn transition(
        &self,
        current: &mut Vec<Instance>,
        wanted: Vec<PluginConfig>,
        config_dir: PathBuf,
        drain_deadline: Duration,
    ) -> Result<ApplyReport, Vec<String>> {
        let mut report = ApplyReport::default();
        let mut keep = vec![false; current.len()];
        let mut to_start = Vec::new();
        for config in wanted {
            let existing = current.iter().position(|i| *i.name == *config.name);
            match existing {
                Some(index) if same_kind(&current[index], &config) => {
                    keep[index] = true;
                    if current[index].raw == config.raw {
                        report.unchanged.push(config.name.to_string());
                    } else {
                        to_start.push((config, Some(index)));
                    }
                }
                // A new instance, or one whose kind changed: the old one (if any) goes.
                _ => to_start.push((config, None)),
            }
        }

        let started =
            futures_util::future::join_all(to_start.into_iter().map(|(mut config, existing)| {
                let config_dir = config_dir.clone();
                let instance = existing.map(|index| &current[index]);
                let typed = config.typed.take();
                async move {
                    let outcome = match typed {
                        Some(typed) => self.bring_up(&config, typed, instance, config_dir).await,
                        None => Err(PluginError(
                            "this config was already applied once; load it again".to_owned(),
                        )),
                    };
                    (config, existing, outcome)
                }
            }))
            .await;

        let mut pending = Vec::new();
        let mut failures = Vec::new();
        for (config, existing, outcome) in started {
            match outcome {
                Ok((generation, fresh)) => pending.push(Pending {
                    config,
                    existing,
                    fresh,
                    generation,
                }),
                Err(error) => {
                    failures.push(format!("plugin {} failed to start: {error}", config.name))
                }
            }
        }
        if !failures.is_empty() {
            for pending in pending {
                self.retire(pending.generation, drain_deadline);
                if let Some((state, lifetime)) = pending.fresh {
                    let config = pending.config;
                    self.stop_instance(config.name, config.kind, state, lifetime);
                }
            }
            return Err(failures);
        }

        // Commit: nothing below can fail.
        let mut old_generations = Vec::new();
        let mut next: Vec<Option<Instance>> =
            std::mem::take(current).into_iter().map(Some).collect();
        let mut removed = Vec::new();
        for (index, kept) in keep.iter().enumerate() {
            if !kept {
                removed.push(index);
            }
        }
        let mut added = Vec::new();
        for pending in pending {
            let PluginConfig {
                name,
                kind,
                raw,
                mount,
                ..
            } = pending.config;
            match (pending.existing, pending.fresh) {
                (Some(index), _) => {
                    let instance = next[index].as_mut().expect("kept instances are present");
                    report.restarted.push(name.to_string());
                    instance.raw = raw;
                    instance.mount = mount;
                    old_generations.push(std::mem::replace(
                        &mut instance.generation,
                        pending.generation,
                    ));
                }
                (None, Some((state, lifetime))) => {
                    report.added.push(name.to_string());
                    added.push(Instance {
                        name,
                        kind,
                        raw,
                        mount,
                        state,
                        generation: pending.generation,
                        lifetime,
                    });
                }
                (None, None) => unreachable!("a new instance always has fresh state"),
            }
        }
        let mut leaving = Vec::new();
        for index in removed {
            if let Some(instance) = next[index].take() {
                report.removed.push(instance.name.to_string());
                leaving.push(instance);
            }
        }
        *current = next.into_iter().flatten().chain(added).collect();
        current.sort_by(|a, b| a.name.cmp(&b.name));
        self.install(current);
        for generation in old_generations {
            self.retire(generation, drain_deadline);
        }
        for instance in leaving {
            self.remove(instance, Instant::now() + drain_deadline);
        }
        report.restarted.sort();
        report.unchanged.sort();
        report.added.sort();
        report.removed.sort();
        Ok(report)
    }

    /// Starts the next generation of `instance` (on its state), or a new instance (new state,
    /// generation 1).
    async fn bring_up(
        &self,
        config: &PluginConfig,
        typed: AnyConfig,
        instance: Option<&Instance>,
        config_dir: PathBuf,
    ) -> Result<(Arc<Generation>, Option<(AnyState, CancellationToken)>), PluginError> {
        match instance {
            Some(instance) => {
                let generation = self
                    .start_generation(
                        &instance.kind,
                        &instance.name,
                        instance.generation.number + 1,
                        instance.state.clone(),
                        &instance.lifetime,
                        typed,
                        config_dir,
                    )
                    .await?;
                Ok((generation, None))
            }
            None => {
                let lifetime = self.root.child_token();
                let ctx = self.ctx(&config.kind, &config.name, 0, config_dir.clone(), &lifetime);
                let init = AssertUnwindSafe(config.kind.init(&ctx, &typed))
                    .catch_unwind()
                    .await;
                let state = match init {
                    Ok(Ok(state)) => state,
                    Ok(Err(error)) => {
                        lifetime.cancel();
                        return Err(error);
                    }
                    Err(_) => {
                        lifetime.cancel();
                        return Err(PluginError("init panicked".to_owned()));
                    }
                };
                let generation = self
                    .start_generation(
                        &config.kind,
                        &config.name,
                        1,
                        state.clone(),
                        &lifetime,
                        typed,
                        config_dir,
                    )
                    .await;
                match generation {
                    Ok(generation) => Ok((generation, Some((state, lifetime)))),
                    Err(error) => {
                        self.stop_instance(
                            config.name.clone(),
                            config.kind.clone(),
                            state,
                            lifetime,
                        );
                        Err(error)
                    }
                }
            }
        }
    }

    fn ctx(
        &self,
        kind: &Arc<dyn ErasedPlugin>,
        name: &Arc<str>,
        generation: u64,
        config_dir: PathBuf,
        lifetime: &CancellationToken,
    ) -> PluginCtx {
        PluginCtx {
            name: name.clone(),
            kind: Arc::from(kind.manifest().kind.as_str()),
            generation,
            metrics: self.shared.metrics.clone(),
            config_dir,
            shutdown: lifetime.child_token(),
            lifetime: lifetime.clone(),
            config_center: self.center.clone(),
            plugins: self.shared.directory.clone(),
            services: self.services.clone(),
            extensions: self.extensions.clone(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_generation(
        &self,
        kind: &Arc<dyn ErasedPlugin>,
        name: &Arc<str>,
        number: u64,
        state: AnyState,
        lifetime: &CancellationToken,
        typed: AnyConfig,
        config_dir: PathBuf,
    ) -> Result<Arc<Generation>, PluginError> {
        let metrics = &self.shared.kernel;
        let starting = metrics.state.with_label_values(&[name, "starting"]);
        starting.inc();
        let ctx = self.ctx(kind, name, number, config_dir, lifetime);
        let shutdown = ctx.shutdown.clone();
        tracing::info!(
            plugin = &**name,
            generation = number,
            "starting plugin generation"
        );
        let result = AssertUnwindSafe(kind.start(ctx, state, typed))
            .catch_unwind()
            .await;
        starting.dec();
        let handler = match result {
            Ok(Ok(handler)) => handler,
            Ok(Err(error)) => {
                shutdown.cancel();
                return Err(error);
            }
            Err(_) => {
                shutdown.cancel();
                return Err(PluginError("start panicked".to_owned()));
            }
        };
        Ok(Arc::new(Generation {
            plugin: name.clone(),
            number,
            handler,
            inflight: Inflight::default(),
            shutdown,
            activated: AtomicBool::new(false),
        }))
    }

    /// Builds a route table for these instances and swaps it in, then activates their
    /// generations and publishes them in the directory.
    pub(crate) fn install(&self, current: &[Instance]) {
        let metrics = &self.shared.kernel;
        let mut routes = Vec::new();
        for instance in current {
            for point in instance.mount.points() {
                let counters = StatusCounters::new(&metrics.requests, &point.label());
                routes.push(Route::new(point, instance.generation.clone(), counters));
            }
        }
        self.shared.routes.store(Arc::new(RouteTable::new(routes)));
        self.shared.directory.publish(current);
        for instance in current {
            self.activate(&instance.generation);
        }
    }

    fn activate(&self, generation: &Arc<Generation>) {
        let metrics = &self.shared.kernel;
        if generation.activated.swap(true, Ordering::AcqRel) {
            return;
        }
        if std::panic::catch_unwind(AssertUnwindSafe(|| generation.handler.activate())).is_err() {
            tracing::error!(
                plugin = &*generation.plugin,
                generation = generation.number,
                "activate panicked"
            );
        }
        metrics
            .state
            .with_label_values(&[&generation.plugin, "active"])
            .inc();
        metrics
            .generation
            .with_label_values(&[&generation.plugin])
            .set(generation.number as i64);
        tracing::info!(
            plugin = &*generation.plugin,
            generation = generation.number,
            "plugin generation active"
        );
    }

    /// Drains a generation in the background, all within `within` from now: waits for its
    /// in-flight requests, calls `Handler::drain` with what is left, then cancels its shutdown
    /// token.
    pub(crate) fn retire(&self, generation: Arc<Generation>, within: Duration) {
        self.retiring
            .spawn(self.retirement(generation, Instant::now() + within));
    }

    fn retirement(
        &self,
        generation: Arc<Generation>,
        deadline: Instant,
    ) -> impl Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        let metrics = &shared.kernel;
        if generation.activated.swap(false, Ordering::AcqRel) {
            metrics
                .state
                .with_label_values(&[&generation.plugin, "active"])
                .dec();
        }
        let draining = metrics
            .state
            .with_label_values(&[&generation.plugin, "draining"]);
        draining.inc();
        shared.draining.lock().push(generation.clone());
        async move {
            let (plugin, number) = (generation.plugin.clone(), generation.number);
            tracing::info!(
                plugin = &*plugin,
                generation = number,
                inflight = generation.inflight.current(),
                "draining plugin generation"
            );
            if !generation.inflight.wait_idle_until(deadline).await {
                tracing::warn!(
                    plugin = &*plugin,
                    generation = number,
                    inflight = generation.inflight.current(),
                    "drain deadline passed with requests still in flight"
                );
            }
            let drained = tokio::time::timeout_at(
                deadline,
                AssertUnwindSafe(generation.handler.drain(deadline)).catch_unwind(),
            )
            .await;
            match drained {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    tracing::error!(plugin = &*plugin, generation = number, "drain panicked")
                }
                Err(_) => tracing::warn!(
                    plugin = &*plugin,
                    generation = number,
                    "drain did not finish by its deadline and was cut off"
                ),
            }
            generation.shutdown.cancel();
            shared
                .draining
                .lock()
                .retain(|g| !Arc::ptr_eq(g, &generation));
            draining.dec();
            tracing::info!(
                plugin = &*plugin,
                generation = number,
                "plugin generation retired"
            );
        }
    }

    /// Drains an instance's last generation, then stops its state and cancels its lifetime,
    /// all by `deadline`.
    pub(crate) fn remove(&self, instance: Instance, deadline: Instant) {
        let retirement = self.retirement(instance.generation, deadline);
        let name = instance.name;
        let (kind, state, lifetime) = (instance.kind, instance.state, instance.lifetime);
        self.retiring.spawn(async move {
            retirement.await;
            stop_state(&name, kind, state, lifetime, deadline).await;
        });
    }

    fn stop_instance(
        &self,
        name: Arc<str>,
        kind: Arc<dyn ErasedPlugin>,
        state: AnyState,
        lifetime: CancellationToken,
    ) {
        let deadline = Instant::now() + STOP_AFTER_FAILED_START;
        self.retiring
            .spawn(async move { stop_state(&name, kind, state, lifetime, deadline).await });
    }
}

/// How long the state of an instance that failed to start gets to stop.
const STOP_AFTER_FAILED_START: Duration = Duration::from_secs(5);

async fn stop_state(
    name: &str,
    kind: Arc<dyn ErasedPlugin>,
    state: AnyState,
    lifetime: CancellationToken,
    deadline: Instant,
) {
    let stopped = tokio::time::timeout_at(
        deadline,
        AssertUnwindSafe(kind.stop(state, deadline)).catch_unwind(),
    )
    .await;
    match stopped {
        Ok(Ok(())) => {}
        Ok(Err(_)) => tracing::error!(plugin = name, "stop panicked"),
        Err(_) => tracing::warn!(
            plugin = name,
            "stop did not finish by its deadline and was cut off"
        ),
    }
    lifetime.cancel();
    tracing::info!(plugin = name, "plugin instance stopped");
}

fn same_kind(instance: &Instance, config: &PluginConfig) -> bool {
    Arc::ptr_eq(&instance.kind, &config.kind)
}

/// Every running plugin instance, as plugins that present the others (the admin) see them.
#[derive(Clone, Default)]
pub struct PluginDirectory {
    entries: Arc<ArcSwap<Vec<PluginEntry>>>,
}

impl std::fmt::Debug for PluginDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.load().iter().map(|e| &e.name))
            .finish()
    }
}

impl PluginDirectory {
    /// The instances running now, by name.
    pub fn list(&self) -> Vec<PluginEntry> {
        self.entries.load().as_ref().clone()
    }

    /// The instance named `name`, if it runs.
    pub fn get(&self, name: &str) -> Option<PluginEntry> {
        self.entries
            .load()
            .iter()
            .find(|e| &*e.name == name)
            .cloned()
    }

    fn publish(&self, current: &[Instance]) {
        let entries = current
            .iter()
            .map(|instance| {
                let manifest = instance.kind.manifest();
                PluginEntry {
                    name: instance.name.clone(),
                    kind: manifest.kind.clone(),
                    version: manifest.version.clone(),
                    description: manifest.description.clone(),
                    mounts: instance
                        .mount
                        .points()
                        .iter()
                        .map(MountPoint::label)
                        .collect(),
                    generation: instance.generation.clone(),
                }
            })
            .collect();
        self.entries.store(Arc::new(entries));
    }
}

/// One running instance in the [`PluginDirectory`].
#[derive(Clone)]
pub struct PluginEntry {
    pub name: Arc<str>,
    pub kind: String,
    pub version: String,
    pub description: String,
    /// Where it answers, as `host/prefix` or `prefix`.
    pub mounts: Vec<String>,
    generation: Arc<Generation>,
}

impl std::fmt::Debug for PluginEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEntry")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("generation", &self.generation.number)
            .finish_non_exhaustive()
    }
}

impl PluginEntry {
    /// The serving generation's number.
    pub fn generation(&self) -> u64 {
        self.generation.number
    }

    /// Requests in flight on the serving generation.
    pub fn inflight(&self) -> usize {
        self.generation.inflight.current()
    }

    /// The serving generation's handler (for its admin section).
    pub fn handler(&self) -> &Arc<dyn Handler> {
        &self.generation.handler
    }

    pub(crate) fn serving_generation(&self) -> &Arc<Generation> {
        &self.generation
    }
}

/// Generations per instance name, for the in-flight gauge.
pub(crate) fn inflight_totals<'a>(
    generations: impl Iterator<Item = &'a Arc<Generation>>,
) -> HashMap<Arc<str>, i64> {
    let mut totals: HashMap<Arc<str>, i64> = HashMap::new();
    for generation in generations {
        *totals.entry(generation.plugin.clone()).or_default() +=
            generation.inflight.current() as i64;
    }
    totals
}
