//! The exchange as a kernel plugin: `/openrtb2/auction`, the `/notice/*` endpoints, and the
//! publisher side: `/tag.js`, `/ad`, `/beacon/*`, `/click`, `/reach` and `/ledger`.

mod adserve;
mod config;
mod notices;
mod reports;
mod run;

pub use adserve::{BeaconKind, BeaconToken};
pub use config::{ExchangeConfig, NoticeDelivery, Placement, Publisher, SupplyPartner, TagConfig};

use crate::bidder::{AdapterRegistry, Bidder, BidderSpec};
use crate::client::BidderClient;
use crate::currency::Rates;
use crate::ledger::Ledger;
use crate::metrics::{BidderMetrics, ExchangeMetrics};
use crate::notice::{NoticeCounters, NoticeKind, NoticeSender, RetryPolicy, TokenSigner};
use crate::validate::Limits;
use bourse_kernel::{
    ConfigIssue, Handler, Manifest, Plugin, PluginCtx, PluginError, Request, Response,
};
use futures_util::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
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

/// What outlives a configuration generation: metrics, the notice de-duplication window, the
/// per-process signing key used when none is configured, billing de-duplication, reach counting
/// and the revenue ledger. The last three are set up from the first configuration; changing
/// their settings (Redis URL, ledger path) takes a restart.
pub(crate) struct Shared {
    pub metrics: ExchangeMetrics,
    pub seen_notices: moka::sync::Cache<String, ()>,
    random_secret: [u8; 32],
    pub auction_seq: AtomicU64,
    pub process_tag: u32,
    pub billing: bourse_reach::BillingDedup,
    pub reach: ReachSink,
    pub ledger: Ledger,
    /// Learned floors; its learner task runs for the life of the process.
    pub floors: bourse_floors::Floors,
}

/// The request path's end of reach counting.
pub(crate) struct ReachSink {
    recorder: bourse_reach::ReachRecorder,
    pub query: bourse_reach::ReachQuery,
    /// Kept so the aggregator lives as long as the process.
    _aggregator: bourse_reach::ReachAggregator,
}

impl ReachSink {
    /// Counts `uid` as reached on this placement, publisher and bidder; never blocks.
    pub fn record(
        &self,
        uid: &str,
        publisher: Arc<str>,
        placement: Arc<str>,
        bidder: Arc<str>,
        ts: u64,
    ) {
        use sha2::Digest as _;
        // A stable hash, so that every node (and every restart) counts a user the same way.
        let digest = sha2::Sha256::digest(uid.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        self.recorder.record(bourse_reach::ReachEvent {
            user_hash: u64::from_le_bytes(first),
            placement,
            publisher,
            bidder,
            timestamp: ts,
        });
    }
}

impl ExchangePlugin {
    /// An exchange that builds bidders with the adapters in `registry`.
    pub fn new(registry: AdapterRegistry) -> Self {
        ExchangePlugin {
            registry,
            shared: OnceLock::new(),
        }
    }

    async fn shared(
        &self,
        ctx: &PluginCtx,
        config: &ExchangeConfig,
    ) -> Result<Arc<Shared>, PluginError> {
        if let Some(shared) = self.shared.get() {
            return Ok(shared.clone());
        }
        let metrics = ExchangeMetrics::register(&ctx.metrics)
            .map_err(|e| PluginError(format!("metrics: {e}")))?;
        let reach = bourse_reach::start(config.reach.clone())
            .await
            .map_err(|e| PluginError(format!("reach: {e}")))?;
        reach
            .query
            .register_metrics(ctx.metrics.registry())
            .map_err(|e| PluginError(format!("reach metrics: {e}")))?;
        let billing = bourse_reach::BillingDedup::from_config(&config.reach)
            .await
            .map_err(|e| PluginError(format!("billing de-duplication: {e}")))?;
        let ledger = Ledger::start(config.tags.ledger_path.clone())
            .map_err(|e| PluginError(format!("tags.ledger_path: {e}")))?;
        let (floors, learner) = bourse_floors::Floors::new(config.floors.clone())
            .map_err(|e| PluginError(format!("floors: {e}")))?;
        floors
            .register(ctx.metrics.registry())
            .map_err(|e| PluginError(format!("floors metrics: {e}")))?;
        // Ends by itself once the last `Floors` handle is gone.
        tokio::spawn(learner.run(std::future::pending::<()>()));
        let shared = Shared {
            floors,
            metrics,
            seen_notices: moka::sync::Cache::builder()
                .max_capacity(2_000_000)
                .time_to_live(Duration::from_secs(24 * 3600))
                .build(),
            random_secret: rand::random(),
            auction_seq: AtomicU64::new(0),
            process_tag: rand::random(),
            billing,
            reach: ReachSink {
                recorder: reach.recorder,
                query: reach.query,
                _aggregator: reach.aggregator,
            },
            ledger,
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
    /// Placement id → index in `config.placements`.
    pub placement_index: HashMap<String, usize>,
    /// Publisher id → index in `config.publishers`.
    pub publisher_index: HashMap<String, usize>,
    /// `bourse_adserve_billed_impressions_total` of each placement, in `config.placements` order.
    pub billed_impressions: Vec<prometheus::IntCounter>,
    /// Placement ids as shared strings, in `config.placements` order, for floor keys.
    pub placement_keys: Vec<Arc<str>>,
    /// Every configured publisher, placement and bidder id as a shared string, so billing
    /// hands reach counting its ids without allocating.
    pub config_ids: HashMap<String, Arc<str>>,
}

impl Exchange {
    /// The shared string for a config id; a token from an older config allocates its own.
    pub(crate) fn config_id(&self, id: &str) -> Arc<str> {
        self.config_ids
            .get(id)
            .cloned()
            .unwrap_or_else(|| Arc::from(id))
    }
}

impl Plugin for ExchangePlugin {
    type Config = ExchangeConfig;

    fn manifest(&self) -> Manifest {
        Manifest {
            name: "exchange",
            version: env!("CARGO_PKG_VERSION"),
            mounts: vec![
                "/openrtb2/",
                "/notice/",
                "/tag.js",
                "/ad",
                "/beacon/",
                "/click",
                "/reach",
                "/ledger",
            ],
        }
    }

    fn validate(&self, config: &ExchangeConfig) -> Vec<ConfigIssue> {
        config.check(&self.registry)
    }

    async fn start(
        &self,
        ctx: PluginCtx,
        config: ExchangeConfig,
    ) -> Result<Arc<dyn Handler>, PluginError> {
        let issues = config.check(&self.registry);
        if let Some(first) = issues.first() {
            return Err(PluginError(format!("{}: {}", first.path, first.message)));
        }
        let shared = self.shared(&ctx, &config).await?;
        self.build(shared, config)
            .map(|exchange| Arc::new(exchange) as Arc<dyn Handler>)
    }
}

impl ExchangePlugin {
    fn build(&self, shared: Arc<Shared>, config: ExchangeConfig) -> Result<Exchange, PluginError> {
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
        shared
            .metrics
            .set_configured_floors(config.placements.iter().map(|p| (p.id.as_str(), p.floor)));
        // Resolved here so billing an impression touches one atomic, not the family's lock.
        let billed_impressions = config
            .placements
            .iter()
            .map(|p| {
                shared
                    .metrics
                    .billed_impressions
                    .with_label_values(&[p.publisher.as_str(), p.id.as_str()])
            })
            .collect();
        Ok(Exchange {
            billed_impressions,
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
            placement_index: config
                .placements
                .iter()
                .enumerate()
                .map(|(i, p)| (p.id.clone(), i))
                .collect(),
            placement_keys: config
                .placements
                .iter()
                .map(|p| Arc::from(p.id.as_str()))
                .collect(),
            config_ids: config
                .publishers
                .iter()
                .map(|p| &p.id)
                .chain(config.placements.iter().map(|p| &p.id))
                .chain(config.bidders.iter().map(|b| &b.name))
                .map(|id| (id.clone(), Arc::from(id.as_str())))
                .collect(),
            publisher_index: config
                .publishers
                .iter()
                .enumerate()
                .map(|(i, p)| (p.id.clone(), i))
                .collect(),
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
            match path {
                "/openrtb2/auction" => return self.auction(req).await,
                "/tag.js" => return self.tag_js(&req),
                "/ad" => return self.ad(req).await,
                "/beacon/imp" => return self.beacon(adserve::BeaconKind::Impression, req).await,
                "/beacon/view" => return self.beacon(adserve::BeaconKind::View, req).await,
                "/click" => return self.click(&req),
                "/reach" => return self.reach_report(&req).await,
                "/ledger" => return self.ledger_report(&req).await,
                _ => {}
            }
            if let Some(kind) = path.strip_prefix("/notice/") {
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
