//! The plugin manifest: what a plugin is, which interface it speaks, which host services it may
//! use and the limits each call runs under. Written by the plugin's author as TOML; `sign`
//! adds the module's hash and the signature covers the whole text.

use std::fmt;
use std::str::FromStr;

use semver::Version;
use serde::{Deserialize, Serialize};

/// Interfaces this host implements, with the version of each.
pub const SUPPORTED_INTERFACES: [InterfaceRef; 2] = [
    InterfaceRef {
        kind: InterfaceKind::ExchangeHooks,
        version: Version::new(1, 0, 0),
    },
    InterfaceRef {
        kind: InterfaceKind::Site,
        version: Version::new(1, 0, 0),
    },
];

/// Memory a plugin may ask for per instance, at most.
pub const MAX_MEMORY_BYTES: u64 = 256 * 1024 * 1024;
/// Time a plugin may ask for per call, at most.
pub const MAX_TIME_PER_CALL_MS: u32 = 1_000;
/// Fuel a plugin may ask for per call, at most.
pub const MAX_FUEL_PER_CALL: u64 = 10_000_000_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// 1-64 characters: lower-case letters, digits and `-`, starting with a letter.
    pub name: String,
    /// Semantic version; a lower one than installed is refused unless forced.
    pub version: Version,
    /// The WIT package and version the module implements, e.g. `bourse:exchange-hooks@1.0.0`.
    pub interface: InterfaceRef,
    /// Exchange hooks the host calls (exchange-hooks plugins only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<Hook>,
    /// Host services linked into the plugin; importing any other is refused at load.
    #[serde(default)]
    pub host_services: Vec<HostService>,
    /// Hex SHA-256 of the module, added by `sign`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_sha256: Option<String>,
    pub limits: Limits,
}

/// Limits of each call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// Linear memory of one instance, in bytes.
    pub memory_bytes: u64,
    /// Time of one call, in milliseconds: CPU time on the calling thread (preemption does not
    /// count), with wall time capped at ten times this (at least 1 s). Checked at each epoch
    /// tick past it.
    pub time_per_call_ms: u32,
    /// WebAssembly fuel (roughly, instructions) of one call.
    pub fuel_per_call: u64,
}

/// One exchange hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    RequestFilter,
    BidFilter,
    FloorRule,
}

impl Hook {
    pub const ALL: [Hook; 3] = [Hook::RequestFilter, Hook::BidFilter, Hook::FloorRule];

    pub fn as_str(self) -> &'static str {
        match self {
            Hook::RequestFilter => "request-filter",
            Hook::BidFilter => "bid-filter",
            Hook::FloorRule => "floor-rule",
        }
    }
}

/// One host service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostService {
    Log,
    Clock,
    Kv,
    Counters,
}

impl HostService {
    pub fn as_str(self) -> &'static str {
        match self {
            HostService::Log => "log",
            HostService::Clock => "clock",
            HostService::Kv => "kv",
            HostService::Counters => "counters",
        }
    }
}

/// The two plugin interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InterfaceKind {
    ExchangeHooks,
    Site,
}

impl InterfaceKind {
    pub fn package(self) -> &'static str {
        match self {
            InterfaceKind::ExchangeHooks => "bourse:exchange-hooks",
            InterfaceKind::Site => "bourse:site",
        }
    }

    /// Host services a plugin of this kind may declare.
    pub fn allowed_services(self) -> &'static [HostService] {
        match self {
            InterfaceKind::ExchangeHooks => &[HostService::Log, HostService::Clock],
            InterfaceKind::Site => &[
                HostService::Log,
                HostService::Clock,
                HostService::Kv,
                HostService::Counters,
            ],
        }
    }
}

/// A WIT package and version, written `bourse:exchange-hooks@1.0.0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceRef {
    pub kind: InterfaceKind,
    pub version: Version,
}

impl fmt::Display for InterfaceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.kind.package(), self.version)
    }
}

/// Why an interface string is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InterfaceError {
    #[error("`{0}` is not of the form `bourse:PACKAGE@MAJOR.MINOR.PATCH`")]
    Malformed(String),
    #[error("`{0}` is not an interface this host implements (bourse:exchange-hooks, bourse:site)")]
    Unknown(String),
}

impl FromStr for InterfaceRef {
    type Err = InterfaceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || InterfaceError::Malformed(text.to_owned());
        let (package, version) = text.split_once('@').ok_or_else(malformed)?;
        let version = Version::parse(version).map_err(|_| malformed())?;
        let kind = match package {
            "bourse:exchange-hooks" => InterfaceKind::ExchangeHooks,
            "bourse:site" => InterfaceKind::Site,
            _ if package.contains(':') => return Err(InterfaceError::Unknown(text.to_owned())),
            _ => return Err(malformed()),
        };
        Ok(InterfaceRef { kind, version })
    }
}

impl Serialize for InterfaceRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InterfaceRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl InterfaceRef {
    /// Whether this host can run a module built against `self`: the same package and major
    /// version, and a minor version no newer than the host's.
    pub fn supported(&self) -> bool {
        SUPPORTED_INTERFACES.iter().any(|host| {
            host.kind == self.kind
                && host.version.major == self.version.major
                && self.version <= host.version
        })
    }
}

/// A manifest field that breaks a rule: `path: rule`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {rule}")]
pub struct ManifestError {
    pub path: String,
    pub rule: String,
}

fn field_error(path: &str, rule: impl Into<String>) -> ManifestError {
    ManifestError {
        path: path.to_owned(),
        rule: rule.into(),
    }
}

impl Manifest {
    /// Parses and checks a manifest.
    pub fn from_toml(text: &[u8]) -> Result<Manifest, ManifestError> {
        let text =
            std::str::from_utf8(text).map_err(|_| field_error("manifest", "is not UTF-8 text"))?;
        let manifest: Manifest = toml::from_str(text).map_err(|error| {
            let rule = error.message().to_owned();
            let path = match error.span() {
                Some(span) => format!("manifest at byte {}", span.start),
                None => "manifest".to_owned(),
            };
            ManifestError { path, rule }
        })?;
        manifest.check()?;
        Ok(manifest)
    }

    /// The manifest as TOML, the exact text that is signed.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a manifest always serializes")
    }

    /// Checks every rule a parsed manifest must keep (the interface's support is checked
    /// apart, as it has its own refusal reason).
    pub fn check(&self) -> Result<(), ManifestError> {
        let name_ok = (1..=64).contains(&self.name.len())
            && self.name.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(field_error(
                "name",
                "must be 1-64 lower-case letters, digits or '-', starting with a letter",
            ));
        }
        match self.interface.kind {
            InterfaceKind::ExchangeHooks if self.hooks.is_empty() => {
                return Err(field_error(
                    "hooks",
                    "an exchange-hooks plugin lists at least one hook",
                ));
            }
            InterfaceKind::Site if !self.hooks.is_empty() => {
                return Err(field_error("hooks", "a site plugin has no hooks"));
            }
            _ => {}
        }
        if has_duplicates(&self.hooks) {
            return Err(field_error("hooks", "lists a hook twice"));
        }
        if has_duplicates(&self.host_services) {
            return Err(field_error("host-services", "lists a service twice"));
        }
        let allowed = self.interface.kind.allowed_services();
        if let Some(service) = self.host_services.iter().find(|s| !allowed.contains(s)) {
            return Err(field_error(
                "host-services",
                format!(
                    "`{}` is not offered to {} plugins",
                    service.as_str(),
                    self.interface.kind.package()
                ),
            ));
        }
        if let Some(hash) = &self.module_sha256
            && (hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(field_error(
                "module-sha256",
                "must be 64 hexadecimal digits",
            ));
        }
        let limits = &self.limits;
        if !(64 * 1024..=MAX_MEMORY_BYTES).contains(&limits.memory_bytes) {
            return Err(field_error(
                "limits.memory-bytes",
                format!("must be between 65536 and {MAX_MEMORY_BYTES}"),
            ));
        }
        if !(1..=MAX_TIME_PER_CALL_MS).contains(&limits.time_per_call_ms) {
            return Err(field_error(
                "limits.time-per-call-ms",
                format!("must be between 1 and {MAX_TIME_PER_CALL_MS}"),
            ));
        }
        if !(10_000..=MAX_FUEL_PER_CALL).contains(&limits.fuel_per_call) {
            return Err(field_error(
                "limits.fuel-per-call",
                format!("must be between 10000 and {MAX_FUEL_PER_CALL}"),
            ));
        }
        Ok(())
    }
}

fn has_duplicates<T: Ord + Copy>(items: &[T]) -> bool {
    let mut sorted = items.to_vec();
    sorted.sort();
    sorted.windows(2).any(|pair| pair[0] == pair[1])
}
