//! Partner bodies spliced from the request as it arrived: top-level members the exchange left
//! alone go out as the bytes the supply side sent, and only the members it changed (`tmax`,
//! floors it restated, signals it moved or dropped) are written again from the model.
//!
//! Writing the whole request again escaped every string of it a byte at a time: on a 1.6 KB
//! display request that was an eighth of an auction's instructions. The bytes kept are the
//! supply side's own, so a partner gets them exactly, escapes and number spelling included.
//!
//! The members' places come from reading the request into the model: the reader notes where
//! each top-level name sat ([`super::object::Arrival`]), so finding the values costs a few
//! comparisons, not another pass over the text. Anything unexpected (a name written with
//! escapes, say) falls back to writing the body whole.

use super::BidRequest;
use super::write::Members;
use std::fmt;

/// The top-level members of a request body as they arrived: each name and value as written.
pub struct Received<'a> {
    members: Vec<(&'a str, &'a str)>,
    length: usize,
}

impl fmt::Debug for Received<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.members.iter().map(|(name, _)| name))
            .finish()
    }
}

impl<'a> Received<'a> {
    /// The members of `text`, which `request` was read from; `None` when they cannot be
    /// spliced, and then bodies are written whole.
    pub fn read(text: &'a str, request: &BidRequest) -> Option<Self> {
        Some(Received {
            members: request.arrival.members(text)?,
            length: text.len(),
        })
    }
}

/// Which top-level members of a request the exchange changed since it was read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    names: [&'static str; Changed::ROOM],
    len: usize,
    everything: bool,
}

impl Changed {
    /// Members named one by one before the whole request counts as changed.
    const ROOM: usize = 8;

    /// Every member changed: bodies are written whole.
    pub fn everything() -> Self {
        Changed {
            everything: true,
            ..Changed::default()
        }
    }

    /// Notes that the member `name` changed.
    pub fn mark(&mut self, name: &'static str) {
        if self.everything || self.names[..self.len].contains(&name) {
            return;
        }
        if self.len == Self::ROOM {
            self.everything = true;
            return;
        }
        self.names[self.len] = name;
        self.len += 1;
    }

    /// Whether the member `name` is written from the model rather than from the bytes.
    pub fn covers(&self, name: &str) -> bool {
        self.everything || self.names[..self.len].contains(&name)
    }

    /// Whether nothing can be spliced.
    pub fn is_everything(&self) -> bool {
        self.everything
    }
}

/// Writes `request` as its `received` members, with those `changed` since taken from the
/// model. Changed members come first; the rest follow as they arrived (JSON objects are
/// unordered).
pub fn write_spliced(request: &BidRequest, received: &Received<'_>, changed: Changed) -> Vec<u8> {
    let mut out = Vec::with_capacity(received.length + 256);
    let mut members = Members::open(&mut out);
    request.write_members(&mut members, |name| changed.covers(name));
    for (name, value) in &received.members {
        if changed.covers(name) {
            continue;
        }
        // Names are kept only when written without escapes (`Arrival`): copied as they are.
        members.plain_key(name).extend_from_slice(value.as_bytes());
    }
    members.close();
    out
}

/// Refuses a spliced body that means something else than the request written whole: a change
/// made to the request and not noted in its [`Changed`]. Debug builds (every test) check each
/// spliced body this way.
pub fn check_spliced(spliced: &[u8], request: &BidRequest) {
    let whole = super::to_json(request);
    let read = |bytes: &[u8]| {
        let mut value: serde_json::Value =
            serde_json::from_slice(bytes).expect("a body we wrote is JSON");
        drop_empty(&mut value);
        value
    };
    assert_eq!(
        read(spliced),
        read(&whole),
        "a spliced partner body differs from the request: some change to it was not noted"
    );
}

/// Removes members that say nothing (null, empty strings and arrays), which the model leaves
/// out when it writes a request and the bytes as sent may still hold.
fn drop_empty(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(members) => {
            members.retain(|_, member| match member {
                Value::Null => false,
                Value::String(text) => !text.is_empty(),
                Value::Array(items) => !items.is_empty(),
                _ => true,
            });
            members.values_mut().for_each(drop_empty);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_empty),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"id":"r\u0031","imp":[{"id":"1","banner":{"w":300,"h":250},"bidfloor":1e0}],
        "site":{"page":"https://p.example/?q=\"x\"","cat":[]},"tmax":120,"x-custom":{"a":[1,2]},"user":null}"#;

    fn request() -> BidRequest {
        request_from(BODY)
    }

    fn request_from(text: &str) -> BidRequest {
        serde_json::from_str(text).unwrap()
    }

    fn spliced(request: &BidRequest, received: &Received<'_>, changed: Changed) -> String {
        String::from_utf8(write_spliced(request, received, changed)).unwrap()
    }

    #[test]
    fn untouched_members_go_out_as_they_arrived() {
        let request = request();
        let received = Received::read(BODY, &request).unwrap();
        let body = spliced(&request, &received, Changed::default());
        assert!(body.contains(r#""id":"r\u0031""#), "{body}");
        assert!(body.contains(r#""bidfloor":1e0"#), "{body}");
        assert!(body.contains(r#""x-custom":{"a":[1,2]}"#), "{body}");
        check_spliced(body.as_bytes(), &request);
    }

    #[test]
    fn changed_members_are_written_from_the_model() {
        let mut request = request();
        let received = Received::read(BODY, &request).unwrap();
        let mut changed = Changed::default();
        request.tmax = Some(80);
        changed.mark("tmax");
        request.imp[0].bidfloor = Some(2.5);
        changed.mark("imp");
        request.cur = vec!["EUR".into()];
        changed.mark("cur");
        let body = spliced(&request, &received, changed);
        assert!(body.contains(r#""tmax":80"#), "{body}");
        assert!(!body.contains(r#""tmax":120"#), "{body}");
        assert!(body.contains(r#""bidfloor":2.5"#), "{body}");
        assert!(body.contains(r#""cur":["EUR"]"#), "{body}");
        assert_eq!(body.matches(r#""imp""#).count(), 1, "{body}");
        check_spliced(body.as_bytes(), &request);
    }

    #[test]
    fn with_everything_changed_the_whole_body_comes_from_the_model() {
        let mut request = request();
        let received = Received::read(BODY, &request).unwrap();
        request.tmax = Some(80);
        request.unknown.clear();
        let body = spliced(&request, &received, Changed::everything());
        assert!(
            !body.contains("x-custom") && !body.contains(r#"\u0031"#),
            "{body}"
        );
        check_spliced(body.as_bytes(), &request);
    }

    #[test]
    fn a_member_the_exchange_removed_is_left_out() {
        let mut request = request();
        let received = Received::read(BODY, &request).unwrap();
        request.site = None;
        let mut changed = Changed::default();
        changed.mark("site");
        let body = spliced(&request, &received, changed);
        assert!(!body.contains("site"), "{body}");
        check_spliced(body.as_bytes(), &request);
    }

    #[test]
    #[should_panic(expected = "not noted")]
    fn a_change_not_noted_is_caught() {
        let mut request = request();
        let received = Received::read(BODY, &request).unwrap();
        request.tmax = Some(80);
        let body = spliced(&request, &received, Changed::default());
        check_spliced(body.as_bytes(), &request);
    }

    #[test]
    fn members_are_found_through_whitespace_escapes_and_nesting() {
        let text = " {\n \"id\" : \"x\\\"}]\" ,\"imp\":[{\"id\":\"]\"}]\t,\"x\":[1, {\"a\":\",\"}],\"tmax\": 120 ,\"test\":1, \"ext\":{} }\n";
        let request: BidRequest = serde_json::from_str(text).unwrap();
        let received = Received::read(text, &request).unwrap();
        assert_eq!(
            received.members,
            [
                ("id", r#""x\"}]""#),
                ("imp", r#"[{"id":"]"}]"#),
                ("x", r#"[1, {"a":","}]"#),
                ("tmax", "120"),
                ("test", "1"),
                ("ext", "{}"),
            ]
        );
    }

    #[test]
    fn what_cannot_be_spliced_is_not() {
        // A name written with an escape is not where the reader's copy of it is.
        let escaped = r#"{"id":"a","t\u006dax":120}"#;
        let request: BidRequest = serde_json::from_str(escaped).unwrap();
        assert!(Received::read(escaped, &request).is_none());
        // Nor one with more members than are noted.
        let crowded = format!(
            "{{\"id\":\"a\",{}}}",
            (0..40)
                .map(|i| format!("\"x{i}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let request = request_from(&crowded);
        assert_eq!(request.unknown.len(), 40);
        assert!(Received::read(&crowded, &request).is_none());
        // Nor is a request read from other text, or built rather than read.
        let request = request_from(BODY);
        let copy = String::from(BODY);
        assert!(Received::read(&copy, &request).is_none());
        assert!(Received::read(BODY, &BidRequest::default()).is_none());
    }

    #[test]
    fn past_its_room_changed_means_everything() {
        let mut changed = Changed::default();
        for name in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            changed.mark(name);
        }
        assert!(!changed.is_everything());
        changed.mark("a");
        assert!(
            !changed.is_everything(),
            "a name noted twice takes one place"
        );
        changed.mark("i");
        assert!(changed.is_everything() && changed.covers("anything"));
    }
}
