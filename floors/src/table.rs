//! The snapshot the learner publishes: learned floors for the request path, and a per-key
//! report for admin pages.

use crate::key::{FloorKey, Segment};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use std::collections::HashMap;
use std::sync::Arc;

/// Which level of the fallback chain a floor came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FloorSource {
    /// The key's own segment had a learned floor.
    Segment,
    /// The segment had none (too few observations, or not tracked): the placement's applied.
    Placement,
    /// Neither had one: only the static floor applies.
    None,
}

/// The learned floors of one placement.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlacementFloors {
    pub(crate) placement: Option<f64>,
    pub(crate) segments: HashMap<Segment, f64>,
}

/// An immutable set of learned floors, swapped in whole by the learner and read without locks.
#[derive(Debug, Default)]
pub struct FloorTable {
    pub(crate) placements: HashMap<Arc<str>, PlacementFloors>,
    pub(crate) report: Vec<FloorReport>,
    pub(crate) generation: u64,
}

impl FloorTable {
    /// The learned floor for `key`: its segment's, else its placement's, else none.
    pub fn lookup(&self, key: &FloorKey) -> (Option<f64>, FloorSource) {
        let Some(floors) = self.placements.get(&*key.placement) else {
            return (None, FloorSource::None);
        };
        if !key.segment.is_any()
            && let Some(&floor) = floors.segments.get(&key.segment)
        {
            return (Some(floor), FloorSource::Segment);
        }
        match floors.placement {
            Some(floor) => (Some(floor), FloorSource::Placement),
            None => (None, FloorSource::None),
        }
    }

    /// Every tracked key, learned floor or not, in placement then segment order.
    pub fn report(&self) -> &[FloorReport] {
        &self.report
    }

    /// How many snapshots the learner published before this one.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many keys have a learned floor.
    pub fn learned_floors(&self) -> usize {
        self.placements
            .values()
            .map(|floors| usize::from(floors.placement.is_some()) + floors.segments.len())
            .sum()
    }
}

/// One key's state, for an admin page or a JSON export. Revenues are mean CPM per auction,
/// estimated on the key's window of uncensored auctions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FloorReport {
    /// The key.
    pub key: FloorKey,
    /// The floor applied to the key's auctions, if learned.
    pub learned_floor: Option<f64>,
    /// Observations received in total (explored and not).
    pub observations: u64,
    /// Uncensored auctions in the window the estimate uses.
    pub window: usize,
    /// Estimated revenue per auction at the learned floor (at the static floor if none).
    pub estimated_revenue_at_floor: Option<f64>,
    /// Estimated revenue per auction at the static floor.
    pub estimated_revenue_at_static: Option<f64>,
    /// Measured revenue per auction of the auctions that ran at the learned floor.
    pub realized_revenue_at_floor: Option<f64>,
    /// How many times the learned floor changed.
    pub floor_changes: u64,
}

impl Serialize for FloorKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut key = serializer.serialize_struct("FloorKey", 2)?;
        key.serialize_field("placement", &*self.placement)?;
        key.serialize_field("segment", &self.segment)?;
        key.end()
    }
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut segment = serializer.serialize_struct("Segment", 3)?;
        segment.serialize_field("device_type", &self.device_type())?;
        segment.serialize_field("country", &self.country().map(|c| c.to_string()))?;
        segment.serialize_field("size", &self.size().map(|(w, h)| [w, h]))?;
        segment.end()
    }
}
