//! The committed scenario file of the report (`floors/scenarios/floors.toml`): it holds exactly
//! `simulate::report_scenarios()` and `simulate::simulation_config()`, and bad files are refused
//! with the scenario and the key named.

use bourse_floors::simulate::{
    self, Behaviour, ScenarioFile, ScenarioFileError, ValueDistribution,
};
use bourse_floors::{AuctionType, LearnedFloorsConfig};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/floors.toml");

/// One valid scenario, to break key by key.
const ONE: &str = r#"
[learner]
enabled = true
recompute_every_observations = 500

[[scenario]]
name = "one"
distribution = { kind = "uniform", min = 0.0, max = 1.0 }
bidders = 2
behaviour = { kind = "truthful" }
auction = "second"
static_floor = 0.0
learning_auctions = 20000
evaluation_auctions = 20000
seed = 1
"#;

/// The message of the error parsing `text`.
fn error_of(text: &str) -> String {
    match ScenarioFile::parse(text) {
        Ok(file) => panic!("accepted: {file:?}\n{text}"),
        Err(error) => {
            assert!(
                matches!(error, ScenarioFileError::Invalid { .. }),
                "{error}"
            );
            error.to_string()
        }
    }
}

/// [`ONE`] with its line starting with `key` replaced by `line`.
fn one_with(key: &str, line: &str) -> String {
    let mut replaced = 0;
    let text = ONE
        .lines()
        .map(|original| {
            if original.starts_with(&format!("{key} ")) {
                replaced += 1;
                line
            } else {
                original
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(replaced, 1, "{key}");
    text
}

#[test]
fn the_committed_file_is_the_report() {
    let file = ScenarioFile::load(COMMITTED).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(file.learner, simulate::simulation_config());
    assert_eq!(file.scenarios(), simulate::report_scenarios());
    let names: Vec<&str> = file.scenario.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 10, "{names:?}");
}

#[test]
fn every_kind_parses_to_its_variant() {
    let file = ScenarioFile::parse(ONE).unwrap();
    assert_eq!(
        file.learner,
        LearnedFloorsConfig {
            enabled: true,
            recompute_every_observations: 500,
            ..LearnedFloorsConfig::default()
        }
    );
    let first = one_with(
        "distribution",
        r#"distribution = { kind = "log_normal", median = 2.0, sigma = 0.5 }"#,
    )
    .replace(
        r#"behaviour = { kind = "truthful" }"#,
        r#"behaviour = { kind = "shading", factor = 0.7 }"#,
    )
    .replace(r#"auction = "second""#, r#"auction = "first""#);
    let scenario = &ScenarioFile::parse(&first).unwrap().scenario[0].scenario;
    assert_eq!(
        scenario.distribution,
        ValueDistribution::LogNormal {
            median: 2.0,
            sigma: 0.5
        }
    );
    assert_eq!(scenario.behaviour, Behaviour::Shading { factor: 0.7 });
    assert_eq!(scenario.auction_type, AuctionType::First);
    let exponential = one_with(
        "distribution",
        r#"distribution = { kind = "exponential", mean = 3.0 }"#,
    );
    assert_eq!(
        ScenarioFile::parse(&exponential).unwrap().scenario[0]
            .scenario
            .distribution,
        ValueDistribution::Exponential { mean: 3.0 }
    );
}

#[test]
fn unknown_and_missing_keys_are_named() {
    // (the file, what the message must contain)
    let cases = [
        (format!("{ONE}colour = \"red\"\n"), "unknown field `colour`"),
        (
            ONE.replace("[learner]\n", "[learner]\nwindows = 4096\n"),
            "unknown field `windows`",
        ),
        (
            one_with(
                "distribution",
                r#"distribution = { kind = "uniform", min = 0.0, max = 1.0, mean = 1.0 }"#,
            ),
            "unknown field `mean`",
        ),
        (
            one_with(
                "distribution",
                r#"distribution = { kind = "gamma", shape = 2.0 }"#,
            ),
            "unknown variant `gamma`",
        ),
        (
            one_with(
                "behaviour",
                r#"behaviour = { kind = "shading", factor = 0.7, noise = 0.1 }"#,
            ),
            "unknown field `noise`",
        ),
        (
            one_with(
                "behaviour",
                r#"behaviour = { kind = "truthful", factor = 0.7 }"#,
            ),
            "unknown field `factor`",
        ),
        (
            one_with("auction", r#"auction = "third""#),
            "unknown variant `third`",
        ),
        (one_with("seed", ""), "missing field `seed`"),
        (format!("{ONE}[extra]\n"), "unknown field `extra`"),
    ];
    for (text, expected) in cases {
        let message = error_of(&text);
        assert!(message.contains(expected), "{expected}: {message}");
        assert!(message.contains("<text>"), "{message}");
    }
}

#[test]
fn values_out_of_range_name_the_scenario_and_the_key() {
    // (the key's line, its replacement, what the message must contain)
    let cases = [
        (
            "bidders",
            "bidders = 0",
            "`bidders` must be in [1, 64], got 0",
        ),
        (
            "bidders",
            "bidders = 65",
            "`bidders` must be in [1, 64], got 65",
        ),
        (
            "distribution",
            r#"distribution = { kind = "uniform", min = 1.0, max = 1.0 }"#,
            "`distribution.max` must be finite and above `distribution.min` (1), got 1",
        ),
        (
            "distribution",
            r#"distribution = { kind = "uniform", min = -1.0, max = 1.0 }"#,
            "`distribution.min` must be a finite CPM of at least 0, got -1",
        ),
        (
            "distribution",
            r#"distribution = { kind = "exponential", mean = 0.0 }"#,
            "`distribution.mean` must be finite and positive, got 0",
        ),
        (
            "distribution",
            r#"distribution = { kind = "log_normal", median = 1.0, sigma = -0.5 }"#,
            "`distribution.sigma` must be finite and positive, got -0.5",
        ),
        (
            "distribution",
            r#"distribution = { kind = "log_normal", median = nan, sigma = 0.5 }"#,
            "`distribution.median` must be finite and positive, got NaN",
        ),
        (
            "behaviour",
            r#"behaviour = { kind = "shading", factor = 1.5 }"#,
            "`behaviour.factor` must be in (0, 1], got 1.5",
        ),
        (
            "static_floor",
            "static_floor = -0.5",
            "`static_floor` must be a finite CPM of at least 0, got -0.5",
        ),
        (
            "evaluation_auctions",
            "evaluation_auctions = 0",
            "`evaluation_auctions` must be at least 1, got 0",
        ),
    ];
    for (key, line, expected) in cases {
        let message = error_of(&one_with(key, line));
        assert!(
            message.contains(&format!("scenario `one`: {expected}")),
            "{key}: {message}"
        );
    }
    // A negative count is not a count.
    let message = error_of(&one_with("learning_auctions", "learning_auctions = -1"));
    assert!(message.contains("invalid value: integer `-1`"), "{message}");
}

#[test]
fn file_level_mistakes_are_refused() {
    let message = error_of(&ONE.replace("recompute_every_observations = 500", "window = 10"));
    assert!(
        message.contains("[learner]: `window` must be in [100, 65536], got 10"),
        "{message}"
    );
    let message = error_of(&ONE.replace("enabled = true\n", ""));
    assert!(message.contains("`enabled` must be true"), "{message}");
    let message = error_of(&ONE[..ONE.find("[[scenario]]").unwrap()]);
    assert!(message.contains("at least one"), "{message}");
    let twice = format!("{ONE}{}", &ONE[ONE.find("[[scenario]]").unwrap()..]);
    let message = error_of(&twice);
    assert!(
        message.contains("scenario `one` appears twice"),
        "{message}"
    );
    let message = error_of(&one_with("name", r#"name = " ""#));
    assert!(
        message.contains("[[scenario]] #1: `name` must not be empty"),
        "{message}"
    );
}

#[test]
fn a_missing_file_names_the_path() {
    let error = ScenarioFile::load("/nonexistent/floors.toml").unwrap_err();
    assert!(matches!(error, ScenarioFileError::Read { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("cannot read scenario file /nonexistent/floors.toml: "),
        "{error}"
    );
}
