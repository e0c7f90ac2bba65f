//! What a floor is learned for: a placement and a segment of its traffic, packed so that hashing
//! and comparing a key costs next to nothing on the request path.

use std::fmt;
use std::sync::Arc;

/// An ISO 3166-1 country code (alpha-3 as OpenRTB's `geo.country` uses, or alpha-2), stored as
/// upper-case ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country {
    /// Upper-case letters; the third is 0 for an alpha-2 code.
    letters: [u8; 3],
}

impl Country {
    /// Reads a 2- or 3-letter code in any case; anything else (digits, punctuation, other
    /// lengths, non-ASCII) is `None`, which callers treat as "country unknown".
    pub fn parse(code: &str) -> Option<Country> {
        let bytes = code.as_bytes();
        if !(2..=3).contains(&bytes.len()) || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        let mut letters = [0u8; 3];
        for (slot, byte) in letters.iter_mut().zip(bytes) {
            *slot = byte.to_ascii_uppercase();
        }
        Some(Country { letters })
    }

    /// The code as written by [`Country::parse`], upper case.
    pub fn as_str(&self) -> &str {
        let len = if self.letters[2] == 0 { 2 } else { 3 };
        // Only ASCII letters are ever stored, so this never fails; the fallback keeps it total.
        std::str::from_utf8(&self.letters[..len]).unwrap_or("")
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Country({})", self.as_str())
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Layout of a packed segment: one presence bit per attribute, then the attribute's bits.
const DEVICE_PRESENT: u64 = 1 << 63;
const COUNTRY_PRESENT: u64 = 1 << 62;
const SIZE_PRESENT: u64 = 1 << 61;
const DEVICE_SHIFT: u32 = 0; // 8 bits
const COUNTRY_SHIFT: u32 = 8; // 3 letters × 5 bits
const SIZE_SHIFT: u32 = 23; // width 16 bits, then height 16 bits
const LETTER_BITS: u32 = 5;

/// A slice of a placement's traffic: device type, country and creative size, each optional.
///
/// Packed into one `u64` so a key hashes and compares as a single word. [`Segment::ANY`] (every
/// attribute unknown) is the placement-level segment.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Segment(u64);

impl Segment {
    /// No attribute known: the whole placement.
    pub const ANY: Segment = Segment(0);

    /// A segment from its attributes; `device_type` is OpenRTB's `device.devicetype`.
    pub fn new(
        device_type: Option<u8>,
        country: Option<Country>,
        size: Option<(u16, u16)>,
    ) -> Self {
        let mut packed = 0u64;
        if let Some(device) = device_type {
            packed |= DEVICE_PRESENT | (u64::from(device) << DEVICE_SHIFT);
        }
        if let Some(country) = country {
            let mut letters = 0u64;
            for (i, &letter) in country.letters.iter().enumerate() {
                // 'A'..='Z' → 1..=26, 0 for the missing third letter of an alpha-2 code.
                let code = if letter == 0 {
                    0
                } else {
                    u64::from(letter - b'A' + 1)
                };
                letters |= code << (LETTER_BITS * i as u32);
            }
            packed |= COUNTRY_PRESENT | (letters << COUNTRY_SHIFT);
        }
        if let Some((w, h)) = size {
            packed |= SIZE_PRESENT | (((u64::from(w) << 16) | u64::from(h)) << SIZE_SHIFT);
        }
        Segment(packed)
    }

    /// A segment from loosely typed request data: out-of-range numbers and malformed country
    /// codes become "unknown" instead of errors, so hostile requests cannot fail an auction.
    pub fn from_request(
        device_type: Option<i64>,
        country: Option<&str>,
        size: Option<(i64, i64)>,
    ) -> Self {
        let device_type = device_type.and_then(|d| u8::try_from(d).ok());
        let country = country.and_then(Country::parse);
        let size = size.and_then(|(w, h)| Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?)));
        Segment::new(device_type, country, size)
    }

    /// Whether this is the placement-level segment (nothing known).
    pub fn is_any(self) -> bool {
        self.0 == 0
    }

    /// OpenRTB device type, when known.
    pub fn device_type(self) -> Option<u8> {
        (self.0 & DEVICE_PRESENT != 0).then_some((self.0 >> DEVICE_SHIFT) as u8)
    }

    /// Country, when known.
    pub fn country(self) -> Option<Country> {
        if self.0 & COUNTRY_PRESENT == 0 {
            return None;
        }
        let mut letters = [0u8; 3];
        for (i, slot) in letters.iter_mut().enumerate() {
            let code = (self.0 >> (COUNTRY_SHIFT + LETTER_BITS * i as u32)) & 0x1f;
            *slot = if code == 0 { 0 } else { b'A' + code as u8 - 1 };
        }
        Some(Country { letters })
    }

    /// Creative size (width, height), when known.
    pub fn size(self) -> Option<(u16, u16)> {
        if self.0 & SIZE_PRESENT == 0 {
            return None;
        }
        let bits = self.0 >> SIZE_SHIFT;
        Some(((bits >> 16) as u16, bits as u16))
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_any() {
            return f.write_str("Segment(any)");
        }
        f.debug_struct("Segment")
            .field("device_type", &self.device_type())
            .field("country", &self.country())
            .field("size", &self.size())
            .finish()
    }
}

/// What one floor is learned for: a placement (from configuration, so their number is bounded)
/// and a segment of its traffic.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FloorKey {
    /// The placement's id as configured.
    pub placement: Arc<str>,
    /// The slice of the placement's traffic; [`Segment::ANY`] for the whole placement.
    pub segment: Segment,
}

impl FloorKey {
    /// A key for one segment of a placement.
    pub fn new(placement: Arc<str>, segment: Segment) -> Self {
        FloorKey { placement, segment }
    }

    /// The placement-level key.
    pub fn placement(placement: Arc<str>) -> Self {
        FloorKey::new(placement, Segment::ANY)
    }
}

impl fmt::Debug for FloorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FloorKey({:?}, {:?})", self.placement, self.segment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_codes_parse_in_any_case_and_refuse_garbage() {
        assert_eq!(Country::parse("usa").unwrap().as_str(), "USA");
        assert_eq!(Country::parse("Fr").unwrap().as_str(), "FR");
        for bad in ["", "U", "USAX", "U5A", "ÉTA", "us ", "\0\0\0"] {
            assert_eq!(Country::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn segments_round_trip_every_attribute() {
        let cases = [
            (None, None, None),
            (Some(0), None, None),
            (Some(255), Country::parse("ZZZ"), Some((u16::MAX, u16::MAX))),
            (Some(4), Country::parse("DE"), Some((300, 250))),
            (None, Country::parse("AAA"), Some((0, 0))),
        ];
        for (device, country, size) in cases {
            let segment = Segment::new(device, country, size);
            assert_eq!(segment.device_type(), device);
            assert_eq!(segment.country(), country);
            assert_eq!(segment.size(), size);
        }
        assert!(Segment::new(None, None, None).is_any());
        assert!(!Segment::new(Some(0), None, None).is_any());
    }

    #[test]
    fn segments_differ_whenever_an_attribute_differs() {
        let a = Segment::new(Some(1), Country::parse("USA"), Some((300, 250)));
        assert_ne!(
            a,
            Segment::new(Some(2), Country::parse("USA"), Some((300, 250)))
        );
        assert_ne!(
            a,
            Segment::new(Some(1), Country::parse("US"), Some((300, 250)))
        );
        assert_ne!(
            a,
            Segment::new(Some(1), Country::parse("USA"), Some((250, 300)))
        );
        assert_ne!(a, Segment::new(Some(1), None, Some((300, 250))));
        assert_ne!(
            Segment::new(Some(0), None, None),
            Segment::new(None, None, Some((0, 0)))
        );
    }

    #[test]
    fn request_data_out_of_range_becomes_unknown() {
        let segment = Segment::from_request(Some(-1), Some("12"), Some((70_000, 250)));
        assert!(segment.is_any());
        let segment = Segment::from_request(Some(2), Some("gbr"), Some((728, 90)));
        assert_eq!(segment.device_type(), Some(2));
        assert_eq!(segment.country().unwrap().as_str(), "GBR");
        assert_eq!(segment.size(), Some((728, 90)));
    }
}
