//! Signed WebAssembly plugins in the running binary (the hundred swaps under load are a test
//! binary of their own, `tests/wasm_swaps.rs`): misbehaving plugins cut off and quarantined while auctions go on,
//! refused artifacts that leave the running version serving, a site plugin under the `wasm`
//! instance's mount, the admin's plugin page and the `bourse plugin` commands. The modules are
//! the real ones `plugins/build.sh` builds.

use std::process::Command;
use std::time::{Duration, Instant};

use bourse_wasm::{SecretKey, sign};
use serde_json::Value;

use crate::support::*;
use crate::wasm_support::*;

/// A plugin looping forever, one allocating past its cap and one trapping: each call is cut at
/// its limit, every auction they touch still clears, and after `quarantine_after` failures each
/// is quarantined, which the admin names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_plugins_are_cut_off_and_quarantined_while_auctions_clear() {
    let partner = Partner::start(|r| Reply::Json(bids_on_every_imp(r, "alpha", 2.0, |_| {}))).await;
    let dir = plugin_dir();
    for build in ["spin", "hog", "trap"] {
        drop_in(&dir, &format!("{build}.plugin"), &artifact(build, &[]));
    }
    let node = Node::start(&format!(
        "{}{}{}",
        config("", &[bidder("alpha", &partner, "")]),
        wasm_table(&dir, "quarantine_after = 3"),
        admin_section()
    ));
    for build in ["spin", "hog", "trap"] {
        metric_reaches(
            &node,
            &format!("bourse_wasm_swaps_total{{plugin=\"{build}\"}}"),
            1.0,
            Duration::from_secs(30),
        )
        .await;
    }
    // Each test plugin misbehaves on the placement of its own name (and answers for any other,
    // so it passes its warm-up): one impression for each, and one healthy.
    let request = |id: &str| {
        let mut request = banner_request(
            id,
            &[("spin", 0.5), ("hog", 0.5), ("trap", 0.5), ("fine", 0.5)],
        );
        for imp in request["imp"].as_array_mut().unwrap() {
            imp["tagid"] = imp["id"].clone();
        }
        request
    };
    // Every auction completes. On a machine busy with other tests a misbehaving call may use
    // its whole allowance of wall time (a CPU budget the thread is not given, a fresh instance
    // after a failure), and the partners' deadline can pass before they are called: then the
    // answer is no bid, never an error.
    let cleared = |body: &[u8]| -> usize {
        let answer: Value = serde_json::from_slice(body).unwrap();
        answer["seatbid"][0]["bid"].as_array().map_or(0, |bids| {
            bids.iter().filter(|bid| bid["impid"].is_string()).count()
        })
    };
    for i in 0..5 {
        let started = Instant::now();
        let (status, body) = auction(&node, &request(&format!("r{i}"))).await;
        match status.as_u16() {
            200 => assert_eq!(cleared(&body), 4, "every impression cleared"),
            204 => {}
            other => panic!("auction {i} answered {other}: {}", node.stderr()),
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "auction {i} took {:?}",
            started.elapsed()
        );
    }
    let metrics = metrics_text(&node).await;
    // A loop is cut by its time or its fuel, whichever runs out first on this machine.
    let failures = [
        ("spin", &["timeout", "fuel_exhausted"][..]),
        ("hog", &["memory_limit"][..]),
        // Its floor rule traps; its bid filter answers one decision too many.
        ("trap", &["trap", "bad_output"][..]),
    ];
    for (plugin, kinds) in failures {
        let series = |kind: &str| {
            format!("bourse_wasm_call_errors_total{{kind=\"{kind}\",plugin=\"{plugin}\"}} ")
        };
        let errors = call_errors(&metrics, |line| {
            line.contains(&format!("plugin=\"{plugin}\""))
        });
        let expected = call_errors(&metrics, |line| {
            kinds.iter().any(|kind| line.starts_with(&series(kind)))
        });
        assert_eq!(
            (errors, expected),
            (3.0, 3.0),
            "{plugin} failed thrice, each with one of {kinds:?}: {metrics}"
        );
        assert_eq!(
            node.metric(&format!(
                "bourse_wasm_plugin_state{{plugin=\"{plugin}\",state=\"quarantined\"}}"
            ))
            .await,
            1.0,
            "{plugin} is quarantined"
        );
    }
    // Quarantined, they are no longer called: every impression clears again.
    let (status, body) = auction(&node, &request("quarantined")).await;
    assert_eq!(status, 200, "{}", node.stderr());
    assert_eq!(cleared(&body), 4);

    let cookie = sign_in(&node).await;
    let (status, page) = node_get(&node, "/admin/wasm", &cookie).await;
    assert_eq!(status, 200);
    for plugin in ["spin", "hog", "trap"] {
        assert!(
            page.contains(&format!("data-plugin=\"{plugin}\"")),
            "{plugin} listed"
        );
    }
    assert_eq!(
        page.matches("class=\"state-quarantined\"").count(),
        3,
        "{page}"
    );
    assert!(
        page.contains("plugin spin 1.0.0 is quarantined"),
        "the health strip names it"
    );

    // Activating one calls it again, its failures forgotten: in the next auction its floor
    // rule and its bid filter each fail once more.
    let (status, _, page) = node_request(
        &node,
        http::Method::POST,
        "/admin/wasm/activate",
        &cookie,
        &[("csrf", &csrf_in(&page)), ("name", "trap")],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Activated trap."), "{page}");
    let (status, _) = auction(&node, &request("after")).await;
    assert_eq!(status, 200);
    // Counted whatever their kind: on a machine busy with other work, the call after a trap
    // (on a fresh instance) may run out of its wall time before it can answer wrongly.
    let metrics = metrics_text(&node).await;
    let trap_errors = call_errors(&metrics, |line| line.contains("plugin=\"trap\""));
    assert_eq!(trap_errors, 5.0, "{metrics}");
}

/// The sum of the `bourse_wasm_call_errors_total` series in `metrics` that `wanted` picks.
fn call_errors(metrics: &str, wanted: impl Fn(&str) -> bool) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("bourse_wasm_call_errors_total{") && wanted(line))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Unsigned, altered, wrongly signed, wrong-interface and older artifacts are each refused with
/// their reason and counted, and the running floor rule keeps setting floors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_artifacts_leave_the_running_version_serving() {
    let probe = Partner::start(|_| Reply::Status(204)).await;
    let dir = plugin_dir();
    drop_in(&dir, "floor-rule.plugin", &artifact("floor-rule", &[]));
    let node = Node::start(&format!(
        "{}{}",
        config("", &[bidder("probe", &probe, "")]).replace("fee = 0.1", "fee = 0.0"),
        wasm_table(&dir, "")
    ));
    metric_reaches(
        &node,
        "bourse_wasm_swaps_total{plugin=\"floor-rule\"}",
        1.0,
        Duration::from_secs(30),
    )
    .await;

    let mut altered = artifact("floor-rule-v2", &[("version", "\"2.0.0\"")]);
    // The last byte of the module (the tar's data precedes its zero padding): find a non-zero
    // byte near the module's end and flip it.
    let module_len = std::fs::read(dist().join("floor-rule-v2.wasm"))
        .unwrap()
        .len();
    let at = altered
        .windows(16)
        .position(|w| {
            w == &std::fs::read(dist().join("floor-rule-v2.wasm")).unwrap()[module_len - 16..]
        })
        .expect("the module's tail in the artifact")
        + 8;
    altered[at] ^= 0x01;
    let stranger = SecretKey::generate().unwrap();
    let refusals: Vec<(&str, Vec<u8>)> = vec![
        (
            "unsigned",
            std::fs::read(dist().join("floor-rule-v2.wasm")).unwrap(),
        ),
        ("altered_module", altered),
        (
            "untrusted_key",
            artifact_by(&stranger, "floor-rule-v2", &[("version", "\"2.0.0\"")]),
        ),
        (
            "wrong_interface",
            artifact(
                "floor-rule-v2",
                &[
                    ("version", "\"2.0.0\""),
                    ("interface", "\"bourse:exchange-hooks@2.0.0\""),
                ],
            ),
        ),
        (
            "not_newer",
            artifact("floor-rule-v2", &[("version", "\"0.9.0\"")]),
        ),
    ];
    for (i, (reason, bytes)) in refusals.iter().enumerate() {
        let series = format!("bourse_wasm_refusals_total{{reason=\"{reason}\"}}");
        drop_in(&dir, &format!("candidate-{i}.plugin"), bytes);
        metric_reaches(&node, &series, 1.0, Duration::from_secs(30)).await;
        let id = format!("after-{reason}");
        let (status, _) = auction(&node, &usa_request(&id)).await;
        assert_eq!(status, 204);
        assert_eq!(
            floor_told(&probe, &id),
            Some(usa_floor(false)),
            "after the {reason} refusal, version 1.0.0 still sets the floor"
        );
    }
    assert_eq!(
        node.metric("bourse_wasm_swaps_total{plugin=\"floor-rule\"}")
            .await,
        1.0,
        "nothing replaced the running version"
    );
    for reason in [
        "unsigned",
        "altered_module",
        "untrusted_key",
        "wrong_interface",
        "not_newer",
    ] {
        assert!(
            node.stderr().contains(reason),
            "the {reason} refusal is logged: {}",
            node.stderr()
        );
    }
}

/// The `bourse plugin` commands end to end: a key, a signed artifact that verifies and
/// inspects, a refusal under another key, and an install into the watched folder that the
/// running bourse serves as a site under the `wasm` mount; the admin rolls a plugin back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_commands_sign_and_install_a_site_served_under_the_mount() {
    let work = plugin_dir();
    let bourse = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_bourse"))
            .arg("plugin")
            .args(args)
            .current_dir(&work)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = bourse(&["keygen", "ops.pem"]);
    assert!(ok, "{err}");
    let public = out.trim().strip_prefix("public key: ").unwrap().to_owned();
    let (ok, _, err) = bourse(&["keygen", "ops.pem"]);
    assert!(!ok && err.contains("never overwritten"), "{err}");
    let module = dist().join("status-site.wasm");
    let manifest = dist().join("status-site.toml");
    let (ok, out, err) = bourse(&[
        "sign",
        "ops.pem",
        module.to_str().unwrap(),
        manifest.to_str().unwrap(),
        "status-site.plugin",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("signed"), "{out}");
    let (ok, out, err) = bourse(&["verify", "status-site.plugin", &public]);
    assert!(ok, "{err}");
    assert!(out.starts_with("ok: status-site 1.0.0"), "{out}");
    let (ok, out, _) = bourse(&["inspect", "status-site.plugin"]);
    assert!(ok && out.contains("status-site"), "{out}");
    let stranger = SecretKey::generate().unwrap().public().to_string();
    let (ok, _, err) = bourse(&["verify", "status-site.plugin", &stranger]);
    assert!(!ok && err.contains("untrusted_key"), "{err}");

    let dir = plugin_dir();
    let node = Node::start(&format!(
        "{}\n[plugins.wasm]\ndir = {:?}\n[plugins.wasm.trusted_keys]\nops = {public:?}\n{}",
        config("", &[]),
        dir.display().to_string(),
        admin_section()
    ));
    let (ok, out, err) = bourse(&[
        "install",
        "status-site.plugin",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("status-site.plugin"), "{out}");
    metric_reaches(
        &node,
        "bourse_wasm_swaps_total{plugin=\"status-site\"}",
        1.0,
        Duration::from_secs(30),
    )
    .await;
    let (status, page) = node_get(&node, "/ext/status-site/", "").await;
    assert_eq!(status, 200, "{page}");
    let (status, _) = node_get(&node, "/ext/no-such-site/", "").await;
    assert_eq!(status, 404);

    // A second version, then a roll back from the admin.
    let v2 = sign(
        &std::fs::read(&module).unwrap(),
        std::fs::read_to_string(&manifest)
            .unwrap()
            .replace("version = \"1.0.0\"", "version = \"1.0.1\"")
            .as_bytes(),
        &SecretKey::from_pem(&std::fs::read_to_string(work.join("ops.pem")).unwrap()).unwrap(),
    )
    .unwrap();
    drop_in(&dir, "status-site.plugin", &v2);
    metric_reaches(
        &node,
        "bourse_wasm_swaps_total{plugin=\"status-site\"}",
        2.0,
        Duration::from_secs(30),
    )
    .await;
    let cookie = sign_in(&node).await;
    let (_, page) = node_get(&node, "/admin/wasm", &cookie).await;
    assert!(page.contains("Roll back to 1.0.0"), "{page}");
    let (status, _, page) = node_request(
        &node,
        http::Method::POST,
        "/admin/wasm/rollback",
        &cookie,
        &[("csrf", &csrf_in(&page)), ("name", "status-site")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("Rolled status-site back to 1.0.0."), "{page}");
    assert!(page.contains("Roll back to 1.0.1"), "{page}");

    // An older version from a file on the server: refused unless forced.
    let older = work.join("status-site-0.9.0.plugin");
    std::fs::write(
        &older,
        sign(
            &std::fs::read(&module).unwrap(),
            std::fs::read_to_string(&manifest)
                .unwrap()
                .replace("version = \"1.0.0\"", "version = \"0.9.0\"")
                .as_bytes(),
            &SecretKey::from_pem(&std::fs::read_to_string(work.join("ops.pem")).unwrap()).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let older = older.to_str().unwrap();
    let (status, _, page) = node_request(
        &node,
        http::Method::POST,
        "/admin/wasm/install",
        &cookie,
        &[("csrf", &csrf_in(&page)), ("path", older)],
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("not_newer"), "{page}");
    let (status, _, page) = node_request(
        &node,
        http::Method::POST,
        "/admin/wasm/install",
        &cookie,
        &[("csrf", &csrf_in(&page)), ("path", older), ("force", "on")],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Installed status-site 0.9.0, replacing 1.0.0"),
        "{page}"
    );
    let (status, _, page) = node_request(
        &node,
        http::Method::POST,
        "/admin/wasm/install",
        &cookie,
        &[("csrf", &csrf_in(&page)), ("path", "relative.plugin")],
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("absolute path"), "{page}");
}
