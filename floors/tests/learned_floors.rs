//! Learned floors end to end through the public API: the revenue bar against Myerson's
//! reserve, the guard rails, bounded memory under hostile segments, dropped observations,
//! metrics, the snapshot export and the background learner task.

use bourse_floors::simulate::{self, Scenario, ValueDistribution};
use bourse_floors::{
    AuctionType, Country, FloorKey, FloorSource, Floors, LearnedFloorsConfig, Observation, Segment,
    TopBids,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::Arc;
use std::time::{Duration, Instant};

const UNIT: ValueDistribution = ValueDistribution::Uniform { min: 0.0, max: 1.0 };

/// The bar: after 20,000 auctions of learning, learned floors earn at least 95 % of the
/// revenue of Myerson's optimal reserve over the next 20,000 (exploration auctions included),
/// and more than no floor and than a fixed floor at half the optimal reserve.
fn assert_meets_the_bar(scenario: Scenario) {
    let outcome = simulate::run(&scenario, &simulate::simulation_config()).unwrap();
    let table = simulate::markdown(std::slice::from_ref(&outcome));
    assert_eq!(scenario.learning_auctions, 20_000);
    assert!(outcome.ratio() >= 0.95, "below 95 % of optimal:\n{table}");
    // Also against the exact expected optimum, not only the same draws.
    assert!(
        outcome.learned >= 0.95 * outcome.reference_expected,
        "{table}"
    );
    assert!(
        outcome.learned > outcome.no_floor,
        "no better than no floor:\n{table}"
    );
    assert!(
        outcome.learned > outcome.fixed,
        "no better than 0.5×r*:\n{table}"
    );
    assert_eq!(outcome.dropped, 0, "{table}");
    // Stationary demand: the floor settled before the evaluation window.
    assert!(outcome.floor_changes <= 1, "flapping:\n{table}");
    // Exploration stays near its 5 % share.
    let share = outcome.explored as f64 / scenario.evaluation_auctions as f64;
    assert!((0.04..=0.06).contains(&share), "exploration share {share}");
}

#[test]
fn second_price_uniform_two_bidders_meets_the_bar() {
    assert_meets_the_bar(Scenario::second_price(UNIT, 2));
}

#[test]
fn second_price_exponential_meets_the_bar() {
    assert_meets_the_bar(Scenario::second_price(
        ValueDistribution::Exponential { mean: 1.0 },
        2,
    ));
}

#[test]
fn second_price_log_normal_meets_the_bar() {
    assert_meets_the_bar(Scenario::second_price(
        ValueDistribution::LogNormal {
            median: 1.0,
            sigma: 1.0,
        },
        3,
    ));
}

#[test]
fn second_price_with_a_static_floor_still_meets_the_bar() {
    // The static floor (0.2) is the minimum; exploration runs there, learning sees bids above.
    let scenario = Scenario {
        static_floor: 0.2,
        ..Scenario::second_price(UNIT, 3)
    };
    assert_meets_the_bar(scenario);
}

#[test]
fn first_price_with_shading_bidders_does_no_harm() {
    // No bar: with bidders who shade and only drop out under the floor, no floor beats every
    // floor; the learner must find that and stay out of the way.
    let scenario = Scenario::first_price(UNIT, 2, 0.7);
    let outcome = simulate::run(&scenario, &simulate::simulation_config()).unwrap();
    assert_eq!(outcome.reference_floor, 0.0);
    assert!(outcome.learned >= 0.99 * outcome.reference, "{outcome:?}");
}

/// Drives one placement by hand: draws `bidders` uniform values per auction, asks for the
/// floor, runs a second-price auction, observes and drains. Returns every floor applied.
fn drive(
    floors: &Floors,
    learner: &mut bourse_floors::Learner,
    key: &FloorKey,
    distribution: ValueDistribution,
    auctions: usize,
    rng: &mut StdRng,
) -> Vec<f64> {
    let mut applied = Vec::with_capacity(auctions);
    for _ in 0..auctions {
        let decision = floors.floor_for(key);
        let floor_used = decision.floor;
        let bids = TopBids::from_prices(
            (0..2)
                .map(|_| distribution.sample(rng))
                .filter(|&bid| bid >= floor_used),
        );
        floors.observe(Observation {
            key: key.clone(),
            floor_used,
            explore: decision.explore,
            bids,
            auction_type: AuctionType::Second,
        });
        learner.drain();
        if !decision.explore {
            applied.push(decision.floor);
        }
    }
    applied
}

#[test]
fn the_floor_never_exceeds_max_floor() {
    // The optimum is 0.5; the cap at 0.3 must bind from the first learned floor on.
    let config = LearnedFloorsConfig {
        max_floor: 0.3,
        ..simulate::simulation_config()
    };
    let (floors, mut learner) = Floors::with_seed(config, 3).unwrap();
    let key = FloorKey::placement(Arc::from("capped"));
    let mut rng = StdRng::seed_from_u64(3);
    let applied = drive(&floors, &mut learner, &key, UNIT, 20_000, &mut rng);
    assert!(!applied.is_empty());
    assert!(
        applied.iter().all(|&floor| floor <= 0.3),
        "{:?}",
        applied.iter().fold(0.0f64, |a, &b| a.max(b))
    );
    // The cap binds: the floor sits at it, or at the last top bid under it.
    let floor = floors.snapshot().lookup(&key).0.unwrap();
    assert!((0.28..=0.3).contains(&floor), "{floor}");
}

#[test]
fn floors_do_not_flap_under_stationary_demand() {
    let (floors, mut learner) = Floors::with_seed(simulate::simulation_config(), 11).unwrap();
    let key = FloorKey::placement(Arc::from("steady"));
    let mut rng = StdRng::seed_from_u64(11);
    drive(&floors, &mut learner, &key, UNIT, 20_000, &mut rng);
    let applied = drive(&floors, &mut learner, &key, UNIT, 100_000, &mut rng);
    let changes = applied.windows(2).filter(|pair| pair[0] != pair[1]).count();
    assert!(
        changes <= 1,
        "{changes} floor changes in 100,000 stationary auctions"
    );
    // And the report agrees with what was applied.
    let report = floors.snapshot();
    let entry = report
        .report()
        .iter()
        .find(|entry| entry.key == key)
        .unwrap();
    assert!(entry.floor_changes <= 2, "{entry:?}");
}

#[test]
fn floors_follow_a_shift_in_demand_step_by_step() {
    let config = simulate::simulation_config();
    let max_step = config.max_step;
    let (floors, mut learner) = Floors::with_seed(config, 5).unwrap();
    let key = FloorKey::placement(Arc::from("shifting"));
    let mut rng = StdRng::seed_from_u64(5);
    drive(&floors, &mut learner, &key, UNIT, 20_000, &mut rng);
    let before = floors.snapshot().lookup(&key).0.unwrap();
    // Demand doubles: the optimum moves from 0.5 to 1.0.
    let doubled = ValueDistribution::Uniform { min: 0.0, max: 2.0 };
    let applied = drive(&floors, &mut learner, &key, doubled, 120_000, &mut rng);
    let after = floors.snapshot().lookup(&key).0.unwrap();
    assert!(
        after > 1.5 * before && (0.8..=1.2).contains(&after),
        "{before} → {after}"
    );
    for pair in applied.windows(2) {
        let step = (pair[1] - pair[0]).abs() / pair[0];
        assert!(step <= max_step + 1e-9, "step {} → {}", pair[0], pair[1]);
    }
}

#[test]
fn segments_learn_their_own_floors_and_fall_back_to_the_placement() {
    let (floors, mut learner) = Floors::with_seed(simulate::simulation_config(), 9).unwrap();
    let placement: Arc<str> = Arc::from("sidebar");
    let mobile = FloorKey::new(
        Arc::clone(&placement),
        Segment::new(Some(4), Country::parse("USA"), Some((320, 50))),
    );
    let desktop = FloorKey::new(
        Arc::clone(&placement),
        Segment::new(Some(2), Country::parse("USA"), Some((728, 90))),
    );
    let mut rng = StdRng::seed_from_u64(9);
    let rich = ValueDistribution::Uniform { min: 0.0, max: 4.0 };
    for _ in 0..30 {
        drive(&floors, &mut learner, &mobile, UNIT, 1_000, &mut rng);
        drive(&floors, &mut learner, &desktop, rich, 1_000, &mut rng);
    }
    let snapshot = floors.snapshot();
    let (mobile_floor, mobile_source) = snapshot.lookup(&mobile);
    let (desktop_floor, desktop_source) = snapshot.lookup(&desktop);
    assert_eq!(
        (mobile_source, desktop_source),
        (FloorSource::Segment, FloorSource::Segment)
    );
    // Myerson: 0.5 and 2.0.
    assert!(
        (0.35..=0.65).contains(&mobile_floor.unwrap()),
        "{mobile_floor:?}"
    );
    assert!(
        (1.5..=2.5).contains(&desktop_floor.unwrap()),
        "{desktop_floor:?}"
    );
    // A segment never seen falls back to the placement's floor.
    let unseen = FloorKey::new(Arc::clone(&placement), Segment::new(Some(7), None, None));
    let (floor, source) = snapshot.lookup(&unseen);
    assert_eq!(source, FloorSource::Placement);
    assert!(floor.unwrap() > 0.0);
    // An unknown placement has no learned floor, and every auction of it is uncensored.
    let decision = floors.floor_for(&FloorKey::placement(Arc::from("unknown")));
    assert_eq!(
        (decision.floor, decision.explore, decision.source),
        (0.0, true, FloorSource::None)
    );
}

#[test]
fn hostile_segments_cannot_grow_memory_or_evict_real_traffic() {
    let config = LearnedFloorsConfig {
        max_segments_per_placement: 8,
        max_placements: 4,
        ..simulate::simulation_config()
    };
    let (floors, mut learner) = Floors::with_seed(config, 13).unwrap();
    let placement: Arc<str> = Arc::from("article");
    let real = FloorKey::new(
        Arc::clone(&placement),
        Segment::new(Some(1), Country::parse("FRA"), Some((300, 250))),
    );
    let mut rng = StdRng::seed_from_u64(13);
    for round in 0..20u32 {
        drive(&floors, &mut learner, &real, UNIT, 1_000, &mut rng);
        // 500 never-repeating segments per round, 10,000 in all, each seen once.
        for i in 0..500u32 {
            let junk = round * 500 + i;
            let segment = Segment::new(
                Some((junk % 256) as u8),
                None,
                Some(((junk / 256) as u16, 1)),
            );
            drive(
                &floors,
                &mut learner,
                &FloorKey::new(Arc::clone(&placement), segment),
                UNIT,
                1,
                &mut rng,
            );
        }
    }
    // Hostile placements too: only `max_placements` are ever tracked.
    for i in 0..1_000 {
        floors.observe(Observation {
            key: FloorKey::placement(Arc::from(format!("junk-{i}"))),
            floor_used: 0.0,
            explore: true,
            bids: TopBids::NONE,
            auction_type: AuctionType::First,
        });
        learner.drain();
    }
    learner.publish();
    assert!(learner.segments() <= 8, "{} segments", learner.segments());
    assert_eq!(learner.placements(), 4);
    let stats = learner.stats();
    assert!(stats.segments_evicted >= 9_990, "{stats:?}");
    assert_eq!(stats.ignored_placements, 1_000 - 3);
    let snapshot = floors.snapshot();
    assert!(snapshot.report().len() <= 4 * (1 + 8));
    // The real segment kept its slot and learned its floor.
    let (floor, source) = snapshot.lookup(&real);
    assert_eq!(source, FloorSource::Segment, "{floor:?}");
}

#[test]
fn a_full_channel_drops_and_counts() {
    let config = LearnedFloorsConfig {
        channel_capacity: 16,
        ..simulate::simulation_config()
    };
    let (floors, mut learner) = Floors::new(config).unwrap();
    let registry = prometheus::Registry::new();
    floors.register(&registry).unwrap();
    let key = FloorKey::placement(Arc::from("busy"));
    let accepted = (0..100)
        .filter(|_| {
            floors.observe(Observation {
                key: key.clone(),
                floor_used: 0.0,
                explore: true,
                bids: TopBids::new(Some(1.0), None),
                auction_type: AuctionType::Second,
            })
        })
        .count();
    assert_eq!(accepted, 16);
    assert_eq!(floors.dropped(), 84);
    assert_eq!(learner.drain(), 16);
    assert_eq!(
        metric(&registry, "bourse_floors_observations_dropped_total"),
        84.0
    );
    assert_eq!(metric(&registry, "bourse_floors_observations_total"), 16.0);
    // Room again once drained.
    assert!(floors.observe(Observation {
        key,
        floor_used: 0.0,
        explore: true,
        bids: TopBids::NONE,
        auction_type: AuctionType::Second,
    }));
}

/// The value of an unlabelled metric, or the sum over a labelled family.
fn metric(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric())
        // The kind a family is not stays at its default 0.
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

#[test]
fn metrics_label_placements_only_and_count_explorations() {
    let (floors, mut learner) = Floors::with_seed(simulate::simulation_config(), 17).unwrap();
    let registry = prometheus::Registry::new();
    floors.register(&registry).unwrap();
    let key = FloorKey::new(
        Arc::from("hero"),
        Segment::new(Some(2), Country::parse("DEU"), None),
    );
    let mut rng = StdRng::seed_from_u64(17);
    drive(&floors, &mut learner, &key, UNIT, 10_000, &mut rng);
    let families = registry.gather();
    let learned = families
        .iter()
        .find(|family| family.name() == "bourse_floors_learned_cpm")
        .expect("learned floor gauge");
    let series: Vec<_> = learned.get_metric().iter().collect();
    assert_eq!(
        series.len(),
        1,
        "one series per placement, none per segment"
    );
    assert_eq!(series[0].get_label()[0].name(), "placement");
    assert_eq!(series[0].get_label()[0].value(), "hero");
    let floor = series[0].get_gauge().get_value();
    assert!((0.3..=0.7).contains(&floor), "{floor}");
    assert_eq!(
        metric(&registry, "bourse_floors_observations_total"),
        10_000.0
    );
    let explorations = metric(&registry, "bourse_floors_explorations_total");
    assert_eq!(explorations, floors.explorations() as f64);
    assert!(explorations > 100.0, "{explorations}");
}

#[test]
fn the_report_exports_every_key_as_json() {
    let (floors, mut learner) = Floors::with_seed(simulate::simulation_config(), 19).unwrap();
    let key = FloorKey::new(
        Arc::from("footer"),
        Segment::new(Some(4), Country::parse("gbr"), Some((320, 50))),
    );
    let mut rng = StdRng::seed_from_u64(19);
    drive(&floors, &mut learner, &key, UNIT, 3_000, &mut rng);
    learner.publish();
    let snapshot = floors.snapshot();
    let json = serde_json::to_value(snapshot.report()).unwrap();
    let entries = json.as_array().unwrap();
    assert_eq!(entries.len(), 2, "placement and segment: {json:#}");
    let placement = &entries[0];
    assert_eq!(placement["key"]["placement"], "footer");
    assert_eq!(
        placement["key"]["segment"]["device_type"],
        serde_json::Value::Null
    );
    let segment = &entries[1];
    assert_eq!(segment["key"]["segment"]["country"], "GBR");
    assert_eq!(
        segment["key"]["segment"]["size"],
        serde_json::json!([320, 50])
    );
    assert_eq!(segment["observations"], 3_000);
    let at_floor = placement["estimated_revenue_at_floor"].as_f64().unwrap();
    let at_static = placement["estimated_revenue_at_static"].as_f64().unwrap();
    assert!(placement["learned_floor"].as_f64().unwrap() > 0.0);
    assert!(at_floor > at_static, "{placement:#}");
    assert!(placement["realized_revenue_at_floor"].as_f64().unwrap() > 0.0);
}

#[test]
fn garbage_observations_are_ignored_without_panicking() {
    let (floors, mut learner) = Floors::with_seed(simulate::simulation_config(), 23).unwrap();
    let key = FloorKey::placement(Arc::from("odd"));
    for floor_used in [f64::NAN, f64::INFINITY, -1.0] {
        floors.observe(Observation {
            key: key.clone(),
            floor_used,
            explore: true,
            bids: TopBids::new(Some(f64::NAN), Some(-3.0)),
            auction_type: AuctionType::Second,
        });
    }
    assert_eq!(learner.drain(), 3);
    learner.recompute();
    assert_eq!(learner.stats().invalid, 3);
    assert_eq!(floors.floor_for(&key).floor, 0.0);
}

#[test]
fn disabled_floors_do_nothing() {
    let (floors, mut learner) = Floors::new(LearnedFloorsConfig::default()).unwrap();
    let key = FloorKey::placement(Arc::from("off"));
    let decision = floors.floor_for(&key);
    assert_eq!((decision.floor, decision.explore), (0.0, false));
    assert!(!floors.observe(Observation {
        key,
        floor_used: 0.0,
        explore: false,
        bids: TopBids::NONE,
        auction_type: AuctionType::Second,
    }));
    assert_eq!(learner.drain(), 0);
}

#[test]
fn configuration_reads_partial_toml_like_json_and_refuses_unknown_keys() {
    let config: LearnedFloorsConfig =
        serde_json::from_str(r#"{"enabled": true, "max_floor": 20.0}"#).unwrap();
    assert!(config.enabled);
    assert_eq!(config.max_floor, 20.0);
    assert_eq!(config.window, LearnedFloorsConfig::default().window);
    let error = serde_json::from_str::<LearnedFloorsConfig>(r#"{"max_flor": 20.0}"#)
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown field `max_flor`"), "{error}");
    let bad = LearnedFloorsConfig {
        exploration_share: 0.9,
        ..LearnedFloorsConfig::default()
    };
    let error = Floors::new(bad).unwrap_err().to_string();
    assert!(
        error.contains("exploration_share") && error.contains("0.9"),
        "{error}"
    );
}

#[tokio::test]
async fn the_learner_task_publishes_and_stops_on_shutdown() {
    let config = LearnedFloorsConfig {
        recompute_interval_ms: 20,
        recompute_every_observations: 1_000_000,
        ..simulate::simulation_config()
    };
    let (floors, learner) = Floors::with_seed(config, 29).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(learner.run(async {
        let _ = stopped.await;
    }));
    let key = FloorKey::placement(Arc::from("live"));
    let mut rng = StdRng::seed_from_u64(29);
    let deadline = Instant::now() + Duration::from_secs(10);
    while floors.snapshot().lookup(&key).0.is_none() {
        assert!(Instant::now() < deadline, "no floor published");
        // Batches under the channel's capacity, yielding so the learner drains them.
        for _ in 0..500 {
            let decision = floors.floor_for(&key);
            let bids = TopBids::from_prices(
                (0..2)
                    .map(|_| UNIT.sample(&mut rng))
                    .filter(|&bid| bid >= decision.floor),
            );
            floors.observe(Observation {
                key: key.clone(),
                floor_used: decision.floor,
                explore: decision.explore,
                bids,
                auction_type: AuctionType::Second,
            });
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    assert_eq!(floors.dropped(), 0);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("learner stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn the_learner_task_stops_when_every_handle_is_dropped() {
    let (floors, learner) = Floors::new(simulate::simulation_config()).unwrap();
    let task = tokio::spawn(learner.run(std::future::pending()));
    let clone = floors.clone();
    drop(floors);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!task.is_finished(), "a clone is still alive");
    drop(clone);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("learner stops once orphaned")
        .unwrap();
}

#[test]
fn reconfiguring_turns_learned_floors_off_and_on_live_without_losing_them() {
    let config = simulate::simulation_config();
    let (floors, mut learner) = Floors::with_seed(config.clone(), 5).unwrap();
    let key = FloorKey::placement(Arc::from("live"));
    let mut rng = StdRng::seed_from_u64(5);
    let applied = drive(&floors, &mut learner, &key, UNIT, 20_000, &mut rng);
    let learned = *applied.last().expect("a floor was learned");
    assert!(learned > 0.0);

    floors
        .reconfigure(LearnedFloorsConfig {
            enabled: false,
            ..config.clone()
        })
        .unwrap();
    let decision = floors.floor_for(&key);
    assert_eq!((decision.floor, decision.explore), (0.0, false));
    assert!(!floors.config().enabled);
    // Nothing is learned while off.
    assert!(!floors.observe(Observation {
        key: key.clone(),
        floor_used: 0.0,
        explore: true,
        bids: TopBids::from_prices([0.9]),
        auction_type: AuctionType::Second,
    }));

    // Back on: the table learned before applies again, and exploration follows the new share.
    floors
        .reconfigure(LearnedFloorsConfig {
            exploration_share: 0.5,
            ..config.clone()
        })
        .unwrap();
    let decisions: Vec<_> = (0..2_000).map(|_| floors.floor_for(&key)).collect();
    let explored = decisions.iter().filter(|d| d.explore).count();
    assert!(
        (800..1_200).contains(&explored),
        "{explored} of 2000 explored"
    );
    assert!(
        decisions
            .iter()
            .filter(|d| !d.explore)
            .all(|d| d.floor == floors.snapshot().lookup(&key).0.unwrap())
    );

    // The queue's bound follows the config too: with room for 16, the 17th waits for nothing
    // and is dropped.
    floors
        .reconfigure(LearnedFloorsConfig {
            channel_capacity: 16,
            ..config.clone()
        })
        .unwrap();
    let queued = (0..17)
        .filter(|_| {
            floors.observe(Observation {
                key: key.clone(),
                floor_used: 0.0,
                explore: true,
                bids: TopBids::from_prices([0.9]),
                auction_type: AuctionType::Second,
            })
        })
        .count();
    assert_eq!(queued, 16);
    assert_eq!(learner.drain(), 16);
    // An invalid config is refused the same way as at start, and the one in force stays.
    assert!(
        floors
            .reconfigure(LearnedFloorsConfig {
                exploration_share: 0.9,
                ..config
            })
            .is_err()
    );
    assert_eq!(floors.config().channel_capacity, 16);
}
