//! `bourse plugin`: keys, signing, verification and inspection of WebAssembly plugin
//! artifacts, and installing one into a watched folder.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bourse_wasm::{PublicKey, SecretKey, TrustedKeys, inspect, sign, verify};

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes a new signing key to `key_path` (never over an existing file) and returns the public
/// key to put in `trusted_keys`.
pub fn keygen(key_path: &Path) -> anyhow::Result<String> {
    let key = SecretKey::generate().map_err(anyhow::Error::msg)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(key_path)
        .with_context(|| {
            format!(
                "cannot create {} (an existing key is never overwritten)",
                key_path.display()
            )
        })?;
    file.write_all(key.to_pem().as_bytes())
        .with_context(|| format!("cannot write {}", key_path.display()))?;
    Ok(key.public().to_string())
}

/// Signs `module` with the manifest template `manifest` into the artifact `out`.
pub fn sign_artifact(
    key_path: &Path,
    module: &Path,
    manifest: &Path,
    out: &Path,
) -> anyhow::Result<String> {
    let key = SecretKey::from_pem(&String::from_utf8_lossy(&read(key_path)?))
        .map_err(anyhow::Error::msg)?;
    let artifact =
        sign(&read(module)?, &read(manifest)?, &key).map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(out, artifact).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(format!("signed {} with {}", out.display(), key.public()))
}

/// Verifies an artifact against one public key, exactly as an install would.
pub fn verify_artifact(artifact: &Path, public_key: &str) -> anyhow::Result<String> {
    let key = PublicKey::parse(public_key).map_err(anyhow::Error::msg)?;
    let verified = verify(
        &read(artifact)?,
        &TrustedKeys::new().with("the given key", key),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(format!(
        "ok: {} {}",
        verified.manifest.name, verified.manifest.version
    ))
}

/// What an artifact says of itself, without trusting it.
pub fn inspect_artifact(artifact: &Path) -> anyhow::Result<String> {
    Ok(inspect(&read(artifact)?)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_string())
}

/// Copies an artifact into the watched folder under its plugin's name, by writing beside it
/// and renaming, so the running bourse never reads a half-written file.
pub fn install(artifact: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let bytes = read(artifact)?;
    let inspection = inspect(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", artifact.display()))?;
    if !dir.is_dir() {
        bail!(
            "{} is not a folder (the `dir` of the `wasm` instance)",
            dir.display()
        );
    }
    let manifest = inspection
        .manifest
        .map_err(|e| anyhow::anyhow!("{}: manifest: {e}", artifact.display()))?;
    let name = &manifest.name;
    let target = dir.join(format!("{name}.plugin"));
    let staging = dir.join(format!(".{name}.plugin.tmp"));
    std::fs::write(&staging, &bytes)
        .with_context(|| format!("cannot write {}", staging.display()))?;
    std::fs::rename(&staging, &target)
        .with_context(|| format!("cannot move {} into place", staging.display()))?;
    Ok(target)
}
