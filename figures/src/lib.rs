//! The dictionary of figures: one function per figure named in `docs/metrics.md` ("Figures"),
//! so the admin, the simulator's report and the tests that hold the dashboards' PromQL to them
//! compute each one the same way.
//!
//! Money is in the exchange's base currency: a revenue is a sum of CPM prices divided by 1000
//! (one impression at a CPM of 2 earns 0.002). A rate is a share between 0 and 1. A figure with
//! nothing to divide by (no auction, no win, no call) is `None`, never a NaN or an infinity, and
//! no input makes a function panic.

/// `part / whole`, or `None` when `whole` is not positive or either is not finite.
pub fn share(part: f64, whole: f64) -> Option<f64> {
    let value = part / whole;
    (whole > 0.0 && whole.is_finite() && value.is_finite()).then_some(value)
}

/// The money of impressions priced at CPMs summing to `cpm_sum`: `cpm_sum / 1000`.
///
/// **Cleared revenue** (gross) is this of the clearing prices of won impressions; **net
/// cleared** is this of the prices in the auction's answers (what sellers are told they
/// receive: the clearing price net of our fee).
pub fn revenue_of_cpm(cpm_sum: f64) -> f64 {
    cpm_sum / 1000.0
}

/// **Net cleared** from cleared revenue and the configured fee (a share of the gross):
/// `cleared × (1 − fee_share)`, what the auction's answers carry in total.
pub fn net_cleared(cleared: f64, fee_share: f64) -> f64 {
    cleared * (1.0 - fee_share)
}

/// **Net to sellers**: billed revenue less the fee we charged on it (money, not a share).
pub fn net_to_sellers(billed: f64, fee_charged: f64) -> f64 {
    billed - fee_charged
}

/// **Take rate**: the fee we charged as a share of billed revenue.
pub fn take_rate(fee_charged: f64, billed: f64) -> Option<f64> {
    share(fee_charged, billed)
}

/// Revenue per thousand impressions: `1000 × revenue / impressions`. The eCPMs below are this
/// of different revenues and impressions, and each carries its own name.
pub fn ecpm(revenue: f64, impressions: f64) -> Option<f64> {
    share(1000.0 * revenue, impressions)
}

/// **Clearing eCPM**: the mean clearing CPM of won impressions, `1000 × cleared / wins`. Given
/// the win-price histogram's sum (CPM) and count, it is `sum / count`.
pub fn clearing_ecpm(cleared: f64, wins: f64) -> Option<f64> {
    ecpm(cleared, wins)
}

/// **Net clearing eCPM**: the mean price in the auction's answers, `1000 × net cleared / wins`
/// (the clearing eCPM net of our fee).
pub fn net_clearing_ecpm(net_cleared: f64, wins: f64) -> Option<f64> {
    ecpm(net_cleared, wins)
}

/// **Billed eCPM**: `1000 × billed / billed impressions`.
pub fn billed_ecpm(billed: f64, billed_impressions: f64) -> Option<f64> {
    ecpm(billed, billed_impressions)
}

/// **Revenue per thousand requests**: `1000 × revenue / auction requests` (of any revenue: the
/// simulator's is net cleared). Not an eCPM: requests, not impressions, divide it.
pub fn revenue_per_thousand_requests(revenue: f64, requests: f64) -> Option<f64> {
    share(1000.0 * revenue, requests)
}

/// **Fill rate**: the share of answered auction requests answered with at least one bid:
/// `with_bid / (with_bid + without_bid)`. Requests refused or failed count in neither.
pub fn fill_rate(with_bid: f64, without_bid: f64) -> Option<f64> {
    share(with_bid, with_bid + without_bid)
}

/// **Bids per request**: bids returned per auction request; above 1 when answers carry several
/// impressions' bids. Not a fill rate.
pub fn bids_per_request(bids: f64, requests: f64) -> Option<f64> {
    share(bids, requests)
}

/// **Bid rate** (per bidder): the share of its calls answered with at least one bid that
/// entered the auction; at most 1.
pub fn bid_rate(bid_answers: f64, calls: f64) -> Option<f64> {
    share(bid_answers, calls)
}

/// **Win rate** (per bidder): impressions won per call.
pub fn win_rate(wins: f64, calls: f64) -> Option<f64> {
    share(wins, calls)
}

/// An amount counted over `secs` seconds, per minute.
pub fn per_minute(amount: f64, secs: f64) -> Option<f64> {
    share(amount * 60.0, secs)
}

/// A share as a percentage.
pub fn percent(share: Option<f64>) -> Option<f64> {
    share.map(|s| s * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_divide_by_is_none_never_nan_or_infinite() {
        for whole in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(fill_rate(0.0, whole), None, "{whole}");
            assert_eq!(clearing_ecpm(1.0, whole), None, "{whole}");
            assert_eq!(bid_rate(1.0, whole), None, "{whole}");
        }
        assert_eq!(fill_rate(0.0, 0.0), None);
        assert_eq!(share(f64::NAN, 1.0), None);
        assert_eq!(share(f64::INFINITY, 1.0), None);
        assert_eq!(per_minute(1.0, 0.0), None);
    }

    #[test]
    fn each_figure_follows_its_definition() {
        // 30 auctions with a bid, 10 without: three in four filled.
        assert_eq!(fill_rate(30.0, 10.0), Some(0.75));
        assert_eq!(percent(fill_rate(30.0, 10.0)), Some(75.0));
        // 4 wins clearing at CPMs summing to 10: cleared 0.01, clearing eCPM 2.5.
        let cleared = revenue_of_cpm(10.0);
        assert_eq!(cleared, 0.01);
        assert_eq!(clearing_ecpm(cleared, 4.0), Some(2.5));
        // With a 10% fee the answers carry 90% of it.
        let net = net_cleared(cleared, 0.1);
        assert!((net - 0.009).abs() < 1e-15, "{net}");
        assert!((net_clearing_ecpm(net, 4.0).unwrap() - 2.25).abs() < 1e-12);
        // Billed 2.0 on 1000 impressions, fee 0.2.
        assert_eq!(billed_ecpm(2.0, 1000.0), Some(2.0));
        assert_eq!(net_to_sellers(2.0, 0.2), 1.8);
        assert_eq!(take_rate(0.2, 2.0), Some(0.1));
        // Per request, not per impression.
        assert_eq!(revenue_per_thousand_requests(0.5, 250.0), Some(2.0));
        assert_eq!(bids_per_request(150.0, 100.0), Some(1.5));
        assert_eq!(bid_rate(60.0, 80.0), Some(0.75));
        assert_eq!(win_rate(20.0, 80.0), Some(0.25));
        assert_eq!(per_minute(3.0, 2.0), Some(90.0));
    }
}
