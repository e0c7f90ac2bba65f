use super::*;

fn request(json: &str) -> BidRequest {
    serde_json::from_str(json).expect("test request parses")
}

fn banner_request() -> BidRequest {
    request(
        r#"{"id":"r","imp":[
            {"id":"1","banner":{"format":[{"w":300,"h":250}],"battr":[3]},"bidfloor":1.0},
            {"id":"2","banner":{"w":728,"h":90},"bidfloor":0.5,
             "pmp":{"private_auction":0,"deals":[{"id":"d1","bidfloor":2.0,"wseat":["seat-a"]},{"id":"fixed","bidfloor":3.0,"at":3}]}}],
            "bcat":["IAB25"],"badv":["blocked.com"],"bapp":["com.blocked"],"bseat":["bad-seat"]}"#,
    )
}

fn terms(req: &BidRequest) -> Vec<ImpTerms> {
    req.imp
        .iter()
        .map(|imp| imp_terms(imp, 0.0, |a, _| Some(a)).unwrap())
        .collect()
}

fn candidate(bidder: usize, imp: usize, price: f64) -> Candidate {
    Candidate {
        bidder,
        imp,
        seat: format!("seat-{}", (b'a' + bidder as u8) as char).into(),
        bid: Bid {
            id: format!("b{bidder}").into(),
            impid: (imp + 1).to_string().into(),
            price: Some(price),
            adm: Some("<div>ad</div>".into()),
            ..Bid::default()
        },
        media_type: MediaType::Banner,
        price,
    }
}

fn run(req: &BidRequest, cands: &[Candidate], at: i64) -> Outcome {
    let terms = terms(req);
    let valid: Vec<bool> = cands
        .iter()
        .map(|c| check_bid(req, &terms, c).is_ok())
        .collect();
    clear(
        &terms,
        cands,
        &valid,
        Rules {
            auction_type: at,
            increment: 0.01,
        },
    )
}

#[test]
fn first_price_pays_the_bid() {
    let req = banner_request();
    let out = run(&req, &[candidate(0, 0, 2.0), candidate(1, 0, 3.0)], 1);
    assert_eq!(
        out.winners,
        vec![Winner {
            candidate: 1,
            clearing: 3.0
        }]
    );
    assert_eq!(out.losers, vec![(0, LossReason::LostToHigherBid)]);
}

#[test]
fn second_price_pays_second_plus_increment() {
    let req = banner_request();
    let out = run(
        &req,
        &[
            candidate(0, 0, 2.0),
            candidate(1, 0, 3.0),
            candidate(2, 0, 1.5),
        ],
        2,
    );
    assert_eq!(out.winners.len(), 1);
    assert_eq!(out.winners[0].candidate, 1);
    assert!((out.winners[0].clearing - 2.01).abs() < 1e-9);
}

#[test]
fn second_price_never_exceeds_the_winning_bid() {
    let req = banner_request();
    let out = run(&req, &[candidate(0, 0, 3.0), candidate(1, 0, 3.0)], 2);
    assert_eq!(out.winners[0].candidate, 0, "ties go to the first arrival");
    assert_eq!(out.winners[0].clearing, 3.0);
}

#[test]
fn second_price_with_one_bid_clears_at_the_floor() {
    let req = banner_request();
    let out = run(&req, &[candidate(0, 0, 4.0)], 2);
    assert!((out.winners[0].clearing - 1.01).abs() < 1e-9, "{:?}", out);
}

#[test]
fn bids_below_floor_lose() {
    let req = banner_request();
    let terms = terms(&req);
    assert_eq!(
        check_bid(&req, &terms, &candidate(0, 0, 0.99)),
        Err(LossReason::BelowAuctionFloor)
    );
    assert_eq!(check_bid(&req, &terms, &candidate(0, 0, 1.0)), Ok(()));
}

#[test]
fn invalid_bids_get_their_loss_code() {
    let req = banner_request();
    let terms = terms(&req);
    let check = |edit: &dyn Fn(&mut Candidate)| {
        let mut c = candidate(0, 0, 2.0);
        edit(&mut c);
        check_bid(&req, &terms, &c)
    };
    assert_eq!(
        check(&|c| c.bid.price = None),
        Err(LossReason::MissingBidPrice)
    );
    assert_eq!(
        check(&|c| {
            c.bid.price = Some(0.0);
            c.price = 0.0
        }),
        Err(LossReason::InvalidBidResponse)
    );
    assert_eq!(
        check(&|c| {
            c.bid.price = Some(f64::NAN);
            c.price = f64::NAN
        }),
        Err(LossReason::InvalidBidResponse)
    );
    assert_eq!(check(&|c| c.bid.adm = None), Err(LossReason::MissingMarkup));
    assert_eq!(
        check(&|c| {
            c.bid.adm = None;
            c.bid.nurl = Some("http://x/win".into())
        }),
        Ok(())
    );
    assert_eq!(
        check(&|c| c.media_type = MediaType::Video),
        Err(LossReason::IncorrectCreativeFormat)
    );
    assert_eq!(
        check(&|c| {
            c.bid.w = Some(320);
            c.bid.h = Some(50)
        }),
        Err(LossReason::SizeNotAllowed)
    );
    assert_eq!(
        check(&|c| {
            c.bid.w = Some(300);
            c.bid.h = Some(250)
        }),
        Ok(())
    );
    assert_eq!(
        check(&|c| c.bid.attr = vec![3]),
        Err(LossReason::CreativeAttributeExclusions)
    );
    assert_eq!(
        check(&|c| c.bid.cat = vec!["IAB25".into()]),
        Err(LossReason::CategoryExclusions)
    );
    assert_eq!(
        check(&|c| c.bid.adomain = vec!["shop.blocked.com".into()]),
        Err(LossReason::AdvertiserExclusions)
    );
    assert_eq!(
        check(&|c| c.bid.adomain = vec!["notblocked.com".into()]),
        Ok(())
    );
    assert_eq!(
        check(&|c| c.bid.bundle = Some("com.blocked".into())),
        Err(LossReason::AppBundleExclusions)
    );
    assert_eq!(
        check(&|c| c.seat = "bad-seat".into()),
        Err(LossReason::BuyerSeatBlocked)
    );
    assert_eq!(
        check(&|c| c.bid.dealid = Some("nope".into())),
        Err(LossReason::InvalidDealId)
    );
}

#[test]
fn deals_have_their_own_floor_and_seats() {
    let req = banner_request();
    let terms = terms(&req);
    let deal = |bidder: usize, price: f64| {
        let mut c = candidate(bidder, 1, price);
        c.bid.dealid = Some("d1".into());
        c
    };
    assert_eq!(
        check_bid(&req, &terms, &deal(0, 1.5)),
        Err(LossReason::BelowDealFloor)
    );
    assert_eq!(check_bid(&req, &terms, &deal(0, 2.5)), Ok(()));
    assert_eq!(
        check_bid(&req, &terms, &deal(1, 2.5)),
        Err(LossReason::BuyerSeatBlocked)
    );
}

#[test]
fn private_auctions_take_deal_bids_only() {
    let mut req = banner_request();
    req.imp[1].pmp.as_mut().unwrap().private_auction = Some(1);
    let terms = terms(&req);
    assert_eq!(
        check_bid(&req, &terms, &candidate(0, 1, 9.0)),
        Err(LossReason::InvalidDealId)
    );
}

#[test]
fn a_winning_deal_marks_open_losers_lost_to_deal() {
    let req = banner_request();
    let mut deal = candidate(0, 1, 2.5);
    deal.bid.dealid = Some("d1".into());
    let open = candidate(1, 1, 2.0);
    let out = run(&req, &[deal, open], 2);
    assert_eq!(out.winners[0].candidate, 0);
    assert!(
        (out.winners[0].clearing - 2.01).abs() < 1e-9,
        "deal floor 2.0 beats the open bid"
    );
    assert_eq!(out.losers, vec![(1, LossReason::LostToDealBid)]);
}

#[test]
fn fixed_price_deals_clear_at_the_deal_floor() {
    let req = banner_request();
    let mut deal = candidate(0, 1, 5.0);
    deal.bid.dealid = Some("fixed".into());
    let out = run(&req, &[deal], 2);
    assert_eq!(out.winners[0].clearing, 3.0);
}

#[test]
fn each_impression_has_its_own_winner() {
    let req = banner_request();
    let out = run(
        &req,
        &[
            candidate(0, 1, 1.0),
            candidate(1, 0, 2.0),
            candidate(2, 1, 0.8),
        ],
        1,
    );
    let winners: Vec<usize> = out.winners.iter().map(|w| w.candidate).collect();
    assert_eq!(winners, vec![1, 0]);
    assert_eq!(out.losers, vec![(2, LossReason::LostToHigherBid)]);
}

#[test]
fn floors_convert_currency_and_respect_the_minimum() {
    let imp: Imp = serde_json::from_str(
        r#"{"id":"1","banner":{"w":1,"h":1},"bidfloor":2.0,"bidfloorcur":"EUR"}"#,
    )
    .unwrap();
    let terms = imp_terms(&imp, 0.1, |a, cur| (cur == "EUR").then_some(a * 1.1)).unwrap();
    assert!((terms.floor - 2.2).abs() < 1e-9);
    let terms = imp_terms(
        &Imp {
            bidfloor: Some(0.01),
            ..imp.clone()
        },
        0.1,
        |a, _| Some(a),
    )
    .unwrap();
    assert_eq!(terms.floor, 0.1);
    let err = imp_terms(
        &Imp {
            bidfloorcur: Some("XYZ".into()),
            ..imp
        },
        0.0,
        |_, _| None,
    )
    .unwrap_err();
    assert!(err.contains("XYZ"));
}

#[test]
fn blocked_domains_match_themselves_and_subdomains_in_any_case() {
    let cases = [
        ("example.com", "example.com", true),
        ("EXAMPLE.com", "example.COM", true),
        ("www.example.com", "example.com", true),
        ("example.com", " www.example.com ", true),
        ("shop.example.com", "example.com", true),
        ("a.b.Example.com", "EXAMPLE.COM", true),
        ("notexample.com", "example.com", false),
        ("example.com", "shop.example.com", false),
        ("example.co", "example.com", false),
        ("example.com.evil", "example.com", false),
        ("", "example.com", false),
        ("xexample.com", "example.com", false),
    ];
    for (adomain, blocked, expected) in cases {
        assert_eq!(
            domain_blocked(adomain, blocked),
            expected,
            "{adomain} vs {blocked}"
        );
    }
}
