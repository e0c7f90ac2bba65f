//! The example hook plugins answer as their rules say, through the typed API.

use bourse_wasm::{BidDecision, BidView, Hook, HookErrorKind, InstallOptions, RequestView};

use crate::support::*;

pub fn request() -> RequestView {
    RequestView {
        id: "r1".into(),
        site_domain: Some("news.example".into()),
        app_domain: None,
        publisher_id: Some("pub1".into()),
        country: Some("USA".into()),
        device_type: Some(2),
        user_id_present: true,
        imps: vec![],
    }
}

pub fn bid(adomain: &[&str], cat: &[&str]) -> BidView {
    BidView {
        imp_id: "1".into(),
        bidder: "alpha".into(),
        price: 1.25,
        adomain: adomain.iter().map(|s| s.to_string()).collect(),
        cat: cat.iter().map(|s| s.to_string()).collect(),
        crid: Some("c1".into()),
        w: 300,
        h: 250,
        deal_id: None,
    }
}

#[test]
fn floor_rule_uses_its_table_and_never_lowers_the_floor() {
    let f = default_fixture();
    f.registry
        .install(&signed("floor-rule"), InstallOptions::default())
        .unwrap();
    let hooks = f.registry.hooks("floor-rule").unwrap();
    let floor =
        |country, hour, current| hooks.floor(&floor_context(country, hour, current)).unwrap();
    assert_eq!(floor("USA", 3, 0.1), 0.80);
    assert_eq!(floor("USA", 8, 0.1), 1.50);
    assert_eq!(floor("GBR", 23, 0.1), 1.10);
    assert_eq!(floor("FRA", 19, 0.1), 0.90);
    assert_eq!(floor("FRA", 10, 0.1), 0.25);
    assert_eq!(floor("BRA", 10, 0.0), 0.25);
    assert_eq!(floor("USA", 12, 4.0), 4.0);
    assert!(hooks.advertises(Hook::FloorRule) && !hooks.advertises(Hook::BidFilter));
    // A hook it does not advertise is not called.
    let error = hooks.filter_bids(&request(), &[bid(&[], &[])]).unwrap_err();
    assert_eq!(error.kind, HookErrorKind::NotAdvertised);
    assert_eq!(f.registry.hooks_for(Hook::FloorRule).len(), 1);
    assert!(f.registry.hooks_for(Hook::BidFilter).is_empty());

    // The status counts calls (7 here and the warm-up probe) and knows their p99.
    let status = &f.registry.status()[0];
    assert_eq!((status.calls.calls, status.calls.errors), (8, 0));
    let p99 = status.calls.p99_seconds.unwrap();
    assert!(p99 > 0.0 && p99 <= 1.0, "{p99}");
    assert_eq!(status.signer, "tests");
    assert_eq!(status.interface, "bourse:exchange-hooks@1.0.0");
}

#[test]
fn brand_safety_drops_blocked_domains_and_categories() {
    let f = default_fixture();
    f.registry
        .install(&signed("brand-safety"), InstallOptions::default())
        .unwrap();
    let hooks = f.registry.hooks("brand-safety").unwrap();
    let bids = [
        bid(&["shoes.example"], &["IAB18"]),
        bid(&["casino.example"], &[]),
        bid(&["Spin.Casino.Example."], &[]),
        bid(&["notcasino.example"], &["IAB1"]),
        bid(&["ok.example"], &["IAB25-3"]),
        bid(&["ok.example"], &["IAB250"]),
        bid(&["ok.example"], &["IAB7-39"]),
    ];
    let decisions = hooks.filter_bids(&request(), &bids).unwrap();
    let dropped: Vec<bool> = decisions
        .iter()
        .map(|d| matches!(d, BidDecision::Drop(_)))
        .collect();
    assert_eq!(dropped, [false, true, true, false, true, false, true]);
    match &decisions[1] {
        BidDecision::Drop(reason) => assert!(reason.contains("casino.example"), "{reason}"),
        other => panic!("expected a drop, got {other:?}"),
    }
    assert!(hooks.filter_bids(&request(), &[]).unwrap().is_empty());
}

#[test]
fn a_site_is_not_a_hook_and_a_hook_is_not_a_site() {
    let f = default_fixture();
    f.registry
        .install(&signed("brand-safety"), InstallOptions::default())
        .unwrap();
    f.registry
        .install(&signed("status-site"), InstallOptions::default())
        .unwrap();
    assert!(f.registry.site("brand-safety").is_none());
    assert!(f.registry.hooks("status-site").is_none());
    assert!(f.registry.hooks("nothing").is_none());
}
