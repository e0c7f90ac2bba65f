//! Unit tests of the simulated partner's distributions, configuration and bid building.

use super::*;
use bourse_engine::openrtb::BidRequest;

#[test]
fn price_distributions_stay_in_range_and_repeat_with_a_seed() {
    let mut a = StdRng::seed_from_u64(7);
    let mut b = StdRng::seed_from_u64(7);
    let uniform = PriceDistribution::Uniform { min: 1.0, max: 2.0 };
    for _ in 0..1000 {
        let (x, y) = (uniform.sample(&mut a), uniform.sample(&mut b));
        assert_eq!(x, y);
        assert!((1.0..2.0).contains(&x));
    }
    let lognormal = PriceDistribution::LogNormal {
        median: 2.0,
        sigma: 0.5,
    };
    let mut draws: Vec<f64> = (0..10_001).map(|_| lognormal.sample(&mut a)).collect();
    draws.sort_by(f64::total_cmp);
    assert!((draws[5000] - 2.0).abs() < 0.1, "median {}", draws[5000]);
    let exp = PriceDistribution::Exponential { mean: 3.0 };
    let mean = (0..20_000).map(|_| exp.sample(&mut a)).sum::<f64>() / 20_000.0;
    assert!((mean - 3.0).abs() < 0.15, "mean {mean}");
}

#[test]
fn configs_read_from_json_and_toml() {
    let config: SimBidderConfig = serde_json::from_value(serde_json::json!({
        "name": "x",
        "latency": {"kind": "log_normal", "median_ms": 20.0, "sigma": 0.4},
        "price": {"kind": "uniform", "min": 0.5, "max": 3.0},
        "behaviour": {"kind": "shading", "factor": 0.8},
        "faults": {"http_500": 0.01}
    }))
    .unwrap();
    assert_eq!(config.behaviour, Behaviour::Shading { factor: 0.8 });
    assert_eq!(config.faults.http_500, 0.01);
    assert_eq!(config.bid_rate, 1.0, "defaults fill the rest");
    assert!(
        serde_json::from_value::<SimBidderConfig>(serde_json::json!({"name": "x", "typo": 1}))
            .is_err()
    );
    let toml: SimBidderConfig = toml::from_str(
        "name = \"y\"\nmedia = [\"video\"]\nprice = { kind = \"exponential\", mean = 2.0 }\n\
         rates = { EUR = 1.1 }\n",
    )
    .unwrap();
    assert_eq!(toml.media, vec![MediaType::Video]);
    assert_eq!(toml.price, PriceDistribution::Exponential { mean: 2.0 });
    assert_eq!(SimBidderConfig::new("z").validate(), Ok(()));
}

#[test]
fn log_normal_prices_read_as_a_median_or_as_mu() {
    let read = |v: serde_json::Value| serde_json::from_value::<PriceDistribution>(v);
    let by_mu =
        read(serde_json::json!({"kind": "log_normal", "mu": 2.0_f64.ln(), "sigma": 0.3})).unwrap();
    let PriceDistribution::LogNormal { median, sigma } = by_mu else {
        panic!("{by_mu:?}")
    };
    assert!((median - 2.0).abs() < 1e-12 && sigma == 0.3);
    assert!(
        read(serde_json::json!({"kind": "log_normal", "median": 2.0, "mu": 0.7, "sigma": 0.3}))
            .is_err()
    );
    assert!(read(serde_json::json!({"kind": "log_normal", "sigma": 0.3})).is_err());
    // Written back as a median, which reads again to the same value.
    let text = serde_json::to_value(&by_mu).unwrap();
    assert_eq!(read(text).unwrap(), by_mu);
}

#[test]
fn nonsense_configs_are_refused_naming_the_field() {
    let check = |edit: fn(&mut SimBidderConfig), field: &str| {
        let mut config = SimBidderConfig::new("x");
        edit(&mut config);
        assert_eq!(
            config.validate().map_err(|e| e.field),
            Err(field.to_owned())
        );
    };
    check(|c| c.bid_rate = 1.5, "bid_rate");
    check(|c| c.faults.garbage = -0.1, "faults.garbage");
    check(
        |c| {
            c.tail = Some(Tail {
                share: 2.0,
                ms: 5.0,
            })
        },
        "tail.share",
    );
    check(
        |c| c.behaviour = Behaviour::Shading { factor: 1.2 },
        "behaviour.factor",
    );
    check(
        |c| c.behaviour = Behaviour::Shading { factor: 0.0 },
        "behaviour.factor",
    );
    check(
        |c| c.price = PriceDistribution::Uniform { min: 3.0, max: 1.0 },
        "price",
    );
    check(
        |c| c.price = PriceDistribution::Exponential { mean: 0.0 },
        "price.mean",
    );
    check(
        |c| c.latency = Latency::Fixed { ms: f64::NAN },
        "latency.ms",
    );
    check(|c| c.currency = "usd".into(), "currency");
    check(
        |c| {
            c.rates.insert("EUR".into(), 0.0);
        },
        "rates",
    );
    check(|c| c.name = " ".into(), "name");
}

#[test]
fn the_random_source_depends_on_seed_and_request_id_only() {
    let draw = |seed, id| rng_for(seed, id).random::<u64>();
    assert_eq!(draw(1, "a"), draw(1, "a"));
    assert_ne!(draw(1, "a"), draw(2, "a"));
    assert_ne!(draw(1, "a"), draw(1, "b"));
    // Pinned: FNV-1a does not change with the toolchain, unlike `DefaultHasher`.
    assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
}

#[test]
fn prices_are_rounded_without_dropping_under_the_floor() {
    assert_eq!(at_least(1.23456, 0.0), 1.2346);
    assert_eq!(at_least(2.000_04, 2.000_05), 2.0001);
    assert_eq!(at_least(0.5, 0.5), 0.5);
}

fn imp(json: &str) -> Imp {
    serde_json::from_str::<BidRequest>(&format!("{{\"id\":\"r\",\"imp\":[{json}]}}"))
        .unwrap()
        .imp
        .remove(0)
}

fn addr() -> SocketAddr {
    "127.0.0.1:9".parse().unwrap()
}

#[test]
fn floors_in_another_currency_are_converted_with_the_configured_rate() {
    let mut config = SimBidderConfig::new("x");
    config.price = PriceDistribution::Fixed { value: 1.0 };
    config.rates.insert("EUR".into(), 1.2);
    let imp = imp(r#"{"id":"1","banner":{"w":1,"h":1},"bidfloor":0.9,"bidfloorcur":"EUR"}"#);
    let mut rng = StdRng::seed_from_u64(0);
    assert!(
        bid_for(&config, &imp, &mut rng, &addr(), "b".into()).is_none(),
        "0.9 EUR is 1.08 USD, above a 1.0 value"
    );
    config.rates.insert("EUR".into(), 1.0);
    assert!(bid_for(&config, &imp, &mut rng, &addr(), "b".into()).is_some());
}

#[test]
fn markup_fits_the_media_type() {
    let config = SimBidderConfig::new("x");
    let mut rng = StdRng::seed_from_u64(0);
    let cases = [
        (
            r#"{"id":"1","banner":{"format":[{"w":728,"h":90}]}}"#,
            "<div",
            1,
        ),
        (
            r#"{"id":"1","video":{"mimes":["video/mp4"],"w":640,"h":360}}"#,
            "<VAST version=\"4.0\"",
            2,
        ),
        (
            r#"{"id":"1","audio":{"mimes":["audio/mpeg"]}}"#,
            "<VAST version=\"4.0\"",
            3,
        ),
        (r#"{"id":"1","native":{"request":"{}"}}"#, "{\"ver\"", 4),
    ];
    for (json, starts, mtype) in cases {
        let bid = bid_for(&config, &imp(json), &mut rng, &addr(), "b".into()).unwrap();
        let adm = bid.adm.unwrap();
        assert!(adm.starts_with(starts), "{json}: {adm}");
        assert_eq!(bid.mtype, Some(mtype));
        if mtype == 4 {
            serde_json::from_str::<serde_json::Value>(&adm).expect("native markup is JSON");
        }
        if mtype == 3 {
            assert!(
                adm.contains("audio/mpeg") && !adm.contains("video/mp4"),
                "{adm}"
            );
        }
    }
    let banner = bid_for(&config, &imp(cases[0].0), &mut rng, &addr(), "b".into()).unwrap();
    assert_eq!((banner.w, banner.h), (Some(728), Some(90)));
    assert_eq!(banner.adomain, vec!["x.example".to_owned()]);
}

#[test]
fn native_bids_answer_the_assets_requested() {
    use bourse_engine::native::{check_response, validate_request};
    let config = SimBidderConfig::new("x");
    let mut rng = StdRng::seed_from_u64(0);
    let request = r#"{"ver":"1.2","assets":[{"id":7,"required":1,"title":{"len":12}},{"id":9,"required":1,"img":{"type":1,"wmin":50,"hmin":50}},{"id":11,"data":{"type":12,"len":5}},{"id":12,"required":1,"video":{"mimes":["video/mp4"],"minduration":5,"maxduration":30,"protocols":[3]}}]}"#;
    for text in [request.to_owned(), format!(r#"{{"native":{request}}}"#)] {
        let json = serde_json::json!({"id": "1", "native": {"request": text}}).to_string();
        let bid = bid_for(&config, &imp(&json), &mut rng, &addr(), "b".into()).unwrap();
        let adm = bid.adm.unwrap();
        let asked = validate_request(&text, "request").unwrap();
        assert_eq!(check_response(&asked, &adm), Ok(()), "{adm}");
        let answer: serde_json::Value = serde_json::from_str(&adm).unwrap();
        let ids: Vec<i64> = answer["assets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, vec![7, 9, 11, 12]);
        assert_eq!(
            answer["assets"][0]["title"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            12
        );
        assert_eq!(answer["assets"][1]["img"]["w"], 50);
        assert_eq!(answer["assets"][2]["data"]["value"], "Learn");
        assert!(
            answer["assets"][3]["video"]["vasttag"]
                .as_str()
                .unwrap()
                .starts_with("<VAST")
        );
    }
}

#[test]
fn the_readme_example_config_reads_and_validates() {
    let readme = include_str!("../../README.md");
    let start = readme.find("```toml\n").expect("a TOML example") + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let config: SimBidderConfig = toml::from_str(&readme[start..end]).unwrap();
    assert_eq!(config.validate(), Ok(()));
    let PriceDistribution::LogNormal { median, .. } = config.price else {
        panic!("{:?}", config.price)
    };
    assert!((median - 0.4_f64.exp()).abs() < 1e-12);
}
