//! A body that does not parse, told in bourse's own words: the field's path (never ending in
//! serde's `?` placeholder), a rule, and a message that never quotes serde or the request.

use super::Rejection;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use std::fmt::Write as _;

/// What an `ext` that is not an object fails with, inside the value, so its path is the ext's.
pub(crate) const EXT_NOT_AN_OBJECT: &str = "ext must be an object";

/// Parses `body` as a `T` again, tracking the path, and explains why it does not parse.
pub(super) fn explain<T: DeserializeOwned>(body: &[u8]) -> Rejection {
    let mut de = serde_json::Deserializer::from_slice(body);
    let err = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(_) => match de.end() {
            Ok(()) => return Rejection::new("", "json", "the request does not parse"),
            Err(err) => {
                return Rejection::new("", "json", syntax_message(&err));
            }
        },
        Err(err) => err,
    };
    let mut field = String::new();
    for segment in err.path().iter() {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(field, "[{index}]");
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(key);
            }
            // Where the parser failed before it could read a key (a syntax error there), the
            // path ends at the object that holds it.
            Segment::Unknown => {}
        }
    }
    let inner = err.into_inner();
    if inner.is_syntax() || inner.is_eof() || inner.is_io() {
        return Rejection::new(field, "json", syntax_message(&inner));
    }
    let text = inner.to_string();
    // serde_json appends the position; the words before it are serde's, not ours.
    let text = text
        .rfind(" at line ")
        .map_or(text.as_str(), |at| &text[..at]);
    data_rejection(field, text)
}

fn syntax_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let what = if err.is_eof() {
        "the body ends before the JSON does"
    } else if text.contains("trailing comma") {
        "a trailing comma"
    } else if text.contains("trailing characters") {
        "text after the end of the JSON"
    } else if text.contains("key must be a string") {
        "an object key that is not a string"
    } else if text.contains("control character") {
        "a control character inside a string"
    } else if text.contains("escape") || text.contains("unicode") {
        "an invalid escape inside a string"
    } else if text.contains("number out of range") {
        "a number out of range"
    } else if text.contains("recursion limit") {
        "nesting too deep"
    } else if text.contains("expected `:`") {
        "a missing `:` after an object key"
    } else if text.contains("expected `,` or `}`") {
        "a missing `,` or `}` in an object"
    } else if text.contains("expected `,` or `]`") {
        "a missing `,` or `]` in an array"
    } else if text.contains("expected value") || text.contains("expected ident") {
        "something that is not a JSON value"
    } else {
        "malformed JSON"
    };
    format!(
        "not valid JSON: {what} at line {}, column {}",
        err.line(),
        err.column()
    )
}

/// A well-formed body whose value at `field` does not fit: serde's `text` in our words.
fn data_rejection(field: String, text: &str) -> Rejection {
    let backticked = |text: &str| {
        let start = text.find('`')? + 1;
        let len = text[start..].find('`')?;
        Some(text[start..start + len].to_owned())
    };
    let child = |field: &str, name: &str| {
        if field.is_empty() {
            name.to_owned()
        } else {
            format!("{field}.{name}")
        }
    };
    if text == EXT_NOT_AN_OBJECT {
        return Rejection::new(field, "object", EXT_NOT_AN_OBJECT);
    }
    if let Some(rest) = text.strip_prefix("missing field ") {
        let name = backticked(rest).unwrap_or_default();
        return Rejection::new(child(&field, &name), "required", "this field is required");
    }
    if let Some(rest) = text.strip_prefix("duplicate field ") {
        let name = backticked(rest).unwrap_or_default();
        return Rejection::new(
            child(&field, &name),
            "unique",
            "this field appears more than once in its object",
        );
    }
    let (kind, rest) = if let Some(rest) = text.strip_prefix("invalid type: ") {
        ("type", rest)
    } else if let Some(rest) = text.strip_prefix("invalid value: ") {
        ("value", rest)
    } else {
        return Rejection::new(field, "type", "this value does not fit this field");
    };
    let (got, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
    let (expected, unsigned) = describe_expected(expected);
    let negative = got.starts_with("integer `-") || got.starts_with("floating point `-");
    let rule = if unsigned && negative {
        "non_negative"
    } else if kind == "value" {
        "range"
    } else {
        "type"
    };
    Rejection::new(
        field,
        rule,
        format!("must be {expected}, got {}", describe_got(got)),
    )
}

/// serde's name of the expected type in words, and whether it is unsigned.
fn describe_expected(expected: &str) -> (&'static str, bool) {
    match expected {
        "u8" => ("a whole number from 0 to 255", true),
        "u16" => ("a whole number from 0 to 65535", true),
        "u32" => ("a whole number from 0 to 4294967295", true),
        "u64" | "usize" => ("a whole number of 0 or more", true),
        "i8" | "i16" | "i32" | "i64" | "isize" => ("a whole number", false),
        "f32" | "f64" => ("a number", false),
        "a string" | "a borrowed string" | "a char" => ("a string", false),
        "a sequence" => ("an array", false),
        "a boolean" => ("true or false", false),
        other if other.ends_with(" object") || other == "a map" || other == "an object key" => {
            ("an object", false)
        }
        _ => ("another kind of value", false),
    }
}

/// serde's description of the value found, in words (strings are not quoted back).
fn describe_got(got: &str) -> String {
    let quoted = |prefix: &str| {
        got.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('`'))
            .and_then(|rest| rest.strip_suffix('`'))
            .map(str::to_owned)
    };
    if got.starts_with("string ") {
        return "a string".into();
    }
    if let Some(n) = quoted("integer ").or_else(|| quoted("floating point ")) {
        return n;
    }
    if let Some(b) = quoted("boolean ") {
        return b;
    }
    match got {
        "null" | "unit" => "null".into(),
        "map" => "an object".into(),
        "sequence" => "an array".into(),
        _ => "another kind of value".into(),
    }
}
