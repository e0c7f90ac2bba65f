//! Fixture tests of every adapter at its boundary: an OpenRTB request in, partner calls and bids out.
//!
//! Each `tests/fixtures/<adapter>/{exemplary,supplemental}/<case>.json` is one case, shaped like
//! Prebid Server's adapter fixtures:
//!
//! ```json
//! { "spec": { ...BidderSpec fields over the defaults... },
//!   "mockBidRequest": { ...OpenRTB 2.6... }, "tmaxMs": 250,
//!   "httpCalls": [ { "expectedRequest": { "method", "uri", "headers", "body", "impIDs" },
//!                    "mockResponse": { "status", "body" | "bodyText" } } ],
//!   "expectedBidResponses": [ { "currency", "bids": [ { "bid", "type", "seat" } ] } ],
//!   "expectedMakeRequestsErrors": [ "..." ], "expectedMakeBidsErrors": [ "..." ],
//!   "expectedBuildError": "..." }
//! ```
//!
//! `UPDATE_FIXTURES=1 cargo test -p bourse-bidders --test it` rewrites the expected parts from what
//! the adapters do now (inputs and mock responses are kept); review the diff before committing.

use bourse_bidders::registry;
use bourse_engine::bidder::{
    BidderBids, BidderRequest, BidderResponse, BidderSpec, CallInfo, Outbound,
};
use bourse_engine::openrtb::BidRequest;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::fs;
use std::path::{Path, PathBuf};

/// Where a fixture's partner lives unless its `spec` says otherwise.
const DEFAULT_ENDPOINT: &str = "https://partner.example/bid";

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            fixture_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "json") {
            out.push(path);
        }
    }
}

#[test]
fn fixtures() {
    let update = std::env::var_os("UPDATE_FIXTURES").is_some();
    let root = fixtures_dir();
    let mut files = Vec::new();
    fixture_files(&root, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no fixtures under {}", root.display());
    let failures: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let name = file
                .strip_prefix(&root)
                .unwrap_or(file)
                .display()
                .to_string();
            check(file, update)
                .err()
                .map(|msg| format!("--- {name}\n{msg}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed (UPDATE_FIXTURES=1 rewrites expectations):\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn every_adapter_has_exemplary_and_supplemental_fixtures() {
    for name in registry().names() {
        for kind in ["exemplary", "supplemental"] {
            let dir = fixtures_dir().join(name).join(kind);
            let count = fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
            assert!(
                count > 0,
                "adapter `{name}` has no fixtures in {}",
                dir.display()
            );
        }
    }
}

/// Two `openrtb` partners buying the same media send the very same bytes, serialized once.
#[test]
fn openrtb_partners_share_one_body() {
    let json = r#"{"id":"r","imp":[{"id":"1","banner":{"w":300,"h":250}}]}"#;
    let request: BidRequest = serde_json::from_str(json).expect("valid request");
    let outbound = Outbound::new(&request);
    let bodies: Vec<Bytes> = ["first", "second"]
        .into_iter()
        .map(|name| {
            let spec = BidderSpec::new(name, DEFAULT_ENDPOINT);
            let bidder = registry().build(&spec).expect("valid spec");
            let call = CallInfo {
                spec: &spec,
                tmax_ms: 100,
            };
            let mut made = bidder.make_requests(&outbound, &call);
            assert!(made.errors.is_empty(), "{:?}", made.errors);
            assert_eq!(made.requests.len(), 1);
            made.requests.remove(0).body
        })
        .collect();
    assert_eq!(
        bodies[0].as_ptr(),
        bodies[1].as_ptr(),
        "the body was serialized twice"
    );
}

/// Runs one fixture file; in update mode rewrites its expectations instead of comparing them.
fn check(file: &Path, update: bool) -> Result<(), String> {
    let text = fs::read_to_string(file).map_err(|e| format!("read: {e}"))?;
    let mut fixture: Value =
        serde_json::from_str(&text).map_err(|e| format!("fixture is not JSON: {e}"))?;
    let adapter = file
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .ok_or("fixture must live in fixtures/<adapter>/<kind>/")?
        .to_owned();
    let actual = run(&adapter, &fixture)?;

    let mut mismatches = Vec::new();
    for (key, value) in &actual {
        let expected = fixture.get(key.as_str()).cloned().unwrap_or(Value::Null);
        if key == "httpCalls" {
            compare_calls(&expected, value, &mut mismatches);
        } else if expected != *value {
            mismatches.push(diff(key, &expected, value));
        }
    }
    if mismatches.is_empty() {
        return Ok(());
    }
    if !update {
        return Err(mismatches.join("\n"));
    }
    let obj = fixture
        .as_object_mut()
        .ok_or("fixture must be a JSON object")?;
    for (key, value) in actual {
        if key == "httpCalls" {
            let calls = merge_calls(obj.get(&key), value);
            obj.insert(key, calls);
        } else if value.is_null() {
            obj.remove(&key);
        } else {
            obj.insert(key, value);
        }
    }
    let text = serde_json::to_string_pretty(&fixture).expect("JSON serializes") + "\n";
    fs::write(file, text).map_err(|e| format!("write: {e}"))?;
    eprintln!("updated {}", file.display());
    Ok(())
}

/// What the adapter does with the fixture's inputs, keyed like the fixture's expectations;
/// `httpCalls` holds only the `expectedRequest`s.
fn run(adapter: &str, fixture: &Value) -> Result<Map<String, Value>, String> {
    let spec = spec(adapter, fixture.get("spec"))?;
    let mut out = Map::new();
    let bidder = match registry().build(&spec) {
        Ok(bidder) => {
            out.insert("expectedBuildError".to_owned(), Value::Null);
            bidder
        }
        Err(msg) => {
            out.insert("expectedBuildError".to_owned(), Value::String(msg));
            return Ok(out);
        }
    };
    let request = fixture
        .get("mockBidRequest")
        .ok_or("missing mockBidRequest")?;
    // Through text: the model keeps `ext` as raw JSON, which only a text parser can hand out.
    let request: BidRequest =
        serde_json::from_str(&request.to_string()).map_err(|e| format!("mockBidRequest: {e}"))?;
    let tmax_ms = fixture
        .get("tmaxMs")
        .and_then(Value::as_u64)
        .unwrap_or(spec.timeout_ms);
    let outbound = Outbound::new(&request);
    let call = CallInfo {
        spec: &spec,
        tmax_ms,
    };

    let made = bidder.make_requests(&outbound, &call);
    let requests = made.requests;
    let request_errors: Vec<String> = made.errors.iter().map(ToString::to_string).collect();
    let calls = fixture
        .get("httpCalls")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut responses = Vec::new();
    let mut bid_errors = Vec::new();
    for (index, sent) in requests.iter().enumerate() {
        let Some(mock) = calls.get(index).and_then(|c| c.get("mockResponse")) else {
            continue;
        };
        let response = mock_response(mock)?;
        match bidder.make_bids(&request, sent, &response) {
            Ok(Some(bids)) => {
                bid_errors.extend(bids.errors.iter().map(ToString::to_string));
                responses.push(bids_json(&bids));
            }
            Ok(None) => {}
            Err(e) => bid_errors.push(e.to_string()),
        }
    }
    let sent: Vec<Value> = requests.iter().map(request_json).collect();
    let list = |items: Vec<Value>| {
        if items.is_empty() {
            Value::Null
        } else {
            Value::Array(items)
        }
    };
    let strings = |items: Vec<String>| list(items.into_iter().map(Value::String).collect());
    out.insert("httpCalls".to_owned(), Value::Array(sent));
    out.insert("expectedBidResponses".to_owned(), list(responses));
    out.insert(
        "expectedMakeRequestsErrors".to_owned(),
        strings(request_errors),
    );
    out.insert("expectedMakeBidsErrors".to_owned(), strings(bid_errors));
    Ok(out)
}

/// The fixture's spec over defaults named after the adapter.
fn spec(adapter: &str, overrides: Option<&Value>) -> Result<BidderSpec, String> {
    let mut spec = json!({ "name": adapter, "adapter": adapter, "endpoint": DEFAULT_ENDPOINT });
    if let Some(overrides) = overrides {
        let overrides = overrides.as_object().ok_or("spec must be an object")?;
        let base = spec.as_object_mut().expect("object literal");
        base.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    serde_json::from_value(spec).map_err(|e| format!("spec: {e}"))
}

fn mock_response(mock: &Value) -> Result<BidderResponse, String> {
    let status = mock.get("status").and_then(Value::as_u64).unwrap_or(200);
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| http::StatusCode::from_u16(s).ok())
        .ok_or_else(|| format!("mockResponse.status {status} is not an HTTP status"))?;
    let body = match (mock.get("bodyText"), mock.get("body")) {
        (Some(Value::String(text)), _) => Bytes::from(text.clone()),
        (_, Some(body)) => Bytes::from(body.to_string()),
        _ => Bytes::new(),
    };
    Ok(BidderResponse { status, body })
}

fn request_json(request: &BidderRequest) -> Value {
    let mut headers = Map::new();
    for (name, value) in &request.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(Value::String(first)) => *first = format!("{first}, {value}"),
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let mut out = Map::new();
    out.insert("method".to_owned(), json!(request.method.as_str()));
    out.insert("uri".to_owned(), json!(request.uri));
    if !headers.is_empty() {
        out.insert("headers".to_owned(), Value::Object(headers));
    }
    if !request.body.is_empty() {
        let body = serde_json::from_slice(&request.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&request.body).into_owned()));
        out.insert("body".to_owned(), body);
    }
    out.insert("impIDs".to_owned(), json!(request.imp_ids));
    Value::Object(out)
}

fn bids_json(bids: &BidderBids) -> Value {
    let typed: Vec<Value> = bids
        .bids
        .iter()
        .map(|typed| {
            let mut bid = Map::new();
            bid.insert(
                "bid".to_owned(),
                serde_json::to_value(&typed.bid).expect("Bid serializes"),
            );
            bid.insert("type".to_owned(), json!(typed.media_type.as_str()));
            if let Some(seat) = &typed.seat {
                bid.insert("seat".to_owned(), json!(seat));
            }
            Value::Object(bid)
        })
        .collect();
    let mut out = Map::new();
    if let Some(currency) = &bids.currency {
        out.insert("currency".to_owned(), json!(currency));
    }
    out.insert("bids".to_owned(), Value::Array(typed));
    Value::Object(out)
}

fn compare_calls(expected: &Value, actual: &Value, mismatches: &mut Vec<String>) {
    let expected = expected.as_array().cloned().unwrap_or_default();
    let actual = actual.as_array().cloned().unwrap_or_default();
    if expected.len() != actual.len() {
        mismatches.push(format!(
            "expected {} HTTP calls, the adapter made {}",
            expected.len(),
            actual.len()
        ));
    }
    for (index, (call, sent)) in expected.iter().zip(&actual).enumerate() {
        let want = call.get("expectedRequest").cloned().unwrap_or(Value::Null);
        if want != *sent {
            mismatches.push(diff(
                &format!("httpCalls[{index}].expectedRequest"),
                &want,
                sent,
            ));
        }
    }
}

/// The fixture's calls with their expected requests replaced; new calls get a 204 mock.
fn merge_calls(existing: Option<&Value>, sent: Value) -> Value {
    let existing = existing
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let sent = sent.as_array().cloned().unwrap_or_default();
    let calls = sent
        .into_iter()
        .enumerate()
        .map(|(index, request)| {
            let mock = existing
                .get(index)
                .and_then(|c| c.get("mockResponse"))
                .cloned()
                .unwrap_or_else(|| json!({ "status": 204 }));
            json!({ "expectedRequest": request, "mockResponse": mock })
        })
        .collect();
    Value::Array(calls)
}

fn diff(what: &str, expected: &Value, actual: &Value) -> String {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("JSON serializes");
    let (expected, actual) = (pretty(expected), pretty(actual));
    format!(
        "{what} differs (left: expected, right: actual):\n{}",
        pretty_assertions::StrComparison::new(&expected, &actual)
    )
}
