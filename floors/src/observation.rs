//! What the exchange reports after each auction: the floor it ran at and the top bids.

use crate::key::FloorKey;

/// How an auction cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuctionType {
    /// The winner pays its bid.
    First,
    /// The winner pays the larger of the second bid and the floor.
    Second,
}

impl AuctionType {
    /// Revenue of one auction with top bids `first ≥ second` (0 when absent) at reserve
    /// `floor`: nothing if the top bid is under the floor, else the first-price bid or the
    /// second-price clearing price `max(second, floor)`.
    pub fn revenue(self, first: f64, second: f64, floor: f64) -> f64 {
        if first < floor || first <= 0.0 {
            return 0.0;
        }
        match self {
            AuctionType::First => first,
            AuctionType::Second => second.max(floor).min(first),
        }
    }
}

/// The two highest bids of one impression's auction, in the auction currency (CPM).
///
/// Built only through constructors that drop non-finite and non-positive prices and keep
/// `first ≥ second`, so the learner never sees garbage.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TopBids {
    first: Option<f64>,
    second: Option<f64>,
}

impl TopBids {
    /// No bid at all.
    pub const NONE: TopBids = TopBids {
        first: None,
        second: None,
    };

    /// The two highest of any number of bid prices; invalid prices are ignored.
    pub fn from_prices(prices: impl IntoIterator<Item = f64>) -> Self {
        let mut top = TopBids::NONE;
        for price in prices {
            top.offer(price);
        }
        top
    }

    /// From the highest and second-highest prices, in either order; invalid ones are ignored.
    pub fn new(first: Option<f64>, second: Option<f64>) -> Self {
        TopBids::from_prices(first.into_iter().chain(second))
    }

    fn offer(&mut self, price: f64) {
        if !(price.is_finite() && price > 0.0) {
            return;
        }
        match self.first {
            Some(first) if price <= first => {
                if self.second.is_none_or(|second| price > second) {
                    self.second = Some(price);
                }
            }
            _ => {
                self.second = self.first;
                self.first = Some(price);
            }
        }
    }

    /// The highest bid.
    pub fn first(&self) -> Option<f64> {
        self.first
    }

    /// The second-highest bid.
    pub fn second(&self) -> Option<f64> {
        self.second
    }
}

/// One auction of one key, as the learner needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The key the floor was asked for.
    pub key: FloorKey,
    /// The floor the auction actually ran at: `max(static floor, decision.floor)`.
    pub floor_used: f64,
    /// [`crate::Decision::explore`] as returned for this auction: whether it ran without a
    /// learned floor, so its bids show the landscape down to the static floor.
    pub explore: bool,
    /// The bids that met `floor_used`.
    pub bids: TopBids,
    /// How the auction cleared.
    pub auction_type: AuctionType,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_bids_keep_the_two_highest_valid_prices() {
        let top = TopBids::from_prices([1.0, f64::NAN, 3.0, -2.0, 2.0, f64::INFINITY, 0.0]);
        assert_eq!((top.first(), top.second()), (Some(3.0), Some(2.0)));
        let top = TopBids::new(Some(1.0), Some(4.0));
        assert_eq!((top.first(), top.second()), (Some(4.0), Some(1.0)));
        let top = TopBids::new(Some(2.0), Some(2.0));
        assert_eq!((top.first(), top.second()), (Some(2.0), Some(2.0)));
        let top = TopBids::new(None, Some(f64::NAN));
        assert_eq!(top, TopBids::NONE);
    }

    #[test]
    fn revenue_follows_the_clearing_rules() {
        let second = AuctionType::Second;
        assert_eq!(second.revenue(1.0, 0.4, 0.5), 0.5);
        assert_eq!(second.revenue(1.0, 0.7, 0.5), 0.7);
        assert_eq!(second.revenue(0.4, 0.3, 0.5), 0.0);
        assert_eq!(second.revenue(1.0, 0.0, 0.0), 0.0);
        assert_eq!(second.revenue(0.0, 0.0, 0.0), 0.0);
        let first = AuctionType::First;
        assert_eq!(first.revenue(1.0, 0.4, 0.5), 1.0);
        assert_eq!(first.revenue(0.4, 0.3, 0.5), 0.0);
    }
}
