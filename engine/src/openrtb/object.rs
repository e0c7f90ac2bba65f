//! The `openrtb_object!` macro: serde for OpenRTB objects that keeps `ext` and unknown fields.
//!
//! serde's `#[serde(flatten)]` would keep unknown fields too, but it buffers every object through
//! an intermediate representation, which roughly doubles parse time on the auction's hot path.
//! This macro writes the visitor by hand instead: known keys are matched as borrowed strings,
//! anything else is captured verbatim as a [`Raw`] JSON value, in arrival order. The same
//! macro writes each object's [`Object::fill_direct`], by the same rules, for the reader the
//! auction tries first ([`super::direct`]).

use serde::de::{self, Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// A JSON value kept verbatim (never parsed into a tree), such as an `ext` object.
#[derive(Clone)]
pub struct Raw(pub Box<RawValue>);

impl Raw {
    /// The JSON text of this value.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Wraps JSON text, checking that it is valid JSON.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        RawValue::from_string(json.to_owned()).map(Raw)
    }

    /// Serializes any value into a verbatim JSON value.
    pub fn from_value<T: Serialize>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Raw)
    }

    /// Whether the text holds the string `"key"` for one of `keys`: a cheap filter before
    /// reading an `ext`. One pass over the bytes, stopping at quotes, where a substring search
    /// per key would set up a searcher each time, the larger cost on an `ext` of a few dozen
    /// bytes.
    pub fn names_any(&self, keys: &[&str]) -> bool {
        let mut rest = self.get().as_bytes();
        while let Some(quote) = rest.iter().position(|&b| b == b'"') {
            rest = &rest[quote + 1..];
            let named = |key: &&str| {
                let key = key.as_bytes();
                rest.len() > key.len() && rest.starts_with(key) && rest[key.len()] == b'"'
            };
            if keys.iter().any(named) {
                return true;
            }
        }
        false
    }

    /// Parses the kept JSON into a typed value.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }
}

impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

impl PartialEq for Raw {
    /// Compares by meaning (whitespace and key order do not matter), as tests expect.
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
            || serde_json::from_str::<serde_json::Value>(self.0.get()).ok()
                == serde_json::from_str::<serde_json::Value>(other.0.get()).ok()
    }
}

impl Serialize for Raw {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(Raw)
    }
}

/// An object's `ext`: JSON `null` (none) or an object, kept verbatim. Anything else is refused
/// while the value is read, so the error's path is the ext's own.
pub struct Ext(pub Option<Raw>);

impl<'de> Deserialize<'de> for Ext {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Option::<Raw>::deserialize(deserializer)?;
        // A raw value starts at its first byte, with no whitespace before it.
        if raw.as_ref().is_some_and(|raw| !raw.get().starts_with('{')) {
            return Err(de::Error::custom(
                crate::validate::parse_error::EXT_NOT_AN_OBJECT,
            ));
        }
        Ok(Ext(raw))
    }
}

/// Fields this model does not know, in arrival order, kept verbatim for the way out.
pub type Unknown = Vec<(String, Raw)>;

/// Whether a field is absent and so left out of the serialized object.
pub trait Field {
    /// True when the field carries nothing worth writing.
    fn is_absent(&self) -> bool;
}

impl<T> Field for Option<T> {
    fn is_absent(&self) -> bool {
        self.is_none()
    }
}

impl<T> Field for Vec<T> {
    fn is_absent(&self) -> bool {
        self.is_empty()
    }
}

impl Field for String {
    fn is_absent(&self) -> bool {
        self.is_empty()
    }
}

impl Field for super::Text {
    fn is_absent(&self) -> bool {
        self.is_empty()
    }
}

/// How an object's field is read, JSON `null` meaning absent.
pub trait ReadField<'de>: Sized {
    /// Reads the field's value.
    fn read<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error>;
}

impl<'de, T: Deserialize<'de>> ReadField<'de> for Option<T> {
    /// `Option` already reads `null` as `None`: checking for it once more would cost every field
    /// of every request a second look at its first byte.
    fn read<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<T>::deserialize(deserializer)
    }
}

impl<'de, T: Deserialize<'de>> ReadField<'de> for Vec<T> {
    fn read<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<Vec<T>>::deserialize(deserializer).map(Option::unwrap_or_default)
    }
}

impl<'de> ReadField<'de> for String {
    fn read<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<String>::deserialize(deserializer).map(Option::unwrap_or_default)
    }
}

impl<'de> ReadField<'de> for super::Text {
    fn read<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<super::Text>::deserialize(deserializer).map(Option::unwrap_or_default)
    }
}

/// An OpenRTB object declared by [`openrtb_object!`]: read member by member into a value that
/// already has its place, so that a nested object is filled where it will live instead of being
/// built on the stack and moved up through every level that holds it.
pub trait Object: Default {
    /// What a value of the wrong JSON type was expected to be, in serde's words.
    const EXPECTING: &'static str;

    /// Reads the members of a JSON object into `self`, which is as `Default` left it.
    fn fill<'de, A: de::MapAccess<'de>>(&mut self, map: A) -> Result<(), A::Error>;

    /// [`Object::fill`] through the [`super::direct`] reader, which reads the next value (it
    /// must be an object) or declines.
    fn fill_direct(&mut self, reader: &mut super::direct::Reader<'_>) -> super::direct::Step;

    /// Appends the object's JSON text to `out`, byte for byte as serde_json writes it
    /// ([`super::write`]).
    fn write_direct(&self, out: &mut Vec<u8>);
}

/// How a field is read into its place in its object. Small values are read and stored; an
/// object, optional or in an array, is filled where it lies ([`Object`]).
pub trait ReadInPlace<'de> {
    /// Reads the field's value into `place`, JSON `null` meaning absent.
    fn read_in_place<D: Deserializer<'de>>(
        deserializer: D,
        place: &mut Self,
    ) -> Result<(), D::Error>;
}

/// Fields small enough that reading them by value costs no large move.
macro_rules! read_by_value {
    ($($ty:ty),* $(,)?) => {
        $(
            impl<'de> ReadInPlace<'de> for $ty {
                fn read_in_place<D: Deserializer<'de>>(
                    deserializer: D,
                    place: &mut Self,
                ) -> Result<(), D::Error> {
                    *place = <$ty as ReadField>::read(deserializer)?;
                    Ok(())
                }
            }
        )*
    };
}

read_by_value!(
    super::Text,
    String,
    Option<super::Text>,
    Option<String>,
    Option<Raw>,
    Option<f64>,
    Option<i64>,
    Option<u32>,
    Option<u8>,
    Vec<super::Text>,
    Vec<i64>,
);

/// A field read by [`ReadInPlace`], as serde's seed.
pub struct InPlace<'a, T>(pub &'a mut T);

impl<'de, T: ReadInPlace<'de>> de::DeserializeSeed<'de> for InPlace<'_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        T::read_in_place(deserializer, self.0)
    }
}

/// Fills one object from a JSON object; anything else is refused as the by-value reader would.
struct Fill<'a, T>(&'a mut T);

impl<'de, T: Object> de::Visitor<'de> for Fill<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.0.fill(map)
    }
}

/// A field that is an object or an array of objects, absent (as `fill` found it: a present
/// field is refused as a duplicate) until a value that is not `null` fills it.
trait FillPresent<'de> {
    /// Reads a value that is not `null` into the field.
    fn fill_present<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error>;
}

impl<'de, T: Object> FillPresent<'de> for &mut Option<T> {
    fn fill_present<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        read_in_place(deserializer, self.insert(T::default()))
    }
}

impl<'de, T: Object> FillPresent<'de> for &mut Vec<T> {
    fn fill_present<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(Elements(self))
    }
}

/// `null` leaves the field absent; anything else fills it.
struct NullOr<F>(F);

impl<'de, F: FillPresent<'de>> de::Visitor<'de> for NullOr<F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("option")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.0.fill_present(deserializer)
    }
}

impl<'de, T: Object> ReadInPlace<'de> for Option<T> {
    fn read_in_place<D: Deserializer<'de>>(
        deserializer: D,
        place: &mut Self,
    ) -> Result<(), D::Error> {
        deserializer.deserialize_option(NullOr(place))
    }
}

impl<'de, T: Object> ReadInPlace<'de> for Vec<T> {
    fn read_in_place<D: Deserializer<'de>>(
        deserializer: D,
        place: &mut Self,
    ) -> Result<(), D::Error> {
        deserializer.deserialize_option(NullOr(place))
    }
}

/// An array's objects, each filled in its slot of the `Vec`.
struct Elements<'a, T>(&'a mut Vec<T>);

impl<'de, T: Object> de::Visitor<'de> for Elements<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Push(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// One array element: a default object pushed, then filled where it lies.
struct Push<'a, T>(&'a mut Vec<T>);

impl<'de, T: Object> de::DeserializeSeed<'de> for Push<'_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.0.push(T::default());
        let last = self.0.last_mut().expect("an element was just pushed");
        read_in_place(deserializer, last)
    }
}

/// Reads one object into `place` (as `Default` left it): the by-value reader of every object.
pub fn read_in_place<'de, T: Object, D: Deserializer<'de>>(
    deserializer: D,
    place: &mut T,
) -> Result<(), D::Error> {
    deserializer.deserialize_map(Fill(place))
}

/// Reads a whole document into an object on the heap, filled where it lies: a bid request is
/// kilobytes, which serde's `Box<T>` would build on the stack and then copy into its box. The
/// [`super::direct`] reader reads it when it can; serde reads what that declines.
pub fn read_boxed<T: Object>(text: &str) -> serde_json::Result<Box<T>> {
    let mut object = Box::<T>::default();
    if super::direct::read(text, &mut *object).is_ok() {
        return Ok(object);
    }
    *object = T::default();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    read_in_place(&mut deserializer, &mut *object)?;
    deserializer.end()?;
    Ok(object)
}

/// Reads a whole document into an object: through the [`super::direct`] reader when it can,
/// through serde (whose words explain a refusal) when that declines.
pub fn read<T: Object + de::DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    let mut object = T::default();
    if super::direct::read(text, &mut object).is_ok() {
        return Ok(object);
    }
    serde_json::from_str(text)
}

/// An object key, borrowed from the input when it has no escapes.
pub struct Key<'de>(pub Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Where an object's members' names sat in the text it was read from, in arrival order, so
/// that it can be written again from that text ([`super::splice`]). Bookkeeping, not content:
/// it takes no part in comparisons and is never written out. Kept inline (no allocation): an
/// object with more members than it has room for is simply never spliced.
#[derive(Clone, Copy, Default)]
pub struct Arrival {
    /// The address of the first member's name, borrowed from the text.
    first: usize,
    /// Where each member's name starts, counted from the first's.
    offsets: [u32; Arrival::ROOM],
    count: usize,
    /// Some name was not borrowed from the text (it was written with escapes), or there were
    /// more than [`Arrival::ROOM`].
    lost: bool,
}

impl Arrival {
    /// Members noted: a bid request has 24 fields and `ext` in the model.
    const ROOM: usize = 32;

    /// Notes the next member's name as the reader found it.
    #[allow(clippy::ptr_arg)] // Whether the name is borrowed from the text is the point.
    pub fn note(&mut self, name: &Cow<'_, str>) {
        // An address, not a reference: the object outlives the text it was read from.
        let address = match name {
            Cow::Borrowed(name) => name.as_ptr() as usize,
            Cow::Owned(_) => {
                self.lost = true;
                return;
            }
        };
        if self.count == 0 {
            self.first = address;
        }
        match address
            .checked_sub(self.first)
            .and_then(|offset| u32::try_from(offset).ok())
        {
            Some(offset) if self.count < Self::ROOM => {
                self.offsets[self.count] = offset;
                self.count += 1;
            }
            _ => self.lost = true,
        }
    }

    /// Each member's name and its value's text in `text`, in arrival order; `None` unless the
    /// object was read from exactly `text` with every name borrowed from it (and had some).
    pub fn members<'t>(&self, text: &'t str) -> Option<Vec<(&'t str, &'t str)>> {
        if self.lost || self.count == 0 {
            return None;
        }
        let base = self.first.checked_sub(text.as_ptr() as usize)?;
        let bytes = text.as_bytes();
        let starts = &self.offsets[..self.count];
        let mut members = Vec::with_capacity(self.count);
        for (i, &offset) in starts.iter().enumerate() {
            let start = base + offset as usize;
            // The name must sit between quotes in this very text; borrowed, it holds no
            // escape, so its first quote ends it.
            if start == 0 || bytes.get(start - 1) != Some(&b'"') {
                return None;
            }
            let end = start + bytes.get(start..)?.iter().position(|&b| b == b'"')?;
            let name = text.get(start..end)?;
            // The value runs from the name's colon to the comma before the next name's quote,
            // or to the object's closing brace. The text is JSON serde_json has read, so the
            // ASCII whitespace around them is JSON's.
            let (until, closer) = match starts.get(i + 1) {
                Some(&next) => ((base + next as usize).checked_sub(1)?, ','),
                None => (text.len(), '}'),
            };
            let value = text
                .get(end + 1..until)?
                .trim_ascii()
                .strip_prefix(':')?
                .strip_suffix(closer)?
                .trim_ascii();
            if value.is_empty() {
                return None;
            }
            members.push((name, value));
        }
        Some(members)
    }
}

impl fmt::Debug for Arrival {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Arrival({} names)", self.count)
    }
}

impl PartialEq for Arrival {
    /// Where an object came from is not part of what it says.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Declares an OpenRTB object: a struct with the listed fields plus `ext` and `unknown`, and its
/// serde implementations. Absent fields are skipped on output; a repeated key is an error.
/// `pub struct Name [arrival] { .. }` also gives it an [`Arrival`] field of that name.
#[macro_export]
macro_rules! openrtb_object {
    (
        $(#[$meta:meta])*
        pub struct $name:ident $([$arrival:ident])? {
            $( $(#[$fmeta:meta])* $json:literal => $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// The object's `ext`, kept verbatim.
            pub ext: Option<$crate::openrtb::Raw>,
            /// Fields this model does not know, kept verbatim for the way out.
            pub unknown: $crate::openrtb::Unknown,
            $(
                /// Where the members' names sat in the text the object was read from.
                pub $arrival: $crate::openrtb::object::Arrival,
            )?
        }

        impl $name {
            /// Writes the members present whose JSON name `wanted` accepts ([`$crate::openrtb::write`]):
            /// the whole object when it accepts every name, only some members when the rest are
            /// written another way (spliced from the bytes they arrived as).
            pub fn write_members(
                &self,
                members: &mut $crate::openrtb::write::Members<'_>,
                wanted: impl Fn(&str) -> bool,
            ) {
                use $crate::openrtb::object::Field;
                use $crate::openrtb::write::WriteDirect;
                $( if !Field::is_absent(&self.$field) && wanted($json) {
                    WriteDirect::write_direct(&self.$field, members.name(concat!("\"", $json, "\":")));
                } )*
                if let Some(ext) = &self.ext && wanted("ext") {
                    WriteDirect::write_direct(ext, members.name("\"ext\":"));
                }
                for (key, value) in &self.unknown {
                    if wanted(key) {
                        WriteDirect::write_direct(value, members.key(key));
                    }
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use ::serde::ser::SerializeMap;
                use $crate::openrtb::object::Field;
                let mut map = serializer.serialize_map(None)?;
                $( if !Field::is_absent(&self.$field) { map.serialize_entry($json, &self.$field)?; } )*
                if let Some(ext) = &self.ext { map.serialize_entry("ext", ext)?; }
                for (key, value) in &self.unknown {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }

        impl $crate::openrtb::object::Object for $name {
            const EXPECTING: &'static str = concat!("a ", stringify!($name), " object");

            fn fill<'de, A: ::serde::de::MapAccess<'de>>(&mut self, mut map: A) -> Result<(), A::Error> {
                use $crate::openrtb::object::{Field, InPlace, Key};
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    $( self.$arrival.note(&key); )?
                    match key.as_ref() {
                        $( $json => {
                            if !Field::is_absent(&self.$field) {
                                return Err(<A::Error as ::serde::de::Error>::duplicate_field($json));
                            }
                            map.next_value_seed(InPlace(&mut self.$field))?;
                        } )*
                        "ext" => {
                            if self.ext.is_some() {
                                return Err(<A::Error as ::serde::de::Error>::duplicate_field("ext"));
                            }
                            self.ext = map.next_value::<$crate::openrtb::object::Ext>()?.0;
                        }
                        _ => {
                            let value = map.next_value::<$crate::openrtb::Raw>()?;
                            self.unknown.push((key.into_owned(), value));
                        }
                    }
                }
                Ok(())
            }

            fn fill_direct(&mut self, reader: &mut $crate::openrtb::direct::Reader<'_>) -> $crate::openrtb::direct::Step {
                reader.object(|reader, key| self.fill_direct_member(reader, key))
            }

            fn write_direct(&self, out: &mut Vec<u8>) {
                let mut members = $crate::openrtb::write::Members::open(out);
                self.write_members(&mut members, |_| true);
                members.close();
            }
        }

        impl $name {
            fn fill_direct_member<'t>(
                &mut self,
                reader: &mut $crate::openrtb::direct::Reader<'t>,
                key: ::std::borrow::Cow<'t, str>,
            ) -> $crate::openrtb::direct::Step {
                use $crate::openrtb::direct::{Declined, ReadDirect};
                use $crate::openrtb::object::Field;
                $( self.$arrival.note(&key); )?
                match key.as_ref() {
                    $( $json => {
                        if !Field::is_absent(&self.$field) {
                            return Err(Declined);
                        }
                        ReadDirect::read_direct(reader, &mut self.$field)
                    } )*
                    "ext" => {
                        if self.ext.is_some() {
                            return Err(Declined);
                        }
                        self.ext = reader.ext()?;
                        Ok(())
                    }
                    _ => {
                        let value = reader.raw()?;
                        self.unknown.push((key.into_owned(), value));
                        Ok(())
                    }
                }
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let mut out = $name::default();
                $crate::openrtb::object::read_in_place(deserializer, &mut out)?;
                Ok(out)
            }
        }
    };
}
