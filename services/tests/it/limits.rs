//! Rate limits: bursts then refusals with a retry time, counted per limiter; state kept for a
//! name asked again with the same rate; per-key buckets and their trimming; kind clashes.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bourse_services::{LimitError, Rate, ServicesConfig};

use crate::Node;

#[tokio::test]
async fn a_direct_limiter_allows_its_burst_then_refuses_and_counts() {
    let node = Node::start(&ServicesConfig::default()).await;
    let limits = &node.services.limits;
    let qps = limits
        .direct("bidder:dsp-a", Rate::per_minute(3).unwrap())
        .unwrap();
    for _ in 0..3 {
        qps.check().unwrap();
    }
    let refused = qps.check().unwrap_err();
    // One unit comes back every 20 s.
    assert!(
        refused.retry_after > Duration::from_secs(15)
            && refused.retry_after <= Duration::from_secs(20),
        "{refused:?}"
    );
    assert!(qps.check().is_err());
    assert_eq!(
        node.metric(
            "bourse_kernel_rate_limited_total",
            &[("limiter", "bidder:dsp-a")]
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn asking_again_with_the_same_rate_keeps_the_state() {
    let node = Node::start(&ServicesConfig::default()).await;
    let limits = &node.services.limits;
    let rate = Rate::per_minute(2).unwrap();
    let first = limits.direct("bidder:dsp-a", rate).unwrap();
    first.check().unwrap();
    first.check().unwrap();
    // A new configuration generation asks for the same limiter: same bucket, still empty.
    let again = limits.direct("bidder:dsp-a", rate).unwrap();
    assert!(again.same_bucket(&first));
    assert!(again.check().is_err());
    // A changed rate gets a fresh bucket; the old holder keeps the old one.
    let faster = limits
        .direct("bidder:dsp-a", Rate::per_minute(5).unwrap())
        .unwrap();
    assert!(!faster.same_bucket(&first));
    faster.check().unwrap();
    assert!(first.check().is_err());
    // Once nobody holds a limiter, its name is free for anything.
    drop((first, again, faster));
    let keyed = limits
        .keyed::<u64>("bidder:dsp-a", Rate::per_minute(1).unwrap())
        .unwrap();
    keyed.check(&1).unwrap();
}

#[tokio::test]
async fn keyed_limiters_keep_a_bucket_per_key_and_forget_idle_ones() {
    let node = Node::start(&ServicesConfig::default()).await;
    let limits = &node.services.limits;
    let sign_in = limits
        .keyed::<IpAddr>("admin.sign_in", Rate::per_minute(2).unwrap())
        .unwrap();
    let (alice, bob) = (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
    );
    sign_in.check(&alice).unwrap();
    sign_in.check(&alice).unwrap();
    assert!(sign_in.check(&alice).is_err());
    sign_in.check(&bob).unwrap();
    assert_eq!(sign_in.tracked_keys(), 2);
    assert_eq!(
        node.metric(
            "bourse_kernel_rate_limited_total",
            &[("limiter", "admin.sign_in")]
        ),
        Some(1.0)
    );
    // Full buckets are forgotten: a fast rate refills within milliseconds.
    let api = limits
        .keyed::<String>("api.calls", Rate::per_second(1_000).unwrap().with_burst(1))
        .unwrap();
    api.check(&"key-1".to_owned()).unwrap();
    api.check(&"key-2".to_owned()).unwrap();
    assert_eq!(api.tracked_keys(), 2);
    tokio::time::sleep(Duration::from_millis(20)).await;
    api.forget_idle_keys();
    assert_eq!(api.tracked_keys(), 0);
    // Alice's bucket is still drained, so it is kept.
    sign_in.forget_idle_keys();
    assert!(sign_in.tracked_keys() >= 1);
    assert!(sign_in.check(&alice).is_err());
}

#[tokio::test]
async fn a_name_holds_one_kind_of_limiter() {
    let node = Node::start(&ServicesConfig::default()).await;
    let limits = &node.services.limits;
    let rate = Rate::per_second(10).unwrap();
    let _direct = limits.direct("shared", rate).unwrap();
    let err = limits.keyed::<u64>("shared", rate).err().unwrap();
    assert!(matches!(err, LimitError::KindClash { .. }), "{err}");
    let _keyed = limits.keyed::<u64>("by-key", rate).unwrap();
    let err = limits.keyed::<String>("by-key", rate).err().unwrap();
    assert_eq!(
        err.to_string(),
        "rate limits: limiter \"by-key\" is a limiter keyed by u64, not a limiter keyed by \
         alloc::string::String"
    );
    assert!(matches!(
        limits.direct("bad name", rate).err(),
        Some(LimitError::InvalidName(_))
    ));
}
