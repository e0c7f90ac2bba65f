//! The exchange as a kernel plugin: live reconfiguration and graceful shutdown on SIGTERM.

use crate::support::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn a_new_bidder_list_applies_live_without_dropping_an_auction() {
    let old = Partner::start(|r| {
        Reply::After(
            Duration::from_millis(150),
            Box::new(Reply::Json(bids(r, "old", &[("1", 1.0)]))),
        )
    })
    .await;
    let new = Partner::start(|r| Reply::Json(bids(r, "new", &[("1", 2.0)]))).await;
    let ex = std::sync::Arc::new(Exchange::start(&config("", &[bidder("old", &old, "")])).await);

    // An auction in flight on the old generation while the new one is applied.
    let in_flight = {
        let ex = ex.clone();
        tokio::spawn(async move { ex.auction(&banner_request("live-1", &[("1", 0.1)])).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let running = ex.running.as_ref().unwrap();
    let next = running
        .load_config_str(&config("", &[bidder("new", &new, "")]), "test.toml")
        .unwrap();
    running
        .apply(next)
        .await
        .expect("the new bidder list applies");

    let (status, response) = in_flight.await.unwrap();
    assert_eq!(
        status, 200,
        "the in-flight auction finished on its generation"
    );
    assert_eq!(response["seatbid"][0]["seat"], "old");
    let (status, response) = ex.auction(&banner_request("live-2", &[("1", 0.1)])).await;
    assert_eq!(status, 200);
    assert_eq!(response["seatbid"][0]["seat"], "new");
    assert_eq!(
        old.request_count(),
        1,
        "the removed bidder is no longer asked"
    );
}

#[tokio::test]
async fn an_invalid_change_is_refused_and_the_old_config_keeps_serving() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "p", &[("1", 1.0)]))).await;
    let ex = Exchange::start(&config("", &[bidder("p", &partner, "")])).await;
    let running = ex.running.as_ref().unwrap();
    let bad = config("min_floor = -1.0", &[bidder("p", &partner, "")]);
    let Err(errors) = running.load_config_str(&bad, "bad.toml") else {
        panic!("a negative floor is refused");
    };
    assert!(
        errors.to_string().contains("bad.toml:") && errors.to_string().contains("min_floor"),
        "{errors}"
    );
    let (status, _) = ex.auction(&banner_request("still-1", &[("1", 0.1)])).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_partner_ca_file_that_cannot_be_read_refuses_the_change_and_says_which() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "p", &[("1", 1.0)]))).await;
    let ex = Exchange::start(&config("", &[bidder("p", &partner, "")])).await;
    let running = ex.running.as_ref().unwrap();
    let missing = bidder("p", &partner, "ca_file = \"no-such-partner-ca.pem\"");
    let next = running
        .load_config_str(&config("", &[missing]), "test.toml")
        .unwrap();
    let refusal = running.apply(next).await.unwrap_err().to_string();
    assert!(
        refusal.contains("bidder p: ca_file: cannot read no-such-partner-ca.pem"),
        "{refusal}"
    );
    let (status, _) = ex.auction(&banner_request("still-1", &[("1", 0.1)])).await;
    assert_eq!(status, 200, "the old configuration keeps serving");
}

/// SIGTERM: bourse stops accepting, lets the in-flight auction finish, then exits 0.
#[tokio::test]
async fn sigterm_lets_in_flight_auctions_finish() {
    let slow = Partner::start(|r| {
        Reply::After(
            Duration::from_millis(300),
            Box::new(Reply::Json(bids(r, "slow", &[("1", 1.0)]))),
        )
    })
    .await;
    let dir = std::env::temp_dir().join(format!("bourse-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bourse.toml");
    let text = config("", &[bidder("slow", &slow, "timeout_ms = 1000")])
        .replace("level = \"warn\"", "level = \"info\"");
    std::fs::write(&path, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bourse"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The log line that says where bourse listens (port 0 in the config).
    let stdout = child.stdout.take().unwrap();
    let addr = tokio::task::spawn_blocking(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(addr) = line.strip_prefix("bourse is serving on http://") {
                return addr.trim().to_owned();
            }
        }
        panic!("bourse never said where it listens");
    })
    .await
    .unwrap();
    let client = plain_client();
    let url = format!("http://{addr}/openrtb2/auction");
    let mut request = banner_request("term-1", &[("1", 0.1)]);
    request["tmax"] = json!(1500);
    let body = serde_json::to_vec(&request).unwrap();
    let in_flight = tokio::spawn(async move {
        let req = http::Request::post(url)
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        client.request(req).await.map(|r| r.status())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = in_flight
        .await
        .unwrap()
        .expect("the in-flight auction is answered");
    assert_eq!(status, 200);
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        exit.success(),
        "bourse exits cleanly after draining: {exit:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

fn plain_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
> {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}
