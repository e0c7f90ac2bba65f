//! The floor-rule example plugin's first table compiled into the binary as the exchange's
//! hook: what the same rule costs without WebAssembly, the baseline `benches/aba/variants.py`
//! measures the signed plugin against. Keep it in step with `plugins/examples/floor-rule`.

use bourse_engine::openrtb::BidRequest;
use bourse_engine::{AuctionHooks, BidHook, HookBid, RequestHook};

/// One row: a country (ISO-3166-1 alpha-3), the UTC hours it covers and the floor.
struct Row {
    country: &'static str,
    hours: std::ops::Range<u8>,
    floor: f64,
}

const TABLE: &[Row] = &[
    Row {
        country: "USA",
        hours: 0..8,
        floor: 0.80,
    },
    Row {
        country: "USA",
        hours: 8..24,
        floor: 1.50,
    },
    Row {
        country: "GBR",
        hours: 0..24,
        floor: 1.10,
    },
    Row {
        country: "FRA",
        hours: 18..23,
        floor: 0.90,
    },
];
const DEFAULT_FLOOR: f64 = 0.25;

/// The floor rule, compiled in; it filters no request and no bid.
#[derive(Debug, Default)]
pub struct NativeFloorRule;

impl AuctionHooks for NativeFloorRule {
    fn active(&self) -> bool {
        true
    }

    fn filter_request(&self, _request: &BidRequest) -> RequestHook {
        RequestHook::Keep(Vec::new())
    }

    fn floors(&self, request: &BidRequest, floors: &mut [f64]) {
        let country = request
            .device
            .as_ref()
            .and_then(|d| d.geo.as_ref())
            .and_then(|g| g.country.as_deref())
            .unwrap_or("");
        let hour = ((bourse_kernel::unix_now_ms() / 3_600_000) % 24) as u8;
        let table_floor = TABLE
            .iter()
            .find(|row| row.country == country && row.hours.contains(&hour))
            .map_or(DEFAULT_FLOOR, |row| row.floor);
        for floor in floors {
            *floor = table_floor.max(*floor);
        }
    }

    fn filter_bids(&self, _request: &BidRequest, bids: &[HookBid<'_>]) -> Vec<BidHook> {
        vec![BidHook::Keep; bids.len()]
    }
}
