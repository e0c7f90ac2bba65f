//! Optional signals a request may carry malformed: each is ignored (dropped before the auction
//! and before partners see it), counted, and never a reason to refuse the auction, as exchanges
//! treat real traffic.

use crate::metrics::FixedCounters;
use crate::openrtb::BidRequest;

/// Why a `regs.us_privacy` string was ignored (`reason` of
/// `bourse_exchange_ignored_signals_total{signal="regs.us_privacy"}`).
pub const US_PRIVACY_FAULTS: &[&str] = &["length", "version", "characters"];

/// What is wrong with a US Privacy string (IAB CCPA framework: a version digit `1`, then notice,
/// opt-out and LSPA flags, each `Y`, `N` or `-`), or `None` when it is well formed. Lower-case
/// flags are taken, as many senders write them.
pub fn us_privacy_fault(usp: &str) -> Option<&'static str> {
    let bytes = usp.as_bytes();
    if bytes.len() != 4 {
        return Some("length");
    }
    if bytes[0] != b'1' {
        return Some("version");
    }
    if !bytes[1..]
        .iter()
        .all(|b| matches!(b, b'Y' | b'N' | b'y' | b'n' | b'-'))
    {
        return Some("characters");
    }
    None
}

/// Drops every malformed optional signal from `request`, counting each in `ignored`
/// (resolved for `signal="regs.us_privacy"` and [`US_PRIVACY_FAULTS`]). Touches nothing, and
/// allocates nothing, when the signals are well formed. Answers whether it dropped any.
pub fn drop_malformed(request: &mut BidRequest, ignored: &FixedCounters) -> bool {
    if let Some(regs) = &mut request.regs
        && let Some(fault) = regs.us_privacy.as_deref().and_then(us_privacy_fault)
    {
        tracing::debug!(signal = "regs.us_privacy", reason = fault, "signal ignored");
        ignored.inc(fault);
        regs.us_privacy = None;
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_us_privacy_strings() {
        for good in ["1YNN", "1---", "1ynY", "1NYN"] {
            assert_eq!(us_privacy_fault(good), None, "{good}");
        }
        assert_eq!(us_privacy_fault(""), Some("length"));
        assert_eq!(us_privacy_fault("1YN"), Some("length"));
        assert_eq!(us_privacy_fault("1YNNN"), Some("length"));
        assert_eq!(us_privacy_fault("2YNN"), Some("version"));
        assert_eq!(us_privacy_fault("1YXN"), Some("characters"));
        // Four bytes, but not four characters of the alphabet.
        assert_eq!(us_privacy_fault("1Yé"), Some("characters"));
    }

    #[test]
    fn a_malformed_signal_is_dropped_and_counted_a_good_one_kept() {
        let family = prometheus::IntCounterVec::new(
            prometheus::Opts::new("ignored_test", "test"),
            &["signal", "reason"],
        )
        .unwrap();
        let ignored = FixedCounters::new(&family, &["regs.us_privacy"], US_PRIVACY_FAULTS);
        let mut req: BidRequest =
            serde_json::from_str(r#"{"id":"a","imp":[],"regs":{"us_privacy":"bad"}}"#).unwrap();
        drop_malformed(&mut req, &ignored);
        assert_eq!(req.regs.as_ref().unwrap().us_privacy, None);
        assert_eq!(ignored.get("length").unwrap().get(), 1);
        let mut req: BidRequest =
            serde_json::from_str(r#"{"id":"a","imp":[],"regs":{"us_privacy":"1YNN"}}"#).unwrap();
        drop_malformed(&mut req, &ignored);
        assert_eq!(req.regs.unwrap().us_privacy.as_deref(), Some("1YNN"));
        assert_eq!(ignored.get("length").unwrap().get(), 1);
    }
}
