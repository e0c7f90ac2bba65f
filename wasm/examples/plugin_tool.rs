//! Drives the signing library the way `bourse plugin` does:
//!
//! ```text
//! cargo run -p bourse-wasm --example plugin_tool -- keygen KEY.pem
//! cargo run -p bourse-wasm --example plugin_tool -- sign KEY.pem MODULE.wasm plugin.toml OUT.plugin
//! cargo run -p bourse-wasm --example plugin_tool -- verify OUT.plugin PUBLIC_KEY
//! cargo run -p bourse-wasm --example plugin_tool -- inspect OUT.plugin
//! ```

use std::process::ExitCode;

use bourse_wasm::{PublicKey, SecretKey, TrustedKeys, inspect, sign, verify};

fn run(args: &[String]) -> Result<String, String> {
    let read = |path: &String| std::fs::read(path).map_err(|e| format!("{path}: {e}"));
    match args {
        [cmd, key_path] if cmd == "keygen" => {
            let key = SecretKey::generate()?;
            std::fs::write(key_path, key.to_pem()).map_err(|e| format!("{key_path}: {e}"))?;
            Ok(format!("public key: {}", key.public()))
        }
        [cmd, key_path, module, manifest, out] if cmd == "sign" => {
            let key = SecretKey::from_pem(&String::from_utf8_lossy(&read(key_path)?))?;
            let artifact = sign(&read(module)?, &read(manifest)?, &key).map_err(|e| e.to_string())?;
            std::fs::write(out, artifact).map_err(|e| format!("{out}: {e}"))?;
            Ok(format!("signed {out} with {}", key.public()))
        }
        [cmd, artifact, public] if cmd == "verify" => {
            let key = PublicKey::parse(public)?;
            let verified = verify(&read(artifact)?, &TrustedKeys::new().with("given key", key))
                .map_err(|e| e.to_string())?;
            Ok(format!("ok: {} {}", verified.manifest.name, verified.manifest.version))
        }
        [cmd, artifact] if cmd == "inspect" => {
            Ok(inspect(&read(artifact)?).map_err(|e| e.to_string())?.to_string())
        }
        _ => Err("usage: keygen KEY | sign KEY MODULE MANIFEST OUT | verify ARTIFACT PUBKEY | inspect ARTIFACT".into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
