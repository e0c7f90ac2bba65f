//! The exchange as a kernel plugin: `/openrtb2/auction`, the `/notice/*` endpoints, and the
//! publisher side: `/tag.js`, `/ad`, `/beacon/*`, `/click`, `/reach` and `/ledger`; and its
//! pages in the admin.

mod admin;
mod adserve;
mod config;
mod cors;
mod notices;
mod prebid;
mod reports;
mod run;

pub use adserve::{BeaconKind, BeaconToken};
pub use config::{
    ExchangeConfig, NoticeDelivery, Placement, PreparedExchange, Publisher, SupplyPartner,
    TagConfig,
};

use crate::bidder::{AdapterRegistry, Bidder, BidderSpec};
use crate::client::{BidderClient, Roots};
use crate::currency::Rates;
use crate::delivery::{Delivery, DeliveryMetrics, PartnerPolicy};
use crate::hooks::AuctionHooks;
use crate::ledger::Ledger;
use crate::metrics::{BidderMetrics, ExchangeMetrics};
use crate::notice::{NoticeKind, TokenSigner};
use crate::validate::Limits;
use bourse_kernel::{
    ConfigIssue, Handler, Manifest, Mount, Plugin, PluginCtx, PluginError, Request, Response,
};
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The exchange plugin kind. Each instance has an [`ExchangeState`] for its whole life and an
/// [`Exchange`] per config generation.
pub struct ExchangePlugin {
    registry: AdapterRegistry,
    hooks: Option<Arc<dyn AuctionHooks>>,
}

impl std::fmt::Debug for ExchangePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangePlugin")
            .field("adapters", &self.registry)
            .finish()
    }
}

/// What outlives a configuration generation: metrics, the notice de-duplication window, the
/// per-process signing key used when none is configured, billing de-duplication, reach counting,
/// the revenue ledger, learned floors, every partner's connection pool and QPS limiter, and the
/// admin pages' live numbers. A generation's config reaches it in [`Handler::activate`].
pub struct ExchangeState {
    pub(crate) metrics: ExchangeMetrics,
    /// Win and loss notices honoured, once per bid across every node (the kernel's once keys).
    pub(crate) notices: bourse_services::OnceNamespace,
    random_secret: [u8; 32],
    pub(crate) auction_seq: AtomicU64,
    /// Random per instance start, so auction references never repeat across nodes or restarts.
    pub(crate) process_tag: u64,
    /// Exactly-once billing keys (the kernel's, in process or in Redis).
    pub(crate) billing: bourse_services::OnceNamespace,
    pub(crate) reach: ReachSink,
    pub(crate) ledger: Ledger,
    /// The file the ledger appends to now.
    ledger_path: parking_lot::Mutex<Option<std::path::PathBuf>>,
    /// Learned floors; its learner runs until the instance stops.
    pub(crate) floors: bourse_floors::Floors,
    /// Each partner's pool, by bidder name, with the settings it was built for.
    partners: parking_lot::Mutex<HashMap<String, PartnerLink>>,
    /// The kernel's rate limits (partners' QPS caps).
    limits: bourse_services::RateLimits,
    /// This instance's name, to name its limiters.
    instance: Arc<str>,
    /// Each partner's notice queue; billing notices owed at a stop go to the spool.
    pub(crate) delivery: Delivery,
    /// Where this instance's learned-floor metrics are registered (none when another instance
    /// exports them), to take them out at stop.
    registry: Option<prometheus::Registry>,
    /// What the admin pages show besides the config; its sampler runs until the instance stops.
    pub(crate) admin: admin::AdminState,
}

/// A partner's connection pool, kept while its settings do not change.
#[derive(Clone)]
struct PartnerLink {
    pool_settings: PoolSettings,
    client: BidderClient,
}

/// What a pool is built from: a change of any of these needs a new pool.
#[derive(Clone, PartialEq, Eq)]
struct PoolSettings {
    http2: bool,
    max_idle_connections: usize,
    gzip: bool,
    /// The pool holds the endpoint read once (`client::Target`): a moved endpoint is a new pool.
    endpoint: String,
    /// What the partner's `ca_file` adds, read at each apply: a renewed file is a new pool.
    roots: Roots,
}

impl PoolSettings {
    /// The partner's pool settings, its `ca_file` read relative to `config_dir`.
    fn of(spec: &BidderSpec, config_dir: &std::path::Path) -> Result<Self, PluginError> {
        let roots = match &spec.ca_file {
            None => Roots::default(),
            Some(path) => {
                let refused =
                    |why: String| PluginError(format!("bidder {}: ca_file: {why}", spec.name));
                let pem = std::fs::read(config_dir.join(path))
                    .map_err(|e| refused(format!("cannot read {}: {e}", path.display())))?;
                Roots::with_pem(&pem).map_err(refused)?
            }
        };
        Ok(PoolSettings {
            http2: spec.http2,
            max_idle_connections: spec.max_idle_connections,
            gzip: spec.gzip,
            endpoint: spec.endpoint.clone(),
            roots,
        })
    }
}

/// The request path's end of reach counting: the kernel's unique counts, per placement,
/// publisher and bidder.
pub(crate) struct ReachSink {
    pub uniques: bourse_services::Uniques,
    pub placement: bourse_services::Dimension,
    pub publisher: bourse_services::Dimension,
    pub bidder: bourse_services::Dimension,
}

impl ReachSink {
    fn new(uniques: &bourse_services::Uniques) -> Result<Self, PluginError> {
        let dimension = |name| {
            uniques
                .dimension(name)
                .map_err(|e| PluginError(format!("reach: {e}")))
        };
        // Interned in report order: placement, publisher, bidder.
        Ok(ReachSink {
            placement: dimension("placement")?,
            publisher: dimension("publisher")?,
            bidder: dimension("bidder")?,
            uniques: uniques.clone(),
        })
    }

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
        self.uniques.record(
            u64::from_le_bytes(first),
            ts,
            &[
                (self.placement, placement),
                (self.publisher, publisher),
                (self.bidder, bidder),
            ],
        );
    }
}

impl ExchangePlugin {
    /// An exchange that builds bidders with the adapters in `registry`.
    pub fn new(registry: AdapterRegistry) -> Self {
        ExchangePlugin {
            registry,
            hooks: None,
        }
    }

    /// The same exchange, calling `hooks` in every auction of every instance.
    pub fn with_hooks(mut self, hooks: Arc<dyn AuctionHooks>) -> Self {
        self.hooks = Some(hooks);
        self
    }
}

/// One configured demand partner with everything resolved for the request path.
pub(crate) struct BidderRuntime {
    pub spec: BidderSpec,
    pub adapter: Arc<dyn Bidder>,
    pub client: BidderClient,
    /// What `client` was built from: a later generation with the same keeps the pool.
    pool_settings: PoolSettings,
    /// The kernel's limiter named after the instance and the partner: the same cap keeps the
    /// same bucket across generations.
    pub limiter: Option<bourse_services::DirectLimiter>,
    pub metrics: BidderMetrics,
}

/// One configuration generation of the exchange.
pub(crate) struct Exchange {
    pub config: ExchangeConfig,
    pub bidders: Vec<BidderRuntime>,
    pub rates: Rates,
    pub limits: Limits,
    pub signer: TokenSigner,
    pub shared: Arc<ExchangeState>,
    pub notice_base: String,
    /// Placement id → index in `config.placements`.
    pub placement_index: HashMap<String, usize>,
    /// Publisher id → index in `config.publishers`.
    pub publisher_index: HashMap<String, usize>,
    /// `bourse_adserve_billed_impressions_total` of each placement, in `config.placements` order.
    pub billed_impressions: Vec<prometheus::IntCounter>,
    /// The instance's name and config center, for its admin pages.
    pub admin: admin::Section,
    /// Placement ids as shared strings, in `config.placements` order, for floor keys.
    pub placement_keys: Vec<Arc<str>>,
    /// Every configured publisher, placement and bidder id as a shared string, so billing
    /// hands reach counting its ids without allocating.
    pub config_ids: HashMap<String, Arc<str>>,
    /// The auction's extension points, when the binary wires any in.
    pub hooks: Option<Arc<dyn AuctionHooks>>,
}

impl Exchange {
    /// Queues one of `bidder`'s notice URLs for delivery (never waits).
    pub(crate) fn fire_notice(&self, bidder: &str, kind: NoticeKind, url: String) {
        match self.shared.delivery.queue(bidder) {
            Some(queue) => queue.fire(kind, url),
            // A token signed for a partner that is no longer configured.
            None => self.shared.delivery.fire_unconfigured(bidder, kind, url),
        }
    }

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
    type Prepared = PreparedExchange;
    type State = ExchangeState;

    fn manifest(&self) -> Manifest {
        Manifest {
            kind: "exchange".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "OpenRTB 2.6 ad exchange: auctions, ad tags, notices, billing, reach"
                .to_owned(),
            mount: Mount::paths([
                "/openrtb2/",
                "/notice/",
                "/tag.js",
                "/ad",
                "/beacon/",
                "/click",
                "/reach",
                "/ledger",
            ]),
        }
    }

    fn prepare(&self, config: ExchangeConfig) -> Result<PreparedExchange, Vec<ConfigIssue>> {
        config.prepare(&self.registry)
    }

    async fn init(
        &self,
        ctx: &PluginCtx,
        prepared: &PreparedExchange,
    ) -> Result<ExchangeState, PluginError> {
        let config = &prepared.config;
        let metrics = ExchangeMetrics::register(&ctx.metrics)
            .map_err(|e| PluginError(format!("metrics: {e}")))?;
        let reach = ReachSink::new(&ctx.services.uniques)?;
        // Every exchange instance and node shares one namespace: an impression is billed once.
        let billing = ctx
            .services
            .once
            .namespace("billed")
            .map_err(|e| PluginError(format!("billing de-duplication: {e}")))?;
        let notices = ctx
            .services
            .once
            .namespace("notices")
            .map_err(|e| PluginError(format!("notice de-duplication: {e}")))?;
        let ledger = Ledger::start(config.tags.ledger_path.clone())
            .map_err(|e| PluginError(format!("tags.ledger_path: {e}")))?;
        let (floors, learner) = bourse_floors::Floors::new(config.floors.clone())
            .map_err(|e| PluginError(format!("floors: {e}")))?;
        let floors_exported = match floors.register(ctx.metrics.registry()) {
            Ok(()) => true,
            // Another exchange instance exports its learned floors under the same names.
            Err(prometheus::Error::AlreadyReg) => {
                tracing::warn!(
                    plugin = &*ctx.name,
                    "another exchange instance exports learned-floor metrics; this one's are not exported"
                );
                false
            }
            Err(e) => return Err(PluginError(format!("floors metrics: {e}"))),
        };
        let lifetime = ctx.lifetime.clone();
        tokio::spawn(learner.run(async move { lifetime.cancelled().await }));
        Ok(ExchangeState {
            floors,
            metrics: metrics.clone(),
            notices,
            random_secret: rand::random(),
            auction_seq: AtomicU64::new(0),
            process_tag: rand::random(),
            billing,
            reach,
            ledger,
            ledger_path: parking_lot::Mutex::new(config.tags.ledger_path.clone()),
            registry: floors_exported.then(|| ctx.metrics.registry().clone()),
            delivery: Delivery::new(
                Some(ctx.config_dir.join(&config.notices.spool_path)),
                DeliveryMetrics {
                    notices: metrics.notices.clone(),
                    refused: metrics.notices_refused.clone(),
                },
            ),
            partners: parking_lot::Mutex::new(HashMap::new()),
            limits: ctx.services.limits.clone(),
            instance: ctx.name.clone(),
            admin: admin::AdminState::start(ctx, self.registry.names().collect()),
        })
    }

    async fn start(
        &self,
        ctx: PluginCtx,
        state: Arc<ExchangeState>,
        prepared: PreparedExchange,
    ) -> Result<Arc<dyn Handler>, PluginError> {
        let ledger_path = &prepared.config.tags.ledger_path;
        if *ledger_path != *state.ledger_path.lock()
            && let Some(path) = ledger_path
        {
            // Refuse the config now, rather than find out after the swap.
            crate::ledger::open_append(path).map_err(|e| {
                PluginError(format!(
                    "tags.ledger_path: cannot open {}: {e}",
                    path.display()
                ))
            })?;
        }
        Ok(Arc::new(Exchange::build(
            state,
            prepared,
            admin::Section::of(&ctx),
            self.hooks.clone(),
            &ctx.config_dir,
        )?))
    }

    async fn stop(&self, state: Arc<ExchangeState>, deadline: tokio::time::Instant) {
        state.delivery.shutdown(deadline).await;
        if let Some(registry) = &state.registry {
            state.floors.unregister(registry);
        }
        state.ledger.flush().await;
    }
}

impl Exchange {
    fn build(
        shared: Arc<ExchangeState>,
        prepared: PreparedExchange,
        admin: admin::Section,
        hooks: Option<Arc<dyn AuctionHooks>>,
        config_dir: &std::path::Path,
    ) -> Result<Exchange, PluginError> {
        let PreparedExchange { config, adapters } = prepared;
        let links = shared.partners.lock().clone();
        let mut bidders = Vec::with_capacity(config.bidders.len());
        for (spec, adapter) in config.bidders.iter().zip(adapters) {
            let link = links.get(&spec.name);
            // A pool or limiter whose settings did not change is kept, with its connections
            // and its tokens.
            let pool_settings = PoolSettings::of(spec, config_dir)?;
            let client = match link {
                Some(link) if link.pool_settings == pool_settings => link.client.clone(),
                _ => BidderClient::trusting(spec, &pool_settings.roots),
            };
            let limiter = match spec.qps {
                0 => None,
                qps => {
                    let name = format!("{}.bidder.{}", shared.instance, spec.name);
                    let limited = bourse_services::Rate::per_second(qps)
                        .and_then(|rate| shared.limits.direct(&name, rate))
                        .map_err(|e| PluginError(format!("bidder {}: qps: {e}", spec.name)))?;
                    Some(limited)
                }
            };
            bidders.push(BidderRuntime {
                client,
                pool_settings,
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
        let notice_base = format!("{}/notice", config.public_url.trim_end_matches('/'));
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
            shared,
            admin,
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
            hooks,
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

/// OpenRTB no-bid reason 1 (list 5.24, "technical error"): what a caller of the auction is told
/// when the server is over its in-flight ceiling.
const NBR_TECHNICAL_ERROR: &str = "1";
/// No-bid reason for a request priced only in currencies we hold no rate for: exchange-specific
/// (OpenRTB leaves codes from 500 to exchanges), documented in the README.
pub(crate) const NBR_UNSUPPORTED_CURRENCY: &str = "501";

/// An ordinary no-bid (204) carrying its OpenRTB no-bid reason in `X-OpenRTB-NBR`.
pub(crate) fn no_bid_because(nbr: &'static str) -> Response {
    let mut response = no_content();
    response
        .headers_mut()
        .insert("x-openrtb-nbr", http::HeaderValue::from_static(nbr));
    response
}

impl Handler for Exchange {
    /// Over the ceiling, a supply partner gets an ordinary no-bid at once (no body is read, so
    /// no request id can be echoed: the reason travels in `X-OpenRTB-NBR`), never a 503 that
    /// its error budget would count; every other path gets the kernel's 503.
    fn overloaded(&self, req: &Request) -> Response {
        if req.uri().path() != "/openrtb2/auction" {
            return bourse_kernel::overloaded_response();
        }
        self.shared.metrics.auction_outcomes.inc("overloaded");
        no_bid_because(NBR_TECHNICAL_ERROR)
    }

    /// Each route's own future is boxed as it is, not wrapped in one more: a future is copied
    /// whole each time it moves, so a wrapper sized for the largest route (an auction) would
    /// cost every request, beacons and no-bids included, a few kilobytes of copying. Nothing
    /// runs before the future is polled, where the kernel catches a panic.
    fn handle<'a>(&'a self, req: Request) -> BoxFuture<'a, Response> {
        match req.uri().path() {
            "/openrtb2/auction" => Box::pin(self.auction(req)),
            "/tag.js" => Box::pin(async move { self.tag_js(&req) }),
            "/ad" => Box::pin(self.ad(req)),
            "/beacon/imp" => Box::pin(self.beacon(adserve::BeaconKind::Impression, req)),
            "/beacon/view" => Box::pin(self.beacon(adserve::BeaconKind::View, req)),
            "/click" => Box::pin(async move { self.click(&req) }),
            "/reach" => Box::pin(async move { self.reach_report(&req).await }),
            "/ledger" => Box::pin(async move { self.ledger_report(&req).await }),
            path => match path.strip_prefix("/notice/") {
                Some(kind) => {
                    let kind = kind.to_owned();
                    Box::pin(self.notice(kind, req))
                }
                None => Box::pin(async {
                    bourse_kernel::json_response(
                        http::StatusCode::NOT_FOUND,
                        &serde_json::json!({"error": "not_found"}),
                    )
                }),
            },
        }
    }

    fn activate(&self) {
        let shared = &self.shared;
        shared.admin.configure(&self.config.admin);
        // This generation's partners become the ones whose pools and limiters are kept.
        *shared.partners.lock() = self
            .bidders
            .iter()
            .map(|b| {
                let link = PartnerLink {
                    pool_settings: b.pool_settings.clone(),
                    client: b.client.clone(),
                };
                (b.spec.name.clone(), link)
            })
            .collect();
        let notices = &self.config.notices;
        let policies: Vec<(String, PartnerPolicy)> = self
            .bidders
            .iter()
            .map(|b| {
                let policy = PartnerPolicy {
                    attempts: notices.attempts,
                    backoff: Duration::from_millis(notices.backoff_ms),
                    timeout: Duration::from_millis(notices.timeout_ms),
                    queue: notices.queue,
                    concurrency: notices.concurrency,
                    allowed_hosts: b.spec.notice_allowed_hosts.clone(),
                    roots: b.pool_settings.roots.clone(),
                };
                (b.spec.name.clone(), policy)
            })
            .collect();
        shared.delivery.configure(&policies);
        if let Err(error) = shared.floors.reconfigure(self.config.floors.clone()) {
            // `prepare` validated the same config, so this is a bug, not an operator's mistake.
            tracing::error!(%error, "learned floors refused a config that was validated");
        }
        let ledger_path = self.config.tags.ledger_path.clone();
        let mut current = shared.ledger_path.lock();
        if *current != ledger_path {
            shared.ledger.reopen(ledger_path.clone());
            *current = ledger_path;
        }
        shared.metrics.set_configured_floors(
            self.config
                .placements
                .iter()
                .map(|p| (p.id.as_str(), p.floor)),
        );
        shared.metrics.set_base_currency(&self.config.currency);
    }

    fn admin(&self) -> Option<&dyn bourse_kernel::admin::AdminSection> {
        Some(self)
    }
}
