//! Reads OpenRTB objects straight from JSON text, without serde's visitors.
//!
//! Read through serde, a bid request cost 300–400 instructions per member (the name's scan and
//! match, a look for `null`, the value's scan, a visitor's calls at every level): a quarter of an
//! auction's own CPU. This reader walks the text once and stores each member where it lives.
//! It is our edge, so it is written by hand, and it never decides what JSON means on its own:
//! what it reads itself (structure, names, strings and their short escapes, plain integers,
//! decimals) it reads as serde_json does; a few forms (a `\u` escape, an escaped name, a kept
//! raw value) it hands to serde_json one value at a time; anything else, an error above all,
//! makes it decline. The caller then reads the whole text again through serde, whose words and
//! columns explain a refusal. So a document it accepts reads exactly as serde would read it,
//! and the fuzz target `openrtb_request` checks that on every input.

use super::Text;
use super::object::{Object, Raw};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The direct reader gave up on a document: read it again through serde.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declined;

/// What reading one value gives.
pub type Step = Result<(), Declined>;

/// Nesting this deep is left to serde, whose limit is 128 levels.
const DEPTH_LIMIT: usize = 100;

/// Numbers longer than this are left to serde: its rounding of a decimal is proven equal to
/// the standard library's only where neither needs more digits than an `f64` can tell apart.
const NUMBER_LIMIT: usize = 40;

/// A cursor over the JSON text being read.
pub struct Reader<'t> {
    text: &'t str,
    pos: usize,
    depth: usize,
}

/// Reads a whole document into `place` (as `Default` left it); on `Err`, `place` holds part of
/// what was read and the caller starts again.
pub fn read<T: Object>(text: &str, place: &mut T) -> Step {
    let mut reader = Reader {
        text,
        pos: 0,
        depth: 0,
    };
    place.fill_direct(&mut reader)?;
    reader.skip_whitespace();
    if reader.pos == text.len() {
        Ok(())
    } else {
        Err(Declined)
    }
}

/// Whether a byte inside a string ends it or needs care: its closing quote, an escape, or a
/// control character (which JSON refuses raw).
fn ends_plain_run(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || byte < 0x20
}

/// The index of the first byte from `at` on that [`ends_plain_run`], or the text's length.
/// Eight bytes at a time: strings are most of a request's bytes.
#[inline(always)]
pub(super) fn plain_run_end(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        // A byte's high bit is set here when it is a quote, a backslash or below 0x20, or,
        // through a borrow, in a byte after such a one: the lowest one set is exact.
        let flagged = (quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash
            | word.wrapping_sub(ONES * 0x20) & !word)
            & HIGHS;
        if flagged != 0 {
            return at + (flagged.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while at < bytes.len() && !ends_plain_run(bytes[at]) {
        at += 1;
    }
    at
}

impl<'t> Reader<'t> {
    fn bytes(&self) -> &'t [u8] {
        self.text.as_bytes()
    }

    fn skip_whitespace(&mut self) {
        let bytes = self.bytes();
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte that is not whitespace, left unread.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        // Compact JSON has none: every byte above the space is not whitespace.
        match self.bytes().get(self.pos) {
            Some(&byte) if byte > b' ' => Some(byte),
            _ => {
                self.skip_whitespace();
                self.bytes().get(self.pos).copied()
            }
        }
    }

    /// Reads `null` if it comes next.
    pub fn null(&mut self) -> bool {
        let is_null = self.peek() == Some(b'n') && self.bytes()[self.pos..].starts_with(b"null");
        if is_null {
            self.pos += 4;
        }
        is_null
    }

    /// Reads the next value with serde_json, for the forms this reader leaves to it.
    fn through_serde<T: Deserialize<'t>>(&mut self) -> Result<T, Declined> {
        let mut values =
            serde_json::Deserializer::from_str(&self.text[self.pos..]).into_iter::<T>();
        let value = values.next().ok_or(Declined)?.map_err(|_| Declined)?;
        self.pos += values.byte_offset();
        Ok(value)
    }

    /// A string with no escapes, borrowed from the text; `None` (nothing read) when it holds
    /// one. Declines anything that is not a string.
    #[inline(always)]
    fn plain_string(&mut self) -> Result<Option<&'t str>, Declined> {
        if self.peek() != Some(b'"') {
            return Err(Declined);
        }
        let start = self.pos + 1;
        let end = plain_run_end(self.bytes(), start);
        match self.bytes().get(end) {
            Some(b'"') => {
                self.pos = end + 1;
                Ok(Some(&self.text[start..end]))
            }
            Some(b'\\') => Ok(None),
            _ => Err(Declined),
        }
    }

    /// An object member's name, borrowed from the text when it has no escapes (as serde
    /// gives it, which [`super::object::Arrival`] relies on).
    #[inline(always)]
    fn name(&mut self) -> Result<Cow<'t, str>, Declined> {
        match self.plain_string()? {
            Some(name) => Ok(Cow::Borrowed(name)),
            None => self
                .through_serde::<super::object::Key<'t>>()
                .map(|key| key.0),
        }
    }

    /// A string that holds escapes, at the reader's position (its opening quote), unescaped;
    /// `None` (nothing read) when one of them is a `\u` escape, which is left to serde_json
    /// (surrogate pairs and their refusals are its to judge). Partners' ad markup is full of
    /// escaped quotes, so this is not a rare path.
    fn unescaped_string(&mut self) -> Result<Option<String>, Declined> {
        let bytes = self.bytes();
        let mut out = String::new();
        let mut at = self.pos + 1;
        loop {
            // Runs end at a quote, a backslash or a control character, all ASCII: `at` and
            // `end` always sit on character boundaries.
            let end = plain_run_end(bytes, at);
            out.push_str(&self.text[at..end]);
            match bytes.get(end) {
                Some(b'"') => {
                    self.pos = end + 1;
                    return Ok(Some(out));
                }
                Some(b'\\') => {
                    out.push(match bytes.get(end + 1) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => return Ok(None),
                        _ => return Err(Declined),
                    });
                    at = end + 2;
                }
                _ => return Err(Declined),
            }
        }
    }

    /// A string member's value.
    #[inline(always)]
    pub fn text(&mut self) -> Result<Text, Declined> {
        match self.plain_string()? {
            Some(text) => Ok(Text::from(text)),
            None => match self.unescaped_string()? {
                Some(text) => Ok(Text::from(text)),
                None => self.through_serde(),
            },
        }
    }

    /// A string member's value, owned (markup and URLs, rewritten on the way out).
    pub fn string(&mut self) -> Result<String, Declined> {
        match self.plain_string()? {
            Some(text) => Ok(text.to_owned()),
            None => match self.unescaped_string()? {
                Some(text) => Ok(text),
                None => self.through_serde(),
            },
        }
    }

    /// A value kept verbatim, as serde_json captures it.
    pub fn raw(&mut self) -> Result<Raw, Declined> {
        self.skip_whitespace();
        let raw: Box<RawValue> = self.through_serde()?;
        // serde_json counts its nesting limit from the document's top, this value's own from
        // its start: a value that might reach that limit is left to serde altogether.
        let opened = raw
            .get()
            .bytes()
            .filter(|&b| b == b'{' || b == b'[')
            .count();
        if self.depth + opened >= DEPTH_LIMIT {
            return Err(Declined);
        }
        Ok(Raw(raw))
    }

    /// An object's `ext`: `null` or an object, kept verbatim.
    pub fn ext(&mut self) -> Result<Option<Raw>, Declined> {
        if self.null() {
            return Ok(None);
        }
        if self.peek() != Some(b'{') {
            return Err(Declined);
        }
        self.raw().map(Some)
    }

    /// A number in JSON's grammar without an exponent: its text and whether it is an integer.
    fn number(&mut self) -> Result<(&'t str, bool), Declined> {
        self.skip_whitespace();
        let bytes = self.bytes();
        let start = self.pos;
        let mut at = start + usize::from(bytes.get(start) == Some(&b'-'));
        let digits = |at: usize| {
            at + bytes[at..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
        };
        let whole = digits(at);
        // One digit at least, and no leading zero before another digit.
        if whole == at || (bytes[at] == b'0' && whole > at + 1) {
            return Err(Declined);
        }
        at = whole;
        let integer = bytes.get(at) != Some(&b'.');
        if !integer {
            let fraction = digits(at + 1);
            if fraction == at + 1 {
                return Err(Declined);
            }
            at = fraction;
        }
        if matches!(bytes.get(at), Some(b'e' | b'E')) || at - start > NUMBER_LIMIT {
            return Err(Declined);
        }
        self.pos = at;
        Ok((&self.text[start..at], integer))
    }

    /// An integer member that must fit `T`, as serde checks it (no fraction, in range).
    fn integer<T: TryFrom<i64>>(&mut self) -> Result<T, Declined> {
        let value = match self.number()? {
            // `-0` is a float to serde_json, refused where an integer is wanted.
            ("-0", _) | (_, false) => return Err(Declined),
            // Eighteen digits cannot overflow an `i64`: summed without a check per digit.
            (digits, true) if digits.len() <= 18 => {
                let (negative, digits) = match digits.strip_prefix('-') {
                    Some(digits) => (true, digits),
                    None => (false, digits),
                };
                let magnitude = digits
                    .bytes()
                    .fold(0i64, |value, digit| value * 10 + i64::from(digit - b'0'));
                if negative { -magnitude } else { magnitude }
            }
            (digits, true) => digits.parse::<i64>().map_err(|_| Declined)?,
        };
        T::try_from(value).map_err(|_| Declined)
    }

    /// A number member read as `f64`: both serde_json (with `float_roundtrip`) and the standard
    /// library round a decimal correctly, so they agree on every one [`Reader::number`] takes.
    fn float(&mut self) -> Result<f64, Declined> {
        let (digits, _) = self.number()?;
        match digits.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(value),
            _ => Err(Declined),
        }
    }

    /// Enters a nested object or array, unless that is deeper than this reader goes.
    fn descend(&mut self) -> Step {
        self.depth += 1;
        self.pos += 1;
        if self.depth > DEPTH_LIMIT {
            Err(Declined)
        } else {
            Ok(())
        }
    }

    /// Reads a container from `open` to `close`, `item` reading each of its items (the next
    /// value must be such a container).
    fn items(&mut self, open: u8, close: u8, mut item: impl FnMut(&mut Self) -> Step) -> Step {
        if self.peek() != Some(open) {
            return Err(Declined);
        }
        self.descend()?;
        if self.peek() != Some(close) {
            loop {
                item(self)?;
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(byte) if byte == close => break,
                    _ => return Err(Declined),
                }
            }
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(())
    }

    /// Reads an object's members, handing each name to `member` to read its value; the next
    /// value must be an object.
    pub fn object(&mut self, mut member: impl FnMut(&mut Self, Cow<'t, str>) -> Step) -> Step {
        self.items(b'{', b'}', |reader| {
            let name = reader.name()?;
            if reader.peek() != Some(b':') {
                return Err(Declined);
            }
            reader.pos += 1;
            member(reader, name)
        })
    }

    /// Reads an array's elements with `element`; the next value must be an array.
    fn array(&mut self, element: impl FnMut(&mut Self) -> Step) -> Step {
        self.items(b'[', b']', element)
    }
}

/// How a member's value is read into its place, JSON `null` meaning absent. The place is as
/// `Default` left it: a member already present is refused as a duplicate before this.
pub trait ReadDirect {
    /// Reads the next value into `place`.
    fn read_direct(reader: &mut Reader<'_>, place: &mut Self) -> Step;
}

/// Leaf members, read by value, `null` leaving them absent.
macro_rules! read_leaf {
    ($($ty:ty => |$reader:ident| $read:expr;)*) => {
        $(
            impl ReadDirect for $ty {
                fn read_direct($reader: &mut Reader<'_>, place: &mut Self) -> Step {
                    if !$reader.null() {
                        *place = $read;
                    }
                    Ok(())
                }
            }
        )*
    };
}

read_leaf! {
    Text => |reader| reader.text()?;
    String => |reader| reader.string()?;
    Option<Text> => |reader| Some(reader.text()?);
    Option<String> => |reader| Some(reader.string()?);
    Option<Raw> => |reader| Some(reader.raw()?);
    Option<f64> => |reader| Some(reader.float()?);
    Option<i64> => |reader| Some(reader.integer()?);
    Option<u32> => |reader| Some(reader.integer()?);
    Option<u8> => |reader| Some(reader.integer()?);
}

/// Arrays of leaf values, `null` leaving them empty.
macro_rules! read_leaf_array {
    ($($ty:ty => |$reader:ident| $read:expr;)*) => {
        $(
            impl ReadDirect for Vec<$ty> {
                fn read_direct(reader: &mut Reader<'_>, place: &mut Self) -> Step {
                    if reader.null() {
                        return Ok(());
                    }
                    reader.array(|$reader| {
                        place.push($read);
                        Ok(())
                    })
                }
            }
        )*
    };
}

read_leaf_array! {
    Text => |reader| reader.text()?;
    i64 => |reader| reader.integer()?;
}

impl<T: Object> ReadDirect for Option<T> {
    fn read_direct(reader: &mut Reader<'_>, place: &mut Self) -> Step {
        if reader.null() {
            return Ok(());
        }
        place.insert(T::default()).fill_direct(reader)
    }
}

impl<T: Object> ReadDirect for Vec<T> {
    fn read_direct(reader: &mut Reader<'_>, place: &mut Self) -> Step {
        if reader.null() {
            return Ok(());
        }
        reader.array(|reader| {
            place.push(T::default());
            place
                .last_mut()
                .expect("an element was just pushed")
                .fill_direct(reader)
        })
    }
}

#[cfg(test)]
mod tests;
