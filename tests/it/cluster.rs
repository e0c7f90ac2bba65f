//! Two real `bourse serve` processes sharing one Redis: reach counts are shared and an
//! impression is never billed twice, whichever node its duplicate beacons reach.

use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};

fn node_config(partner: &Partner, prefix: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[log]\nformat = \"json\"\nlevel = \"warn\"\n\n\
         [plugins.exchange]\nnotice_secret = \"cluster-secret\"\nfee = 0.1\n\
         public_url = \"http://bourse.test\"\n\n\
         [services]\nredis_url = \"{redis}\"\nkey_prefix = \"{prefix}\"\n\n[services.uniques]\nflush_interval_ms = 50\n\n\
         [[plugins.exchange.publishers]]\nid = \"news\"\n\n\
         [[plugins.exchange.placements]]\nid = \"news-top\"\npublisher = \"news\"\nsizes = [[300, 250]]\n\n\
         [[plugins.exchange.bidders]]\nname = \"adv\"\nendpoint = \"{endpoint}\"\nnotice_allowed_hosts = [\"127.0.0.1\"]\n",
        redis = redis_url(),
        endpoint = partner.endpoint(),
    )
}

async fn ad_for(node: &Node, uid: &str) -> String {
    let body = json!({
        "page": "https://news.example/",
        "slots": [{"id": "a", "placement": "news-top"}],
        "uid": uid,
    });
    let req = http::Request::post(node.url("/ad"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let (status, body) = node.send(req).await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    answer["slots"][0]["imp"]
        .as_str()
        .expect("a filled slot")
        .strip_prefix("http://bourse.test")
        .unwrap()
        .to_owned()
}

async fn fire(node: &Node, path: &str) -> http::StatusCode {
    let req = http::Request::post(node.url(path))
        .body(Full::new(Bytes::new()))
        .unwrap();
    node.send(req).await.0
}

async fn placement_uniques(node: &Node) -> u64 {
    let req = http::Request::get(node.url("/reach"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (_, body) = node.send(req).await;
    let report: Value = serde_json::from_slice(&body).unwrap();
    report["windows"][1]["counts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["dimension"] == "placement" && c["id"] == "news-top")
        .and_then(|c| c["uniques"].as_u64())
        .unwrap_or(0)
}

#[tokio::test]
async fn two_nodes_share_reach_and_never_double_bill() {
    let partner = Partner::start(|r| {
        Reply::Json(bids_with(r, "adv", &[("1", 2.0)], |b| {
            b["burl"] = json!("http://127.0.0.1:9/never-used");
        }))
    })
    .await;
    let prefix = format!("bt-cluster-{:016x}", rand::random::<u64>());
    let config = node_config(&partner, &prefix);
    let a = Node::start(&config);
    let b = Node::start(&config);

    // One impression, its beacon fired concurrently at both nodes many times.
    let imp = ad_for(&a, "user-one-0000000001").await;
    let fired = futures_util::future::join_all((0..20).map(|i| {
        let node = if i % 2 == 0 { &a } else { &b };
        fire(node, &imp)
    }))
    .await;
    assert!(fired.iter().all(|s| *s == 204), "{fired:?}");
    let billed = "bourse_adserve_beacons_total{kind=\"imp\",outcome=\"billed\"}";
    let duplicate = "bourse_adserve_beacons_total{kind=\"imp\",outcome=\"duplicate\"}";
    assert_eq!(a.metric(billed).await + b.metric(billed).await, 1.0);
    assert_eq!(a.metric(duplicate).await + b.metric(duplicate).await, 19.0);

    // A second user billed through the other node: both nodes count two users.
    let imp = ad_for(&b, "user-two-0000000002").await;
    assert_eq!(fire(&b, &imp).await, 204);
    let mut seen = (0, 0);
    for _ in 0..60 {
        seen = (placement_uniques(&a).await, placement_uniques(&b).await);
        if seen == (2, 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen, (2, 2), "both nodes see both users");
}
