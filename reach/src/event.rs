//! What the request path records (one user seen on a placement) and what queries return.

use std::sync::Arc;

use serde::Serialize;

use crate::window::Window;

/// Longest placement, publisher or bidder id accepted, in bytes. Ids come from config, so a
/// longer one is a caller bug; refusing it keeps Redis keys and metric labels small.
pub const MAX_ID_LEN: usize = 256;

/// What reach is counted per.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    /// Unique users per placement (ad slot).
    Placement,
    /// Unique users per publisher.
    Publisher,
    /// Unique users per bidder (demand partner).
    Bidder,
}

impl Dimension {
    /// Every dimension, in report order.
    pub const ALL: [Dimension; 3] = [
        Dimension::Placement,
        Dimension::Publisher,
        Dimension::Bidder,
    ];

    /// Lower-case name, as used in Redis keys, metric labels and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Placement => "placement",
            Dimension::Publisher => "publisher",
            Dimension::Bidder => "bidder",
        }
    }

    /// The dimension named by [`Dimension::as_str`], if any.
    pub fn parse(name: &str) -> Option<Self> {
        Dimension::ALL.into_iter().find(|dim| dim.as_str() == name)
    }

    /// Position in [`Dimension::ALL`], for per-dimension arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Dimension::Placement => 0,
            Dimension::Publisher => 1,
            Dimension::Bidder => 2,
        }
    }
}

/// One user seen on one placement, as recorded on the request path.
///
/// The ids are `Arc<str>` so the caller can hand over strings it resolved from config once,
/// at the cost of a reference-count increment per event.
#[derive(Clone, Debug)]
pub struct ReachEvent {
    /// A 64-bit hash of the user id (any hash; it is re-hashed before counting).
    pub user_hash: u64,
    /// Placement id from config.
    pub placement: Arc<str>,
    /// Publisher id from config.
    pub publisher: Arc<str>,
    /// Bidder name from config.
    pub bidder: Arc<str>,
    /// When the user was seen, Unix seconds.
    pub timestamp: u64,
}

impl ReachEvent {
    /// The id for one dimension.
    pub fn id(&self, dimension: Dimension) -> &Arc<str> {
        match dimension {
            Dimension::Placement => &self.placement,
            Dimension::Publisher => &self.publisher,
            Dimension::Bidder => &self.bidder,
        }
    }

    /// `true` when every id is non-empty and at most [`MAX_ID_LEN`] bytes.
    pub(crate) fn has_valid_ids(&self) -> bool {
        Dimension::ALL.into_iter().all(|dim| {
            let id = self.id(dim);
            !id.is_empty() && id.len() <= MAX_ID_LEN
        })
    }
}

/// Why the aggregator refused an event it received (the label of
/// `bourse_reach_events_rejected_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// An id was empty or longer than [`MAX_ID_LEN`].
    InvalidId,
    /// The event's hour is older than the retained hour buckets.
    TooOld,
    /// The event is further in the future than the allowed clock skew.
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
}

/// Estimated unique users for one id of one dimension in one window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReachCount {
    /// What the id names.
    pub dimension: Dimension,
    /// The placement, publisher or bidder id.
    pub id: String,
    /// The window counted, normalised to its first second.
    pub window: Window,
    /// Estimated distinct users (HyperLogLog, standard error about 0.8 % at precision 14).
    pub uniques: u64,
}

/// Where the counts live, as shown in reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Sketches owned by this process's aggregator: this node's users only.
    InProcess,
    /// Redis HyperLogLogs shared by every node: all nodes' users.
    Redis,
}

/// The JSON body of the `/reach` endpoint: counts for the requested windows.
#[derive(Clone, Debug, Serialize)]
pub struct ReachReport {
    /// Which store answered.
    pub backend: Backend,
    /// HyperLogLog precision (registers = 2^precision); Redis always uses 14.
    pub precision: u8,
    /// When the report was built, Unix seconds.
    pub generated_at: u64,
    /// Counts per window, in the order requested, each sorted by dimension then id.
    pub windows: Vec<WindowReport>,
}

/// Counts for one window within a [`ReachReport`].
#[derive(Clone, Debug, Serialize)]
pub struct WindowReport {
    /// The window, normalised to its first second.
    pub window: Window,
    /// One entry per id seen in the window.
    pub counts: Vec<ReachCount>,
}
