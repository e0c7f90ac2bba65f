//! Signing and verification: ed25519 keys, the signature over a manifest (which carries the
//! module's hash), the trusted-key set, and the refusal reasons of an install.
//!
//! The signed message is a fixed domain-separation prefix followed by the manifest's exact
//! bytes; no re-encoding happens between signing and verifying, so the encoding is canonical by
//! construction. The module is bound through the manifest's `module-sha256`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::artifact::Artifact;
use crate::manifest::Manifest;

const SIGNED_PREFIX: &[u8] = b"bourse-wasm-plugin-signature/v1\n";

/// Why an artifact was not installed. Every refusal is counted by reason and logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// Not an artifact at all (not a tar, missing or extra entries, over a size cap).
    Malformed,
    /// No signature.
    Unsigned,
    /// Signed by a key that is not trusted.
    UntrustedKey,
    /// The signature does not verify (strictly) over the manifest.
    BadSignature,
    /// The manifest breaks a rule.
    InvalidManifest,
    /// The module's hash is not the one the signed manifest names.
    AlteredModule,
    /// An interface (or version) this host does not implement, or exports that do not match it.
    WrongInterface,
    /// Not newer than the installed version (anti-rollback) and not forced.
    NotNewer,
    /// The module did not compile or link.
    CompileError,
    /// The module compiled but failed its warm-up (instantiation or a probe call).
    WarmupFailed,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 10] = [
        RefusalReason::Malformed,
        RefusalReason::Unsigned,
        RefusalReason::UntrustedKey,
        RefusalReason::BadSignature,
        RefusalReason::InvalidManifest,
        RefusalReason::AlteredModule,
        RefusalReason::WrongInterface,
        RefusalReason::NotNewer,
        RefusalReason::CompileError,
        RefusalReason::WarmupFailed,
    ];

    /// The label value in metrics and the word in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Malformed => "malformed",
            RefusalReason::Unsigned => "unsigned",
            RefusalReason::UntrustedKey => "untrusted_key",
            RefusalReason::BadSignature => "bad_signature",
            RefusalReason::InvalidManifest => "invalid_manifest",
            RefusalReason::AlteredModule => "altered_module",
            RefusalReason::WrongInterface => "wrong_interface",
            RefusalReason::NotNewer => "not_newer",
            RefusalReason::CompileError => "compile_error",
            RefusalReason::WarmupFailed => "warmup_failed",
        }
    }
}

/// A refused artifact: the reason and what exactly was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct Refusal {
    pub reason: RefusalReason,
    pub detail: String,
}

impl Refusal {
    pub fn new(reason: RefusalReason, detail: impl Into<String>) -> Self {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }
}

/// An ed25519 public key, written as base64 of its 32 bytes (or as an SPKI PEM block).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub VerifyingKey);

impl PublicKey {
    /// Parses base64 of the 32 key bytes or a `-----BEGIN PUBLIC KEY-----` block.
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let text = text.trim();
        if text.starts_with("-----BEGIN") {
            return VerifyingKey::from_public_key_pem(text)
                .map(PublicKey)
                .map_err(|e| format!("not an ed25519 public key PEM: {e}"));
        }
        let bytes = BASE64
            .decode(text)
            .map_err(|_| "a public key is base64 of 32 bytes or a PEM block".to_owned())?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "an ed25519 public key is 32 bytes".to_owned())?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| "not a valid ed25519 public key".to_owned())
    }

    /// The PEM block (SPKI).
    pub fn to_pem(&self) -> String {
        self.0
            .to_public_key_pem(Default::default())
            .expect("an ed25519 key always encodes")
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE64.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// A signing key, kept as a PKCS#8 PEM file.
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public())
    }
}

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<SecretKey, String> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| format!("no random source: {e}"))?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    pub fn from_pem(text: &str) -> Result<SecretKey, String> {
        SigningKey::from_pkcs8_pem(text.trim())
            .map(SecretKey)
            .map_err(|e| format!("not an ed25519 private key PEM (PKCS#8): {e}"))
    }

    pub fn to_pem(&self) -> String {
        self.0
            .to_pkcs8_pem(Default::default())
            .expect("an ed25519 key always encodes")
            .to_string()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }
}

/// The signature entry of an artifact: who signed and the signature bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub key: PublicKey,
    pub bytes: [u8; 64],
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    algorithm: String,
    key: String,
    signature: String,
}

impl Signature {
    pub(crate) fn from_toml(text: &[u8]) -> Result<Signature, Refusal> {
        let bad = |detail: String| Refusal::new(RefusalReason::BadSignature, detail);
        let text =
            std::str::from_utf8(text).map_err(|_| bad("signature entry is not UTF-8".into()))?;
        let file: SignatureFile =
            toml::from_str(text).map_err(|e| bad(format!("signature entry: {}", e.message())))?;
        if file.algorithm != "ed25519" {
            return Err(bad(format!(
                "signature algorithm `{}` is not ed25519",
                file.algorithm
            )));
        }
        let key = PublicKey::parse(&file.key).map_err(|e| bad(format!("signature key: {e}")))?;
        let bytes = BASE64
            .decode(file.signature.trim())
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .ok_or_else(|| bad("signature: not base64 of 64 bytes".into()))?;
        Ok(Signature { key, bytes })
    }

    pub(crate) fn to_toml(&self) -> String {
        let file = SignatureFile {
            algorithm: "ed25519".into(),
            key: self.key.to_string(),
            signature: BASE64.encode(self.bytes),
        };
        toml::to_string(&file).expect("a signature always serializes")
    }
}

/// Keys whose signatures are accepted, each with the name the admin shows as the signer.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    keys: Vec<(String, PublicKey)>,
}

impl TrustedKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `key` under `name`.
    pub fn with(mut self, name: impl Into<String>, key: PublicKey) -> Self {
        self.keys.push((name.into(), key));
        self
    }

    /// The name a trusted key was given.
    pub fn name_of(&self, key: &PublicKey) -> Option<&str> {
        self.keys
            .iter()
            .find(|(_, k)| k == key)
            .map(|(name, _)| name.as_str())
    }
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn signed_message(manifest: &[u8]) -> Vec<u8> {
    [SIGNED_PREFIX, manifest].concat()
}

/// Signs a module: checks the manifest template, writes the module's hash into it and returns
/// the artifact's bytes.
pub fn sign(module: &[u8], manifest_template: &[u8], key: &SecretKey) -> Result<Vec<u8>, Refusal> {
    let mut manifest = Manifest::from_toml(manifest_template)
        .map_err(|e| Refusal::new(RefusalReason::InvalidManifest, e.to_string()))?;
    manifest.module_sha256 = Some(sha256_hex(module));
    let manifest = manifest.to_toml().into_bytes();
    let signature = ed25519_dalek::Signer::sign(&key.0, &signed_message(&manifest));
    let artifact = Artifact {
        manifest,
        module: module.to_vec(),
        signature: Some(Signature {
            key: key.public(),
            bytes: signature.to_bytes(),
        }),
    };
    Ok(artifact.to_bytes())
}

/// An artifact whose signature, trust, manifest, module hash and interface have been checked.
#[derive(Clone, Debug)]
pub struct Verified {
    pub manifest: Manifest,
    pub module: Vec<u8>,
    /// The hex SHA-256 of the module.
    pub module_sha256: String,
    /// The trusted name of the signing key.
    pub signer: String,
    pub key: PublicKey,
}

/// Checks an artifact before anything compiles it: signed, by a trusted key, a strict ed25519
/// signature over the manifest, a valid manifest, the module it names, an interface this host
/// implements. Version order against the installed plugin is the registry's check.
pub fn verify(bytes: &[u8], trusted: &TrustedKeys) -> Result<Verified, Refusal> {
    let artifact = Artifact::from_bytes(bytes)?;
    let signature = artifact
        .signature
        .ok_or_else(|| Refusal::new(RefusalReason::Unsigned, "the artifact has no signature"))?;
    let signer = trusted.name_of(&signature.key).ok_or_else(|| {
        Refusal::new(
            RefusalReason::UntrustedKey,
            format!("signed by {}, which is not a trusted key", signature.key),
        )
    })?;
    let ed_signature = ed25519_dalek::Signature::from_bytes(&signature.bytes);
    signature
        .key
        .0
        .verify_strict(&signed_message(&artifact.manifest), &ed_signature)
        .map_err(|_| {
            Refusal::new(
                RefusalReason::BadSignature,
                format!("the signature by {signer} does not match the manifest"),
            )
        })?;
    let manifest = Manifest::from_toml(&artifact.manifest)
        .map_err(|e| Refusal::new(RefusalReason::InvalidManifest, e.to_string()))?;
    let declared = manifest
        .module_sha256
        .clone()
        .ok_or_else(|| Refusal::new(RefusalReason::InvalidManifest, "module-sha256: is missing"))?;
    let actual = sha256_hex(&artifact.module);
    if !declared.eq_ignore_ascii_case(&actual) {
        return Err(Refusal::new(
            RefusalReason::AlteredModule,
            format!("the module's SHA-256 is {actual}, the signed manifest says {declared}"),
        ));
    }
    if !manifest.interface.supported() {
        return Err(Refusal::new(
            RefusalReason::WrongInterface,
            format!(
                "interface {} is not implemented by this host",
                manifest.interface
            ),
        ));
    }
    Ok(Verified {
        manifest,
        module: artifact.module,
        module_sha256: actual,
        signer: signer.to_owned(),
        key: signature.key,
    })
}

/// What `inspect` tells about an artifact without trusting it.
#[derive(Clone, Debug)]
pub struct Inspection {
    /// The manifest, or why it does not parse.
    pub manifest: Result<Manifest, String>,
    pub module_bytes: usize,
    pub module_sha256: String,
    /// Whether the manifest's hash matches the module.
    pub module_matches: bool,
    /// The signing key, when signed.
    pub key: Option<PublicKey>,
    /// Whether the signature verifies (strictly) with the key it names, trusted or not.
    pub signature_valid: bool,
}

/// Reads an artifact and reports what it claims, verifying the signature against the key it
/// carries; trust is not judged here.
pub fn inspect(bytes: &[u8]) -> Result<Inspection, Refusal> {
    let artifact = Artifact::from_bytes(bytes)?;
    let manifest = Manifest::from_toml(&artifact.manifest).map_err(|e| e.to_string());
    let module_sha256 = sha256_hex(&artifact.module);
    let module_matches = manifest.as_ref().is_ok_and(|m| {
        m.module_sha256
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case(&module_sha256))
    });
    let signature_valid = artifact.signature.as_ref().is_some_and(|s| {
        let signature = ed25519_dalek::Signature::from_bytes(&s.bytes);
        s.key
            .0
            .verify_strict(&signed_message(&artifact.manifest), &signature)
            .is_ok()
    });
    Ok(Inspection {
        manifest,
        module_bytes: artifact.module.len(),
        module_sha256,
        module_matches,
        key: artifact.signature.map(|s| s.key),
        signature_valid,
    })
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.manifest {
            Ok(m) => {
                writeln!(f, "name:          {}", m.name)?;
                writeln!(f, "version:       {}", m.version)?;
                writeln!(f, "interface:     {}", m.interface)?;
                if !m.hooks.is_empty() {
                    let hooks: Vec<_> = m.hooks.iter().map(|h| h.as_str()).collect();
                    writeln!(f, "hooks:         {}", hooks.join(", "))?;
                }
                let services: Vec<_> = m.host_services.iter().map(|s| s.as_str()).collect();
                let services = if services.is_empty() {
                    "none".to_owned()
                } else {
                    services.join(", ")
                };
                writeln!(f, "host services: {services}")?;
                writeln!(
                    f,
                    "limits:        {} bytes of memory, {} ms and {} fuel per call",
                    m.limits.memory_bytes, m.limits.time_per_call_ms, m.limits.fuel_per_call
                )?;
            }
            Err(e) => writeln!(f, "manifest:      invalid: {e}")?,
        }
        writeln!(
            f,
            "module:        {} bytes, sha256 {}",
            self.module_bytes, self.module_sha256
        )?;
        writeln!(
            f,
            "module hash:   {}",
            if self.module_matches {
                "matches the manifest"
            } else {
                "DOES NOT match the manifest"
            }
        )?;
        match &self.key {
            Some(key) => writeln!(
                f,
                "signed by:     {key} ({})",
                if self.signature_valid {
                    "signature valid"
                } else {
                    "signature INVALID"
                }
            ),
            None => writeln!(f, "signed by:     nobody (unsigned)"),
        }
    }
}
