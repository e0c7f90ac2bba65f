//! Seeded auctions with bidders modelled as our simulator's, run through the real [`Floors`]
//! API, and measured against Myerson's optimal reserve, no floor and fixed floors.
//!
//! A bidder draws an iid value, bids it (truthful) or `value × factor` (shading), bids nothing
//! when that is under the floor, and its price is rounded to 4 decimals and never under the
//! floor, as `bourse-sim`'s partners do (with a bid rate of 1). Second price clears at
//! `max(second bid, floor)`, first price at the top bid.
//!
//! Each scenario learns for `learning_auctions`, then measures `evaluation_auctions` more. In
//! the evaluation window the same value draws are also priced at the comparison floors, so the
//! ratios compare policies on identical auctions (common random numbers) and carry little noise.
//!
//! The report's scenarios are committed, seeded, in `floors/scenarios/floors.toml`, read as a
//! [`ScenarioFile`] (`cargo run --release -p bourse-floors --example floors_report`).

use crate::{AuctionType, Decision, FloorKey, Floors, FloorsError, LearnedFloorsConfig};
use crate::{Observation, TopBids};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal};
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Distribution of each bidder's value, CPM.
///
/// In a scenario file: `{ kind = "uniform", min = 0.0, max = 1.0 }`,
/// `{ kind = "exponential", mean = 1.0 }` or `{ kind = "log_normal", median = 1.0, sigma = 0.5 }`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ValueDistribution {
    /// Uniform on `[min, max]`.
    Uniform {
        /// Lower bound, at least 0.
        min: f64,
        /// Upper bound, above `min`.
        max: f64,
    },
    /// Exponential with the given mean.
    Exponential {
        /// Mean, positive.
        mean: f64,
    },
    /// Log-normal with the given median (`e^μ`) and shape σ.
    LogNormal {
        /// Median, positive.
        median: f64,
        /// Shape, positive.
        sigma: f64,
    },
}

/// A scenario or distribution that cannot be simulated.
#[derive(Debug, thiserror::Error)]
pub enum SimulationError {
    /// A parameter is out of range.
    #[error("simulation: {0}")]
    Invalid(String),
    /// The floors could not be built.
    #[error(transparent)]
    Floors(#[from] FloorsError),
}

fn invalid<T>(message: String) -> Result<T, SimulationError> {
    Err(SimulationError::Invalid(message))
}

impl ValueDistribution {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), SimulationError> {
        let ok = match *self {
            ValueDistribution::Uniform { min, max } => {
                min.is_finite() && max.is_finite() && min >= 0.0 && max > min
            }
            ValueDistribution::Exponential { mean } => mean.is_finite() && mean > 0.0,
            ValueDistribution::LogNormal { median, sigma } => {
                median.is_finite() && median > 0.0 && sigma.is_finite() && sigma > 0.0
            }
        };
        if ok {
            Ok(())
        } else {
            invalid(format!(
                "value distribution {self:?} has out-of-range parameters"
            ))
        }
    }

    /// A short name: `uniform[0,1]`, `exponential(mean 1)`, `log-normal(median 1, σ 0.5)`.
    pub fn label(&self) -> String {
        match *self {
            ValueDistribution::Uniform { min, max } => format!("uniform[{min},{max}]"),
            ValueDistribution::Exponential { mean } => format!("exponential(mean {mean})"),
            ValueDistribution::LogNormal { median, sigma } => {
                format!("log-normal(median {median}, σ {sigma})")
            }
        }
    }

    /// Cumulative distribution function.
    pub fn cdf(&self, x: f64) -> f64 {
        match *self {
            ValueDistribution::Uniform { min, max } => ((x - min) / (max - min)).clamp(0.0, 1.0),
            ValueDistribution::Exponential { mean } => {
                if x <= 0.0 {
                    0.0
                } else {
                    -(-x / mean).exp_m1()
                }
            }
            ValueDistribution::LogNormal { median, sigma } => {
                if x <= 0.0 {
                    0.0
                } else {
                    0.5 * libm::erfc(-(x / median).ln() / (sigma * std::f64::consts::SQRT_2))
                }
            }
        }
    }

    /// `1 − cdf`, computed directly so that it keeps its precision far in the tail.
    fn survival(&self, x: f64) -> f64 {
        match *self {
            ValueDistribution::Uniform { .. } => 1.0 - self.cdf(x),
            ValueDistribution::Exponential { mean } => {
                if x <= 0.0 {
                    1.0
                } else {
                    (-x / mean).exp()
                }
            }
            ValueDistribution::LogNormal { median, sigma } => {
                if x <= 0.0 {
                    1.0
                } else {
                    0.5 * libm::erfc((x / median).ln() / (sigma * std::f64::consts::SQRT_2))
                }
            }
        }
    }

    /// Probability density function.
    pub fn pdf(&self, x: f64) -> f64 {
        match *self {
            ValueDistribution::Uniform { min, max } => {
                if (min..=max).contains(&x) {
                    1.0 / (max - min)
                } else {
                    0.0
                }
            }
            ValueDistribution::Exponential { mean } => {
                if x < 0.0 {
                    0.0
                } else {
                    (-x / mean).exp() / mean
                }
            }
            ValueDistribution::LogNormal { median, sigma } => {
                if x <= 0.0 {
                    return 0.0;
                }
                let z = (x / median).ln() / sigma;
                (-0.5 * z * z).exp() / (x * sigma * (2.0 * std::f64::consts::PI).sqrt())
            }
        }
    }

    /// One value, drawn as `bourse-sim` draws it.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match *self {
            // An empty range (invalid parameters) gives its bound rather than a panic.
            ValueDistribution::Uniform { min, max } if max > min => rng.random_range(min..max),
            ValueDistribution::Uniform { min, .. } => min,
            ValueDistribution::Exponential { mean } => {
                Exp::new(1.0 / mean).map_or(mean, |exp| exp.sample(rng))
            }
            ValueDistribution::LogNormal { median, sigma } => {
                LogNormal::new(median.ln(), sigma).map_or(median, |ln| ln.sample(rng))
            }
        }
    }

    /// Lowest value with positive density.
    fn support_min(&self) -> f64 {
        match *self {
            ValueDistribution::Uniform { min, .. } => min,
            _ => 0.0,
        }
    }

    /// A value past which the distribution's mass is negligible (below 1e-20).
    fn support_max(&self) -> f64 {
        match *self {
            ValueDistribution::Uniform { max, .. } => max,
            ValueDistribution::Exponential { mean } => mean * 50.0,
            ValueDistribution::LogNormal { median, sigma } => median * (10.0 * sigma).exp(),
        }
    }

    /// Myerson's virtual value `φ(v) = v − (1 − F(v)) / f(v)`.
    pub fn virtual_value(&self, v: f64) -> f64 {
        let density = self.pdf(v);
        if density <= 0.0 {
            return f64::NEG_INFINITY;
        }
        v - self.survival(v) / density
    }

    /// Myerson's optimal reserve: the root of `φ(r) = 0`, i.e. `r = (1 − F(r)) / f(r)`, found by
    /// bisection (φ is increasing for the regular distributions here). It does not depend on
    /// the number of iid bidders.
    pub fn myerson_reserve(&self) -> f64 {
        let (mut low, mut high) = (self.support_min(), self.support_max());
        if self.virtual_value(low.max(1e-12)) >= 0.0 {
            return low;
        }
        for _ in 0..200 {
            let middle = 0.5 * (low + high);
            if self.virtual_value(middle) < 0.0 {
                low = middle;
            } else {
                high = middle;
            }
        }
        0.5 * (low + high)
    }
}

/// How a simulated bidder turns its value into a bid.
///
/// In a scenario file: `{ kind = "truthful" }` or `{ kind = "shading", factor = 0.7 }`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(from = "RawBehaviour")]
pub enum Behaviour {
    /// Bids its value.
    Truthful,
    /// Bids `value × factor`, `factor` in `(0, 1]`.
    Shading {
        /// Share of the value bid.
        factor: f64,
    },
}

/// [`Behaviour`] as written: `truthful` is an empty struct variant so that a stray key
/// (`{ kind = "truthful", factor = 0.7 }`) is refused rather than ignored.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawBehaviour {
    Truthful {},
    Shading { factor: f64 },
}

impl From<RawBehaviour> for Behaviour {
    fn from(raw: RawBehaviour) -> Self {
        match raw {
            RawBehaviour::Truthful {} => Behaviour::Truthful,
            RawBehaviour::Shading { factor } => Behaviour::Shading { factor },
        }
    }
}

impl Behaviour {
    fn factor(self) -> f64 {
        match self {
            Behaviour::Truthful => 1.0,
            Behaviour::Shading { factor } => factor,
        }
    }
}

/// A price rounded to 4 decimals and never under the floor, as `bourse-sim` sends it.
fn at_least(price: f64, floor: f64) -> f64 {
    let rounded = (price * 10_000.0).round() / 10_000.0;
    if rounded < floor {
        (floor * 10_000.0).ceil() / 10_000.0
    } else {
        rounded
    }
}

/// The top two bids of `values` at `floor`: bidders whose bid is under the floor stay out.
fn top_bids(values: &[f64], behaviour: Behaviour, floor: f64) -> TopBids {
    let factor = behaviour.factor();
    TopBids::from_prices(values.iter().filter_map(|&value| {
        let price = value * factor;
        (price >= floor && price.is_finite() && price > 0.0).then(|| at_least(price, floor))
    }))
}

/// Revenue of one auction with these values at `floor`.
fn revenue(values: &[f64], behaviour: Behaviour, auction_type: AuctionType, floor: f64) -> f64 {
    let bids = top_bids(values, behaviour, floor);
    auction_type.revenue(
        bids.first().unwrap_or(0.0),
        bids.second().unwrap_or(0.0),
        floor,
    )
}

/// Expected revenue per auction at reserve `floor`, by numerical integration of
/// `E[rev] = ∫ P(rev > t) dt` over the bid distribution `G(t) = F(t / factor)`:
/// second price `r·(1 − Gⁿ(r)) + ∫_r^∞ P(second bid > t) dt`, first price
/// `r·(1 − Gⁿ(r)) + ∫_r^∞ (1 − Gⁿ(t)) dt`. Rounding bids to 4 decimals is ignored (< 1e-4).
pub fn expected_revenue(
    distribution: &ValueDistribution,
    bidders: usize,
    behaviour: Behaviour,
    auction_type: AuctionType,
    floor: f64,
) -> f64 {
    let n = bidders as i32;
    let factor = behaviour.factor();
    let bid_cdf = |t: f64| distribution.cdf(t / factor);
    let bid_survival = |t: f64| distribution.survival(t / factor);
    // P(at least one bid > t) and P(at least two bids > t), computed from the survival
    // function so the tail keeps its precision.
    let any_above = |t: f64| -> f64 {
        let cdf = bid_cdf(t);
        if cdf < 0.5 {
            1.0 - cdf.powi(n)
        } else {
            // 1 − (1 − s)ⁿ, accurate for small s.
            -(n as f64 * (-bid_survival(t)).ln_1p()).exp_m1()
        }
    };
    let two_above = |t: f64| -> f64 {
        let (cdf, survival) = (bid_cdf(t), bid_survival(t));
        (any_above(t) - n as f64 * cdf.powi(n - 1) * survival).max(0.0)
    };
    let floor = floor.max(0.0);
    let top = distribution.support_max() * factor;
    let tail = match auction_type {
        AuctionType::Second => integrate(&two_above, floor, top, breakpoints(distribution, factor)),
        AuctionType::First => integrate(&any_above, floor, top, breakpoints(distribution, factor)),
    };
    floor * any_above(floor) + tail
}

/// Where the integrands have kinks (the ends of a uniform's support), in bid space.
fn breakpoints(distribution: &ValueDistribution, factor: f64) -> Vec<f64> {
    match *distribution {
        ValueDistribution::Uniform { min, max } => vec![min * factor, max * factor],
        _ => Vec::new(),
    }
}

/// `∫_a^b f`, by adaptive Simpson on pieces that halve towards `a` (where the mass of these
/// integrands sits) and are split at `kinks`.
fn integrate(f: &dyn Fn(f64) -> f64, a: f64, b: f64, kinks: Vec<f64>) -> f64 {
    if b <= a {
        return 0.0;
    }
    let mut points = vec![a, b];
    let mut width = b - a;
    for _ in 0..60 {
        width /= 2.0;
        points.push(a + width);
    }
    points.extend(kinks.into_iter().filter(|&k| k > a && k < b));
    points.sort_by(f64::total_cmp);
    points.dedup();
    points
        .windows(2)
        .map(|piece| {
            let (left, right) = (piece[0], piece[1]);
            let whole = simpson(f, left, right);
            adaptive_simpson(f, left, right, whole, 1e-13, 40)
        })
        .sum()
}

fn simpson(f: &dyn Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    (b - a) / 6.0 * (f(a) + 4.0 * f(0.5 * (a + b)) + f(b))
}

fn adaptive_simpson(
    f: &dyn Fn(f64) -> f64,
    a: f64,
    b: f64,
    whole: f64,
    tolerance: f64,
    depth: u32,
) -> f64 {
    let middle = 0.5 * (a + b);
    let (left, right) = (simpson(f, a, middle), simpson(f, middle, b));
    let error = left + right - whole;
    if depth == 0 || error.abs() <= 15.0 * tolerance {
        return left + right + error / 15.0;
    }
    adaptive_simpson(f, a, middle, left, tolerance / 2.0, depth - 1)
        + adaptive_simpson(f, middle, b, right, tolerance / 2.0, depth - 1)
}

/// One simulated placement.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Distribution of each bidder's value.
    pub distribution: ValueDistribution,
    /// Number of bidders (iid values), 1 to 64.
    pub bidders: usize,
    /// How bidders bid.
    pub behaviour: Behaviour,
    /// How the auction clears.
    pub auction_type: AuctionType,
    /// The configured static floor, CPM.
    pub static_floor: f64,
    /// Auctions run before measuring.
    pub learning_auctions: usize,
    /// Auctions measured.
    pub evaluation_auctions: usize,
    /// Seed of the values and of the exploration draws.
    pub seed: u64,
}

impl Scenario {
    /// A second-price scenario with truthful bidders, no static floor, 20,000 auctions to learn
    /// and 20,000 to measure.
    pub fn second_price(distribution: ValueDistribution, bidders: usize) -> Self {
        Scenario {
            distribution,
            bidders,
            behaviour: Behaviour::Truthful,
            auction_type: AuctionType::Second,
            static_floor: 0.0,
            learning_auctions: 20_000,
            evaluation_auctions: 20_000,
            seed: 1,
        }
    }

    /// A first-price scenario with bidders shading by `factor`, otherwise as
    /// [`Scenario::second_price`].
    pub fn first_price(distribution: ValueDistribution, bidders: usize, factor: f64) -> Self {
        Scenario {
            behaviour: Behaviour::Shading { factor },
            auction_type: AuctionType::First,
            ..Scenario::second_price(distribution, bidders)
        }
    }

    /// A short name for tables.
    pub fn label(&self) -> String {
        let bidding = match self.behaviour {
            Behaviour::Truthful => "truthful".to_owned(),
            Behaviour::Shading { factor } => format!("shading ×{factor}"),
        };
        format!("{}, {bidding}", self.distribution.label())
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), SimulationError> {
        self.distribution.validate()?;
        if !(1..=64).contains(&self.bidders) {
            return invalid(format!("bidders must be in [1, 64], got {}", self.bidders));
        }
        if let Behaviour::Shading { factor } = self.behaviour
            && !(factor > 0.0 && factor <= 1.0)
        {
            return invalid(format!("shading factor must be in (0, 1], got {factor}"));
        }
        if !(self.static_floor.is_finite() && self.static_floor >= 0.0) {
            return invalid(format!(
                "static floor must be a finite non-negative CPM, got {}",
                self.static_floor
            ));
        }
        if self.evaluation_auctions == 0 {
            return invalid("evaluation_auctions must be at least 1".to_owned());
        }
        Ok(())
    }

    /// Expected revenue per auction at reserve `floor` (the static floor still applies).
    pub fn expected_revenue(&self, floor: f64) -> f64 {
        expected_revenue(
            &self.distribution,
            self.bidders,
            self.behaviour,
            self.auction_type,
            floor.max(self.static_floor),
        )
    }

    /// The fixed floor with the highest expected revenue on a grid of 500 floors over the
    /// range of bids (0 is on the grid), and that revenue.
    pub fn best_fixed_floor(&self) -> (f64, f64) {
        let top = quantile_bound(&self.distribution) * self.behaviour.factor();
        (1..=500)
            .map(|step| {
                let floor = top * step as f64 / 500.0;
                (floor, self.expected_revenue(floor))
            })
            // A higher floor must earn visibly more (not by rounding error) to be preferred.
            .fold((0.0, self.expected_revenue(0.0)), |best, candidate| {
                if candidate.1 > best.1 + 1e-9 * best.1.abs() {
                    candidate
                } else {
                    best
                }
            })
    }
}

/// A value above the 99.9th percentile: the grid of fixed floors ends there.
fn quantile_bound(distribution: &ValueDistribution) -> f64 {
    match *distribution {
        ValueDistribution::Uniform { max, .. } => max,
        ValueDistribution::Exponential { mean } => mean * 7.0,
        ValueDistribution::LogNormal { median, sigma } => median * (3.1 * sigma).exp(),
    }
}

/// What one scenario measured. Revenues are mean CPM per auction over the evaluation window,
/// on the same value draws for every policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The scenario run.
    pub scenario: Scenario,
    /// Myerson's optimal reserve of the value distribution.
    pub myerson_reserve: f64,
    /// The floor compared against: Myerson's reserve (at least the static floor) in second
    /// price; the best fixed floor of a grid search in first price, where bids are shaded
    /// values and Myerson's reserve is not the optimum.
    pub reference_floor: f64,
    /// Expected revenue at the reference floor (numerical integration).
    pub reference_expected: f64,
    /// The reference floor's revenue on the evaluation draws.
    pub reference: f64,
    /// Learned floors' revenue on the evaluation draws, exploration auctions included.
    pub learned: f64,
    /// The learned floor of the key at the end (placement level), if any.
    pub learned_floor: Option<f64>,
    /// Revenue with the static floor only.
    pub no_floor: f64,
    /// The fixed floor compared against: half of Myerson's reserve.
    pub fixed_floor: f64,
    /// Revenue at the fixed floor.
    pub fixed: f64,
    /// Times the applied learned floor changed during the evaluation window.
    pub floor_changes: usize,
    /// Evaluation auctions that ran without the learned floor (exploration).
    pub explored: usize,
    /// Observations dropped on a full channel (0 when the learner keeps up).
    pub dropped: u64,
}

impl Outcome {
    /// Learned revenue as a share of the reference floor's, on the same draws.
    pub fn ratio(&self) -> f64 {
        if self.reference > 0.0 {
            self.learned / self.reference
        } else {
            0.0
        }
    }
}

/// The configuration simulations use: the defaults, enabled, and recomputing every 500
/// observations (about once a second for a placement selling 500 impressions a second).
pub fn simulation_config() -> LearnedFloorsConfig {
    LearnedFloorsConfig {
        enabled: true,
        recompute_every_observations: 500,
        ..LearnedFloorsConfig::default()
    }
}

/// Runs one scenario through the real API: for each auction `floor_for`, the bidders bid at
/// `max(static, learned)`, the auction clears, `observe`, and the learner drains synchronously.
pub fn run(scenario: &Scenario, config: &LearnedFloorsConfig) -> Result<Outcome, SimulationError> {
    scenario.validate()?;
    let (floors, mut learner) = Floors::with_seed(config.clone(), scenario.seed)?;
    let key = FloorKey::placement(Arc::from("simulated"));
    let mut rng = StdRng::seed_from_u64(scenario.seed);
    let mut values = vec![0.0; scenario.bidders];
    let myerson_reserve = scenario.distribution.myerson_reserve();
    let (reference_floor, reference_expected) = match scenario.auction_type {
        AuctionType::Second => {
            let floor = myerson_reserve.max(scenario.static_floor);
            (floor, scenario.expected_revenue(floor))
        }
        AuctionType::First => scenario.best_fixed_floor(),
    };
    let fixed_floor = 0.5 * myerson_reserve;
    let (mut learned, mut reference, mut no_floor, mut fixed) = (0.0, 0.0, 0.0, 0.0);
    let (mut floor_changes, mut explored) = (0, 0);
    let mut applied: Option<f64> = None;
    let price = |values: &[f64], floor: f64| {
        revenue(
            values,
            scenario.behaviour,
            scenario.auction_type,
            floor.max(scenario.static_floor),
        )
    };
    for auction in 0..scenario.learning_auctions + scenario.evaluation_auctions {
        for value in values.iter_mut() {
            *value = scenario.distribution.sample(&mut rng);
        }
        let decision: Decision = floors.floor_for(&key);
        let floor_used = decision.floor.max(scenario.static_floor);
        let bids = top_bids(&values, scenario.behaviour, floor_used);
        floors.observe(Observation {
            key: key.clone(),
            floor_used,
            explore: decision.explore,
            bids,
            auction_type: scenario.auction_type,
        });
        learner.drain();
        if auction < scenario.learning_auctions {
            continue;
        }
        learned += price(&values, floor_used);
        reference += price(&values, reference_floor);
        no_floor += price(&values, 0.0);
        fixed += price(&values, fixed_floor);
        if decision.explore {
            explored += 1;
        } else {
            if applied.is_some_and(|previous| previous != decision.floor) {
                floor_changes += 1;
            }
            applied = Some(decision.floor);
        }
    }
    let auctions = scenario.evaluation_auctions as f64;
    Ok(Outcome {
        scenario: scenario.clone(),
        myerson_reserve,
        reference_floor,
        reference_expected,
        reference: reference / auctions,
        learned: learned / auctions,
        learned_floor: floors.snapshot().lookup(&key).0,
        no_floor: no_floor / auctions,
        fixed_floor,
        fixed: fixed / auctions,
        floor_changes,
        explored,
        dropped: floors.dropped(),
    })
}

/// The scenarios of the report: second price with 2, 3 and 5 truthful bidders on uniform,
/// exponential and log-normal values, and first price with shading bidders.
pub fn report_scenarios() -> Vec<Scenario> {
    use ValueDistribution::{Exponential, LogNormal, Uniform};
    let unit = Uniform { min: 0.0, max: 1.0 };
    vec![
        Scenario::second_price(unit, 2),
        Scenario::second_price(unit, 3),
        Scenario::second_price(unit, 5),
        Scenario::second_price(Uniform { min: 1.0, max: 3.0 }, 2),
        Scenario::second_price(Exponential { mean: 1.0 }, 2),
        Scenario::second_price(Exponential { mean: 2.0 }, 5),
        Scenario::second_price(
            LogNormal {
                median: 1.0,
                sigma: 0.5,
            },
            2,
        ),
        Scenario::second_price(
            LogNormal {
                median: 1.0,
                sigma: 1.0,
            },
            3,
        ),
        Scenario::first_price(unit, 2, 0.7),
        Scenario::first_price(
            LogNormal {
                median: 1.0,
                sigma: 0.5,
            },
            3,
            0.8,
        ),
    ]
}

/// A seeded scenario file: the learner's configuration and the scenarios to run with it, as
/// committed in `floors/scenarios/floors.toml` (the report's scenarios).
///
/// ```toml
/// [learner]                  # a `LearnedFloorsConfig`; `enabled` must be true
/// enabled = true
/// recompute_every_observations = 500
///
/// [[scenario]]               # one per placement simulated, run in order
/// name = "uniform-2"
/// distribution = { kind = "uniform", min = 0.0, max = 1.0 }
/// bidders = 2
/// behaviour = { kind = "truthful" }     # or { kind = "shading", factor = 0.7 }
/// auction = "second"                    # or "first"
/// static_floor = 0.0
/// learning_auctions = 20000
/// evaluation_auctions = 20000
/// seed = 1
/// ```
///
/// Unknown keys are refused; every `[[scenario]]` key is required (`[learner]` keys default as
/// in [`LearnedFloorsConfig`]); values out of range are refused with the scenario's name and
/// the key. Deserializing checks everything, so a `ScenarioFile` is always valid.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawScenarioFile")]
pub struct ScenarioFile {
    /// The learner's configuration, shared by every scenario.
    pub learner: LearnedFloorsConfig,
    /// The scenarios (`[[scenario]]` tables), in file order; at least one, names unique.
    pub scenario: Vec<NamedScenario>,
}

/// A [`Scenario`] with the name the scenario file gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedScenario {
    /// Short name, unique in its file; used in error messages.
    pub name: String,
    /// What to simulate.
    pub scenario: Scenario,
}

/// A scenario file that cannot be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioFileError {
    /// The file could not be read.
    #[error("cannot read scenario file {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Malformed TOML, an unknown or missing key, or a value out of range; the message names
    /// the line, the scenario and the key.
    #[error("scenario file {}: {error}", path.display())]
    Invalid {
        /// The file (`<text>` for [`ScenarioFile::parse`]).
        path: PathBuf,
        /// What is wrong, and where.
        error: Box<toml::de::Error>,
    },
}

impl ScenarioFile {
    /// Reads and checks a scenario file.
    pub fn load(path: impl AsRef<Path>) -> Result<ScenarioFile, ScenarioFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| ScenarioFileError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse_from(&text, path)
    }

    /// Parses and checks scenario-file TOML.
    pub fn parse(text: &str) -> Result<ScenarioFile, ScenarioFileError> {
        Self::parse_from(text, Path::new("<text>"))
    }

    fn parse_from(text: &str, path: &Path) -> Result<ScenarioFile, ScenarioFileError> {
        toml::from_str(text).map_err(|error| ScenarioFileError::Invalid {
            path: path.to_owned(),
            error: Box::new(error),
        })
    }

    /// The scenarios without their names, in file order.
    pub fn scenarios(&self) -> Vec<Scenario> {
        self.scenario
            .iter()
            .map(|named| named.scenario.clone())
            .collect()
    }
}

/// [`ScenarioFile`] as written, before its checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenarioFile {
    learner: LearnedFloorsConfig,
    #[serde(default)]
    scenario: Vec<RawScenario>,
}

impl TryFrom<RawScenarioFile> for ScenarioFile {
    type Error = String;

    fn try_from(raw: RawScenarioFile) -> Result<Self, String> {
        let learner = raw.learner;
        if let Err(error) = learner.validate() {
            return Err(format!(
                "[learner]: `{}` {}, got {}",
                error.field, error.problem, error.value
            ));
        }
        if !learner.enabled {
            return Err(
                "[learner]: `enabled` must be true: the report measures learned floors".to_owned(),
            );
        }
        if raw.scenario.is_empty() {
            return Err("no [[scenario]]: a scenario file needs at least one".to_owned());
        }
        // Checked here rather than per `[[scenario]]` table: toml would point an element's
        // error at the array's first table, a misleading line; the name says which it is.
        let scenario = raw
            .scenario
            .into_iter()
            .enumerate()
            .map(|(index, raw)| NamedScenario::from_raw(index + 1, raw))
            .collect::<Result<Vec<_>, _>>()?;
        let mut names = std::collections::HashSet::new();
        for named in &scenario {
            if !names.insert(named.name.as_str()) {
                return Err(format!(
                    "scenario `{}` appears twice: `name` must be unique",
                    named.name
                ));
            }
        }
        Ok(ScenarioFile { learner, scenario })
    }
}

/// One `[[scenario]]` table as written, before its checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    distribution: ValueDistribution,
    bidders: usize,
    behaviour: Behaviour,
    auction: AuctionType,
    static_floor: f64,
    learning_auctions: usize,
    evaluation_auctions: usize,
    seed: u64,
}

impl NamedScenario {
    /// Checks the `number`th `[[scenario]]` table (from 1); the error names the scenario and
    /// the key.
    fn from_raw(number: usize, raw: RawScenario) -> Result<Self, String> {
        let name = raw.name.trim();
        if name.is_empty() {
            return Err(format!("[[scenario]] #{number}: `name` must not be empty"));
        }
        // Each check: whether it holds, the key, what it must be, the value.
        let mut checks: Vec<(bool, &str, String, f64)> = Vec::new();
        match raw.distribution {
            ValueDistribution::Uniform { min, max } => {
                checks.push((
                    min.is_finite() && min >= 0.0,
                    "distribution.min",
                    "must be a finite CPM of at least 0".to_owned(),
                    min,
                ));
                checks.push((
                    max.is_finite() && max > min,
                    "distribution.max",
                    format!("must be finite and above `distribution.min` ({min})"),
                    max,
                ));
            }
            ValueDistribution::Exponential { mean } => checks.push((
                mean.is_finite() && mean > 0.0,
                "distribution.mean",
                "must be finite and positive".to_owned(),
                mean,
            )),
            ValueDistribution::LogNormal { median, sigma } => {
                checks.push((
                    median.is_finite() && median > 0.0,
                    "distribution.median",
                    "must be finite and positive".to_owned(),
                    median,
                ));
                checks.push((
                    sigma.is_finite() && sigma > 0.0,
                    "distribution.sigma",
                    "must be finite and positive".to_owned(),
                    sigma,
                ));
            }
        }
        if let Behaviour::Shading { factor } = raw.behaviour {
            checks.push((
                factor > 0.0 && factor <= 1.0,
                "behaviour.factor",
                "must be in (0, 1]".to_owned(),
                factor,
            ));
        }
        checks.push((
            raw.static_floor.is_finite() && raw.static_floor >= 0.0,
            "static_floor",
            "must be a finite CPM of at least 0".to_owned(),
            raw.static_floor,
        ));
        if let Some((_, key, rule, value)) = checks.into_iter().find(|check| !check.0) {
            return Err(format!("scenario `{name}`: `{key}` {rule}, got {value}"));
        }
        if !(1..=64).contains(&raw.bidders) {
            return Err(format!(
                "scenario `{name}`: `bidders` must be in [1, 64], got {}",
                raw.bidders
            ));
        }
        if raw.evaluation_auctions == 0 {
            return Err(format!(
                "scenario `{name}`: `evaluation_auctions` must be at least 1, got 0"
            ));
        }
        let scenario = Scenario {
            distribution: raw.distribution,
            bidders: raw.bidders,
            behaviour: raw.behaviour,
            auction_type: raw.auction,
            static_floor: raw.static_floor,
            learning_auctions: raw.learning_auctions,
            evaluation_auctions: raw.evaluation_auctions,
            seed: raw.seed,
        };
        // Whatever else `run` would refuse, refused here already.
        if let Err(error) = scenario.validate() {
            return Err(format!("scenario `{name}`: {error}"));
        }
        Ok(NamedScenario {
            name: name.to_owned(),
            scenario,
        })
    }
}

/// A Markdown table of outcomes.
pub fn markdown(outcomes: &[Outcome]) -> String {
    let mut table = String::from(
        "| Values, bidding | Auction | n | Myerson r* | Reference floor | E[rev] at reference | \
         Learned floor | Learned | Reference | Learned / reference | No floor | 0.5×r* | \
         Floor changes (eval) |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for outcome in outcomes {
        let scenario = &outcome.scenario;
        let (auction, reference) = match scenario.auction_type {
            AuctionType::Second => ("second", "r*"),
            AuctionType::First => ("first", "best fixed"),
        };
        let learned_floor = outcome
            .learned_floor
            .map_or_else(|| "none".to_owned(), |floor| format!("{floor:.3}"));
        // Writing to a String cannot fail.
        let _ = writeln!(
            table,
            "| {} | {auction} | {} | {:.3} | {:.3} ({reference}) | {:.4} | {learned_floor} | \
             {:.4} | {:.4} | {:.1} % | {:.4} | {:.4} | {} |",
            scenario.label(),
            scenario.bidders,
            outcome.myerson_reserve,
            outcome.reference_floor,
            outcome.reference_expected,
            outcome.learned,
            outcome.reference,
            100.0 * outcome.ratio(),
            outcome.no_floor,
            outcome.fixed,
            outcome.floor_changes,
        );
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: ValueDistribution = ValueDistribution::Uniform { min: 0.0, max: 1.0 };

    #[test]
    fn myerson_reserves_match_closed_forms() {
        assert!((UNIT.myerson_reserve() - 0.5).abs() < 1e-9);
        let shifted = ValueDistribution::Uniform { min: 1.0, max: 3.0 };
        assert!((shifted.myerson_reserve() - 1.5).abs() < 1e-9);
        // b/2 under a: the reserve is the bottom of the support.
        let high = ValueDistribution::Uniform { min: 2.0, max: 3.0 };
        assert_eq!(high.myerson_reserve(), 2.0);
        let exponential = ValueDistribution::Exponential { mean: 2.0 };
        assert!((exponential.myerson_reserve() - 2.0).abs() < 1e-9);
        // Log-normal: check the fixed point r = (1 − F(r)) / f(r) directly.
        let log_normal = ValueDistribution::LogNormal {
            median: 1.0,
            sigma: 0.5,
        };
        let r = log_normal.myerson_reserve();
        assert!(
            (r - (1.0 - log_normal.cdf(r)) / log_normal.pdf(r)).abs() < 1e-9,
            "{r}"
        );
    }

    #[test]
    fn report_distributions_are_regular() {
        for scenario in report_scenarios() {
            let d = scenario.distribution;
            let top = quantile_bound(&d);
            let mut previous = f64::NEG_INFINITY;
            for step in 1..=1_000 {
                let v = d.support_min() + (top - d.support_min()) * step as f64 / 1_000.0;
                let phi = d.virtual_value(v);
                assert!(phi >= previous, "{} not regular at {v}", d.label());
                previous = phi;
            }
        }
    }

    #[test]
    fn expected_revenue_matches_closed_forms() {
        let second = |d: &ValueDistribution, n, r| {
            expected_revenue(d, n, Behaviour::Truthful, AuctionType::Second, r)
        };
        // Two uniform[0,1] bidders: 1/3 without reserve, 5/12 at 0.5.
        assert!((second(&UNIT, 2, 0.0) - 1.0 / 3.0).abs() < 1e-9);
        assert!((second(&UNIT, 2, 0.5) - 5.0 / 12.0).abs() < 1e-9);
        // n uniform bidders, no reserve: (n − 1) / (n + 1).
        assert!((second(&UNIT, 5, 0.0) - 4.0 / 6.0).abs() < 1e-9);
        // Two exponential(1) bidders: E[min] = 1/2 without reserve; at r = 1, Myerson's
        // virtual-value form E = n∫_r^∞ φ(v) f(v) F(v)^{n−1} dv, as a fine Riemann sum.
        let exponential = ValueDistribution::Exponential { mean: 1.0 };
        assert!((second(&exponential, 2, 0.0) - 0.5).abs() < 1e-9);
        let riemann: f64 = (0..2_000_000)
            .map(|i| {
                let v = 1.0 + (i as f64 + 0.5) * 1e-5;
                2.0 * exponential.virtual_value(v) * exponential.pdf(v) * exponential.cdf(v) * 1e-5
            })
            .sum();
        assert!((second(&exponential, 2, 1.0) - riemann).abs() < 1e-6);
        // First price, shading 0.5, two uniform bidders, no floor: 0.5 · E[max] = 1/3.
        let first = expected_revenue(
            &UNIT,
            2,
            Behaviour::Shading { factor: 0.5 },
            AuctionType::First,
            0.0,
        );
        assert!((first - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn simulated_bidders_follow_the_simulator() {
        // Shading 0.5 of values 1.0 and 0.3 at floor 0.2: 0.5 bids, 0.15 stays out.
        let bids = top_bids(&[1.0, 0.3], Behaviour::Shading { factor: 0.5 }, 0.2);
        assert_eq!((bids.first(), bids.second()), (Some(0.5), None));
        // Prices are rounded to 4 decimals, never under the floor.
        let bids = top_bids(&[0.123_456], Behaviour::Truthful, 0.123_41);
        assert_eq!(bids.first(), Some(0.1235));
        let bids = top_bids(&[0.123_449], Behaviour::Truthful, 0.123_41);
        assert_eq!(bids.first(), Some(0.1235));
        assert_eq!(
            revenue(&[0.8, 0.3], Behaviour::Truthful, AuctionType::Second, 0.5),
            0.5
        );
    }

    #[test]
    fn bad_scenarios_are_refused_with_the_reason() {
        let mut scenario = Scenario::second_price(UNIT, 0);
        let error = run(&scenario, &simulation_config())
            .unwrap_err()
            .to_string();
        assert_eq!(error, "simulation: bidders must be in [1, 64], got 0");
        scenario.bidders = 2;
        scenario.distribution = ValueDistribution::Exponential { mean: -1.0 };
        assert!(run(&scenario, &simulation_config()).is_err());
        let scenario = Scenario::first_price(UNIT, 2, 1.5);
        let error = run(&scenario, &simulation_config())
            .unwrap_err()
            .to_string();
        assert!(error.contains("shading factor"), "{error}");
    }
}
