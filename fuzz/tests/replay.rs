//! Replays every committed corpus input and crash reproducer through its target's body, so that
//! the test command catches a regression of anything the fuzzers once found or reached.

use std::path::{Path, PathBuf};

fn inputs(folder: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable folder").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = inputs(&root.join("corpus").join(target));
    assert!(!corpus.is_empty(), "no committed corpus for {target}");
    for path in corpus
        .iter()
        .chain(&inputs(&root.join("regressions").join(target)))
    {
        let data = std::fs::read(path).expect("a readable input");
        let outcome = std::panic::catch_unwind(|| bourse_fuzz::run(target, &data));
        assert!(outcome.is_ok(), "{target} fails on {}", path.display());
    }
}

#[test]
fn openrtb_request_corpus() {
    replay("openrtb_request");
}

#[test]
fn tokens_corpus() {
    replay("tokens");
}

#[test]
fn config_corpus() {
    replay("config");
}

#[test]
fn ad_request_corpus() {
    replay("ad_request");
}

#[test]
fn every_target_has_its_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for target in bourse_fuzz::TARGETS {
        let binary = root.join("fuzz_targets").join(format!("{target}.rs"));
        assert!(binary.is_file(), "{} is missing", binary.display());
    }
}

/// The `/ad` target is only worth its time if inputs reach the auction: a seed fills its slots.
#[test]
fn the_ad_target_reaches_filled_slots() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let body = std::fs::read(root.join("corpus/ad_request/seed-two-slots.json")).unwrap();
    let (status, answer) = bourse_fuzz::ad_response(&body);
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains("/beacon/imp?t="),
        "no filled slot: {answer}"
    );
}
