//! One whole auction through the exchange plugin as it serves: HTTP request in, four simulated
//! partners called over loopback, response out, one at a time. This is the path that creates
//! the auction's spans, so it shows what tracing costs when OTLP export is off (and, with
//! `BOURSE_BENCH_OTLP=<collector URL>`, when it is on).

use bourse_benches::BANNER_SITE;
use bourse_engine::ExchangePlugin;
use bourse_kernel::Kernel;
use bourse_sim::bidder::{SimBidder, SimBidderConfig};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const BIDDERS: usize = 4;

fn exchange(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let export_on = std::env::var_os("BOURSE_BENCH_OTLP").is_some();
    let (url, _partners, _running, telemetry) = runtime.block_on(async {
        // With export on, every span goes to a collector stand-in that answers 200 to anything.
        let telemetry = if export_on {
            let otlp = bourse_kernel::OtlpConfig {
                endpoint: format!("http://{}/v1/traces", accept_anything().await),
                ..bourse_kernel::OtlpConfig::default()
            };
            let log = bourse_kernel::LogConfig {
                level: "warn".into(),
                otlp: Some(otlp),
                ..bourse_kernel::LogConfig::default()
            };
            Some(bourse_kernel::init_logging(&log).unwrap())
        } else {
            None
        };
        let mut partners = Vec::new();
        let mut config = String::from(
            "[server]\nlisten = \"127.0.0.1:0\"\nwatch_config = false\n\n[log]\nlevel = \"warn\"\n\n\
             [plugins.exchange]\nnotice_secret = \"bench-secret-0123456789abcdef\"\n\
             public_url = \"http://bourse.bench\"\n\n[plugins.exchange.notices]\nlosses = false\n",
        );
        for i in 0..BIDDERS {
            let partner = SimBidder::spawn(
                SimBidderConfig::new(format!("dsp-{i}")),
                "127.0.0.1:0".parse().unwrap(),
            )
            .await
            .unwrap();
            config.push_str(&format!(
                "\n[[plugins.exchange.bidders]]\nname = \"dsp-{i}\"\nendpoint = \"{}\"\n",
                partner.endpoint()
            ));
            partners.push(partner);
        }
        let kernel = Kernel::builder()
            .plugin(ExchangePlugin::new(bourse_bidders::registry()))
            .build();
        let loaded = kernel.load_config_str(&config, "bench.toml").unwrap();
        let running = kernel.start(loaded).await.unwrap();
        let url = format!("http://{}/openrtb2/auction", running.local_addr());
        (url, partners, running, telemetry)
    });
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body = Bytes::from_static(BANNER_SITE.as_bytes());
    let auction = || async {
        let request = http::Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200, "the partners bid");
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .len()
    };

    let mut group = c.benchmark_group("exchange");
    group.throughput(Throughput::Elements(1));
    let name = if export_on {
        "auction_4_bidders_loopback_otlp_on"
    } else {
        "auction_4_bidders_loopback"
    };
    group.bench_function(name, |b| b.iter(|| runtime.block_on(auction())));
    group.finish();
    if let Some(telemetry) = telemetry {
        runtime.block_on(telemetry.shutdown());
    }
}

/// A loopback HTTP server that answers every request with an empty 200.
async fn accept_anything() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(
                |request: http::Request<hyper::body::Incoming>| async move {
                    let _ = request.into_body().collect().await;
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::default()))
                },
            );
            tokio::spawn(
                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .into_owned(),
            );
        }
    });
    addr
}

criterion_group!(benches, exchange);
criterion_main!(benches);
