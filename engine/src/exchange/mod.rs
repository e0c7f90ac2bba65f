//! The exchange as a kernel plugin: `/openrtb2/auction` and the `/notice/*` endpoints.

mod config;
mod notices;
mod run;

pub use config::{ExchangeConfig, NoticeDelivery, SupplyPartner};

use crate::bidder::{AdapterRegistry, Bidder, BidderSpec};
use crate::client::BidderClient;
use crate::currency::Rates;
use crate::metrics::{BidderMetrics, ExchangeMetrics};
use crate::notice::{NoticeCounters, NoticeKind, NoticeSender, RetryPolicy, TokenSigner};
use crate::validate::Limits;
use bourse_kernel::{
    ConfigIssue, Handler, Manifest, Plugin, PluginCtx, PluginError, Request, Response,
};
use futures_util::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The exchange plugin; one instance lives for the whole process, one handler per config generation.
pub struct ExchangePlugin {
    registry: AdapterRegistry,
    shared: OnceLock<Arc<Shared>>,
}

impl std::fmt::Debug for ExchangePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangePlugin")
            .field("adapters", &self.registry)
            .finish()
    }
}

/// What outlives a configuration generation: metrics, the notice de-duplication window and
/// the per-process signing key used when none is configured.
pub(crate) struct Shared {
    pub metrics: ExchangeMetrics,
    pub seen_notices: moka::sync::Cache<String, ()>,
    random_secret: [u8; 32],
    pub auction_seq: AtomicU64,
    pub process_tag: u32,
}

impl ExchangePlugin {
    /// An exchange that builds bidders with the adapters in `registry`.
    pub fn new(registry: AdapterRegistry) -> Self {
        ExchangePlugin {
            registry,
            shared: OnceLock::new(),
        }
    }

    fn shared(&self, ctx: &PluginCtx) -> Result<Arc<Shared>, PluginError> {
        if let Some(shared) = self.shared.get() {
            return Ok(shared.clone());
        }
        let metrics = ExchangeMetrics::register(&ctx.metrics)
            .map_err(|e| PluginError(format!("metrics: {e}")))?;
        let shared = Shared {
            metrics,
            seen_notices: moka::sync::Cache::builder()
                .max_capacity(2_000_000)
                .time_to_live(Duration::from_secs(24 * 3600))
                .build(),
            random_secret: rand::random(),
            auction_seq: AtomicU64::new(0),
            process_tag: rand::random(),
        };
        Ok(self.shared.get_or_init(|| Arc::new(shared)).clone())
    }
}

/// One configured demand partner with everything resolved for the request path.
pub(crate) struct BidderRuntime {
    pub spec: BidderSpec,
    pub adapter: Arc<dyn Bidder>,
    pub client: BidderClient,
    pub limiter: Option<DefaultDirectRateLimiter>,
    pub metrics: BidderMetrics,
}

/// One configuration generation of the exchange.
pub(crate) struct Exchange {
    pub config: ExchangeConfig,
    pub bidders: Vec<BidderRuntime>,
    pub rates: Rates,
    pub limits: Limits,
    pub signer: TokenSigner,
    pub notices: NoticeSender,
    pub notice_counters: [NoticeCounters; 3],
    pub shared: Arc<Shared>,
    pub notice_base: String,
}

impl Plugin for ExchangePlugin {
    type Config = ExchangeConfig;

    fn manifest(&self) -> Manifest {
        Manifest {
            name: "exchange",
            version: env!("CARGO_PKG_VERSION"),
            mounts: vec!["/openrtb2/", "/notice/"],
        }
    }

    fn validate(&self, config: &ExchangeConfig) -> Vec<ConfigIssue> {
        config.check(&self.registry)
    }

    fn start(
        &self,
        ctx: PluginCtx,
        config: ExchangeConfig,
    ) -> impl std::future::Future<Output = Result<Arc<dyn Handler>, PluginError>> + Send {
        let built = self.build(&ctx, config);
        async move { built.map(|exchange| Arc::new(exchange) as Arc<dyn Handler>) }
    }
}

impl ExchangePlugin {
    fn build(&self, ctx: &PluginCtx, config: ExchangeConfig) -> Result<Exchange, PluginError> {
        let issues = config.check(&self.registry);
        if let Some(first) = issues.first() {
            return Err(PluginError(format!("{}: {}", first.path, first.message)));
        }
        let shared = self.shared(ctx)?;
        let mut bidders = Vec::with_capacity(config.bidders.len());
        for spec in &config.bidders {
            let adapter = self
                .registry
                .build(spec)
                .map_err(|e| PluginError(format!("bidder {}: {e}", spec.name)))?;
            let limiter =
                NonZeroU32::new(spec.qps).map(|qps| RateLimiter::direct(Quota::per_second(qps)));
            bidders.push(BidderRuntime {
                client: BidderClient::new(spec),
                metrics: shared.metrics.bidder(&spec.name),
                spec: spec.clone(),
                adapter,
                limiter,
            });
        }
        let secret = if config.notice_secret.is_empty() {
            tracing::warn!(
                "exchange.notice_secret is empty: notice URLs only verify on this process"
            );
            shared.random_secret.to_vec()
        } else {
            config.notice_secret.as_bytes().to_vec()
        };
        let policy = RetryPolicy {
            attempts: config.notices.attempts,
            backoff: Duration::from_millis(config.notices.backoff_ms),
            timeout: Duration::from_millis(config.notices.timeout_ms),
        };
        let notice_base = format!("{}/notice", config.public_url.trim_end_matches('/'));
        Ok(Exchange {
            rates: Rates::new(
                &config.currency,
                config.rates.iter().map(|(k, v)| (k.clone(), *v)),
            ),
            limits: Limits {
                max_imps: config.max_imps,
                ..Limits::default()
            },
            signer: TokenSigner::new(&secret),
            notices: NoticeSender::spawn(config.notices.queue, policy),
            notice_counters: [
                shared.metrics.notice_counters(NoticeKind::Win),
                shared.metrics.notice_counters(NoticeKind::Bill),
                shared.metrics.notice_counters(NoticeKind::Loss),
            ],
            shared,
            notice_base,
            bidders,
            config,
        })
    }
}

/// An empty 204 answer: no bid, or a notice taken.
pub(crate) fn no_content() -> Response {
    let mut response = Response::new(bourse_kernel::empty());
    *response.status_mut() = http::StatusCode::NO_CONTENT;
    response
}

impl Handler for Exchange {
    fn handle<'a>(&'a self, req: Request) -> BoxFuture<'a, Response> {
        Box::pin(async move {
            let path = req.uri().path();
            if path == "/openrtb2/auction" {
                self.auction(req).await
            } else if let Some(kind) = path.strip_prefix("/notice/") {
                self.notice(kind.to_owned(), req).await
            } else {
                bourse_kernel::json_response(
                    http::StatusCode::NOT_FOUND,
                    &serde_json::json!({"error": "not_found"}),
                )
            }
        })
    }

    fn drain<'a>(&'a self) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.notices.flush().await })
    }
}
