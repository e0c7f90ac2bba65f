//! Dimensions: the bounded set of names unique counts are kept per ("placement", "link", …),
//! interned once into small copyable handles.

use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::UniquesError;

/// Most dimensions one process interns: each is a label value of the gauges and a segment of
/// Redis keys, so the set stays small.
pub const MAX_DIMENSIONS: usize = 32;
/// Longest dimension name, in bytes.
pub const MAX_DIMENSION_NAME_LEN: usize = 32;

/// A dimension interned by [`Uniques::dimension`](crate::Uniques::dimension): a one-byte index,
/// so recording never hashes or compares its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dimension(u8);

impl Dimension {
    /// Position in the table, for per-dimension vectors.
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// What is known of one interned dimension.
#[derive(Clone, Debug)]
pub(crate) struct DimensionInfo {
    pub(crate) name: Arc<str>,
    /// Whether its ids are exported as labels of `bourse_reach_unique_users`.
    pub(crate) gauges: bool,
}

/// Every interned dimension, in interning order (the index of each).
pub(crate) type DimensionList = Arc<Vec<DimensionInfo>>;

/// The interning table. Reads (the aggregator's) are a lock-free snapshot; interning takes a
/// mutex, which only start-up and configuration code does.
#[derive(Default)]
pub(crate) struct Dimensions {
    list: ArcSwap<Vec<DimensionInfo>>,
    interning: Mutex<()>,
}

impl Dimensions {
    /// The dimension named `name`, interned on first use. The same name always gives the same
    /// dimension; asking for it with another gauge choice is an error.
    pub(crate) fn intern(&self, name: &str, gauges: bool) -> Result<Dimension, UniquesError> {
        check_name(name)?;
        let _interning = self.interning.lock();
        let list = self.list.load_full();
        if let Some(index) = list.iter().position(|info| &*info.name == name) {
            if list[index].gauges != gauges {
                return Err(UniquesError::GaugeChoiceClash {
                    name: name.to_owned(),
                });
            }
            return Ok(Dimension(index as u8));
        }
        if list.len() >= MAX_DIMENSIONS {
            return Err(UniquesError::TooManyDimensions {
                limit: MAX_DIMENSIONS,
            });
        }
        let mut grown = Vec::clone(&list);
        grown.push(DimensionInfo {
            name: name.into(),
            gauges,
        });
        let dimension = Dimension((grown.len() - 1) as u8);
        self.list.store(Arc::new(grown));
        Ok(dimension)
    }

    /// The current table.
    pub(crate) fn snapshot(&self) -> DimensionList {
        self.list.load_full()
    }

    /// How many dimensions are interned (their indexes are `0..len`).
    pub(crate) fn len(&self) -> usize {
        self.list.load().len()
    }

    /// The name of an interned dimension.
    pub(crate) fn name(&self, dimension: Dimension) -> Option<Arc<str>> {
        self.list
            .load()
            .get(dimension.index())
            .map(|info| Arc::clone(&info.name))
    }
}

/// Position of `name` in `list`, for sorting counts in interning order.
pub(crate) fn position(list: &[DimensionInfo], name: &str) -> Option<usize> {
    list.iter().position(|info| &*info.name == name)
}

/// Names go into Redis keys (`:`-separated) and metric labels: lower-case ASCII letters,
/// digits and `_`, starting with a letter.
fn check_name(name: &str) -> Result<(), UniquesError> {
    let invalid = |reason: &str| UniquesError::InvalidDimension {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() || name.len() > MAX_DIMENSION_NAME_LEN {
        return Err(invalid("must be 1 to 32 bytes"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase())
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(invalid(
            "must start with a lower-case letter and hold only a-z, 0-9 and _",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_interned_once_and_keeps_its_index() {
        let table = Dimensions::default();
        let placement = table.intern("placement", true).unwrap();
        let link = table.intern("link", false).unwrap();
        assert_ne!(placement, link);
        assert_eq!(table.intern("placement", true).unwrap(), placement);
        assert_eq!(table.name(link).as_deref(), Some("link"));
        let snapshot = table.snapshot();
        assert_eq!(snapshot.len(), 2);
        assert!(snapshot[placement.index()].gauges);
        assert!(!snapshot[link.index()].gauges);
        assert!(matches!(
            table.intern("link", true),
            Err(UniquesError::GaugeChoiceClash { .. })
        ));
    }

    #[test]
    fn bad_names_and_too_many_dimensions_are_refused() {
        let table = Dimensions::default();
        for bad in ["", "Placement", "1st", "a:b", "a b", &"x".repeat(33)] {
            let err = table.intern(bad, true).unwrap_err();
            assert!(
                matches!(err, UniquesError::InvalidDimension { .. }),
                "{bad:?}: {err}"
            );
        }
        for index in 0..MAX_DIMENSIONS {
            table.intern(&format!("d{index}"), true).unwrap();
        }
        let err = table.intern("one_more", true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "uniques: at most 32 dimensions can be interned"
        );
        // Known names still resolve once the table is full.
        assert!(table.intern("d3", true).is_ok());
    }
}
