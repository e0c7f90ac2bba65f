//! The plugin artifact: one file (a tar archive, so `tar tf` shows it) holding the module, its
//! manifest and the signature. Dropped into the watched folder as `NAME.plugin`.

use std::io::Read;

use crate::signing::{Refusal, RefusalReason, Signature};

/// File name suffix of artifacts in the watched folder.
pub const ARTIFACT_SUFFIX: &str = ".plugin";

const MANIFEST_ENTRY: &str = "manifest.toml";
const MODULE_ENTRY: &str = "plugin.wasm";
const SIGNATURE_ENTRY: &str = "signature.toml";

/// Largest module accepted.
pub const MAX_MODULE_BYTES: u64 = 32 * 1024 * 1024;
/// Largest manifest or signature accepted.
const MAX_TEXT_BYTES: u64 = 64 * 1024;

/// The three parts of an artifact, as read (nothing verified yet).
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The manifest's exact bytes: the signature covers them as they are.
    pub manifest: Vec<u8>,
    pub module: Vec<u8>,
    pub signature: Option<Signature>,
}

impl Artifact {
    /// Reads an artifact. A bare WebAssembly module is refused as unsigned.
    pub fn from_bytes(bytes: &[u8]) -> Result<Artifact, Refusal> {
        if bytes.starts_with(b"\0asm") {
            return Err(Refusal::new(
                RefusalReason::Unsigned,
                "a bare WebAssembly module: sign it into an artifact with `bourse plugin sign`",
            ));
        }
        let malformed = |detail: String| Refusal::new(RefusalReason::Malformed, detail);
        let mut manifest = None;
        let mut module = None;
        let mut signature = None;
        let mut archive = tar::Archive::new(bytes);
        let entries = archive
            .entries()
            .map_err(|e| malformed(format!("not a plugin artifact (tar): {e}")))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| malformed(format!("not a plugin artifact (tar): {e}")))?;
            let path = entry
                .path()
                .map_err(|e| malformed(format!("bad entry name: {e}")))?;
            let name = path.to_string_lossy().into_owned();
            let (slot, cap) = match name.as_str() {
                MANIFEST_ENTRY => (&mut manifest, MAX_TEXT_BYTES),
                MODULE_ENTRY => (&mut module, MAX_MODULE_BYTES),
                SIGNATURE_ENTRY => (&mut signature, MAX_TEXT_BYTES),
                _ => return Err(malformed(format!("unexpected entry `{name}`"))),
            };
            if slot.is_some() {
                return Err(malformed(format!("entry `{name}` appears twice")));
            }
            if entry.size() > cap {
                return Err(malformed(format!("entry `{name}` is over {cap} bytes")));
            }
            let mut content = Vec::with_capacity(entry.size() as usize);
            entry
                .take(cap)
                .read_to_end(&mut content)
                .map_err(|e| malformed(format!("entry `{name}`: {e}")))?;
            *slot = Some(content);
        }
        let manifest = manifest.ok_or_else(|| malformed(format!("no `{MANIFEST_ENTRY}` entry")))?;
        let module = module.ok_or_else(|| malformed(format!("no `{MODULE_ENTRY}` entry")))?;
        let signature = match signature {
            Some(text) => Some(Signature::from_toml(&text)?),
            None => None,
        };
        Ok(Artifact {
            manifest,
            module,
            signature,
        })
    }

    /// The artifact as one file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut append = |name: &str, content: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, content)
                .expect("writing to memory cannot fail");
        };
        append(MANIFEST_ENTRY, &self.manifest);
        append(MODULE_ENTRY, &self.module);
        if let Some(signature) = &self.signature {
            append(SIGNATURE_ENTRY, signature.to_toml().as_bytes());
        }
        builder.into_inner().expect("writing to memory cannot fail")
    }
}
