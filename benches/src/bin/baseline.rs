//! The baseline of the end-to-end benchmark, a stand-in for the physical limit: a bare hyper 1
//! forwarder doing the exchange's I/O and nothing else. For each `POST` it reads the body,
//! forwards it unchanged to every bidder over pooled keep-alive connections, waits for all of
//! them (each up to `--timeout-ms`), and answers with the body of the answer carrying the highest
//! `seatbid[].bid[].price` (200), or 204. No validation, no auction rules, no notices, no metrics.

use bytes::Bytes;
use clap::Parser;
use futures_util::future::join_all;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

// The same allocator as bourse, so the comparison is about the work, not malloc.
#[global_allocator]
static ALLOCATOR: bourse::alloc::Mimalloc = bourse::alloc::Mimalloc;

/// The bare hyper forwarder bourse is compared with.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18081")]
    listen: SocketAddr,
    /// A bidder URL; repeat for each bidder.
    #[arg(long = "bidder")]
    bidders: Vec<String>,
    /// How long to wait for bidders.
    #[arg(long, default_value_t = 200)]
    timeout_ms: u64,
}

#[derive(Deserialize)]
struct Prices {
    #[serde(default)]
    seatbid: Vec<SeatPrices>,
}

#[derive(Deserialize)]
struct SeatPrices {
    #[serde(default)]
    bid: Vec<BidPrice>,
}

#[derive(Deserialize)]
struct BidPrice {
    #[serde(default)]
    price: f64,
}

struct Forwarder {
    client: Client<HttpConnector, Full<Bytes>>,
    bidders: Vec<http::Uri>,
    timeout: Duration,
}

type Response = http::Response<Full<Bytes>>;

impl Forwarder {
    async fn call(&self, uri: &http::Uri, body: Bytes) -> Option<(f64, Bytes)> {
        let request = http::Request::post(uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .ok()?;
        let exchange = async {
            let response = self.client.request(request).await.ok()?;
            if response.status() != http::StatusCode::OK {
                return None;
            }
            let bytes = response.into_body().collect().await.ok()?.to_bytes();
            let prices: Prices = serde_json::from_slice(&bytes).ok()?;
            let best = prices
                .seatbid
                .iter()
                .flat_map(|s| &s.bid)
                .map(|b| b.price)
                .fold(0.0, f64::max);
            Some((best, bytes))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .ok()
            .flatten()
    }

    async fn handle(&self, req: http::Request<Incoming>) -> Response {
        if req.method() != http::Method::POST {
            return status(http::StatusCode::METHOD_NOT_ALLOWED);
        }
        let Ok(collected) = req.into_body().collect().await else {
            return status(http::StatusCode::BAD_REQUEST);
        };
        let body = collected.to_bytes();
        let answers = join_all(self.bidders.iter().map(|uri| self.call(uri, body.clone()))).await;
        let best = answers
            .into_iter()
            .flatten()
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match best {
            Some((price, bytes)) if price > 0.0 => {
                let mut response = http::Response::new(Full::new(bytes));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                response
            }
            _ => status(http::StatusCode::NO_CONTENT),
        }
    }
}

fn status(code: http::StatusCode) -> Response {
    let mut response = http::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector);
    let bidders = args
        .bidders
        .iter()
        .map(|b| b.parse())
        .collect::<Result<Vec<http::Uri>, _>>()?;
    let forwarder = Arc::new(Forwarder {
        client,
        bidders,
        timeout: Duration::from_millis(args.timeout_ms),
    });
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("baseline is serving on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let forwarder = forwarder.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let forwarder = forwarder.clone();
                async move { Ok::<_, Infallible>(forwarder.handle(req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
