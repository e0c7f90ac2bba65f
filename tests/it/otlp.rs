//! Tracing: the real binary's JSON log lines, and OTLP/HTTP export of auction and bidder-call
//! spans to a collector this test runs on loopback (on only when `[log.otlp]` is set).

use crate::support::{Node, Partner, Reply, banner_request, bidder, bids, config};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue as Any, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use prost::Message;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// An OTLP/HTTP traces receiver: decodes every `POST /v1/traces` and keeps its spans.
struct Collector {
    addr: SocketAddr,
    /// Each span with its resource's `service.name`.
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    connections: Arc<AtomicUsize>,
    /// Requests that were not protobuf trace exports.
    refused: Arc<AtomicUsize>,
}

impl Collector {
    async fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let collector = Collector {
            addr: listener.local_addr().unwrap(),
            spans: Arc::default(),
            connections: Arc::default(),
            refused: Arc::default(),
        };
        let (spans, connections, refused) = (
            collector.spans.clone(),
            collector.connections.clone(),
            collector.refused.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let (spans, refused) = (spans.clone(), refused.clone());
                let service = hyper::service::service_fn(move |req: http::Request<_>| {
                    let (spans, refused) = (spans.clone(), refused.clone());
                    async move { Ok::<_, Infallible>(receive(req, &spans, &refused).await) }
                });
                tokio::spawn(
                    hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service)
                    .into_owned(),
                );
            }
        });
        collector
    }

    fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    fn spans(&self) -> Vec<(String, Span)> {
        self.spans.lock().unwrap().clone()
    }
}

async fn receive(
    req: http::Request<hyper::body::Incoming>,
    spans: &Mutex<Vec<(String, Span)>>,
    refused: &AtomicUsize,
) -> http::Response<Full<Bytes>> {
    let protobuf = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/x-protobuf");
    let good_request = req.method() == http::Method::POST && req.uri().path() == "/v1/traces";
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let decoded = ExportTraceServiceRequest::decode(body);
    let (true, true, Ok(export)) = (good_request, protobuf, decoded) else {
        refused.fetch_add(1, Ordering::SeqCst);
        return http::Response::builder()
            .status(400)
            .body(Full::default())
            .unwrap();
    };
    let mut kept = spans.lock().unwrap();
    for resource_spans in export.resource_spans {
        let service = resource_spans
            .resource
            .as_ref()
            .and_then(|r| string_attribute(&r.attributes, "service.name"))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            kept.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
        }
    }
    http::Response::builder()
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .body(Full::default())
        .unwrap()
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &Any| v.value.as_ref())
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attribute(attributes, key)? {
        AnyValue::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn int_attribute(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key)? {
        AnyValue::IntValue(i) => Some(*i),
        _ => None,
    }
}

fn float_attribute(attributes: &[KeyValue], key: &str) -> Option<f64> {
    match attribute(attributes, key)? {
        AnyValue::DoubleValue(f) => Some(*f),
        _ => None,
    }
}

/// A config whose logs are the default format (JSON) at `info`, with `extra_log` added to
/// `[log]`: one partner that bids 1.5 and one that never answers within its 60 ms.
fn two_partner_config(eager: &Partner, silent: &Partner, extra_log: &str) -> String {
    config(
        "",
        &[
            bidder("eager", eager, ""),
            bidder("silent", silent, "timeout_ms = 60"),
        ],
    )
    .replace(
        "[log]\nformat = \"text\"\nlevel = \"warn\"\n",
        &format!("[log]\nlevel = \"info\"\n{extra_log}"),
    )
}

async fn auction(node: &Node, id: &str) -> http::StatusCode {
    let mut request = banner_request(id, &[("1", 0.5)]);
    request["at"] = 1.into();
    let body = serde_json::to_vec(&request).unwrap();
    let req = http::Request::post(node.url("/openrtb2/auction"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    node.send(req).await.0
}

/// Stops the node gracefully and returns its whole stderr (the reader thread may lag the exit).
async fn stop(node: &mut Node) -> String {
    let status = node.terminate().await;
    assert!(status.success(), "{status:?}: {}", node.stderr());
    for _ in 0..100 {
        if node.stderr().contains("\"message\":\"shut down\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    node.stderr()
}

/// Every stderr line is one JSON object with timestamp, level, target and message; returns them.
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            for key in ["timestamp", "level", "target", "message"] {
                assert!(value.get(key).is_some(), "no `{key}` in log line: {line}");
            }
            value
        })
        .collect()
}

#[tokio::test]
async fn auction_and_bidder_call_spans_reach_the_collector() {
    let collector = Collector::start().await;
    let eager = Partner::start(|r| Reply::Json(bids(r, "eager-seat", &[("1", 1.5)]))).await;
    let silent = Partner::start(|_| Reply::Hang).await;
    let otlp = format!(
        "\n[log.otlp]\nendpoint = \"{}\"\nservice_name = \"bourse-under-test\"\n",
        collector.endpoint()
    );
    let mut node = Node::start(&two_partner_config(&eager, &silent, &otlp));
    for id in ["trace-1", "trace-2", "trace-3"] {
        assert_eq!(auction(&node, id).await, 200);
    }
    // A graceful stop exports what the batch processor still holds.
    let stderr = stop(&mut node).await;

    let spans = collector.spans();
    assert_eq!(collector.refused.load(Ordering::SeqCst), 0);
    assert!(
        spans
            .iter()
            .all(|(service, _)| service == "bourse-under-test"),
        "{spans:?}"
    );
    let auctions: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "auction")
        .collect();
    let calls: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "bidder_call")
        .collect();
    assert_eq!(auctions.len(), 3, "{spans:#?}");
    assert_eq!(calls.len(), 6, "{spans:#?}");
    let mut ids: Vec<String> = auctions
        .iter()
        .map(|s| string_attribute(&s.attributes, "request_id").unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["trace-1", "trace-2", "trace-3"]);
    for auction in &auctions {
        assert!(
            auction.parent_span_id.is_empty(),
            "an auction is a root span"
        );
        assert_eq!(auction.kind, SpanKind::Server as i32);
        assert_eq!(
            string_attribute(&auction.attributes, "outcome").as_deref(),
            Some("bid")
        );
        assert_eq!(
            int_attribute(&auction.attributes, "imps"),
            Some(1),
            "{auction:?}"
        );
        assert_eq!(int_attribute(&auction.attributes, "bidders"), Some(2));
        let price = float_attribute(&auction.attributes, "winning_price").unwrap();
        // First price (`at = 1`): the clearing price is the bid.
        assert!((price - 1.5).abs() < 1e-9, "winning price {price}");

        let children: Vec<&&Span> = calls
            .iter()
            .filter(|c| c.parent_span_id == auction.span_id)
            .collect();
        assert_eq!(children.len(), 2, "two bidder calls under each auction");
        for call in &children {
            assert_eq!(call.trace_id, auction.trace_id);
            assert_eq!(call.kind, SpanKind::Client as i32);
            assert!(call.start_time_unix_nano >= auction.start_time_unix_nano);
            assert!(call.end_time_unix_nano <= auction.end_time_unix_nano);
        }
        let by_bidder = |name: &str| {
            children
                .iter()
                .find(|c| string_attribute(&c.attributes, "bidder").as_deref() == Some(name))
                .unwrap_or_else(|| panic!("no bidder_call for {name}"))
        };
        let eager_call = by_bidder("eager");
        assert_eq!(
            string_attribute(&eager_call.attributes, "outcome").as_deref(),
            Some("bid")
        );
        assert_eq!(
            int_attribute(&eager_call.attributes, "http.response.status_code"),
            Some(200)
        );
        let silent_call = by_bidder("silent");
        assert_eq!(
            string_attribute(&silent_call.attributes, "outcome").as_deref(),
            Some("timeout")
        );
        assert_eq!(
            silent_call.status.as_ref().map(|s| s.code),
            Some(StatusCode::Error as i32)
        );
        // The span lasts as long as the call: until the 60 ms deadline, counted from the
        // auction's start.
        let waited_ms =
            (silent_call.end_time_unix_nano - silent_call.start_time_unix_nano) / 1_000_000;
        assert!(
            (40..1000).contains(&waited_ms),
            "timeout call lasted {waited_ms} ms"
        );
    }

    let logs = json_lines(&stderr);
    let announced = logs
        .iter()
        .find(|l| l["message"] == "OTLP span export on")
        .expect("startup says export is on");
    assert_eq!(announced["endpoint"], collector.endpoint().as_str());
    assert!(
        logs.iter()
            .all(|l| l["target"] != bourse_kernel::TRACE_TARGET),
        "spans for export never become log lines"
    );
}

#[tokio::test]
async fn without_otlp_table_nothing_is_exported_even_with_otel_env() {
    let collector = Collector::start().await;
    let eager = Partner::start(|r| Reply::Json(bids(r, "eager-seat", &[("1", 1.5)]))).await;
    let silent = Partner::start(|_| Reply::Hang).await;
    // Were an exporter built at all, the SDK would read these and send here.
    let endpoint = collector.endpoint();
    let base = format!("http://{}", collector.addr);
    let mut node = Node::start_with_env(
        &two_partner_config(&eager, &silent, ""),
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", base.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "10"),
        ],
    );
    for id in ["quiet-1", "quiet-2"] {
        assert_eq!(auction(&node, id).await, 200);
    }
    let stderr = stop(&mut node).await;
    assert_eq!(collector.connections.load(Ordering::SeqCst), 0);
    let logs = json_lines(&stderr);
    assert!(
        logs.iter().any(|l| l["message"] == "bourse is serving"),
        "the default JSON log lines are there: {logs:?}"
    );
    assert!(
        !stderr.contains("OTLP"),
        "no exporter is mentioned: {stderr}"
    );
}

#[test]
fn a_bad_otlp_table_is_a_config_error_naming_the_field() {
    let text = "[log.otlp]\nendpoint = \"localhost:4318/v1/traces\"\nsample_ratio = 2.0\n";
    let errors = bourse::kernel()
        .load_config_str(text, "bad.toml")
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("bad.toml:2:") && errors.contains("log.otlp.endpoint: "),
        "{errors}"
    );
    assert!(
        errors.contains("bad.toml:3:") && errors.contains("log.otlp.sample_ratio: "),
        "{errors}"
    );
    let typo = bourse::kernel()
        .load_config_str("[log.otlp]\nendpont = \"http://x\"\n", "typo.toml")
        .unwrap_err()
        .to_string();
    assert!(typo.contains("endpont"), "{typo}");
}

#[tokio::test]
async fn an_unreachable_collector_fails_no_auction_and_does_not_hold_the_stop() {
    // A port nobody listens on: every export is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let eager = Partner::start(|r| Reply::Json(bids(r, "eager-seat", &[("1", 1.5)]))).await;
    let silent = Partner::start(|_| Reply::Hang).await;
    let otlp = format!("\n[log.otlp]\nendpoint = \"http://{closed}/v1/traces\"\n");
    let mut node = Node::start(&two_partner_config(&eager, &silent, &otlp));
    for id in ["lost-1", "lost-2", "lost-3"] {
        assert_eq!(auction(&node, id).await, 200);
    }
    let stopping = std::time::Instant::now();
    let stderr = stop(&mut node).await;
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(8),
        "the stop waited {:?} for the collector",
        stopping.elapsed()
    );
    let failures = json_lines(&stderr)
        .into_iter()
        .filter(|l| l["level"] == "WARN" && l["message"].as_str().unwrap_or("").contains("OTLP"))
        .count();
    assert_eq!(failures, 1, "one rate-limited warning: {stderr}");
}
