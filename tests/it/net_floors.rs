//! Net floors end to end: whatever the fee, auction type, deal or currency, no price that
//! reaches the seller (the answer's `price`, the ledger's net) or a partner (`${AUCTION_PRICE}`
//! in its markup and notices) is below the seller's floor. Partners bid exactly the floor they
//! are told, the boundary where rounding would show.

use crate::support::*;
use bourse_engine::pricing::{gross_of_fee, told_floor};
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};

/// Units of USD per unit: the exchange's rates in these tests.
fn usd_per(cur: &str) -> f64 {
    match cur {
        "USD" => 1.0,
        "EUR" => 1.1,
        "GBP" => 1.27,
        other => panic!("no rate for {other}"),
    }
}

const RATES: &str = "[plugins.exchange.rates]\nEUR = 1.1\nGBP = 1.27\n";

/// `amount` from one currency to another, computed as the exchange computes it.
fn convert(amount: f64, from: &str, to: &str) -> f64 {
    if from == to {
        amount
    } else {
        amount * usd_per(from) / usd_per(to)
    }
}

/// A price as `${AUCTION_PRICE}` carries it (6 decimals), the precision a partner sees.
fn at_macro_precision(price: f64) -> f64 {
    format!("{price:.6}").parse().unwrap()
}

/// What the partner's notice URLs carry.
const NOTICE: &str = "auction=${AUCTION_ID}&price=${AUCTION_PRICE}&cur=${AUCTION_CURRENCY}";

/// A partner that bids, on every impression (or its deal), the floor it is told times
/// `markup`, in the floor's currency, with notice URLs carrying `${AUCTION_PRICE}`.
async fn floor_bidder(seat: &'static str, markup: f64) -> Partner {
    let slot: std::sync::Arc<std::sync::OnceLock<String>> = Default::default();
    let script_slot = slot.clone();
    let partner = Partner::start(move |r| {
        let base = script_slot.get().cloned().unwrap_or_default();
        let mut bids = Vec::new();
        let mut cur = "USD".to_owned();
        for imp in r["imp"].as_array().unwrap() {
            let deal = &imp["pmp"]["deals"][0];
            let told = if deal.is_object() { deal } else { imp };
            let floor = told["bidfloor"].as_f64().unwrap_or(0.0);
            cur = told["bidfloorcur"].as_str().unwrap_or("USD").to_owned();
            let mut bid = json!({
                "id": format!("{seat}-{}", imp["id"].as_str().unwrap()),
                "impid": imp["id"],
                "price": floor * markup,
                "adm": "<div>price ${AUCTION_PRICE}</div>",
                "nurl": format!("{base}/win?{NOTICE}"),
                "burl": format!("{base}/bill?{NOTICE}"),
                "adomain": [format!("{seat}.example")],
                "mtype": 1,
            });
            if deal.is_object() {
                bid["dealid"] = deal["id"].clone();
            }
            bids.push(bid);
        }
        Reply::Json(json!({"id": r["id"], "cur": cur, "seatbid": [{"seat": seat, "bid": bids}]}))
    })
    .await;
    slot.set(format!("http://{}", partner.addr)).unwrap();
    partner
}

/// One auction's settings.
#[derive(Debug, Clone, Copy)]
struct Case {
    floor: f64,
    floor_cur: &'static str,
    auction_cur: &'static str,
    at: i64,
    /// `Some(at)`: the floor is a private deal's, with that deal auction type.
    deal_at: Option<i64>,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let floors = [0.07, 0.5, 1.0, 1.23, 2.0, 3.333_333, 7.77];
    for (n, &floor) in floors.iter().enumerate() {
        for (floor_cur, auction_cur) in [("USD", "USD"), ("EUR", "USD"), ("USD", "GBP")] {
            for at in [1, 2] {
                cases.push(Case {
                    floor,
                    floor_cur,
                    auction_cur,
                    at,
                    deal_at: match n % 3 {
                        0 => None,
                        1 => Some(at),
                        _ => Some(3),
                    },
                });
            }
        }
    }
    cases
}

fn request(id: &str, case: Case) -> Value {
    let mut request = banner_request(id, &[("1", 0.0)]);
    let imp = &mut request["imp"][0];
    match case.deal_at {
        None => {
            imp["bidfloor"] = json!(case.floor);
            imp["bidfloorcur"] = json!(case.floor_cur);
        }
        Some(at) => {
            imp["pmp"] = json!({"private_auction": 1, "deals": [{"id": "d-1", "at": at,
                "bidfloor": case.floor, "bidfloorcur": case.floor_cur}]});
        }
    }
    request["cur"] = json!([case.auction_cur]);
    request["at"] = json!(case.at);
    request
}

/// Runs an auction; the answer, and its first bid's price read from the JSON text with a
/// correctly rounded parser (serde_json's own may land an ulp off, and ulps are the point).
async fn auction_exact(ex: &Exchange, request: &Value) -> (http::StatusCode, Value, f64) {
    let req = http::Request::post(ex.url("/openrtb2/auction"))
        .body(Full::new(Bytes::from(serde_json::to_vec(request).unwrap())))
        .unwrap();
    let (status, _, body) = ex.send(req).await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    let price = text
        .find("\"price\":")
        .map(|at| {
            let rest = &text[at + "\"price\":".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
                .unwrap_or(rest.len());
            rest[..end].parse::<f64>().unwrap()
        })
        .unwrap_or(f64::NAN);
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        price,
    )
}

#[tokio::test]
async fn no_winning_price_in_the_answer_or_a_partners_notice_is_below_the_floor() {
    for fee in [0.1, 0.0, 0.15] {
        let exact = floor_bidder("exact", 1.0).await;
        let above = floor_bidder("above", 1.37).await;
        let text = config(
            RATES,
            &[bidder("exact", &exact, ""), bidder("above", &above, "")],
        )
        .replace("fee = 0.1\n", &format!("fee = {fee}\n"));
        let ex = Exchange::start(&text).await;
        let mut floors = std::collections::HashMap::new();
        for (n, case) in cases().into_iter().enumerate() {
            let id = format!("nf-{fee}-{n}");
            let (status, response, price) = auction_exact(&ex, &request(&id, case)).await;
            assert_eq!(status, 200, "{case:?}: {response}");
            let seller_floor = convert(case.floor, case.floor_cur, case.auction_cur);
            assert_eq!(response["cur"], case.auction_cur);
            let bid = &response["seatbid"][0]["bid"][0];
            assert!(
                price >= seller_floor,
                "fee {fee} {case:?}: the answer's {price} is below the floor {seller_floor}"
            );
            // Partners were told the floor grossed up by the fee, in the auction currency.
            let told = exact.last_request();
            let told = match case.deal_at {
                None => &told["imp"][0],
                Some(_) => &told["imp"][0]["pmp"]["deals"][0],
            };
            assert_eq!(
                told["bidfloorcur"].as_str().unwrap_or("USD"),
                case.auction_cur
            );
            assert_eq!(
                told["bidfloor"].as_f64().unwrap(),
                told_floor(gross_of_fee(seller_floor, fee)),
                "{case:?}: {told}"
            );
            // `${AUCTION_PRICE}` in the markup: what the partner pays, in its currency (the
            // auction's: it bid in the floor's), at the macro's precision.
            let adm = bid["adm"].as_str().unwrap();
            let in_markup: f64 = adm
                .strip_prefix("<div>price ")
                .and_then(|rest| rest.strip_suffix("</div>"))
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                in_markup >= at_macro_precision(seller_floor),
                "fee {fee} {case:?}: the markup's price {in_markup} is below {seller_floor}"
            );
            // The supply side reports the price it charged; the partner's nurl and burl fire
            // with `${AUCTION_PRICE}` from it.
            for field in ["nurl", "burl"] {
                let path = bid[field]
                    .as_str()
                    .unwrap()
                    .strip_prefix("http://bourse.test")
                    .unwrap()
                    .replace("${AUCTION_PRICE}", &price.to_string());
                assert_eq!(ex.get(&path).await.0, 204, "{path}");
            }
            floors.insert(id, (case, seller_floor));
        }
        // Every win and bill notice the partners received, against its auction's floor.
        let mut notices = Vec::new();
        for _ in 0..300 {
            notices = exact.notices.lock().unwrap().clone();
            notices.extend(above.notices.lock().unwrap().iter().cloned());
            if notices.len() >= 2 * floors.len() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(notices.len(), 2 * floors.len(), "every win and bill fired");
        for notice in &notices {
            let q = query(notice.split_once('?').unwrap().1);
            let (case, seller_floor) = floors[&q["auction"]];
            assert_eq!(q["cur"], case.auction_cur, "{notice}");
            let paid: f64 = q["price"].parse().unwrap();
            assert!(
                paid >= at_macro_precision(seller_floor),
                "fee {fee} {case:?}: the partner's notice says {paid}, below {seller_floor}"
            );
        }
    }
}

const SITE: &str = r#"
[[plugins.exchange.publishers]]
id = "news"
domain = "news.example"

[[plugins.exchange.placements]]
id = "top"
publisher = "news"
sizes = [[300, 250]]
floor = 0.37

[[plugins.exchange.placements]]
id = "side"
publisher = "news"
sizes = [[300, 250]]
floor = 1.0

[[plugins.exchange.placements]]
id = "foot"
publisher = "news"
sizes = [[300, 250]]
floor = 2.2222
"#;

#[tokio::test]
async fn no_net_in_the_ledger_and_no_billed_price_on_the_ad_path_is_below_the_floor() {
    let floors = [("top", 0.37), ("side", 1.0), ("foot", 2.2222)];
    for fee in [0.1, 0.15] {
        let partner = floor_bidder("exact", 1.0).await;
        let text = config(SITE, &[bidder("exact", &partner, "")])
            .replace("fee = 0.1\n", &format!("fee = {fee}\n"));
        let ex = Exchange::start(&text).await;
        let slots: Vec<Value> = floors
            .iter()
            .map(|(placement, _)| json!({"id": placement, "placement": placement}))
            .collect();
        let body = json!({"page": "https://news.example/story", "slots": slots,
            "consent": {"denied": false}});
        let req = http::Request::post(ex.url("/ad"))
            .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())))
            .unwrap();
        let (status, _, answer) = ex.send(req).await;
        assert_eq!(status, 200);
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        let filled = answer["slots"].as_array().unwrap();
        assert_eq!(
            filled.len(),
            floors.len(),
            "a bid at each told floor wins: {answer}"
        );
        let sent = partner.last_request();
        for (n, (_, floor)) in floors.iter().enumerate() {
            assert_eq!(
                sent["imp"][n]["bidfloor"].as_f64().unwrap(),
                told_floor(gross_of_fee(*floor, fee)),
                "told the gross floor"
            );
        }
        for slot in filled {
            let floor = floors.iter().find(|(id, _)| *id == slot["id"]).unwrap().1;
            let html = slot["html"].as_str().unwrap();
            let at = html.find("price ").unwrap() + "price ".len();
            let in_markup: f64 = html[at..].split('<').next().unwrap().parse().unwrap();
            assert!(
                in_markup >= at_macro_precision(floor),
                "fee {fee}: {in_markup} < {floor}"
            );
            let imp = slot["imp"]
                .as_str()
                .unwrap()
                .strip_prefix("http://bourse.test")
                .unwrap();
            let beacon = http::Request::post(ex.url(imp))
                .body(Full::new(Bytes::new()))
                .unwrap();
            assert_eq!(ex.send(beacon).await.0, 204);
        }
        // The partner is billed at least the floor for each impression.
        let bills = partner.wait_notices("bill", floors.len()).await;
        assert_eq!(bills.len(), floors.len(), "{bills:?}");
        let lowest = at_macro_precision(0.37);
        for bill in &bills {
            let paid: f64 = query(bill)["price"].parse().unwrap();
            assert!(paid >= lowest, "fee {fee}: billed {paid}");
        }
        // The ledger's net per placement is never below its floor, in micro-units.
        let mut rows = Value::Null;
        for _ in 0..100 {
            let (_, body) = ex.get("/ledger").await;
            let ledger: Value = serde_json::from_slice(&body).unwrap();
            if ledger["day"]["total"]["impressions"] == floors.len() {
                rows = ledger["day"]["rows"].clone();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let rows = rows.as_array().expect("every impression in the ledger");
        for (placement, floor) in floors {
            let row = rows
                .iter()
                .find(|r| r["placement"] == placement)
                .unwrap_or_else(|| panic!("{placement} in {rows:?}"));
            let net = row["net_micros"].as_u64().unwrap();
            let floor_micros = (floor * 1000.0).round() as u64;
            assert!(
                net >= floor_micros,
                "fee {fee}: {placement} nets {net} < {floor_micros}"
            );
            assert_eq!(
                row["gross_micros"].as_u64().unwrap(),
                row["fee_micros"].as_u64().unwrap() + net
            );
        }
    }
}
