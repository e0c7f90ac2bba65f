//! What the request path records (one item seen under a few ids) and what queries return.

use std::sync::Arc;

use serde::Serialize;
use smallvec::SmallVec;

use super::dimension::Dimension;
use super::window::Window;

/// Longest id accepted, in bytes: keeps Redis keys and metric labels small.
pub const MAX_ID_LEN: usize = 256;
/// Most `(dimension, id)` keys one recorded item may carry.
pub const MAX_KEYS_PER_ITEM: usize = 16;

/// Keys held inline in the queue slot: three cover every current caller without allocating.
pub(crate) type Keys = SmallVec<[(Dimension, Arc<str>); 3]>;

/// One item (a user, a visitor, a device: any 64-bit hash) seen under some ids at one time.
pub(crate) struct Item {
    pub(crate) item_hash: u64,
    pub(crate) timestamp: u64,
    pub(crate) keys: Keys,
}

impl Item {
    /// Refuses an item with no key, too many keys, a dimension this table does not know, or an
    /// id that is empty or longer than [`MAX_ID_LEN`].
    pub(crate) fn check(&self, known_dimensions: usize) -> Result<(), Rejection> {
        let valid = !self.keys.is_empty()
            && self.keys.len() <= MAX_KEYS_PER_ITEM
            && self.keys.iter().all(|(dimension, id)| {
                dimension.index() < known_dimensions && !id.is_empty() && id.len() <= MAX_ID_LEN
            });
        if valid {
            Ok(())
        } else {
            Err(Rejection::InvalidId)
        }
    }
}

/// Why the aggregator refused an item (the label of `bourse_reach_events_rejected_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// No key, too many keys, an unknown dimension, or an id empty or too long.
    InvalidId,
    /// The item's hour is older than the retained hour buckets.
    TooOld,
    /// The item is further in the future than the allowed clock skew.
    InFuture,
    /// A dimension already holds `max_ids_per_dimension` ids in that bucket.
    TooManyIds,
}

impl Rejection {
    /// Every reason, so their metric series exist (at zero) from the start.
    pub(crate) const ALL: [Rejection; 4] = [
        Rejection::InvalidId,
        Rejection::TooOld,
        Rejection::InFuture,
        Rejection::TooManyIds,
    ];

    /// Metric label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Rejection::InvalidId => "invalid_id",
            Rejection::TooOld => "too_old",
            Rejection::InFuture => "in_future",
            Rejection::TooManyIds => "too_many_ids",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Estimated distinct items for one id of one dimension in one window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UniqueCount {
    /// The dimension's name.
    pub dimension: Arc<str>,
    /// The id within the dimension.
    pub id: String,
    /// The window counted, normalised to its first second.
    pub window: Window,
    /// Estimated distinct items (HyperLogLog, standard error about 0.8 % at precision 14).
    pub estimate: u64,
}

/// Where the counts live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// This process only: this node's items.
    InProcess,
    /// Redis, shared by every node using it: all nodes' items.
    Redis,
}
