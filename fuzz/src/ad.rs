//! The `/ad` target: a publisher page's ad call through the exchange's real handler, built once
//! per process with one simulated partner that bids on everything, so that filled slots, their
//! markup and their signed beacons are reached as well as the refusals.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

use bourse_kernel::{ClientAddr, Handler, Request, RequestBody, Running};
use bourse_sim::bidder::{SimBidder, SimBidderConfig, SimBidderHandle};
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::runtime::Runtime;

/// Publishers and placements the inputs may name (the seeds do).
const SITE: &str = include_str!("../../tests/data/adtag-site.toml");

/// The exchange, its partner and the runtime both run on, kept for the whole process.
struct Site {
    runtime: Runtime,
    handler: Arc<dyn Handler>,
    _running: Running,
    _partner: SimBidderHandle,
}

fn site() -> &'static Site {
    static SITE_ONCE: OnceLock<Site> = OnceLock::new();
    SITE_ONCE.get_or_init(|| {
        // One thread: every input runs start to finish inside `block_on`, partner included.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let (running, partner) = runtime.block_on(start());
        let handler = running
            .plugins()
            .get("exchange")
            .expect("the exchange runs")
            .handler()
            .clone();
        Site {
            runtime,
            handler,
            _running: running,
            _partner: partner,
        }
    })
}

async fn start() -> (Running, SimBidderHandle) {
    let mut partner = SimBidderConfig::new("sim");
    partner.notice_log_limit = 16;
    let partner = SimBidder::spawn(partner, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("the simulated partner starts");
    let spool = std::env::temp_dir().join(format!("bourse-fuzz-{}.spool", std::process::id()));
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[log]\nformat = \"text\"\nlevel = \"error\"\n\n\
         [plugins.exchange]\nnotice_secret = \"fuzz-secret\"\npublic_url = \"http://bourse.test\"\n\
         notices.spool_path = {spool:?}\n{SITE}\n\
         [[plugins.exchange.bidders]]\nname = \"sim\"\nendpoint = {endpoint:?}\ntimeout_ms = 200\n",
        spool = spool.display().to_string(),
        endpoint = partner.endpoint(),
    );
    let kernel = bourse::kernel();
    let loaded = kernel
        .load_config_str(&text, "fuzz-ad.toml")
        .unwrap_or_else(|errors| panic!("the /ad target's config: {errors}"));
    let running = kernel.start(loaded).await.expect("the exchange starts");
    (running, partner)
}

/// `data` as the body of `POST /ad` from a browser on loopback (gzipped when it starts like
/// gzip, so the capped gunzip is reached too): any answer but a server error is fine.
pub fn ad_request(data: &[u8]) {
    let (status, _) = ad_response(data);
    assert!(
        !status.is_server_error(),
        "/ad answered {status} to {:?}",
        String::from_utf8_lossy(data)
    );
}

/// The exchange's answer to `data` as the body of `POST /ad`: status and body.
pub fn ad_response(data: &[u8]) -> (http::StatusCode, Bytes) {
    let site = site();
    let mut builder = http::Request::post("/ad")
        .header(http::header::CONTENT_TYPE, "text/plain")
        .header(
            http::header::USER_AGENT,
            "Mozilla/5.0 (X11; Linux x86_64) FuzzBrowser/1",
        );
    if data.starts_with(&[0x1f, 0x8b]) {
        builder = builder.header(http::header::CONTENT_ENCODING, "gzip");
    }
    let mut req: Request = builder
        .body(RequestBody::from(Bytes::copy_from_slice(data)))
        .expect("a well-formed request");
    let client = SocketAddr::from((Ipv4Addr::LOCALHOST, 40_000));
    req.extensions_mut().insert(ClientAddr(client.ip()));
    site.runtime.block_on(async {
        let response = site.handler.handle(req).await;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        (status, body)
    })
}
