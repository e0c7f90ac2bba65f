//! The `openrtb_object!` macro: serde for OpenRTB objects that keeps `ext` and unknown fields.
//!
//! serde's `#[serde(flatten)]` would keep unknown fields too, but it buffers every object through
//! an intermediate representation, which roughly doubles parse time on the auction's hot path.
//! This macro writes the visitor by hand instead: known keys are matched as borrowed strings,
//! anything else is captured verbatim as a [`Raw`] JSON value, in arrival order.

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

/// Deserializes a field `T`, reading JSON `null` as absent (see [`ReadField`]).
pub struct NullAsDefault<T>(pub T);

impl<'de, T: ReadField<'de>> Deserialize<'de> for NullAsDefault<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::read(deserializer).map(NullAsDefault)
    }
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
            /// Writes into `map` the members present whose JSON name `wanted` accepts: the
            /// whole object when it accepts every name, only some members when the rest are
            /// written another way (spliced from the bytes they arrived as).
            pub fn serialize_members<M: ::serde::ser::SerializeMap>(
                &self,
                map: &mut M,
                wanted: impl Fn(&str) -> bool,
            ) -> Result<(), M::Error> {
                use $crate::openrtb::object::Field;
                $( if !Field::is_absent(&self.$field) && wanted($json) { map.serialize_entry($json, &self.$field)?; } )*
                if let Some(ext) = &self.ext && wanted("ext") { map.serialize_entry("ext", ext)?; }
                for (key, value) in &self.unknown {
                    if wanted(key) { map.serialize_entry(key, value)?; }
                }
                Ok(())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use ::serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(None)?;
                self.serialize_members(&mut map, |_| true)?;
                map.end()
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct ObjectVisitor;
                impl<'de> ::serde::de::Visitor<'de> for ObjectVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " object"))
                    }
                    fn visit_map<A: ::serde::de::MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        use $crate::openrtb::object::{Field, Key, NullAsDefault};
                        let mut out = $name::default();
                        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                            $( out.$arrival.note(&key); )?
                            match key.as_ref() {
                                $( $json => {
                                    if !Field::is_absent(&out.$field) {
                                        return Err(<A::Error as ::serde::de::Error>::duplicate_field($json));
                                    }
                                    out.$field = map.next_value::<NullAsDefault<$ty>>()?.0;
                                } )*
                                "ext" => {
                                    if out.ext.is_some() {
                                        return Err(<A::Error as ::serde::de::Error>::duplicate_field("ext"));
                                    }
                                    out.ext = map.next_value::<$crate::openrtb::object::Ext>()?.0;
                                }
                                _ => {
                                    let value = map.next_value::<$crate::openrtb::Raw>()?;
                                    out.unknown.push((key.into_owned(), value));
                                }
                            }
                        }
                        Ok(out)
                    }
                }
                deserializer.deserialize_map(ObjectVisitor)
            }
        }
    };
}
