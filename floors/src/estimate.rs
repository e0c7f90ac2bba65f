//! Empirical revenue of candidate reserves on a window of uncensored auctions, and the guarded
//! choice of the next floor.
//!
//! For one auction with top bids `b1 ≥ b2`, a reserve `r` earns `0` if `b1 < r`, else
//! `max(b2, r)` in second price (truthful bidders who do not bid under the floor) or `b1` in
//! first price (bids that do not react to the floor other than by dropping out). Averaged over a
//! sample of auctions run at the static floor, that is an unbiased estimate of the expected
//! revenue of `r` for every `r` at or above the static floor, and its maximiser converges to
//! Myerson's optimal reserve for iid regular values.
//!
//! Censoring. An auction run at a learned floor `f` only shows bids `≥ f`: the revenue of any
//! reserve below `f` is unknown for it. Such auctions could still price reserves above `f`
//! exactly, but then every candidate would be estimated on a different set of auctions, chosen
//! by our own past floors: the argmax would favour whichever side is noisier, and a floor could
//! only be corrected downwards from the few auctions below it. So the estimate uses only
//! auctions run without a learned floor (every auction of a key still learning, then the
//! exploration share), an iid sample that prices every candidate on the same auctions. The
//! price is the exploration share's lost revenue (about 1 % of revenue at a 5 % share for two
//! uniform bidders), which the simulation report counts. Censored auctions still measure the
//! realised revenue at the learned floor, shown in the report.

use crate::observation::{AuctionType, TopBids};

/// Prices above this CPM are garbage (a partner's bug or an attack), not demand: an auction
/// with one is ignored rather than let it dominate a window's means.
pub(crate) const MAX_PRICE: f64 = 1e6;

/// One auction run without a learned floor, encoded so that [`AuctionType::revenue`] at any
/// reserve `r` gives the revenue the auction would have made at reserve `max(r, floor_used)`.
///
/// `f32` halves the memory of the windows; CPMs need far fewer than its 7 significant digits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// The top bid; 0 when nobody met the floor.
    first: f32,
    /// The second bid, or the floor the auction ran at when only one bid met it (it cleared
    /// there); 0 when nobody met the floor.
    second: f32,
    auction_type: AuctionType,
}

impl Sample {
    /// Encodes one auction; `None` when `floor_used` is not a finite non-negative price or a
    /// price is beyond [`MAX_PRICE`].
    pub(crate) fn new(bids: TopBids, floor_used: f64, auction_type: AuctionType) -> Option<Self> {
        if !(floor_used.is_finite() && floor_used >= 0.0) {
            return None;
        }
        if bids.first().is_some_and(|first| first > MAX_PRICE) {
            return None;
        }
        let (first, second) = match bids.first() {
            // Bids under the floor did not take part (a deal may let one through; it did not
            // clear in the open auction).
            Some(first) if first >= floor_used => {
                let second = bids.second().unwrap_or(0.0).max(floor_used).min(first);
                (first, second)
            }
            _ => (0.0, 0.0),
        };
        Some(Sample {
            first: first as f32,
            second: second as f32,
            auction_type,
        })
    }

    /// Revenue of this auction at reserve `reserve`.
    pub(crate) fn revenue(&self, reserve: f64) -> f64 {
        self.auction_type
            .revenue(f64::from(self.first), f64::from(self.second), reserve)
    }
}

/// The empirical revenue curve of a window: sorted bids and suffix sums, so that the total
/// revenue at any reserve costs two binary searches.
#[derive(Debug, Default)]
pub(crate) struct RevenueCurve {
    samples: usize,
    /// Second price: top bids, ascending.
    second_price_first: Vec<f64>,
    /// Second price: second bids, ascending.
    second_price_second: Vec<f64>,
    /// `suffix[i]` = sum of `second_price_second[i..]`.
    second_price_second_suffix: Vec<f64>,
    /// First price: top bids, ascending.
    first_price_first: Vec<f64>,
    /// `suffix[i]` = sum of `first_price_first[i..]`.
    first_price_first_suffix: Vec<f64>,
}

impl RevenueCurve {
    /// Rebuilds the curve from `samples`, reusing the buffers.
    pub(crate) fn rebuild<'a>(&mut self, samples: impl IntoIterator<Item = &'a Sample>) {
        self.samples = 0;
        self.second_price_first.clear();
        self.second_price_second.clear();
        self.first_price_first.clear();
        for sample in samples {
            self.samples += 1;
            match sample.auction_type {
                AuctionType::Second => {
                    self.second_price_first.push(f64::from(sample.first));
                    self.second_price_second.push(f64::from(sample.second));
                }
                AuctionType::First => self.first_price_first.push(f64::from(sample.first)),
            }
        }
        for prices in [
            &mut self.second_price_first,
            &mut self.second_price_second,
            &mut self.first_price_first,
        ] {
            prices.sort_unstable_by(f64::total_cmp);
        }
        suffix_sums(
            &self.second_price_second,
            &mut self.second_price_second_suffix,
        );
        suffix_sums(&self.first_price_first, &mut self.first_price_first_suffix);
    }

    /// Mean revenue per auction at reserve `reserve` (0: every auction at its own floor).
    pub(crate) fn mean(&self, reserve: f64) -> f64 {
        if self.samples == 0 {
            return 0.0;
        }
        // Second price: Σ_{b1 ≥ r} max(b2, r) = Σ_{b2 ≥ r} b2 + r · (#{b1 ≥ r} − #{b2 ≥ r}),
        // because b2 ≥ r implies b1 ≥ r.
        let first_at_least = at_least(&self.second_price_first, reserve);
        let second_from = first_index_at_least(&self.second_price_second, reserve);
        let second_at_least = self.second_price_second.len() - second_from;
        let second_price = self.second_price_second_suffix[second_from]
            + reserve * first_at_least.saturating_sub(second_at_least) as f64;
        // First price: Σ_{b1 ≥ r} b1.
        let first_from = first_index_at_least(&self.first_price_first, reserve);
        let first_price = self.first_price_first_suffix[first_from];
        (second_price + first_price) / self.samples as f64
    }

    /// The reserve in `[0, max_floor]` with the highest mean revenue, and that revenue.
    ///
    /// Between two consecutive top bids the second-price revenue only grows with the reserve
    /// and the first-price revenue is flat, so the maximum is at 0, at a top bid, or at the
    /// cap: those are the only candidates tried.
    pub(crate) fn best(&self, max_floor: f64) -> (f64, f64) {
        let mut best = (0.0, self.mean(0.0));
        let candidates = self
            .second_price_first
            .iter()
            .chain(&self.first_price_first)
            .copied()
            .filter(|&price| price > 0.0 && price < max_floor)
            .chain(std::iter::once(max_floor));
        for candidate in candidates {
            let revenue = self.mean(candidate);
            // Ties go to the lower reserve: it sells more for the same money.
            if revenue > best.1 || (revenue == best.1 && candidate < best.0) {
                best = (candidate, revenue);
            }
        }
        best
    }
}

/// Index of the first of the ascending `prices` that is at least `reserve`.
fn first_index_at_least(prices: &[f64], reserve: f64) -> usize {
    prices.partition_point(|&price| price < reserve)
}

/// How many of the ascending `prices` are at least `reserve`.
fn at_least(prices: &[f64], reserve: f64) -> usize {
    prices.len() - first_index_at_least(prices, reserve)
}

fn suffix_sums(prices: &[f64], suffix: &mut Vec<f64>) {
    suffix.clear();
    suffix.resize(prices.len() + 1, 0.0);
    for i in (0..prices.len()).rev() {
        suffix[i] = suffix[i + 1] + prices[i];
    }
}

/// Mean and standard error of the per-auction revenue gain of `proposed` over `current`, the
/// same auctions priced both ways (a paired difference, far less noisy than two means).
pub(crate) fn paired_gain<'a>(
    samples: impl IntoIterator<Item = &'a Sample>,
    proposed: f64,
    current: f64,
) -> (f64, f64) {
    let (mut count, mut sum, mut sum_squares) = (0usize, 0.0f64, 0.0f64);
    for sample in samples {
        let gain = sample.revenue(proposed) - sample.revenue(current);
        count += 1;
        sum += gain;
        sum_squares += gain * gain;
    }
    if count < 2 {
        return (0.0, f64::INFINITY);
    }
    let n = count as f64;
    let mean = sum / n;
    let variance = ((sum_squares - n * mean * mean) / (n - 1.0)).max(0.0);
    (mean, (variance / n).sqrt())
}

/// The guard rails a floor update goes through.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Guards {
    pub(crate) max_floor: f64,
    pub(crate) max_step: f64,
    pub(crate) hysteresis: f64,
}

/// A gain must also be this many standard errors above zero: with thousands of candidates
/// the best one's estimate is optimistic, and noise alone must not move a floor.
pub(crate) const SIGNIFICANCE_Z: f64 = 2.0;

/// What one recomputation of a key found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Update {
    /// The floor to apply from now on (`None`: no learned floor; the static one applies).
    pub(crate) floor: Option<f64>,
    /// Estimated mean revenue per auction at that floor.
    pub(crate) revenue_at_floor: f64,
    /// Estimated mean revenue per auction at the static floor.
    pub(crate) revenue_at_static: f64,
}

/// Chooses the next floor of a key from its window's revenue curve.
///
/// The best reserve on the curve is the target. The floor moves towards it by at most
/// `max_step` of its value (a first floor is set directly), never above `max_floor`, and only
/// when the move's estimated gain exceeds `hysteresis` of the current revenue and is
/// statistically significant on the paired sample: so floors follow demand without flapping.
pub(crate) fn next_floor(
    curve: &RevenueCurve,
    samples: &[Sample],
    current: Option<f64>,
    guards: Guards,
) -> Update {
    let revenue_at_static = curve.mean(0.0);
    let (target, _) = curve.best(guards.max_floor);
    let current_floor = current.unwrap_or(0.0).min(guards.max_floor);
    let proposed = match current {
        None => target,
        // max/min rather than clamp: total even if a bound were NaN.
        Some(floor) => target
            .max(floor * (1.0 - guards.max_step))
            .min(floor * (1.0 + guards.max_step)),
    }
    .min(guards.max_floor);
    let current_revenue = curve.mean(current_floor);
    let keep = Update {
        floor: current.map(|floor| floor.min(guards.max_floor)),
        revenue_at_floor: current_revenue,
        revenue_at_static,
    };
    if proposed == current_floor || (current.is_none() && proposed <= 0.0) {
        return keep;
    }
    let (gain, standard_error) = paired_gain(samples, proposed, current_floor);
    let material = gain > guards.hysteresis * current_revenue;
    let significant = gain > SIGNIFICANCE_Z * standard_error;
    if !(material && significant && gain > 0.0) {
        return keep;
    }
    Update {
        floor: Some(proposed),
        revenue_at_floor: curve.mean(proposed),
        revenue_at_static,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second_price(first: f64, second: f64) -> Sample {
        Sample::new(
            TopBids::new(Some(first), Some(second)),
            0.0,
            AuctionType::Second,
        )
        .unwrap()
    }

    fn brute_force_mean(samples: &[Sample], reserve: f64) -> f64 {
        samples.iter().map(|s| s.revenue(reserve)).sum::<f64>() / samples.len() as f64
    }

    #[test]
    fn samples_encode_the_floor_they_ran_at() {
        // One bid over a floor of 0.5: it cleared at 0.5, and would at any reserve up to 0.5.
        let sample = Sample::new(TopBids::new(Some(0.8), None), 0.5, AuctionType::Second).unwrap();
        assert_eq!(sample.revenue(0.0), 0.5);
        assert_eq!(sample.revenue(0.6), 0.6);
        assert_eq!(sample.revenue(0.9), 0.0);
        // Nobody met the floor: nothing at any reserve.
        let empty = Sample::new(TopBids::NONE, 0.5, AuctionType::Second).unwrap();
        assert_eq!(empty.revenue(0.0), 0.0);
        // A bid under the floor (a deal's) did not clear in the open auction.
        let under = Sample::new(TopBids::new(Some(0.3), None), 0.5, AuctionType::First).unwrap();
        assert_eq!(under.revenue(0.0), 0.0);
        assert_eq!(
            Sample::new(TopBids::NONE, f64::NAN, AuctionType::First),
            None
        );
        assert_eq!(Sample::new(TopBids::NONE, -1.0, AuctionType::First), None);
        let absurd = TopBids::new(Some(1e30), Some(1.0));
        assert_eq!(Sample::new(absurd, 0.0, AuctionType::Second), None);
    }

    #[test]
    fn curve_matches_brute_force_at_every_reserve() {
        let mut samples = vec![
            second_price(1.0, 0.2),
            second_price(0.6, 0.5),
            second_price(0.3, 0.1),
            Sample::new(TopBids::new(Some(0.9), None), 0.0, AuctionType::Second).unwrap(),
            Sample::new(TopBids::NONE, 0.0, AuctionType::Second).unwrap(),
            Sample::new(TopBids::new(Some(0.7), Some(0.2)), 0.0, AuctionType::First).unwrap(),
            Sample::new(
                TopBids::new(Some(0.4), Some(0.2)),
                0.25,
                AuctionType::Second,
            )
            .unwrap(),
        ];
        samples.push(second_price(0.5, 0.5));
        let mut curve = RevenueCurve::default();
        curve.rebuild(&samples);
        for step in 0..=120 {
            let reserve = step as f64 / 100.0;
            let (fast, slow) = (curve.mean(reserve), brute_force_mean(&samples, reserve));
            assert!((fast - slow).abs() < 1e-6, "at {reserve}: {fast} vs {slow}");
        }
    }

    #[test]
    fn best_reserve_is_the_exact_maximiser() {
        // Uniform values on a fine grid of (b1, b2) pairs: the optimum of 2-bidder
        // uniform[0,1] is 0.5.
        let mut samples = Vec::new();
        for i in 0..100 {
            for j in 0..100 {
                let (a, b) = ((i as f64 + 0.5) / 100.0, (j as f64 + 0.5) / 100.0);
                samples.push(second_price(a.max(b), a.min(b)));
            }
        }
        let mut curve = RevenueCurve::default();
        curve.rebuild(&samples);
        let (reserve, revenue) = curve.best(10.0);
        assert!((reserve - 0.5).abs() <= 0.011, "{reserve}");
        // The grid is a discrete distribution: its optimum is a little above the continuous 5/12.
        assert!((revenue - 5.0 / 12.0).abs() < 5e-3, "{revenue}");
        // A cap under the optimum binds.
        assert_eq!(curve.best(0.3).0, 0.3);
    }

    #[test]
    fn first_price_with_non_reacting_bids_wants_no_floor() {
        let samples: Vec<Sample> = (1..=50)
            .map(|i| {
                let first = i as f64 / 50.0;
                Sample::new(TopBids::new(Some(first), None), 0.0, AuctionType::First).unwrap()
            })
            .collect();
        let mut curve = RevenueCurve::default();
        curve.rebuild(&samples);
        assert_eq!(curve.best(10.0).0, 0.0);
    }

    #[test]
    fn guards_limit_the_step_cap_the_floor_and_ignore_small_gains() {
        let mut samples = Vec::new();
        for i in 0..100 {
            for j in 0..100 {
                let (a, b) = ((i as f64 + 0.5) / 100.0, (j as f64 + 0.5) / 100.0);
                samples.push(second_price(a.max(b), a.min(b)));
            }
        }
        let mut curve = RevenueCurve::default();
        curve.rebuild(&samples);
        let guards = Guards {
            max_floor: 10.0,
            max_step: 0.25,
            hysteresis: 0.01,
        };
        // The first floor goes straight to the target.
        let first = next_floor(&curve, &samples, None, guards);
        assert!((first.floor.unwrap() - 0.5).abs() <= 0.011);
        // From 0.2, at most +25 %.
        let stepped = next_floor(&curve, &samples, Some(0.2), guards);
        assert!((stepped.floor.unwrap() - 0.25).abs() < 1e-12);
        // From 0.48 the gain is far under 1 %: the floor stays.
        let kept = next_floor(&curve, &samples, Some(0.48), guards);
        assert_eq!(kept.floor, Some(0.48));
        // The cap binds, even on a current floor above it.
        let capped = Guards {
            max_floor: 0.3,
            ..guards
        };
        assert_eq!(next_floor(&curve, &samples, None, capped).floor, Some(0.3));
        assert_eq!(
            next_floor(&curve, &samples, Some(0.45), capped).floor,
            Some(0.3)
        );
    }

    #[test]
    fn paired_gain_is_exact_on_a_known_sample() {
        let samples = [second_price(1.0, 0.2), second_price(0.4, 0.1)];
        // Reserve 0.5 vs none: +0.3 on the first, −0.1 on the second.
        let (mean, standard_error) = paired_gain(&samples, 0.5, 0.0);
        assert!((mean - 0.1).abs() < 1e-6);
        assert!((standard_error - 0.2).abs() < 1e-6);
    }
}
