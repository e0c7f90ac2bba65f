//! A floor rule: a floor per country and hour of the day from a table compiled into the plugin,
//! never below the floor the exchange already had (the seller's floor is a minimum).

use bourse_plugin_sdk::hooks::{ExchangeHooks, FloorContext};

/// One row: a country (ISO-3166-1 alpha-3), the hours it covers (`from..to`, UTC) and the floor.
struct Row {
    country: &'static str,
    hours: std::ops::Range<u8>,
    floor: f64,
}

#[cfg(not(feature = "v2-table"))]
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
#[cfg(not(feature = "v2-table"))]
const DEFAULT_FLOOR: f64 = 0.25;

#[cfg(feature = "v2-table")]
const TABLE: &[Row] = &[
    Row {
        country: "USA",
        hours: 0..8,
        floor: 1.00,
    },
    Row {
        country: "USA",
        hours: 8..24,
        floor: 2.50,
    },
    Row {
        country: "GBR",
        hours: 0..24,
        floor: 1.40,
    },
    Row {
        country: "DEU",
        hours: 0..24,
        floor: 1.20,
    },
];
#[cfg(feature = "v2-table")]
const DEFAULT_FLOOR: f64 = 0.35;

struct FloorRule;

impl ExchangeHooks for FloorRule {
    fn floor(context: FloorContext) -> f64 {
        let country = context.country.as_deref().unwrap_or("");
        let table_floor = TABLE
            .iter()
            .find(|row| row.country == country && row.hours.contains(&context.hour))
            .map_or(DEFAULT_FLOOR, |row| row.floor);
        table_floor.max(context.current_floor)
    }
}

bourse_plugin_sdk::export_hooks!(FloorRule);
