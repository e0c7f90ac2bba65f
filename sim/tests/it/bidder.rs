//! The simulated partner over real sockets: bids, seeds, faults, notices, media, deals,
//! transports and lifecycle.

use bourse_engine::openrtb::{BidResponse, MediaType};
use bourse_sim::bidder::{
    Behaviour, Faults, Latency, NoticeKind, PriceDistribution, SimBidder, SimBidderConfig,
    SimBidderHandle, Tail,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::io::Write;
use std::time::{Duration, Instant};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn start(config: SimBidderConfig) -> SimBidderHandle {
    SimBidder::spawn(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A banner impression and a video impression, both with `floor`.
fn request(id: &str, floor: f64) -> Value {
    json!({
        "id": id,
        "imp": [
            {"id": "1", "banner": {"format": [{"w": 300, "h": 250}]}, "bidfloor": floor},
            {"id": "2", "video": {"mimes": ["video/mp4"], "w": 640, "h": 360}, "bidfloor": floor}
        ]
    })
}

/// Posts a bid request; returns the status and the body (None when empty or not JSON), or
/// None when no full answer came within `timeout`.
async fn post(
    client: &HttpClient,
    sim: &SimBidderHandle,
    body: &Value,
    timeout: Duration,
) -> Option<(u16, Option<BidResponse>)> {
    let req = http::Request::post(sim.endpoint())
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap();
    let exchange = async {
        let response = client.request(req).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).ok())
    };
    tokio::time::timeout(timeout, exchange).await.ok()
}

/// Sends a GET and returns the status.
async fn get(client: &HttpClient, url: String) -> u16 {
    let req = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    client.request(req).await.unwrap().status().as_u16()
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn bids_come_from_the_distribution_and_respect_the_floor() {
    let mut config = SimBidderConfig::new("dist");
    config.price = PriceDistribution::Uniform { min: 1.0, max: 3.0 };
    config.media = vec![MediaType::Banner];
    let sim = start(config).await;
    let client = client();
    let mut seen = 0;
    for n in 0..50 {
        let (status, body) = post(&client, &sim, &request(&format!("r{n}"), 2.0), SECOND)
            .await
            .unwrap();
        if status == 204 {
            continue;
        }
        let bids = &body.unwrap().seatbid[0].bid;
        assert_eq!(bids.len(), 1, "only the banner impression is bought");
        let bid = &bids[0];
        let price = bid.price.unwrap();
        assert!(
            (2.0..=3.0).contains(&price),
            "price {price} within [floor, max]"
        );
        assert_eq!(bid.impid, "1");
        assert_eq!((bid.w, bid.h, bid.mtype), (Some(300), Some(250), Some(1)));
        seen += 1;
    }
    assert!(
        seen > 10 && seen < 40,
        "about half the values clear a floor at the middle: {seen}"
    );
    let stats = sim.stats().snapshot();
    assert_eq!((stats.requests, stats.bids), (50, seen));
    assert_eq!(stats.no_bids, 50 - seen);
}

#[tokio::test]
async fn bids_carry_the_configured_identity_and_notice_urls() {
    let mut config = SimBidderConfig::new("ident");
    config.seat = Some("seat-9".into());
    config.currency = "EUR".into();
    config.adomain = vec!["a.example".into(), "b.example".into()];
    config.cat = vec!["IAB3".into()];
    let sim = start(config).await;
    let (status, body) = post(&client(), &sim, &request("r", 0.0), SECOND)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let body = body.unwrap();
    assert_eq!((body.id.as_str(), body.cur.as_deref()), ("r", Some("EUR")));
    let seatbid = &body.seatbid[0];
    assert_eq!(seatbid.seat.as_deref(), Some("seat-9"));
    assert_eq!(seatbid.bid.len(), 2, "a bid for each impression");
    assert_ne!(seatbid.bid[0].id, seatbid.bid[1].id, "bid ids are distinct");
    for bid in &seatbid.bid {
        assert_eq!(bid.adomain, ["a.example", "b.example"]);
        assert_eq!(bid.cat, ["IAB3"]);
        assert!(bid.crid.is_some() && bid.adid.is_some() && bid.cid.is_some());
        for (url, path) in [(&bid.nurl, "win"), (&bid.burl, "bill"), (&bid.lurl, "loss")] {
            let url = url.as_deref().unwrap();
            assert!(
                url.starts_with(&format!("http://{}/{path}?", sim.addr())),
                "{url}"
            );
            assert!(url.contains("price=${AUCTION_PRICE}"), "{url}");
        }
        assert!(
            bid.lurl
                .as_deref()
                .unwrap()
                .contains("loss=${AUCTION_LOSS}")
        );
    }
    let video = seatbid.bid.iter().find(|b| b.impid == "2").unwrap();
    assert_eq!(
        (video.mtype, video.w, video.h),
        (Some(2), Some(640), Some(360))
    );
    assert!(
        video
            .adm
            .as_deref()
            .unwrap()
            .starts_with("<VAST version=\"4.0\"")
    );
}

/// The answers to requests `r0`..`r19` (whole responses, as JSON), sent in `order`, `parallel`
/// ones at a time.
async fn answers(seed: u64, order: impl Iterator<Item = usize>, parallel: bool) -> Vec<Value> {
    let mut config = SimBidderConfig::new("seeded");
    config.seed = seed;
    config.bid_rate = 0.5;
    config.price = PriceDistribution::LogNormal {
        median: 2.0,
        sigma: 0.6,
    };
    config.latency = Latency::Uniform {
        min_ms: 0.0,
        max_ms: 5.0,
    };
    let sim = start(config).await;
    let client = client();
    let ask = |n: usize| {
        let (client, sim) = (&client, &sim);
        async move {
            let (status, body) = post(client, sim, &request(&format!("r{n}"), 1.0), SECOND)
                .await
                .unwrap();
            // Notice URLs name the partner's address, which changes from run to run.
            let body = serde_json::to_string(&body)
                .unwrap()
                .replace(&sim.addr().to_string(), "ADDR");
            let body: Value = serde_json::from_str(&body).unwrap();
            (n, json!({"status": status, "body": body}))
        }
    };
    let mut out: Vec<(usize, Value)> = if parallel {
        futures_util::future::join_all(order.map(ask)).await
    } else {
        let mut out = Vec::new();
        for n in order {
            out.push(ask(n).await);
        }
        out
    };
    out.sort_by_key(|(n, _)| *n);
    out.into_iter().map(|(_, v)| v).collect()
}

#[tokio::test]
async fn a_seed_makes_answers_repeatable() {
    let first = answers(11, 0..20, false).await;
    assert!(
        first.iter().any(|a| a["status"] == 200) && first.iter().any(|a| a["status"] == 204),
        "a mix of bids and no-bids: {first:?}"
    );
    assert_eq!(
        first,
        answers(11, 0..20, false).await,
        "the same seed and requests give the same answers"
    );
    assert_eq!(
        first,
        answers(11, (0..20).rev(), true).await,
        "whatever the order and concurrency"
    );
    assert_ne!(
        first,
        answers(12, 0..20, false).await,
        "another seed answers otherwise"
    );
}

#[tokio::test]
async fn a_zero_bid_rate_answers_204() {
    let mut config = SimBidderConfig::new("shy");
    config.bid_rate = 0.0;
    let sim = start(config).await;
    let (status, _) = post(&client(), &sim, &request("r", 0.0), SECOND)
        .await
        .unwrap();
    assert_eq!(status, 204);
    assert_eq!(sim.stats().snapshot().no_bids, 1);
}

#[tokio::test]
async fn shading_bids_a_fraction_of_the_value() {
    let mut config = SimBidderConfig::new("shader");
    config.price = PriceDistribution::Fixed { value: 2.0 };
    config.behaviour = Behaviour::Shading { factor: 0.75 };
    let sim = start(config).await;
    let (_, body) = post(&client(), &sim, &request("r", 0.0), SECOND)
        .await
        .unwrap();
    for bid in &body.unwrap().seatbid[0].bid {
        assert_eq!(bid.price, Some(1.5));
    }
}

#[tokio::test]
async fn a_partner_ignoring_floors_bids_under_them() {
    let mut config = SimBidderConfig::new("cheeky");
    config.price = PriceDistribution::Fixed { value: 0.5 };
    let respectful = start(config.clone()).await;
    config.respect_floor = false;
    let cheeky = start(config).await;
    let client = client();
    let (status, _) = post(&client, &respectful, &request("r", 1.0), SECOND)
        .await
        .unwrap();
    assert_eq!(status, 204, "a 0.5 value never meets a 1.0 floor");
    let (status, body) = post(&client, &cheeky, &request("r", 1.0), SECOND)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body.unwrap().seatbid[0].bid[0].price, Some(0.5));
}

#[tokio::test]
async fn each_fault_is_served_on_demand() {
    let sim = start(SimBidderConfig::new("faulty")).await;
    let client = client();
    sim.set_faults(Faults {
        http_500: 1.0,
        ..Faults::default()
    });
    assert_eq!(sim.faults().http_500, 1.0);
    assert_eq!(
        post(&client, &sim, &request("a", 0.0), SECOND)
            .await
            .unwrap()
            .0,
        500
    );
    sim.set_faults(Faults {
        garbage: 1.0,
        ..Faults::default()
    });
    let (status, body) = post(&client, &sim, &request("b", 0.0), SECOND)
        .await
        .unwrap();
    assert_eq!(
        (status, body.is_none()),
        (200, true),
        "200 with a body that is not JSON"
    );
    sim.set_faults(Faults {
        unknown_imp: 1.0,
        ..Faults::default()
    });
    let (_, body) = post(&client, &sim, &request("c", 0.0), SECOND)
        .await
        .unwrap();
    let bids = &body.unwrap().seatbid[0].bid;
    assert!(!bids.is_empty());
    assert!(
        bids.iter().all(|b| b.impid != "1" && b.impid != "2"),
        "no bid names an impression of the request: {bids:?}"
    );
    sim.set_faults(Faults {
        empty_seatbid: 1.0,
        ..Faults::default()
    });
    let (status, body) = post(&client, &sim, &request("d", 0.0), SECOND)
        .await
        .unwrap();
    assert_eq!((status, body.unwrap().seatbid.len()), (200, 0));
    sim.set_faults(Faults {
        hang_after_headers: 1.0,
        ..Faults::default()
    });
    let req = http::Request::post(sim.endpoint())
        .body(Full::new(Bytes::from(request("e", 0.0).to_string())))
        .unwrap();
    let response = tokio::time::timeout(SECOND, client.request(req))
        .await
        .expect("headers arrive")
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], "2");
    let body =
        tokio::time::timeout(Duration::from_millis(300), response.into_body().collect()).await;
    assert!(body.is_err(), "the body never comes");
    sim.set_faults(Faults::default());
    let (status, body) = post(&client, &sim, &request("f", 0.0), SECOND)
        .await
        .unwrap();
    assert_eq!(
        (status, body.unwrap().seatbid[0].bid.len()),
        (200, 2),
        "healthy again"
    );
    let stats = sim.stats().snapshot();
    assert_eq!(
        [
            stats.http_500,
            stats.garbage,
            stats.unknown_imp,
            stats.empty_seatbid,
            stats.hang_after_headers
        ],
        [1; 5],
        "{stats:?}"
    );
    assert_eq!(stats.requests, 6);
}

#[tokio::test]
async fn a_fault_share_hits_about_that_share_of_requests() {
    let mut config = SimBidderConfig::new("flaky");
    config.faults.http_500 = 0.3;
    let sim = start(config).await;
    let client = client();
    let mut failures = 0;
    for n in 0..200 {
        let (status, _) = post(&client, &sim, &request(&format!("r{n}"), 0.0), SECOND)
            .await
            .unwrap();
        failures += u32::from(status == 500);
    }
    assert!((35..=85).contains(&failures), "{failures} of 200 at 30%");
    assert_eq!(sim.stats().snapshot().http_500, u64::from(failures));
}

#[tokio::test]
async fn a_timeout_share_never_answers_in_time() {
    let mut config = SimBidderConfig::new("slowpoke");
    config.timeout_share = 1.0;
    let sim = start(config).await;
    assert!(
        post(
            &client(),
            &sim,
            &request("r", 0.0),
            Duration::from_millis(300)
        )
        .await
        .is_none()
    );
    assert_eq!(sim.stats().snapshot().timeouts, 1);
}

#[tokio::test]
async fn shutting_down_releases_held_requests() {
    let mut config = SimBidderConfig::new("held");
    config.timeout_share = 1.0;
    let sim = start(config).await;
    let client = client();
    let req = http::Request::post(sim.endpoint())
        .body(Full::new(Bytes::from(request("r", 0.0).to_string())))
        .unwrap();
    let pending = tokio::spawn(async move { client.request(req).await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    sim.shutdown();
    let outcome = tokio::time::timeout(Duration::from_secs(5), pending).await;
    assert!(
        outcome.is_ok(),
        "the request ends long before the 30 s hang"
    );
    let refused = async {
        while tokio::net::TcpStream::connect(sim.addr()).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    assert!(
        tokio::time::timeout(SECOND, refused).await.is_ok(),
        "no longer listening"
    );
}

#[tokio::test]
async fn a_fixed_latency_is_waited_out() {
    let mut config = SimBidderConfig::new("steady");
    config.latency = Latency::Fixed { ms: 50.0 };
    let sim = start(config).await;
    let started = Instant::now();
    post(&client(), &sim, &request("r", 0.0), SECOND)
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn a_tail_adds_its_delay() {
    let mut config = SimBidderConfig::new("tailed");
    config.tail = Some(Tail {
        share: 1.0,
        ms: 60.0,
    });
    let sim = start(config).await;
    let started = Instant::now();
    post(&client(), &sim, &request("r", 0.0), SECOND)
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(60));
}

#[tokio::test]
async fn notices_are_recorded_with_their_parameters() {
    let sim = start(SimBidderConfig::new("noted")).await;
    let client = client();
    let (_, body) = post(&client, &sim, &request("r", 0.0), SECOND)
        .await
        .unwrap();
    let bid = body.unwrap().seatbid[0].bid[0].clone();
    let substitute = |url: &str| {
        url.replace("${AUCTION_ID}", "r")
            .replace("${AUCTION_BID_ID}", &bid.id)
            .replace("${AUCTION_IMP_ID}", "1")
            .replace("${AUCTION_SEAT_ID}", "noted")
            .replace("${AUCTION_AD_ID}", "ad-1")
            .replace("${AUCTION_PRICE}", "1.25")
            .replace("${AUCTION_CURRENCY}", "USD")
            .replace("${AUCTION_LOSS}", "102")
            .replace("${AUCTION_MIN_TO_WIN}", "1.3")
    };
    for url in [&bid.nurl, &bid.burl, &bid.lurl] {
        assert_eq!(get(&client, substitute(url.as_deref().unwrap())).await, 200);
    }
    // An exchange that forgets a macro: the notice still arrives, and shows what is missing.
    let lazy = bid.nurl.as_deref().unwrap().replace("${AUCTION_ID}", "r2");
    assert_eq!(get(&client, lazy).await, 200);
    let notices = sim.notices();
    let kinds: Vec<_> = notices.iter().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        [
            NoticeKind::Win,
            NoticeKind::Bill,
            NoticeKind::Loss,
            NoticeKind::Win
        ]
    );
    for notice in &notices[..3] {
        assert_eq!(notice.param("auction"), Some("r"));
        assert_eq!(notice.param("bid"), Some(bid.id.as_str()));
        assert_eq!(notice.param("imp"), Some("1"));
        assert_eq!(notice.param("seat"), Some("noted"));
        assert_eq!(notice.param("ad"), Some("ad-1"));
        assert_eq!(notice.param("price"), Some("1.25"));
        assert_eq!(notice.param("cur"), Some("USD"));
        assert!(notice.unsubstituted().is_empty(), "{notice:?}");
    }
    assert_eq!(notices[2].param("loss"), Some("102"));
    assert_eq!(notices[2].param("min"), Some("1.3"));
    assert_eq!(
        notices[0].param("loss"),
        None,
        "only loss URLs carry a reason"
    );
    assert_eq!(
        notices[3].unsubstituted(),
        ["ad", "bid", "cur", "imp", "price", "seat"]
    );
    let stats = sim.stats().snapshot();
    assert_eq!(
        (stats.notices, stats.wins, stats.bills, stats.losses),
        (4, 2, 1, 1)
    );
}

#[tokio::test]
async fn waiting_for_notices_returns_once_they_arrive() {
    let sim = start(SimBidderConfig::new("patient")).await;
    let win = format!("http://{}/win?auction=late", sim.addr());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        get(&client(), win).await
    });
    let notices = sim.wait_for_notices(1, Duration::from_secs(5)).await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].param("auction"), Some("late"));
    let nothing = sim.wait_for_notices(2, Duration::from_millis(50)).await;
    assert_eq!(nothing.len(), 1, "gives up at the timeout with what it has");
}

#[tokio::test]
async fn the_notice_log_keeps_the_most_recent() {
    let mut config = SimBidderConfig::new("forgetful");
    config.notice_log_limit = 2;
    let sim = start(config).await;
    let client = client();
    for n in 0..3 {
        get(&client, format!("http://{}/loss?auction={n}", sim.addr())).await;
    }
    let kept: Vec<_> = sim
        .notices()
        .iter()
        .map(|n| n.param("auction").unwrap().to_owned())
        .collect();
    assert_eq!(kept, ["1", "2"]);
    assert_eq!(sim.stats().snapshot().losses, 3, "every notice is counted");
}

#[tokio::test]
async fn deal_bids_carry_the_deal_and_meet_its_floor() {
    let mut config = SimBidderConfig::new("dealer");
    config.price = PriceDistribution::Fixed { value: 1.0 };
    config.deal_ids = vec!["d-1".into()];
    let sim = start(config).await;
    let client = client();
    let mut req = request("r", 0.0);
    req["imp"][0]["pmp"] =
        json!({"deals": [{"id": "other", "bidfloor": 9.0}, {"id": "d-1", "bidfloor": 4.0}]});
    let (_, body) = post(&client, &sim, &req, SECOND).await.unwrap();
    let body = body.unwrap();
    let bid = body.seatbid[0].bid.iter().find(|b| b.impid == "1").unwrap();
    assert_eq!(bid.dealid.as_deref(), Some("d-1"));
    assert_eq!(bid.price, Some(4.0), "raised to the deal floor");
    let open = body.seatbid[0].bid.iter().find(|b| b.impid == "2").unwrap();
    assert_eq!(open.dealid, None, "no deal offered on the video impression");
    // A deal floor under the value leaves the value.
    req["imp"][0]["pmp"] = json!({"deals": [{"id": "d-1", "bidfloor": 0.5}]});
    let (_, body) = post(&client, &sim, &req, SECOND).await.unwrap();
    let body = body.unwrap();
    let bid = body.seatbid[0].bid.iter().find(|b| b.impid == "1").unwrap();
    assert_eq!((bid.dealid.as_deref(), bid.price), (Some("d-1"), Some(1.0)));
}

#[tokio::test]
async fn media_types_not_bought_get_no_bid() {
    let mut config = SimBidderConfig::new("audio-only");
    config.media = vec![MediaType::Audio];
    let sim = start(config).await;
    let (status, _) = post(&client(), &sim, &request("r", 0.0), SECOND)
        .await
        .unwrap();
    assert_eq!(status, 204);
}

#[tokio::test]
async fn h2c_and_gzip_are_understood() {
    let sim = start(SimBidderConfig::new("modern")).await;
    let h2: HttpClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = http::Request::post(sim.endpoint())
        .body(Full::new(Bytes::from(request("r", 0.0).to_string())))
        .unwrap();
    let response = h2.request(req).await.unwrap();
    assert_eq!(
        (response.version(), response.status().as_u16()),
        (http::Version::HTTP_2, 200)
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(request("g", 0.0).to_string().as_bytes())
        .unwrap();
    let req = http::Request::post(sim.endpoint())
        .header("content-encoding", "gzip")
        .body(Full::new(Bytes::from(gz.finish().unwrap())))
        .unwrap();
    let response = client().request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: BidResponse = serde_json::from_slice(&body).unwrap();
    assert_eq!(body.id, "g");
}

#[tokio::test]
async fn bad_bodies_get_400_and_stats_are_served() {
    let sim = start(SimBidderConfig::new("strict")).await;
    let client = client();
    let req = http::Request::post(sim.endpoint())
        .body(Full::new(Bytes::from_static(b"{\"imp\": 3}")))
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 400);
    let response = client
        .request(
            http::Request::get(format!("http://{}/stats", sim.addr()))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stats: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        (stats["bad_requests"].as_u64(), stats["requests"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        get(&client, format!("http://{}/nowhere", sim.addr())).await,
        404
    );
}

#[tokio::test]
async fn a_nonsense_config_is_refused_at_spawn() {
    let mut config = SimBidderConfig::new("broken");
    config.faults.garbage = 3.0;
    let error = SimBidder::spawn(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("faults.garbage"), "{error}");
}

#[test]
fn demo_bidders_are_valid_and_varied() {
    let bidders = bourse_sim::demo::demo_bidders();
    assert!((3..=4).contains(&bidders.len()));
    for bidder in &bidders {
        assert_eq!(bidder.validate(), Ok(()), "{}", bidder.name);
    }
    assert!(
        bidders
            .iter()
            .any(|b| matches!(b.behaviour, Behaviour::Shading { .. }))
    );
    assert!(bidders.iter().any(|b| !b.deal_ids.is_empty()));
    let media: std::collections::HashSet<_> = bidders
        .iter()
        .flat_map(|b| b.media.iter().copied())
        .collect();
    assert_eq!(media.len(), 4, "every media type is bought by someone");
}
