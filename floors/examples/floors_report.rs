//! Prints the learned-floors report: each simulated scenario learned through the real API and
//! compared with Myerson's optimal reserve, no floor and a fixed floor, as a Markdown table.
//!
//! `cargo run --release -p bourse-floors --example floors_report`

use bourse_floors::simulate::{self, Outcome};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = simulate::simulation_config();
    let scenarios = simulate::report_scenarios();
    let outcomes = scenarios
        .iter()
        .map(|scenario| simulate::run(scenario, &config))
        .collect::<Result<Vec<Outcome>, _>>()?;
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
