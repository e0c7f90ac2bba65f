//! Prebid's price granularity: a bid's price rounded down into the bucket an ad server's
//! line items target (`hb_pb`), for the named granularities and custom ranges.
//!
//! The named ones are Prebid's: `low` (0.50 steps up to 5), `medium` (0.10 up to 20, the
//! default), `high` (0.01 up to 20), `auto` (0.05 up to 5, 0.10 up to 10, 0.50 up to 20) and
//! `dense` (0.01 up to 3, 0.05 up to 8, 0.50 up to 20), each with two decimals. A price above
//! the last range's top is capped at that top; a price below the first range's bottom has no
//! bucket (an empty `hb_pb`).

use serde_json::Value;

/// One range of buckets: prices in `[min, max]` round down to `min + k × increment`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// Lowest price of the range.
    pub min: f64,
    /// Highest price of the range.
    pub max: f64,
    /// Bucket width.
    pub increment: f64,
}

/// A price granularity: decimals shown and ranges in ascending order.
#[derive(Debug, Clone, PartialEq)]
pub struct Granularity {
    /// Decimals in the bucket's text.
    pub precision: usize,
    /// Ranges, ascending and contiguous or not; never empty.
    pub ranges: Vec<Range>,
}

const fn range(min: f64, max: f64, increment: f64) -> Range {
    Range {
        min,
        max,
        increment,
    }
}

/// Decimals when a custom granularity does not say.
const DEFAULT_PRECISION: usize = 2;

/// The most decimals a custom granularity may ask for.
const MAX_PRECISION: u64 = 15;

impl Granularity {
    /// A named granularity (`med` is `medium`, as in Prebid Server), or `None`.
    pub fn named(name: &str) -> Option<Granularity> {
        let ranges = match name {
            "low" => vec![range(0.0, 5.0, 0.5)],
            "medium" | "med" => vec![range(0.0, 20.0, 0.1)],
            "high" => vec![range(0.0, 20.0, 0.01)],
            "auto" => vec![
                range(0.0, 5.0, 0.05),
                range(5.0, 10.0, 0.1),
                range(10.0, 20.0, 0.5),
            ],
            "dense" => vec![
                range(0.0, 3.0, 0.01),
                range(3.0, 8.0, 0.05),
                range(8.0, 20.0, 0.5),
            ],
            _ => return None,
        };
        Some(Granularity {
            precision: DEFAULT_PRECISION,
            ranges,
        })
    }

    /// Prebid's default, `medium`.
    pub fn medium() -> Granularity {
        Granularity::named("medium").expect("medium is a named granularity")
    }

    /// Reads `pricegranularity` as a request sends it: a name, or `{precision, ranges: [{min,
    /// max, increment}]}` where a range's `min` defaults to the previous range's `max` (0 for
    /// the first), as Prebid.js's custom buckets leave it out. The error names the bad member
    /// relative to the value.
    pub fn from_json(value: &Value) -> Result<Granularity, (String, String)> {
        let object = match value {
            Value::String(name) => {
                return Granularity::named(name).ok_or_else(|| {
                    (
                        String::new(),
                        format!("unknown price granularity {name:?} (low, medium, high, auto, dense or custom ranges)"),
                    )
                });
            }
            Value::Object(object) => object,
            _ => {
                return Err((
                    String::new(),
                    "must be a name or an object with ranges".into(),
                ));
            }
        };
        let precision = match object.get("precision") {
            None | Some(Value::Null) => DEFAULT_PRECISION,
            Some(p) => match p.as_u64() {
                Some(p) if p <= MAX_PRECISION => p as usize,
                _ => {
                    return Err((
                        ".precision".into(),
                        format!("must be an integer from 0 to {MAX_PRECISION}"),
                    ));
                }
            },
        };
        let Some(list) = object.get("ranges").and_then(Value::as_array) else {
            return Err((".ranges".into(), "must be a non-empty array".into()));
        };
        if list.is_empty() {
            return Err((".ranges".into(), "must be a non-empty array".into()));
        }
        let mut ranges: Vec<Range> = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let field = |name: &str| item.get(name).and_then(Value::as_f64);
            let path = |name: &str| format!(".ranges[{i}].{name}");
            let min = match item.get("min") {
                None | Some(Value::Null) => ranges.last().map_or(0.0, |r| r.max),
                Some(_) => field("min")
                    .filter(|m| m.is_finite() && *m >= 0.0)
                    .ok_or_else(|| (path("min"), "must be a number, 0 or more".into()))?,
            };
            let max = field("max")
                .filter(|m| m.is_finite() && *m > min)
                .ok_or_else(|| (path("max"), format!("must be a number above min ({min})")))?;
            let increment = field("increment")
                .filter(|inc| inc.is_finite() && *inc > 0.0)
                .ok_or_else(|| (path("increment"), "must be a number above 0".into()))?;
            if let Some(previous) = ranges.last()
                && min < previous.max
            {
                return Err((
                    path("min"),
                    format!(
                        "overlaps the previous range, which ends at {}",
                        previous.max
                    ),
                ));
            }
            ranges.push(Range {
                min,
                max,
                increment,
            });
        }
        Ok(Granularity { precision, ranges })
    }

    /// The bucket `price` falls in, as text with this granularity's decimals: rounded down to
    /// its range's step, capped at the top of the last range; empty when no range holds it.
    pub fn bucket(&self, price: f64) -> String {
        if !price.is_finite() || price < 0.0 {
            return String::new();
        }
        let cap = self.ranges.iter().map(|r| r.max).fold(0.0, f64::max);
        if price > cap {
            return format!("{cap:.*}", self.precision);
        }
        let Some(range) = self
            .ranges
            .iter()
            .find(|r| price >= r.min && price <= r.max)
        else {
            return String::new();
        };
        // Decimal prices are inexact in binary (0.3 / 0.1 is 2.9999…): a hair of slack keeps a
        // price that sits on a bucket's edge in that bucket rather than the one below.
        let steps = ((price - range.min) / range.increment + 1e-9).floor();
        let rounded = range.min + steps * range.increment;
        format!("{rounded:.*}", self.precision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(granularity: &str, cases: &[(f64, &str)]) {
        let g = Granularity::named(granularity).unwrap();
        for &(price, want) in cases {
            assert_eq!(g.bucket(price), want, "{granularity} {price}");
        }
    }

    #[test]
    fn named_granularities_round_down_into_their_buckets_and_cap() {
        check(
            "low",
            &[
                (0.0, "0.00"),
                (0.49, "0.00"),
                (0.5, "0.50"),
                (1.99, "1.50"),
                (4.99, "4.50"),
                (5.0, "5.00"),
                (5.01, "5.00"),
                (99.0, "5.00"),
            ],
        );
        check(
            "medium",
            &[
                (0.01, "0.00"),
                (0.3, "0.30"),
                (0.35, "0.30"),
                (1.15, "1.10"),
                (1.19, "1.10"),
                (2.6, "2.60"),
                (19.99, "19.90"),
                (20.0, "20.00"),
                (25.0, "20.00"),
            ],
        );
        check(
            "high",
            &[
                (0.07, "0.07"),
                (1.239, "1.23"),
                (0.29, "0.29"),
                (19.999, "19.99"),
                (21.0, "20.00"),
            ],
        );
        check(
            "auto",
            &[
                (0.07, "0.05"),
                (4.99, "4.95"),
                (5.0, "5.00"),
                (5.07, "5.00"),
                (7.19, "7.10"),
                (10.0, "10.00"),
                (10.6, "10.50"),
                (19.7, "19.50"),
                (30.0, "20.00"),
            ],
        );
        check(
            "dense",
            &[
                (0.017, "0.01"),
                (2.999, "2.99"),
                (3.0, "3.00"),
                (3.07, "3.05"),
                (7.99, "7.95"),
                (8.49, "8.00"),
                (8.5, "8.50"),
                (19.99, "19.50"),
                (20.5, "20.00"),
            ],
        );
        assert_eq!(Granularity::named("med"), Granularity::named("medium"));
        assert_eq!(Granularity::medium().bucket(f64::NAN), "");
    }

    #[test]
    fn custom_ranges_as_prebid_js_sends_them() {
        let g = Granularity::from_json(&json!({
            "precision": 1,
            "ranges": [{"max": 1, "increment": 0.25}, {"max": 10, "increment": 1}]
        }))
        .unwrap();
        assert_eq!(g.ranges[1].min, 1.0, "min defaults to the previous max");
        assert_eq!(g.bucket(0.6), "0.5");
        assert_eq!(g.bucket(0.75), "0.8", "0.75 shown with one decimal");
        assert_eq!(g.bucket(3.9), "3.0");
        assert_eq!(g.bucket(12.0), "10.0");
        // A first range that starts above zero leaves low prices without a bucket.
        let g =
            Granularity::from_json(&json!({"ranges": [{"min": 1, "max": 2, "increment": 0.5}]}))
                .unwrap();
        assert_eq!(g.bucket(0.5), "");
        assert_eq!(g.bucket(1.7), "1.50");
        assert_eq!(
            Granularity::from_json(&json!("dense")).unwrap(),
            Granularity::named("dense").unwrap()
        );
    }

    #[test]
    fn bad_granularities_say_which_member() {
        for (value, path) in [
            (json!("fine"), ""),
            (json!(7), ""),
            (json!({"ranges": []}), ".ranges"),
            (
                json!({"precision": -1, "ranges": [{"max": 1, "increment": 0.1}]}),
                ".precision",
            ),
            (
                json!({"ranges": [{"max": 1, "increment": 0}]}),
                ".ranges[0].increment",
            ),
            (
                json!({"ranges": [{"min": 2, "max": 1, "increment": 0.1}]}),
                ".ranges[0].max",
            ),
            (
                json!({"ranges": [{"max": 5, "increment": 1}, {"min": 4, "max": 9, "increment": 1}]}),
                ".ranges[1].min",
            ),
        ] {
            let (got, _) = Granularity::from_json(&value).unwrap_err();
            assert_eq!(got, path, "{value}");
        }
    }
}
