//! The status-site example through the site API, with the in-memory host services.

use std::sync::Arc;

use bourse_wasm::{
    HostServices, InMemoryHost, InstallOptions, RefusalReason, Registry, Runtime, RuntimeConfig,
    SiteRequest, WasmMetrics, site_request,
};

use crate::support::*;

fn fixture_with_host() -> (Arc<Registry>, Arc<InMemoryHost>) {
    let host = Arc::new(InMemoryHost::new(4096));
    let runtime = Runtime::with_host(RuntimeConfig::default(), host.clone()).unwrap();
    let metrics = WasmMetrics::new(&prometheus::Registry::new()).unwrap();
    let registry = Arc::new(Registry::new(runtime, trusted(), metrics));
    registry
        .install(&signed("status-site"), InstallOptions::default())
        .unwrap();
    (registry, host)
}

fn request(method: &str, uri: &str, body: &str) -> SiteRequest {
    let (parts, ()) = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("user-agent", "tests")
        .body(())
        .unwrap()
        .into_parts();
    site_request(&parts, body.as_bytes().to_vec())
}

fn call(registry: &Registry, method: &str, uri: &str, body: &str) -> http::Response<Vec<u8>> {
    registry
        .site("status-site")
        .unwrap()
        .handle(&request(method, uri, body))
        .unwrap()
}

fn text(response: &http::Response<Vec<u8>>) -> String {
    String::from_utf8(response.body().clone()).unwrap()
}

#[test]
fn the_status_page_counts_visits_and_shows_the_host_clock() {
    let (registry, host) = fixture_with_host();
    let first = call(&registry, "GET", "/", "");
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["content-type"], "text/html; charset=utf-8");
    assert!(
        text(&first).contains("<span id=\"visits\">1</span>"),
        "{}",
        text(&first)
    );
    let second = call(&registry, "GET", "/status?x=1", "");
    assert!(text(&second).contains("<span id=\"visits\">2</span>"));
    assert_eq!(host.counter_get("status-site", "visits"), 2);
    let now = host.now_ms();
    let shown: u64 = text(&second)
        .split("<span id=\"now\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        shown <= now && now - shown < 60_000,
        "clock {shown} vs {now}"
    );
    assert_eq!(call(&registry, "POST", "/", "").status(), 405);
    assert_eq!(call(&registry, "GET", "/elsewhere", "").status(), 404);
}

#[test]
fn links_are_stored_in_the_plugins_own_namespace_and_redirect() {
    let (registry, host) = fixture_with_host();
    let created = call(
        &registry,
        "PUT",
        "/links/docs",
        "https://docs.example/start",
    );
    assert_eq!(created.status(), 201, "{}", text(&created));
    assert_eq!(
        call(&registry, "PUT", "/links/docs", "https://docs.example/v2").status(),
        200
    );
    let redirect = call(&registry, "GET", "/go/docs", "");
    assert_eq!(redirect.status(), 302);
    assert_eq!(redirect.headers()["location"], "https://docs.example/v2");
    assert_eq!(call(&registry, "GET", "/go/nothing", "").status(), 404);
    assert_eq!(
        call(&registry, "PUT", "/links/bad%20slug", "https://x.example").status(),
        400
    );
    assert_eq!(
        call(&registry, "PUT", "/links/js", "javascript:alert(1)").status(),
        400
    );
    assert_eq!(
        host.kv_get("status-site", "link:docs").unwrap(),
        b"https://docs.example/v2"
    );
    assert_eq!(host.kv_get("another-plugin", "link:docs"), None);
    assert_eq!(host.counter_get("status-site", "clicks:docs"), 1);
    assert_eq!(host.counter_get("status-site", "links"), 1);
}

#[test]
fn a_full_store_is_reported_to_the_plugin() {
    let (registry, _host) = fixture_with_host();
    let long = format!("https://x.example/{}", "a".repeat(2000));
    let mut last = 0;
    for i in 0..4 {
        last = call(&registry, "PUT", &format!("/links/l{i}"), &long)
            .status()
            .as_u16();
    }
    // 4096 bytes per plugin: the third link no longer fits.
    assert_eq!(last, 507);
}

#[test]
fn handle_blocking_answers_from_an_async_caller() {
    let (registry, _host) = fixture_with_host();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let response = runtime.block_on(async {
        let site = registry.site("status-site").unwrap();
        site.handle_blocking(request("GET", "/", "")).await.unwrap()
    });
    assert_eq!(response.status(), 200);
}

#[test]
fn a_site_importing_services_it_does_not_declare_is_refused() {
    let f = default_fixture();
    let bytes = signed_with("status-site", &[("host-services", "[\"log\", \"clock\"]")]);
    let refusal = f
        .registry
        .install(&bytes, InstallOptions::default())
        .unwrap_err();
    assert_eq!(refusal.reason, RefusalReason::InvalidManifest, "{refusal}");
    assert!(refusal.detail.contains("bourse:host/"), "{refusal}");
}

#[test]
fn hooks_may_not_declare_site_services() {
    let bytes = edit_manifest(&manifest("floor-rule"), &[("host-services", "[\"kv\"]")]);
    let refusal = bourse_wasm::sign(&module("floor-rule"), bytes.as_bytes(), key()).unwrap_err();
    assert_eq!(refusal.reason, RefusalReason::InvalidManifest);
    assert!(refusal.detail.starts_with("host-services:"), "{refusal}");
}

#[test]
fn modules_signed_as_the_other_kind_are_refused() {
    let f = default_fixture();
    let manifest = edit_manifest(
        &manifest("status-site"),
        &[
            ("interface", "\"bourse:exchange-hooks@1.0.0\""),
            ("hooks", "[\"floor-rule\"]"),
            ("host-services", "[\"log\", \"clock\"]"),
        ],
    );
    // The site imports kv and counters, which hooks cannot declare: refused before linking.
    let refusal = f
        .registry
        .install(
            &signed_module(&module("status-site"), &manifest),
            InstallOptions::default(),
        )
        .unwrap_err();
    assert_eq!(refusal.reason, RefusalReason::InvalidManifest, "{refusal}");
    let hooks_as_site = edit_manifest(
        &crate::support::manifest("floor-rule"),
        &[("interface", "\"bourse:site@1.0.0\""), ("hooks", "[]")],
    );
    let refusal = f
        .registry
        .install(
            &signed_module(&module("floor-rule"), &hooks_as_site),
            InstallOptions::default(),
        )
        .unwrap_err();
    assert_eq!(refusal.reason, RefusalReason::WrongInterface, "{refusal}");
}
