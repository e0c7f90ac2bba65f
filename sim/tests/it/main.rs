//! The simulated partner over real sockets: bids, seeds, faults, notices, media and deals.

use bourse_engine::openrtb::{BidResponse, MediaType};
use bourse_sim::bidder::{
    Faults, Latency, NoticeKind, PriceDistribution, SimBidder, SimBidderConfig, SimBidderHandle,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
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

fn request(id: &str, floor: f64) -> Value {
    json!({
        "id": id,
        "imp": [
            {"id": "1", "banner": {"format": [{"w": 300, "h": 250}]}, "bidfloor": floor},
            {"id": "2", "video": {"mimes": ["video/mp4"], "w": 640, "h": 360}, "bidfloor": floor}
        ]
    })
}

/// Posts a bid request; returns the status and the body (None when empty or not JSON).
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
        let bid = &body.unwrap().seatbid[0].bid[0];
        let price = bid.price.unwrap();
        assert!(
            (2.0..3.0).contains(&price),
            "price {price} within [floor, max)"
        );
        assert_eq!(bid.impid, "1", "only the banner impression is bought");
        assert_eq!((bid.w, bid.h, bid.mtype), (Some(300), Some(250), Some(1)));
        seen += 1;
    }
    assert!(
        seen > 10 && seen < 40,
        "about half the values clear a floor at the middle: {seen}"
    );
}

#[tokio::test]
async fn a_seed_makes_answers_repeatable() {
    let answers = |seed: u64| async move {
        let mut config = SimBidderConfig::new("seeded");
        config.seed = seed;
        config.bid_rate = 0.5;
        config.price = PriceDistribution::LogNormal {
            median: 2.0,
            sigma: 0.6,
        };
        let sim = start(config).await;
        let client = client();
        let mut out = Vec::new();
        for n in 0..20 {
            let answer = post(&client, &sim, &request(&format!("r{n}"), 0.0), SECOND)
                .await
                .unwrap();
            out.push(answer.1.map(|b| {
                b.seatbid[0]
                    .bid
                    .iter()
                    .map(|bid| bid.price)
                    .collect::<Vec<_>>()
            }));
        }
        out
    };
    let first = answers(11).await;
    assert_eq!(
        first,
        answers(11).await,
        "the same seed and requests give the same bids"
    );
    assert_ne!(first, answers(12).await, "another seed gives other bids");
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
    assert_eq!(sim.stats().no_bids.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn each_fault_is_served_on_demand() {
    let sim = start(SimBidderConfig::new("faulty")).await;
    let client = client();
    sim.set_faults(Faults {
        http_500: 1.0,
        ..Faults::default()
    });
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
    assert!(
        body.unwrap().seatbid[0]
            .bid
            .iter()
            .all(|b| b.impid.starts_with("unknown-"))
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
    let body =
        tokio::time::timeout(Duration::from_millis(300), response.into_body().collect()).await;
    assert!(body.is_err(), "the body never comes");
    let stats = sim.stats();
    for (name, count) in [
        ("http_500", &stats.http_500),
        ("garbage", &stats.garbage),
        ("unknown_imp", &stats.unknown_imp),
        ("empty_seatbid", &stats.empty_seatbid),
        ("hang_after_headers", &stats.hang_after_headers),
    ] {
        assert_eq!(count.load(Ordering::Relaxed), 1, "{name}");
    }
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
async fn notices_are_recorded_with_their_parameters() {
    let sim = start(SimBidderConfig::new("noted")).await;
    let (_, body) = post(&client(), &sim, &request("r", 0.0), SECOND)
        .await
        .unwrap();
    let nurl = body.unwrap().seatbid[0].bid[0].nurl.clone().unwrap();
    assert!(
        nurl.contains("${AUCTION_PRICE}") && nurl.contains("${AUCTION_ID}"),
        "{nurl}"
    );
    let fired = nurl
        .replace("${AUCTION_PRICE}", "1.25")
        .replace("${AUCTION_ID}", "r");
    let req = http::Request::get(fired)
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client().request(req).await.unwrap().status(), 200);
    let notices = sim.notices();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].kind, NoticeKind::Win);
    assert_eq!(notices[0].params["price"], "1.25");
    assert_eq!(notices[0].params["auction"], "r");
}

#[tokio::test]
async fn deal_bids_carry_the_deal_and_meet_its_floor() {
    let mut config = SimBidderConfig::new("dealer");
    config.price = PriceDistribution::Fixed { value: 1.0 };
    config.deal_ids = vec!["d-1".into()];
    let sim = start(config).await;
    let mut req = request("r", 0.0);
    req["imp"][0]["pmp"] =
        json!({"deals": [{"id": "other", "bidfloor": 9.0}, {"id": "d-1", "bidfloor": 4.0}]});
    let (_, body) = post(&client(), &sim, &req, SECOND).await.unwrap();
    let body = body.unwrap();
    let bid = body.seatbid[0].bid.iter().find(|b| b.impid == "1").unwrap();
    assert_eq!(bid.dealid.as_deref(), Some("d-1"));
    assert_eq!(bid.price, Some(4.0));
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
mod traffic;
