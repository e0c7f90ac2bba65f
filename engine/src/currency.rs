//! Static currency conversion between ISO-4217 codes, through one base currency.

use std::collections::HashMap;

/// Conversion rates: how many units of the base currency one unit of each currency is worth.
#[derive(Debug, Clone)]
pub struct Rates {
    base: String,
    base_per_unit: HashMap<String, f64>,
}

impl Rates {
    /// Rates with `base` as the pivot; `rates` maps a code to base units per unit of it.
    pub fn new(base: &str, rates: impl IntoIterator<Item = (String, f64)>) -> Self {
        let mut base_per_unit: HashMap<String, f64> = rates.into_iter().collect();
        base_per_unit.insert(base.to_owned(), 1.0);
        Rates {
            base: base.to_owned(),
            base_per_unit,
        }
    }

    /// The pivot currency.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether amounts in `code` can be converted.
    pub fn knows(&self, code: &str) -> bool {
        // The base, the usual case, without hashing.
        code == self.base || self.base_per_unit.contains_key(code)
    }

    /// Converts `amount` from one currency to another; `None` if either is unknown.
    pub fn convert(&self, amount: f64, from: &str, to: &str) -> Option<f64> {
        if from == to {
            return Some(amount);
        }
        let from_rate = self.base_per_unit.get(from)?;
        let to_rate = self.base_per_unit.get(to)?;
        Some(amount * from_rate / to_rate)
    }
}

/// Whether `code` looks like an ISO-4217 alphabetic code.
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_through_the_base() {
        let rates = Rates::new("USD", [("EUR".to_owned(), 1.10), ("GBP".to_owned(), 1.25)]);
        assert_eq!(rates.convert(2.0, "USD", "USD"), Some(2.0));
        assert!((rates.convert(1.0, "EUR", "USD").unwrap() - 1.10).abs() < 1e-12);
        assert!((rates.convert(1.10, "USD", "EUR").unwrap() - 1.0).abs() < 1e-12);
        assert!((rates.convert(1.0, "GBP", "EUR").unwrap() - 1.25 / 1.10).abs() < 1e-12);
        assert_eq!(rates.convert(1.0, "JPY", "USD"), None);
    }

    #[test]
    fn recognises_codes() {
        assert!(is_currency_code("EUR"));
        assert!(!is_currency_code("eur"));
        assert!(!is_currency_code("EURO"));
    }
}
