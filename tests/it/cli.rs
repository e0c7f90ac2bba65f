//! The command line: `check-config` reports errors with their line, `--help` everywhere.

use std::process::Command;

fn bourse(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bourse"))
        .args(args)
        .output()
        .expect("bourse runs")
}

#[test]
fn the_example_configuration_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/bourse.example.toml");
    let out = bourse(&["check-config", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn check_config_names_file_line_and_field() {
    let dir = std::env::temp_dir().join(format!("bourse-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[plugins.exchange]\nfee = 0.1\n\n[[plugins.exchange.bidders]]\nname = \"a\"\nendpoint = \"ftp://nowhere\"\ntimeout_ms = \"soon\"\n",
    )
    .unwrap();
    let out = bourse(&["check-config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:7:"),
        "the type error is on line 7: {stderr}"
    );
    assert!(stderr.contains("timeout_ms"), "{stderr}");

    std::fs::write(&path, "[plugins.exchange]\nfee = 2.0\n\n[[plugins.exchange.bidders]]\nname = \"a\"\nendpoint = \"ftp://nowhere\"\n").unwrap();
    let out = bourse(&["check-config", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:2:") && stderr.contains("fee"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.toml:6:") && stderr.contains("endpoint"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["demo", "--help"],
        &["check-config", "--help"],
    ] {
        let out = bourse(args);
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn sim_run_plays_a_scenario_against_an_in_process_bourse_and_reports() {
    let dir = std::env::temp_dir().join(format!("bourse-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/sim/scenarios/smoke.toml");
    let (json, plot) = (dir.join("report.json"), dir.join("latency.svg"));
    let out = bourse(&[
        "sim",
        "run",
        scenario,
        "--duration",
        "1",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("p99") && stdout.contains("achieved"),
        "{stdout}"
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let counts = &report["counts"];
    assert_eq!(counts["sent"], 50, "1 s at 50/s: {report}");
    assert!(
        counts["bid_responses"].as_u64().unwrap() > 25,
        "the smoke partners bid on most requests: {report}"
    );
    assert!(std::fs::read_to_string(&plot).unwrap().contains("<svg"));
    std::fs::remove_dir_all(&dir).ok();
}
