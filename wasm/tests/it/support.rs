//! Shared helpers: the real plugin modules (built by `plugins/build.sh` on first use), a test
//! signing key, signed artifacts and a registry trusting that key.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use bourse_wasm::{
    FloorContext, Registry, Runtime, RuntimeConfig, SecretKey, TrustedKeys, WasmMetrics, sign,
};

/// `plugins/dist`, after running `plugins/build.sh` once per test process (cheap when nothing
/// changed; it serialises concurrent runs itself), so the tests always load current builds.
pub fn dist() -> &'static Path {
    static DIST: OnceLock<PathBuf> = OnceLock::new();
    DIST.get_or_init(|| {
        // `plugins/` sits beside this crate, or inside the root crate, whose tests include this
        // file by path.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let plugins = [root.join("../plugins"), root.join("plugins")]
            .into_iter()
            .find(|p| p.join("build.sh").is_file())
            .expect("plugins/ beside the crate");
        let status = Command::new("bash")
            .arg(plugins.join("build.sh"))
            .status()
            .expect("run plugins/build.sh");
        assert!(status.success(), "plugins/build.sh failed");
        plugins.join("dist")
    })
}

pub fn module(name: &str) -> Vec<u8> {
    std::fs::read(dist().join(format!("{name}.wasm"))).expect("built module")
}

pub fn manifest(name: &str) -> String {
    std::fs::read_to_string(dist().join(format!("{name}.toml"))).expect("built manifest")
}

/// The key every test trusts.
pub fn key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::generate().unwrap())
}

pub fn trusted() -> TrustedKeys {
    TrustedKeys::new().with("tests", key().public())
}

/// Signs module `name` with its manifest changed by `edit` (one `key = value` line replaced or
/// added at the top level).
pub fn signed_with(name: &str, edits: &[(&str, &str)]) -> Vec<u8> {
    signed_module(&module(name), &edit_manifest(&manifest(name), edits))
}

pub fn signed(name: &str) -> Vec<u8> {
    signed_with(name, &[])
}

pub fn signed_module(module: &[u8], manifest: &str) -> Vec<u8> {
    sign(module, manifest.as_bytes(), key()).expect("sign")
}

/// Replaces the line `key = ...` (first occurrence) by `key = value`.
pub fn edit_manifest(manifest: &str, edits: &[(&str, &str)]) -> String {
    let mut lines: Vec<String> = manifest.lines().map(str::to_owned).collect();
    for (key, value) in edits {
        let line = format!("{key} = {value}");
        match lines
            .iter()
            .position(|l| l.split('=').next().map(str::trim) == Some(*key))
        {
            Some(i) => lines[i] = line,
            None => lines.insert(0, line),
        }
    }
    lines.join("\n") + "\n"
}

pub struct Fixture {
    pub registry: Arc<Registry>,
    pub metrics: prometheus::Registry,
}

pub fn fixture(config: RuntimeConfig) -> Fixture {
    let metrics = prometheus::Registry::new();
    let runtime = Runtime::new(config).unwrap();
    let registry = Registry::new(runtime, trusted(), WasmMetrics::new(&metrics).unwrap());
    Fixture {
        registry: Arc::new(registry),
        metrics,
    }
}

pub fn default_fixture() -> Fixture {
    fixture(RuntimeConfig::default())
}

impl Fixture {
    /// The value of a counter family's series with these labels (0 when absent).
    pub fn counter(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        self.metrics
            .gather()
            .iter()
            .filter(|f| f.name() == family)
            .flat_map(|f| f.get_metric().iter())
            .find(|m| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map_or(0.0, |m| m.get_counter().get_value())
    }

    /// Whether any series of `family` has `label=value`.
    pub fn has_series(&self, family: &str, label: &str, value: &str) -> bool {
        self.metrics
            .gather()
            .iter()
            .filter(|f| f.name() == family)
            .any(|f| {
                f.get_metric().iter().any(|m| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == label && l.value() == value)
                })
            })
    }
}

pub fn floor_context(country: &str, hour: u8, current_floor: f64) -> FloorContext {
    FloorContext {
        placement_id: "p1".into(),
        publisher_id: "pub1".into(),
        country: Some(country.into()),
        hour,
        device_type: Some(2),
        current_floor,
    }
}
