//! Learned reserve prices (dynamic floors) that approach the revenue of the optimal reserve.
//!
//! Per placement and per segment of its traffic (device type, country, size), the learner
//! estimates from the bid landscape the reserve that maximises expected revenue, and the
//! exchange runs each auction at `max(static floor, learned floor)`.
//!
//! - Request path ([`Floors`]): [`Floors::floor_for`] reads an immutable snapshot behind an
//!   `ArcSwap` (no lock) and draws the exploration coin from an atomic counter;
//!   [`Floors::observe`] pushes the auction's outcome onto a lock-free queue bounded by
//!   `channel_capacity`, dropping and counting it when the queue is full.
//! - Learner ([`Learner`]): a tokio task that owns all state, keeps a bounded window of recent
//!   uncensored auctions per key, recomputes floors periodically and publishes a new snapshot.
//! - Estimator: empirical revenue maximisation on auctions run without a learned floor (the
//!   exploration share, plus every auction while a key is still learning), whose bids are not
//!   censored by our own floor; guard rails cap the floor, limit each step and only move it for
//!   a material, statistically significant gain (see `estimate`).
//! - [`simulate`]: seeded bidders as our simulator models them, Myerson's optimal reserve and
//!   revenue, and the comparison of learned floors against it.

mod config;
mod estimate;
mod floors;
mod key;
mod learner;
mod metrics;
mod observation;
pub mod simulate;
mod table;

pub use config::{ConfigError, LearnedFloorsConfig};
pub use floors::{Decision, Floors, FloorsError};
pub use key::{Country, FloorKey, Segment};
pub use learner::{Learner, LearnerStats};
pub use observation::{AuctionType, Observation, TopBids};
pub use table::{FloorReport, FloorSource, FloorTable};
