//! Artifacts: signing round trip and every refusal reason, each counted, with the running
//! version still serving.

use bourse_wasm::artifact::Artifact;
use bourse_wasm::{
    InstallOptions, PublicKey, RefusalReason, SecretKey, TrustedKeys, inspect, sign, verify,
};

use crate::support::*;

fn refusal_of(bytes: &[u8]) -> RefusalReason {
    verify(bytes, &trusted()).unwrap_err().reason
}

#[test]
fn a_signed_artifact_verifies_and_inspects() {
    let bytes = signed("floor-rule");
    let verified = verify(&bytes, &trusted()).unwrap();
    assert_eq!(verified.manifest.name, "floor-rule");
    assert_eq!(verified.signer, "tests");
    assert_eq!(verified.module, module("floor-rule"));

    let inspection = inspect(&bytes).unwrap();
    assert!(inspection.signature_valid && inspection.module_matches);
    assert_eq!(inspection.key, Some(key().public()));
    let text = inspection.to_string();
    assert!(
        text.contains("floor-rule") && text.contains("signature valid"),
        "{text}"
    );
}

#[test]
fn keys_survive_their_text_forms() {
    let secret = SecretKey::generate().unwrap();
    let again = SecretKey::from_pem(&secret.to_pem()).unwrap();
    assert_eq!(again.public(), secret.public());
    assert_eq!(
        PublicKey::parse(&secret.public().to_string()).unwrap(),
        secret.public()
    );
    assert_eq!(
        PublicKey::parse(&secret.public().to_pem()).unwrap(),
        secret.public()
    );
    assert!(PublicKey::parse("AAAA").is_err());
    assert!(SecretKey::from_pem("not a key").is_err());
}

#[test]
fn a_bare_module_is_unsigned() {
    assert_eq!(refusal_of(&module("floor-rule")), RefusalReason::Unsigned);
}

#[test]
fn an_artifact_without_signature_is_unsigned() {
    let mut artifact = Artifact::from_bytes(&signed("floor-rule")).unwrap();
    artifact.signature = None;
    assert_eq!(refusal_of(&artifact.to_bytes()), RefusalReason::Unsigned);
}

#[test]
fn one_altered_byte_of_the_module_is_refused() {
    let mut artifact = Artifact::from_bytes(&signed("floor-rule")).unwrap();
    let middle = artifact.module.len() / 2;
    artifact.module[middle] ^= 0x01;
    let refusal = verify(&artifact.to_bytes(), &trusted()).unwrap_err();
    assert_eq!(refusal.reason, RefusalReason::AlteredModule, "{refusal}");
}

#[test]
fn an_edited_manifest_breaks_the_signature() {
    let mut artifact = Artifact::from_bytes(&signed("floor-rule")).unwrap();
    let text = String::from_utf8(artifact.manifest.clone()).unwrap();
    artifact.manifest = text
        .replace("time-per-call-ms = 5", "time-per-call-ms = 900")
        .into_bytes();
    assert_ne!(artifact.manifest, text.as_bytes());
    assert_eq!(
        refusal_of(&artifact.to_bytes()),
        RefusalReason::BadSignature
    );
}

#[test]
fn a_signature_by_another_key_is_untrusted() {
    let stranger = SecretKey::generate().unwrap();
    let bytes = sign(
        &module("floor-rule"),
        manifest("floor-rule").as_bytes(),
        &stranger,
    )
    .unwrap();
    assert_eq!(refusal_of(&bytes), RefusalReason::UntrustedKey);
    // The same artifact passes once its key is trusted.
    let both = trusted().with("partner", stranger.public());
    assert_eq!(verify(&bytes, &both).unwrap().signer, "partner");
}

#[test]
fn a_signature_claiming_a_trusted_key_it_was_not_made_with_is_bad() {
    let stranger = SecretKey::generate().unwrap();
    let bytes = sign(
        &module("floor-rule"),
        manifest("floor-rule").as_bytes(),
        &stranger,
    )
    .unwrap();
    let mut artifact = Artifact::from_bytes(&bytes).unwrap();
    artifact.signature.as_mut().unwrap().key = key().public();
    assert_eq!(
        refusal_of(&artifact.to_bytes()),
        RefusalReason::BadSignature
    );
}

#[test]
fn an_interface_of_another_major_version_is_refused() {
    let bytes = signed_with(
        "floor-rule",
        &[("interface", "\"bourse:exchange-hooks@2.0.0\"")],
    );
    assert_eq!(refusal_of(&bytes), RefusalReason::WrongInterface);
    let newer_minor = signed_with(
        "floor-rule",
        &[("interface", "\"bourse:exchange-hooks@1.1.0\"")],
    );
    assert_eq!(refusal_of(&newer_minor), RefusalReason::WrongInterface);
}

#[test]
fn garbage_is_malformed_and_bad_manifests_are_invalid() {
    assert_eq!(refusal_of(b"hello"), RefusalReason::Malformed);
    assert_eq!(refusal_of(b""), RefusalReason::Malformed);
    let bad_limits = edit_manifest(&manifest("floor-rule"), &[("memory-bytes", "1")]);
    let refusal = sign(&module("floor-rule"), bad_limits.as_bytes(), key()).unwrap_err();
    assert_eq!(refusal.reason, RefusalReason::InvalidManifest);
    assert!(refusal.detail.contains("limits.memory-bytes"), "{refusal}");
    let unknown_field = format!("colour = \"blue\"\n{}", manifest("floor-rule"));
    let refusal = sign(&module("floor-rule"), unknown_field.as_bytes(), key()).unwrap_err();
    assert!(refusal.detail.contains("colour"), "{refusal}");
}

#[test]
fn each_refusal_is_counted_and_the_running_version_keeps_serving() {
    let f = default_fixture();
    f.registry
        .install(
            &signed_with("floor-rule", &[("version", "\"1.2.0\"")]),
            InstallOptions::default(),
        )
        .unwrap();
    let serves_v1 = || {
        let hooks = f.registry.hooks("floor-rule").expect("still installed");
        assert_eq!(hooks.version().to_string(), "1.2.0");
        assert_eq!(hooks.floor(&floor_context("USA", 12, 0.1)).unwrap(), 1.5);
    };
    let stranger = SecretKey::generate().unwrap();
    let mut altered =
        Artifact::from_bytes(&signed_with("floor-rule", &[("version", "\"1.3.0\"")])).unwrap();
    altered.module[100] ^= 0xff;
    let cases: Vec<(RefusalReason, Vec<u8>)> = vec![
        (RefusalReason::Unsigned, module("floor-rule-v2")),
        (RefusalReason::AlteredModule, altered.to_bytes()),
        (
            RefusalReason::UntrustedKey,
            sign(
                &module("floor-rule-v2"),
                manifest("floor-rule-v2").as_bytes(),
                &stranger,
            )
            .unwrap(),
        ),
        (
            RefusalReason::WrongInterface,
            signed_with(
                "floor-rule-v2",
                &[("interface", "\"bourse:exchange-hooks@2.0.0\"")],
            ),
        ),
        (
            RefusalReason::NotNewer,
            signed_with("floor-rule-v2", &[("version", "\"1.1.0\"")]),
        ),
        (
            RefusalReason::NotNewer,
            signed_with("floor-rule-v2", &[("version", "\"1.2.0\"")]),
        ),
        (
            RefusalReason::CompileError,
            signed_module(
                b"\0asm\x0d\0\x01\0garbage",
                &edit_manifest(&manifest("floor-rule"), &[("version", "\"9.0.0\"")]),
            ),
        ),
    ];
    for (reason, bytes) in &cases {
        let refusal = f
            .registry
            .install(bytes, InstallOptions::default())
            .unwrap_err();
        assert_eq!(refusal.reason, *reason, "{refusal}");
        serves_v1();
    }
    for reason in [
        RefusalReason::Unsigned,
        RefusalReason::AlteredModule,
        RefusalReason::UntrustedKey,
        RefusalReason::WrongInterface,
        RefusalReason::CompileError,
    ] {
        assert_eq!(
            f.counter("bourse_wasm_refusals_total", &[("reason", reason.as_str())]),
            1.0,
            "{reason:?}"
        );
    }
    assert_eq!(
        f.counter("bourse_wasm_refusals_total", &[("reason", "not_newer")]),
        2.0
    );
    let rejected = f
        .registry
        .events()
        .iter()
        .filter(|e| e.state == bourse_wasm::PluginState::Rejected)
        .count();
    assert_eq!(rejected, cases.len());

    // A downgrade goes through when forced.
    let forced = InstallOptions {
        force: true,
        ..Default::default()
    };
    let installed = f
        .registry
        .install(
            &signed_with("floor-rule-v2", &[("version", "\"1.1.0\"")]),
            forced,
        )
        .unwrap();
    assert_eq!(installed.replaced.unwrap().to_string(), "1.2.0");
    let hooks = f.registry.hooks("floor-rule").unwrap();
    assert_eq!(hooks.floor(&floor_context("USA", 12, 0.1)).unwrap(), 2.5);
}

#[test]
fn trusted_keys_can_change_at_run_time() {
    let f = default_fixture();
    f.registry.set_trusted_keys(TrustedKeys::new());
    let refusal = f
        .registry
        .install(&signed("floor-rule"), InstallOptions::default())
        .unwrap_err();
    assert_eq!(refusal.reason, RefusalReason::UntrustedKey);
    f.registry.set_trusted_keys(trusted());
    f.registry
        .install(&signed("floor-rule"), InstallOptions::default())
        .unwrap();
}

#[test]
fn an_oversized_file_is_refused_without_reading_it() {
    let f = default_fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.plugin");
    // Sparse: 64 MiB long, nothing written.
    std::fs::File::create(&path)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let refusal = f.registry.install_file(&path, false).unwrap_err();
    assert_eq!(refusal.reason, RefusalReason::Malformed);
    assert!(refusal.detail.contains("over the"), "{refusal}");
    let missing = f
        .registry
        .install_file(&dir.path().join("gone.plugin"), false)
        .unwrap_err();
    assert_eq!(missing.reason, RefusalReason::Malformed);
}
