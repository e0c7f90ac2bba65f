//! `bourse demo`'s setup: simulated partners on loopback make auctions really clear.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn the_demo_clears_banner_auctions_above_the_floor_and_answers_204_otherwise() {
    let demo = bourse::demo::start_bidders("127.0.0.1:0".parse().unwrap())
        .await
        .expect("demo bidders start");
    let ex = Exchange::start(&demo.config).await;
    let mut cleared = 0;
    for n in 0..20 {
        let (status, response) = ex
            .auction(&banner_request(&format!("demo-{n}"), &[("1", 0.5)]))
            .await;
        match status.as_u16() {
            200 => {
                cleared += 1;
                let bid = &response["seatbid"][0]["bid"][0];
                // Our price is the clearing price less the demo's 10% fee; clearing >= floor.
                assert!(
                    bid["price"].as_f64().unwrap() >= 0.5 * 0.9 - 1e-9,
                    "{response}"
                );
                assert!(bid["adm"].as_str().is_some_and(|adm| !adm.is_empty()));
            }
            204 => {}
            other => panic!("unexpected status {other}: {response}"),
        }
    }
    assert!(
        cleared >= 10,
        "the demo's partners bid on most banner requests, cleared {cleared} of 20"
    );
    let mut nobody = banner_request("demo-none", &[("1", 1000.0)]);
    nobody["tmax"] = json!(200);
    assert_eq!(ex.auction(&nobody).await.0, 204);
    drop(demo);
}
