//! Prints the learned-floors report: each simulated scenario of a scenario file learned through
//! the real API and compared with Myerson's optimal reserve, no floor and a fixed floor, as a
//! Markdown table.
//!
//! `cargo run --release -p bourse-floors --example floors_report [-- PATH]`
//!
//! `PATH` is a scenario file (see `bourse_floors::simulate::ScenarioFile`); by default the
//! committed `floors/scenarios/floors.toml`, the report's scenarios.

use bourse_floors::simulate::{self, Outcome, ScenarioFile};
use std::path::PathBuf;
use std::process::ExitCode;

/// The committed scenario file of the report.
const DEFAULT_SCENARIOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/floors.toml");

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let path = args
        .next()
        .map_or_else(|| PathBuf::from(DEFAULT_SCENARIOS), PathBuf::from);
    if args.next().is_some() || path.to_string_lossy().starts_with('-') {
        eprintln!(
            "usage: floors_report [SCENARIO_FILE]\n\
             (default: {DEFAULT_SCENARIOS})"
        );
        return ExitCode::from(2);
    }
    let outcome = match ScenarioFile::load(&path) {
        Ok(file) => report(&file),
        Err(error) => Err(error.into()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("floors_report: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every scenario of `file` with its learner configuration and prints the report.
fn report(file: &ScenarioFile) -> Result<(), Box<dyn std::error::Error>> {
    let config = &file.learner;
    let scenarios = file.scenarios();
    let outcomes = scenarios
        .iter()
        .map(|scenario| simulate::run(scenario, config))
        .collect::<Result<Vec<Outcome>, _>>()?;
    // A scenario file has at least one scenario.
    let first = &scenarios[0];
    println!(
        "Learned floors: {} auctions to learn, then {} measured (same value draws for every \
         policy); exploration share {}, min observations {}, window {}, max step {}, \
         hysteresis {}, recompute every {} observations; seed {}.\n",
        first.learning_auctions,
        first.evaluation_auctions,
        config.exploration_share,
        config.min_observations,
        config.window,
        config.max_step,
        config.hysteresis,
        config.recompute_every_observations,
        first.seed,
    );
    println!("{}", simulate::markdown(&outcomes));
    println!(
        "Revenues are mean CPM per auction; \"Learned\" includes the exploration auctions. \
         Reference: Myerson's reserve r* in second price; in first price the best fixed floor \
         of a grid search (shading bidders who only drop out under the floor)."
    );
    Ok(())
}
