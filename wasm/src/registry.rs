//! The registry of installed plugins: install (verify → compile → warm → swap), drain and
//! standby, rollback, quarantine and its lifting, removal, and the status the admin shows.
//!
//! The request path only loads pointers: a map of plugins behind an `ArcSwap` (changed when a
//! plugin is added or removed) and, per plugin, its active version behind another (changed by a
//! swap). Everything slow happens in the caller of `install`, off the request path; one lock
//! serialises changes, another (held briefly) guards the table the status is read from.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;
use semver::Version;

use crate::manifest::{Hook, InterfaceKind};
use crate::metrics::{CallSummary, WasmMetrics};
use crate::plugin::{Generation, HookSet, SitePlugin};
use crate::runtime::Runtime;
use crate::signing::{Refusal, RefusalReason, TrustedKeys, verify};

/// Lifecycle states. A version moves discovered → verifying → compiling → warming → active →
/// draining → standby (kept for rollback) → retired; off that path it is rejected (refused at
/// install) or quarantined (failing repeatedly; not called until activated again).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PluginState {
    Discovered,
    Verifying,
    Compiling,
    Warming,
    Active,
    Draining,
    Retired,
    Rejected,
    Quarantined,
    Standby,
}

impl PluginState {
    pub const ALL: [PluginState; 10] = [
        PluginState::Discovered,
        PluginState::Verifying,
        PluginState::Compiling,
        PluginState::Warming,
        PluginState::Active,
        PluginState::Draining,
        PluginState::Retired,
        PluginState::Rejected,
        PluginState::Quarantined,
        PluginState::Standby,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PluginState::Discovered => "discovered",
            PluginState::Verifying => "verifying",
            PluginState::Compiling => "compiling",
            PluginState::Warming => "warming",
            PluginState::Active => "active",
            PluginState::Draining => "draining",
            PluginState::Retired => "retired",
            PluginState::Rejected => "rejected",
            PluginState::Quarantined => "quarantined",
            PluginState::Standby => "standby",
        }
    }
}

/// How to install.
#[derive(Clone, Debug, Default)]
pub struct InstallOptions {
    /// Install even when not newer than the installed version (an explicit downgrade).
    pub force: bool,
    /// Where the artifact came from (a file of the watched folder), shown in the status.
    pub source: Option<PathBuf>,
}

/// A successful install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    pub name: String,
    pub version: Version,
    /// The version it replaced, now on standby.
    pub replaced: Option<Version>,
}

/// A lifecycle change refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("no plugin named `{0}` is installed")]
    Unknown(String),
    #[error("plugin `{0}` has no standby version to roll back to")]
    NoStandby(String),
    #[error("plugin `{0}` could not be warmed: {1}")]
    Warmup(String, String),
}

/// One line of the lifecycle log.
#[derive(Clone, Debug)]
pub struct LifecycleEvent {
    pub at: SystemTime,
    /// The plugin's name, or the artifact's source when the name is not known yet.
    pub subject: String,
    pub version: Option<Version>,
    pub state: PluginState,
    pub detail: String,
}

/// What the admin shows of one plugin.
#[derive(Clone, Debug)]
pub struct PluginStatus {
    pub name: String,
    pub state: PluginState,
    pub version: Version,
    pub interface: String,
    pub signer: String,
    pub module_sha256: String,
    pub source: Option<PathBuf>,
    pub standby: Option<Version>,
    /// Why it is quarantined.
    pub reason: Option<String>,
    pub in_flight: usize,
    pub calls: CallSummary,
}

/// The plugin's entry on the request path.
struct Live {
    kind: InterfaceKind,
    active: ArcSwapOption<Generation>,
}

/// The control side of one plugin.
struct Slot {
    live: Arc<Live>,
    standby: Option<Arc<Generation>>,
    source: Option<PathBuf>,
}

const EVENTS_KEPT: usize = 256;

/// Largest artifact file read: the largest module plus room for the manifest and signature.
const MAX_ARTIFACT_BYTES: u64 = crate::artifact::MAX_MODULE_BYTES + 1024 * 1024;

/// Owns every installed plugin.
pub struct Registry {
    runtime: Runtime,
    trusted: ArcSwap<TrustedKeys>,
    metrics: WasmMetrics,
    live: ArcSwap<HashMap<Arc<str>, Arc<Live>>>,
    /// Held through a whole change (install, rollback, activate, remove): changes never
    /// interleave. Compiling and draining happen under it, never under `control`.
    changes: Mutex<()>,
    /// Held only briefly, so status and look-ups never wait for a compile or a drain.
    control: Mutex<BTreeMap<String, Slot>>,
    events: Mutex<VecDeque<LifecycleEvent>>,
}

impl Registry {
    pub fn new(runtime: Runtime, trusted: TrustedKeys, metrics: WasmMetrics) -> Registry {
        Registry {
            runtime,
            trusted: ArcSwap::from_pointee(trusted),
            metrics,
            live: ArcSwap::from_pointee(HashMap::new()),
            changes: Mutex::new(()),
            control: Mutex::new(BTreeMap::new()),
            events: Mutex::new(VecDeque::new()),
        }
    }

    /// Replaces the trusted keys (a configuration change); installed plugins stay.
    pub fn set_trusted_keys(&self, trusted: TrustedKeys) {
        self.trusted.store(Arc::new(trusted));
    }

    /// The hooks of plugin `name`'s active version, unless it is quarantined or not a hooks
    /// plugin.
    pub fn hooks(&self, name: &str) -> Option<HookSet> {
        let live = self.live.load();
        let entry = live.get(name)?;
        if entry.kind != InterfaceKind::ExchangeHooks {
            return None;
        }
        let generation = entry.active.load_full()?;
        (!generation.is_quarantined()).then(|| HookSet::new(generation))
    }

    /// Whether some exchange-hooks plugin is active and not quarantined: one load and a scan
    /// of the installed plugins, nothing allocated (the auction asks before each stage).
    pub fn has_hooks(&self) -> bool {
        self.live.load().values().any(|entry| {
            entry.kind == InterfaceKind::ExchangeHooks
                && entry
                    .active
                    .load()
                    .as_ref()
                    .is_some_and(|g| !g.is_quarantined())
        })
    }

    /// Every active, non-quarantined plugin advertising `hook`, by name.
    pub fn hooks_for(&self, hook: Hook) -> Vec<HookSet> {
        let live = self.live.load();
        let mut sets: Vec<HookSet> = live
            .values()
            .filter(|entry| entry.kind == InterfaceKind::ExchangeHooks)
            .filter_map(|entry| entry.active.load_full())
            .filter(|g| !g.is_quarantined() && g.manifest().hooks.contains(&hook))
            .map(HookSet::new)
            .collect();
        sets.sort_by(|a, b| a.name().cmp(b.name()));
        sets
    }

    /// Site plugin `name`'s active version, unless quarantined.
    pub fn site(&self, name: &str) -> Option<SitePlugin> {
        let live = self.live.load();
        let entry = live.get(name)?;
        if entry.kind != InterfaceKind::Site {
            return None;
        }
        let generation = entry.active.load_full()?;
        (!generation.is_quarantined()).then(|| SitePlugin::new(generation))
    }

    /// Installs an artifact read from `path`.
    pub fn install_file(&self, path: &Path, force: bool) -> Result<Installed, Refusal> {
        let refuse = |detail: String| {
            let refusal = Refusal::new(RefusalReason::Malformed, detail);
            self.refused(&path.display().to_string(), None, &refusal);
            refusal
        };
        // Never read more than an artifact can hold.
        let len = std::fs::metadata(path)
            .map_err(|e| refuse(format!("cannot read {}: {e}", path.display())))?
            .len();
        if len > MAX_ARTIFACT_BYTES {
            return Err(refuse(format!(
                "{} is {len} bytes, over the {MAX_ARTIFACT_BYTES} an artifact may have",
                path.display()
            )));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| refuse(format!("cannot read {}: {e}", path.display())))?;
        self.install(
            &bytes,
            InstallOptions {
                force,
                source: Some(path.to_owned()),
            },
        )
    }

    /// Verifies, compiles and warms an artifact, then makes it the plugin's active version.
    /// The version it replaces drains its in-flight calls and goes on standby; the standby
    /// before it is retired. Any refusal leaves the running version serving.
    pub fn install(&self, bytes: &[u8], options: InstallOptions) -> Result<Installed, Refusal> {
        let subject = options
            .source
            .as_ref()
            .map_or_else(|| "upload".to_owned(), |p| p.display().to_string());
        self.event(
            &subject,
            None,
            PluginState::Discovered,
            format!("{} bytes", bytes.len()),
        );
        self.event(&subject, None, PluginState::Verifying, String::new());
        let verified =
            verify(bytes, &self.trusted.load()).inspect_err(|r| self.refused(&subject, None, r))?;
        let name = verified.manifest.name.clone();
        let version = verified.manifest.version.clone();
        let _changing = self.changes.lock();
        let installed = self.control.lock().get(&name).map(|slot| {
            let version = slot
                .live
                .active
                .load()
                .as_ref()
                .map(|g| g.manifest().version.clone());
            (slot.live.kind, version)
        });
        if let Some((kind, installed)) = &installed {
            if let Some(installed) = installed
                && version <= *installed
                && !options.force
            {
                let refusal = Refusal::new(
                    RefusalReason::NotNewer,
                    format!(
                        "version {version} is not newer than the installed {installed}; force to downgrade"
                    ),
                );
                self.refused(&name, Some(&version), &refusal);
                return Err(refusal);
            }
            if *kind != verified.manifest.interface.kind {
                let refusal = Refusal::new(
                    RefusalReason::WrongInterface,
                    format!("`{name}` is installed as a {} plugin", kind.package()),
                );
                self.refused(&name, Some(&version), &refusal);
                return Err(refusal);
            }
        }
        self.event(&name, Some(&version), PluginState::Compiling, String::new());
        let compiled = self
            .runtime
            .compile(&verified)
            .inspect_err(|r| self.refused(&name, Some(&version), r))?;
        self.event(&name, Some(&version), PluginState::Warming, String::new());
        let plugin_metrics = self.metrics.plugin(&name);
        let generation = Arc::new(Generation::new(
            self.runtime.inner.clone(),
            compiled,
            plugin_metrics,
        ));
        let warmed = generation.warm().and_then(|()| generation.probe());
        if let Err(e) = warmed {
            let refusal = Refusal::new(RefusalReason::WarmupFailed, e.to_string());
            self.refused(&name, Some(&version), &refusal);
            if installed.is_none() {
                self.metrics.forget(&name);
            }
            return Err(refusal);
        }
        let replaced = {
            let mut control = self.control.lock();
            let slot = control.entry(name.clone()).or_insert_with(|| {
                let live = Arc::new(Live {
                    kind: verified.manifest.interface.kind,
                    active: ArcSwapOption::empty(),
                });
                let mut map = HashMap::clone(&self.live.load());
                map.insert(name.as_str().into(), live.clone());
                self.live.store(Arc::new(map));
                Slot {
                    live,
                    standby: None,
                    source: None,
                }
            });
            slot.source = options.source.or(slot.source.take());
            slot.live.active.swap(Some(generation.clone()))
        };
        generation.metrics.swaps.inc();
        generation.metrics.set_state(PluginState::Active);
        self.event(
            &name,
            Some(&version),
            PluginState::Active,
            format!("signed by {}", verified.signer),
        );
        let replaced_version = replaced.as_ref().map(|g| g.manifest().version.clone());
        if let Some(old) = replaced {
            self.to_standby(&name, old);
        }
        Ok(Installed {
            name,
            version,
            replaced: replaced_version,
        })
    }

    /// Drains a replaced version, frees its instances and keeps it as the standby, retiring
    /// the standby before it.
    fn to_standby(&self, name: &str, old: Arc<Generation>) {
        self.drain(name, &old);
        old.release_instances();
        self.event(
            name,
            Some(&old.manifest().version),
            PluginState::Standby,
            String::new(),
        );
        let retired = self
            .control
            .lock()
            .get_mut(name)
            .and_then(|slot| slot.standby.replace(old));
        if let Some(retired) = retired {
            self.event(
                name,
                Some(&retired.manifest().version),
                PluginState::Retired,
                String::new(),
            );
        }
    }

    /// Makes the standby version active again and puts the active one on standby.
    pub fn rollback(&self, name: &str) -> Result<Version, LifecycleError> {
        let _changing = self.changes.lock();
        let standby = {
            let mut control = self.control.lock();
            let slot = control
                .get_mut(name)
                .ok_or_else(|| LifecycleError::Unknown(name.to_owned()))?;
            slot.standby
                .take()
                .ok_or_else(|| LifecycleError::NoStandby(name.to_owned()))?
        };
        standby.lift_quarantine();
        if let Err(e) = standby.warm() {
            if let Some(slot) = self.control.lock().get_mut(name) {
                slot.standby = Some(standby);
            }
            return Err(LifecycleError::Warmup(name.to_owned(), e.to_string()));
        }
        let version = standby.manifest().version.clone();
        let previous = {
            let control = self.control.lock();
            let slot = control
                .get(name)
                .ok_or_else(|| LifecycleError::Unknown(name.to_owned()))?;
            slot.live.active.swap(Some(standby.clone()))
        };
        standby.metrics.swaps.inc();
        standby.metrics.set_state(PluginState::Active);
        self.event(
            name,
            Some(&version),
            PluginState::Active,
            "rolled back".into(),
        );
        if let Some(previous) = previous {
            self.to_standby(name, previous);
        }
        Ok(version)
    }

    /// Lifts a quarantine: the active version is called again, its failure count cleared.
    pub fn activate(&self, name: &str) -> Result<(), LifecycleError> {
        let _changing = self.changes.lock();
        let active = self
            .control
            .lock()
            .get(name)
            .and_then(|slot| slot.live.active.load_full())
            .ok_or_else(|| LifecycleError::Unknown(name.to_owned()))?;
        active.lift_quarantine();
        active
            .warm()
            .map_err(|e| LifecycleError::Warmup(name.to_owned(), e.to_string()))?;
        active.metrics.set_state(PluginState::Active);
        self.event(
            name,
            Some(&active.manifest().version),
            PluginState::Active,
            "activated".into(),
        );
        Ok(())
    }

    /// Removes a plugin: it stops being called at once, drains, and every version is dropped.
    pub fn remove(&self, name: &str) -> Result<(), LifecycleError> {
        let _changing = self.changes.lock();
        let slot = {
            let mut control = self.control.lock();
            let slot = control
                .remove(name)
                .ok_or_else(|| LifecycleError::Unknown(name.to_owned()))?;
            let mut map = HashMap::clone(&self.live.load());
            map.remove(name);
            self.live.store(Arc::new(map));
            slot
        };
        if let Some(active) = slot.live.active.swap(None) {
            self.drain(name, &active);
            self.event(
                name,
                Some(&active.manifest().version),
                PluginState::Retired,
                "removed".into(),
            );
        }
        if let Some(standby) = slot.standby {
            self.event(
                name,
                Some(&standby.manifest().version),
                PluginState::Retired,
                "removed".into(),
            );
        }
        self.metrics.forget(name);
        Ok(())
    }

    /// The plugin installed from `source`, if any (for the folder watcher's removals).
    pub fn name_of_source(&self, source: &Path) -> Option<String> {
        let control = self.control.lock();
        control
            .iter()
            .find(|(_, slot)| slot.source.as_deref() == Some(source))
            .map(|(name, _)| name.clone())
    }

    /// Every installed plugin, by name.
    pub fn status(&self) -> Vec<PluginStatus> {
        let control = self.control.lock();
        control
            .iter()
            .filter_map(|(name, slot)| {
                let active = slot.live.active.load_full()?;
                let quarantined = active.is_quarantined();
                let state = if quarantined {
                    PluginState::Quarantined
                } else {
                    PluginState::Active
                };
                Some(PluginStatus {
                    name: name.clone(),
                    state,
                    version: active.manifest().version.clone(),
                    interface: active.manifest().interface.to_string(),
                    signer: active.signer().to_owned(),
                    module_sha256: active.module_sha256().to_owned(),
                    source: slot.source.clone(),
                    standby: slot.standby.as_ref().map(|g| g.manifest().version.clone()),
                    reason: active.quarantine_reason(),
                    in_flight: active.in_flight(),
                    calls: active.metrics.summary(),
                })
            })
            .collect()
    }

    /// The latest lifecycle events, oldest first.
    pub fn events(&self) -> Vec<LifecycleEvent> {
        self.events.lock().iter().cloned().collect()
    }

    /// Waits until a replaced version has no call in flight, or the drain timeout passes (the
    /// version then lives on only as long as the calls still holding it).
    fn drain(&self, name: &str, generation: &Arc<Generation>) {
        let version = &generation.manifest().version;
        self.event(
            name,
            Some(version),
            PluginState::Draining,
            format!("{} in flight", generation.in_flight()),
        );
        let deadline = Instant::now() + self.runtime.config().drain_timeout;
        while generation.in_flight() > 0 {
            if Instant::now() >= deadline {
                tracing::warn!(plugin = name, %version, in_flight = generation.in_flight(), "drain timed out");
                return;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn refused(&self, subject: &str, version: Option<&Version>, refusal: &Refusal) {
        self.metrics.refused(refusal.reason);
        tracing::warn!(subject, reason = refusal.reason.as_str(), detail = %refusal.detail, "plugin refused");
        self.event(subject, version, PluginState::Rejected, refusal.to_string());
    }

    fn event(&self, subject: &str, version: Option<&Version>, state: PluginState, detail: String) {
        tracing::debug!(subject, state = state.as_str(), detail = %detail, "plugin lifecycle");
        let mut events = self.events.lock();
        if events.len() == EVENTS_KEPT {
            events.pop_front();
        }
        events.push_back(LifecycleEvent {
            at: SystemTime::now(),
            subject: subject.to_owned(),
            version: version.cloned(),
            state,
            detail,
        });
    }
}
