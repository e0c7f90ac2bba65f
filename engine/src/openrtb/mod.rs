//! OpenRTB 2.6 request and response model, kept faithful on the way through.
//!
//! Every object keeps its `ext` and any field this model does not know verbatim, so a bidder
//! receives what the supply side sent. Numeric enumerations stay integers (the spec lets
//! exchanges use values above 500); the auction reads them through small typed helpers.

pub mod direct;
pub mod native;
pub mod object;
mod request;
mod response;
pub mod splice;
pub mod upconvert;
pub mod write;

pub use object::{Raw, Unknown};
pub use request::*;
pub use response::*;

/// A string in the model: held inline up to 24 bytes, so the short ids, codes and names most
/// members carry cost the reader no allocation. A bid's markup and notice URLs, long and
/// rewritten on the way out, stay `String`.
pub type Text = compact_str::CompactString;

/// Parses a JSON body (a bid request, a partner's answer) into one of our objects, checking
/// UTF-8 once for the whole text: `serde_json::from_slice` checks each string on its own, which
/// cost more than any other part of reading a request. The [`direct`] reader reads it when it
/// can. A body that is not UTF-8 is read by `from_slice`, so its error says where the bad byte
/// is, as before.
pub fn from_json<T: object::Object + serde::de::DeserializeOwned>(
    body: &[u8],
) -> serde_json::Result<T> {
    match std::str::from_utf8(body) {
        Ok(text) => object::read(text),
        Err(_) => serde_json::from_slice(body),
    }
}

/// [`from_json`] for an object read onto the heap where it will stay
/// ([`object::read_boxed`]), also handing back the body as text when it is UTF-8 (a request's
/// partner bodies are spliced from it): a bid request is kilobytes, and read by value it was
/// copied up through every level that returned it, then into its box.
pub fn from_json_text_boxed<T: object::Object + serde::de::DeserializeOwned>(
    body: &[u8],
) -> (serde_json::Result<Box<T>>, Option<&str>) {
    match std::str::from_utf8(body) {
        Ok(text) => (object::read_boxed(text), Some(text)),
        Err(_) => (serde_json::from_slice(body).map(Box::new), None),
    }
}

/// Room for a typical request or answer: `serde_json::to_vec` starts at 128 bytes and doubles,
/// so a 2 KB document was copied through four reallocations on its way out.
const JSON_BUFFER_BYTES: usize = 4096;

/// Writes one of our OpenRTB objects as JSON (as serde_json would, through [`write`]) into a
/// buffer sized for it up front.
pub fn to_json<T: object::Object>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(JSON_BUFFER_BYTES);
    value.write_direct(&mut out);
    out
}

/// The currency OpenRTB assumes when none is given.
pub const DEFAULT_CURRENCY: &str = "USD";

/// The kinds of media an impression can offer and a bid can fill.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    /// Display banners (`imp.banner`).
    Banner,
    /// Video (`imp.video`).
    Video,
    /// Audio (`imp.audio`).
    Audio,
    /// Native (`imp.native`).
    Native,
}

impl MediaType {
    /// Every media type, in spec order.
    pub const ALL: [MediaType; 4] = [Self::Banner, Self::Video, Self::Audio, Self::Native];

    /// The spec's `mtype` value (List: Creative Markup Types).
    pub fn mtype(self) -> u8 {
        match self {
            Self::Banner => 1,
            Self::Video => 2,
            Self::Audio => 3,
            Self::Native => 4,
        }
    }

    /// The media type for a spec `mtype` value.
    pub fn from_mtype(mtype: i64) -> Option<Self> {
        match mtype {
            1 => Some(Self::Banner),
            2 => Some(Self::Video),
            3 => Some(Self::Audio),
            4 => Some(Self::Native),
            _ => None,
        }
    }

    /// Lower-case name, as used in config and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Banner => "banner",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Native => "native",
        }
    }
}

/// A small set of media types, as a bit mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MediaTypes(u8);

impl MediaTypes {
    /// No media type.
    pub const NONE: MediaTypes = MediaTypes(0);
    /// Every media type.
    pub const ALL: MediaTypes = MediaTypes(0b1111);

    fn bit(media: MediaType) -> u8 {
        1 << (media.mtype() - 1)
    }

    /// This set with `media` added.
    pub fn with(self, media: MediaType) -> Self {
        MediaTypes(self.0 | Self::bit(media))
    }

    /// Whether `media` is in the set.
    pub fn contains(self, media: MediaType) -> bool {
        self.0 & Self::bit(media) != 0
    }

    /// Whether the two sets share a media type.
    pub fn intersects(self, other: MediaTypes) -> bool {
        self.0 & other.0 != 0
    }

    /// The media types either set holds.
    pub fn union(self, other: MediaTypes) -> MediaTypes {
        MediaTypes(self.0 | other.0)
    }

    /// The media types both sets hold.
    pub fn intersection(self, other: MediaTypes) -> MediaTypes {
        MediaTypes(self.0 & other.0)
    }

    /// Whether every media type in this set is also in `other`.
    pub fn is_subset_of(self, other: MediaTypes) -> bool {
        self.0 & !other.0 == 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The media types in the set, in spec order.
    pub fn iter(self) -> impl Iterator<Item = MediaType> {
        MediaType::ALL
            .into_iter()
            .filter(move |m| self.contains(*m))
    }
}

impl FromIterator<MediaType> for MediaTypes {
    fn from_iter<I: IntoIterator<Item = MediaType>>(iter: I) -> Self {
        iter.into_iter().fold(MediaTypes::NONE, MediaTypes::with)
    }
}

#[cfg(test)]
mod tests;
