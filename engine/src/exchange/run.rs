//! One auction, from request bytes to response: parse, validate, fan out, clear, answer.

use super::prebid::{self, Ask};
use super::{BidderRuntime, Exchange, NBR_UNSUPPORTED_CURRENCY, cors, no_bid_because, no_content};
use crate::auction::{Candidate, ImpTerms, LossReason, Rules, check_bid, clear, imp_terms};
use crate::bidder::{BidderRequest, CallInfo, Outbound};
use crate::bidder_params::BidderParams;
use crate::client::CallError;
use crate::hooks::{AuctionHooks, BidHook, HookBid, RequestHook};
use crate::native::NativeImps;
use crate::notice::{
    AuctionRef, MacroValues, NoticeBid, NoticeKind, NoticeTokens, Target, expand, expand_owned,
};
use crate::openrtb::splice::{Changed, Received};
use crate::openrtb::upconvert::upconvert;
use crate::openrtb::{
    Bid, BidRequest, BidResponse, DEFAULT_CURRENCY, SeatBid, SupplyChain, SupplyChainNode, Text,
};
use crate::pricing::{bidder_price, gross_up_terms, net_of_fee, tell_floors};
use crate::validate::{Rejection, UNSUPPORTED_CURRENCY, validate};
use bourse_kernel::{Request, Response, TRACE_TARGET, json_response, read_body};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::StatusCode;
use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;
use tokio::time::Instant;
use tracing::field::Empty;

/// What we know about a candidate beyond the auction's view of it.
struct BidOrigin {
    /// The partner's currency.
    currency: String,
    /// Partner price units per auction-currency unit on the adjusted scale.
    to_bidder: f64,
}

/// One of our notice URLs: the base, the path, a token signed for `kind` and the partner's
/// own URL, then the macros the caller fills. Written into one buffer of the right size, the
/// token signed straight into it: `format!` went through the formatting machinery (about 1k
/// instructions per URL under callgrind, three URLs per winning bid).
fn notice_url(
    base: &str,
    path: &str,
    notices: &NoticeTokens,
    kind: NoticeKind,
    partner_url: Option<&str>,
    macros: &str,
) -> String {
    let mut url = String::with_capacity(
        base.len() + path.len() + notices.token_bytes(partner_url) + macros.len(),
    );
    url.push_str(base);
    url.push_str(path);
    notices.sign_into(kind, partner_url, &mut url);
    url.push_str(macros);
    url
}

/// Unix seconds now (0 if the clock is before 1970).
pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Exchange {
    fn outcome(&self, outcome: &'static str) {
        self.shared.metrics.auction_outcomes.inc(outcome);
    }

    fn refuse(&self, rejection: &Rejection) -> Response {
        self.outcome("invalid");
        tracing::debug!(field = %rejection.field, rule = rejection.rule, "bid request refused");
        json_response(StatusCode::BAD_REQUEST, rejection)
    }

    /// Handles `POST /openrtb2/auction`, and the CORS preflight of browsers calling it from a
    /// publisher's page (Prebid.js).
    pub(crate) async fn auction(&self, req: Request) -> Response {
        let origin = cors::origin(req.headers());
        if req.method() == http::Method::OPTIONS {
            return cors::preflight(origin.as_ref(), req.headers());
        }
        let mut response = self.answer_auction(req).await;
        cors::allow(origin, &mut response);
        response
    }

    async fn answer_auction(&self, req: Request) -> Response {
        let started = Instant::now();
        if req.method() != http::Method::POST {
            self.outcome("bad_method");
            let mut response = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &serde_json::json!({"error": "method_not_allowed", "message": "use POST"}),
            );
            response.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("POST, OPTIONS"),
            );
            return response;
        }
        if !self.authorized(req.headers()) {
            self.outcome("unauthorized");
            let mut response = json_response(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({"error": "unauthorized", "message": "send Authorization: Bearer <your token>"}),
            );
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
        let (mut parts, body) = req.into_parts();
        prebid::gzip_from_query(&parts.uri, &mut parts.headers);
        let bytes = match read_body(&parts.headers, body, self.config.max_body_bytes).await {
            Ok(bytes) => bytes,
            Err(err) => {
                self.outcome(err.code());
                return json_response(
                    err.status(),
                    &serde_json::json!({"error": err.code(), "message": err.to_string()}),
                );
            }
        };
        // On the heap: a request is kilobytes, and the future holding it is moved as it is
        // polled. The text it was read from is kept: partner bodies are spliced from it.
        let (read, text) = crate::openrtb::from_json_text_boxed(&bytes);
        let mut request: Box<BidRequest> = match read {
            Ok(request) => request,
            Err(_) => return self.refuse(&Rejection::from_parse_error(&bytes)),
        };
        let response = match self.run_observed(&mut request, text, started, None).await {
            Ok(Some(response)) => {
                self.outcome("bid");
                let body = crate::openrtb::to_json(&response);
                let mut http = Response::new(bourse_kernel::full(body));
                http.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                http
            }
            Ok(None) => {
                self.outcome("no_bid");
                if prebid::is_prebid(&request) {
                    // Prebid.js reads every answer as JSON: a no-bid is an answer without bids.
                    let empty = BidResponse {
                        id: request.id.clone(),
                        ..BidResponse::default()
                    };
                    json_response(StatusCode::OK, &empty)
                } else {
                    no_content()
                }
            }
            Err(rejection) if rejection.rule == UNSUPPORTED_CURRENCY => {
                // Well formed but unpriceable here: an ordinary no-bid with its reason.
                self.outcome("unsupported_currency");
                tracing::debug!(field = %rejection.field, "no rate for the request's currency");
                no_bid_because(NBR_UNSUPPORTED_CURRENCY)
            }
            Err(rejection) => return self.refuse(&rejection),
        };
        self.shared
            .metrics
            .auction_seconds
            .observe(started.elapsed().as_secs_f64());
        response
    }

    /// Whether the caller is a configured supply partner (or none are configured).
    fn authorized(&self, headers: &http::HeaderMap) -> bool {
        if self.config.supply.is_empty() {
            return true;
        }
        let presented = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Compare every token in full so timing does not tell how much of one matched.
        self.config.supply.iter().fold(false, |found, partner| {
            found | bool::from(partner.token.as_bytes().ct_eq(presented.as_bytes()))
        })
    }

    /// The auction currency: the first of the request's currencies we can convert, else ours.
    fn auction_currency(&self, request: &BidRequest) -> Result<String, Rejection> {
        if request.cur.is_empty() {
            return Ok(self.config.currency.clone());
        }
        request
            .cur
            .iter()
            .find(|c| self.rates.knows(c))
            .map(|c| c.to_string())
            .ok_or_else(|| {
                Rejection::new(
                    "cur",
                    UNSUPPORTED_CURRENCY,
                    "none of the request's currencies has a rate at this exchange",
                )
            })
    }

    /// Turns the request into what partners see, in place (no copy): `tmax` becomes their
    /// budget, and with `schain_asi` set we add a transaction id and our supply-chain node: after
    /// the seller's nodes (2.6, or 2.5's moved by `upconvert`), `complete` as the seller sent it;
    /// with no upstream chain, ours alone, marked incomplete. Nothing changed here matters to
    /// the auction's own rules.
    fn prepare_outbound(&self, request: &mut BidRequest, budget_ms: u64, changed: &mut Changed) {
        request.tmax = Some(budget_ms as i64);
        changed.mark("tmax");
        let Some(asi) = &self.config.schain_asi else {
            return;
        };
        changed.mark("source");
        let sid = request
            .publisher()
            .and_then(|p| p.id.clone())
            .unwrap_or_else(|| "unknown".into());
        let rid = request.id.clone();
        let source = request.source.get_or_insert_with(Default::default);
        if source.tid.is_none() {
            source.tid = Some(rid.clone());
        }
        let schain = source.schain.get_or_insert_with(|| SupplyChain {
            complete: Some(0),
            ver: Some("1.0".into()),
            ..SupplyChain::default()
        });
        schain.nodes.push(SupplyChainNode {
            asi: Some(asi.as_str().into()),
            sid: Some(sid),
            rid: Some(rid),
            hp: Some(1),
            ..SupplyChainNode::default()
        });
    }

    /// The partners to ask: enabled, buying a media type the request offers, under their QPS
    /// cap, and, when the request names some of them in `imp.ext.prebid.bidder` (by name or
    /// alias, as a Prebid.js page does), only those it names, as Prebid Server asks only the
    /// bidders a request names. Params for bidders we do not have (a supply partner's own
    /// Prebid setup) leave the request open to every partner.
    fn eligible(&self, request: &BidRequest, params: Option<&BidderParams>) -> Vec<usize> {
        let media = request.media_types();
        let params = params.filter(|p| {
            self.bidders
                .iter()
                .any(|b| p.code_for(&b.spec.name).is_some())
        });
        self.bidders
            .iter()
            .enumerate()
            .filter(|(_, b)| b.spec.enabled && b.spec.media_types().intersects(media))
            .filter(|(_, b)| params.is_none_or(|p| p.code_for(&b.spec.name).is_some()))
            .filter(|(_, b)| match &b.limiter {
                Some(limiter) if limiter.check().is_err() => {
                    b.metrics.throttled.inc();
                    false
                }
                _ => true,
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Runs the auction for `request`; `received` is the JSON text it was read from, when it
    /// came as one, so that partner bodies are spliced from it. Also reports each impression's
    /// two highest valid bids (auction currency, net of our fee) into `landscape` for the floor
    /// learner.
    pub(crate) async fn run_observed(
        &self,
        request: &mut BidRequest,
        received: Option<&str>,
        started: Instant,
        landscape: Option<&mut Vec<[Option<f64>; 2]>>,
    ) -> Result<Option<BidResponse>, Rejection> {
        // For OTLP export only: with export off no layer wants TRACE_TARGET, so this is a
        // disabled span and none of its fields is evaluated.
        let span = tracing::info_span!(
            target: TRACE_TARGET,
            "auction",
            otel.kind = "server",
            request_id = %request.id,
            imps = request.imp.len() as i64,
            bidders = Empty,
            outcome = Empty,
            winning_price = Empty,
        );
        let result = self
            .clear_auction(request, received, started, landscape, &span)
            .await;
        if !span.is_disabled() {
            let outcome = match &result {
                Ok(Some(_)) => "bid",
                Ok(None) => "no_bid",
                Err(_) => "invalid",
            };
            span.record("outcome", outcome);
        }
        result
    }

    async fn clear_auction(
        &self,
        request: &mut BidRequest,
        received: Option<&str>,
        started: Instant,
        landscape: Option<&mut Vec<[Option<f64>; 2]>>,
        span: &tracing::Span,
    ) -> Result<Option<BidResponse>, Rejection> {
        // Every change to the request from here on is noted, for the partner bodies' splice.
        let mut changed = upconvert(request)?;
        if crate::signals::drop_malformed(request, &self.shared.metrics.ignored_us_privacy) {
            changed.mark("regs");
        }
        validate(request, &self.limits)?;
        // Read once here; every native bid is checked against it.
        let natives = NativeImps::parse(request)?;
        let mut prebid = Ask::of(request)?;
        let currency = self.auction_currency(request)?;
        let min_floor = self
            .rates
            .convert(self.config.min_floor, &self.config.currency, &currency)
            .unwrap_or(0.0);
        // Sellers' floors are net (what they receive); the auction enforces, and partners are
        // told, the floors grossed up by our fee, in the auction currency.
        let fee = self.config.fee;
        let mut terms = request
            .imp
            .iter()
            .enumerate()
            .map(|(i, imp)| -> Result<ImpTerms, Rejection> {
                imp_terms(imp, min_floor, |amount, from| {
                    self.rates.convert(amount, from, &currency)
                })
                .map_err(|e| {
                    Rejection::new(format!("imp[{i}].bidfloorcur"), UNSUPPORTED_CURRENCY, e)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tmax = request
            .tmax
            .map_or(self.config.default_tmax_ms, |t| t as u64);
        let budget = tmax.saturating_sub(self.config.budget_ms);
        let params = BidderParams::of(request);
        let eligible = self.eligible(request, params.as_ref());
        if eligible.is_empty() || budget == 0 {
            return Ok(None);
        }
        if let Some(hooks) = self.active_hooks()
            && !self.request_hooks(hooks, request, &mut terms, &mut changed)
        {
            return Ok(None);
        }
        for terms in &mut terms {
            gross_up_terms(terms, fee);
        }

        // Only a request some partner will see has its floors restated for partners.
        for (imp, terms) in request.imp.iter_mut().zip(&terms) {
            if tell_floors(imp, terms, &currency) {
                changed.mark("imp");
            }
        }
        self.prepare_outbound(request, budget, &mut changed);
        let request = &*request;
        // Found only now that some partner will be asked, and not when every member is to be
        // written from the model anyway.
        let received = received
            .filter(|_| !changed.is_everything())
            .and_then(|text| Received::read(text, request));
        let splice = received.as_ref().map(|received| (received, changed));
        let (calls, params) = self.build_calls(request, splice, &eligible, budget, params);
        if let Some(prebid) = &mut prebid {
            prebid.set_params(params);
        }
        if calls.is_empty() {
            return Ok(None);
        }
        if !span.is_disabled() {
            span.record("bidders", calls.len() as i64);
        }
        let waiting_since = Instant::now();
        let mut calls = calls.into_iter().map(|(bidder, call, timeout_ms)| {
            let runtime = &self.bidders[bidder];
            let deadline = started + Duration::from_millis(timeout_ms);
            // Lives until the call's bids are collected, so its duration is the call's.
            let call_span = tracing::info_span!(
                target: TRACE_TARGET,
                parent: span,
                "bidder_call",
                otel.kind = "client",
                bidder = %runtime.spec.name,
                outcome = Empty,
                http.response.status_code = Empty,
                otel.status_code = Empty,
            );
            async move {
                runtime.metrics.requests.inc();
                let sent = Instant::now();
                let body = runtime.client.encode_body(&call.body);
                let result = runtime.client.call(&call, body, deadline).await;
                if let Ok(response) = &result {
                    runtime
                        .metrics
                        .response_seconds
                        .observe(sent.elapsed().as_secs_f64());
                    if !call_span.is_disabled() {
                        call_span.record(
                            "http.response.status_code",
                            i64::from(response.status.as_u16()),
                        );
                    }
                }
                (bidder, call, result, call_span, sent.elapsed())
            }
        });
        let mut candidates = Vec::new();
        let mut origins = Vec::new();
        let mut collect = |(bidder, call, result, call_span, took): (
            usize,
            BidderRequest,
            _,
            tracing::Span,
            Duration,
        )| {
            if let Some(prebid) = &mut prebid {
                prebid.responded(&self.bidders[bidder].spec.name, took.as_millis() as u64);
            }
            let outcome = self.collect_bids(
                request,
                &currency,
                bidder,
                &call,
                result,
                &mut candidates,
                &mut origins,
            );
            if !call_span.is_disabled() {
                call_span.record("outcome", outcome);
                if matches!(outcome, "timeout" | "error") {
                    call_span.record("otel.status_code", "error");
                }
            }
        };
        if calls.len() == 1 {
            // One partner: its call is awaited on the auction's own task, without a
            // FuturesUnordered's task to allocate, move the call into and relay wake-ups through.
            collect(calls.next().expect("one call").await);
        } else {
            let mut pending: FuturesUnordered<_> = calls.collect();
            while let Some(answered) = pending.next().await {
                collect(answered);
            }
        }
        let waited = waiting_since.elapsed();

        // Refused bids lose with their own reason; the rest go to clearing.
        let mut losers: Vec<(usize, LossReason)> = Vec::new();
        let mut valid: Vec<bool> = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let checked = match check_bid(request, &terms, c) {
                    Ok(()) => natives
                        .check_bid(c)
                        .map_err(|refusal| (refusal.loss_reason(), refusal.label())),
                    Err(reason) => Err((reason, reason.label())),
                };
                match checked {
                    Ok(()) => true,
                    Err((reason, label)) => {
                        self.bidders[c.bidder].metrics.rejected(label);
                        losers.push((i, reason));
                        false
                    }
                }
            })
            .collect();
        if let Some(hooks) = self.active_hooks() {
            self.bid_hooks(
                hooks,
                request,
                &terms,
                &mut candidates,
                &mut valid,
                &mut losers,
            );
        }
        if let Some(landscape) = landscape {
            landscape.clear();
            landscape.resize(request.imp.len(), [None, None]);
            // Net of our fee: floors are learned as what the seller receives, like every floor.
            for (c, _) in candidates.iter().zip(&valid).filter(|(_, ok)| **ok) {
                let price = net_of_fee(c.price, fee);
                let top = &mut landscape[c.imp];
                if top[0].is_none_or(|first| price > first) {
                    top[1] = top[0];
                    top[0] = Some(price);
                } else if top[1].is_none_or(|second| price > second) {
                    top[1] = Some(price);
                }
            }
        }
        let rules = Rules {
            auction_type: request.auction_type(),
            increment: self.config.increment,
        };
        let outcome = clear(&terms, &candidates, &valid, rules);
        if !span.is_disabled()
            && let Some(top) = outcome.winners.iter().map(|w| w.clearing).reduce(f64::max)
        {
            span.record("winning_price", top);
        }
        losers.extend(outcome.losers.iter().copied());
        let response = self.respond(
            request,
            &currency,
            &terms,
            &mut candidates,
            &origins,
            &outcome.winners,
            &losers,
            prebid.as_ref(),
        );
        self.shared
            .metrics
            .overhead_seconds
            .observe(started.elapsed().saturating_sub(waited).as_secs_f64());
        Ok(response)
    }

    /// The auction's hooks, when some plugin is there to answer them.
    fn active_hooks(&self) -> Option<&dyn AuctionHooks> {
        self.hooks.as_deref().filter(|hooks| hooks.active())
    }

    /// The request filter and the floor rule: `false` when a filter dropped the request.
    /// `terms` are still net of our fee here, as every floor a rule sees and sets.
    fn request_hooks(
        &self,
        hooks: &dyn AuctionHooks,
        request: &mut BidRequest,
        terms: &mut [ImpTerms],
        changed: &mut Changed,
    ) -> bool {
        let decisions = &self.shared.metrics.hook_decisions;
        match hooks.filter_request(request) {
            RequestHook::Drop(reason) => {
                decisions.inc("request_dropped");
                tracing::debug!(request = %request.id, %reason, "a request filter dropped the auction");
                return false;
            }
            RequestHook::Keep(pairs) if !pairs.is_empty() => {
                decisions.inc("request_enriched");
                crate::hooks::enrich(request, &pairs);
                *changed = Changed::everything();
            }
            RequestHook::Keep(_) => {}
        }
        let mut floors: Vec<f64> = terms.iter().map(|t| t.floor).collect();
        hooks.floors(request, &mut floors);
        for (terms, floor) in terms.iter_mut().zip(floors) {
            // A rule raises a floor, never lowers the one the seller (or the exchange) set.
            if floor.is_finite() && floor > terms.floor {
                decisions.inc("floor_raised");
                terms.floor = floor;
            }
        }
        true
    }

    /// The bid filter over the bids that passed the exchange's checks: a dropped bid loses with
    /// code 202, an adjusted one is checked again at its new price.
    fn bid_hooks(
        &self,
        hooks: &dyn AuctionHooks,
        request: &BidRequest,
        terms: &[ImpTerms],
        candidates: &mut [Candidate],
        valid: &mut [bool],
        losers: &mut Vec<(usize, LossReason)>,
    ) {
        let offered: Vec<usize> = (0..candidates.len()).filter(|&i| valid[i]).collect();
        if offered.is_empty() {
            return;
        }
        let bids: Vec<HookBid<'_>> = offered
            .iter()
            .map(|&i| HookBid {
                bidder: &self.bidders[candidates[i].bidder].spec.name,
                candidate: &candidates[i],
            })
            .collect();
        let decisions = hooks.filter_bids(request, &bids);
        drop(bids);
        let counters = &self.shared.metrics.hook_decisions;
        for (&i, decision) in offered.iter().zip(decisions) {
            let refused = match decision {
                BidHook::Keep => continue,
                BidHook::Drop(reason) => {
                    counters.inc("bid_dropped");
                    tracing::debug!(request = %request.id, bid = %candidates[i].bid.id, %reason, "a bid filter dropped a bid");
                    LossReason::DisapprovedByExchange
                }
                BidHook::Adjust(price) => {
                    counters.inc("bid_adjusted");
                    candidates[i].price = price;
                    match check_bid(request, terms, &candidates[i]) {
                        Ok(()) => continue,
                        Err(reason) => reason,
                    }
                }
            };
            self.bidders[candidates[i].bidder]
                .metrics
                .rejected(refused.label());
            valid[i] = false;
            losers.push((i, refused));
        }
    }

    /// Builds every partner's HTTP requests (each body once) before any I/O starts, and hands
    /// back the request's split Prebid bidder params.
    fn build_calls(
        &self,
        outbound_request: &BidRequest,
        splice: Option<(&Received<'_>, Changed)>,
        eligible: &[usize],
        budget: u64,
        params: Option<BidderParams>,
    ) -> (Vec<(usize, BidderRequest, u64)>, Option<BidderParams>) {
        let mut outbound = Outbound::with_bidder_params(outbound_request, params);
        if let Some((received, changed)) = splice {
            outbound = outbound.spliced_from(received, changed);
        }
        let mut calls = Vec::with_capacity(eligible.len());
        for &i in eligible {
            let runtime = &self.bidders[i];
            let timeout_ms = budget.min(runtime.spec.timeout_ms);
            let made = runtime.adapter.make_requests(
                &outbound,
                &CallInfo {
                    spec: &runtime.spec,
                    tmax_ms: timeout_ms,
                },
            );
            for err in &made.errors {
                runtime.metrics.error(err.kind());
                tracing::debug!(bidder = %runtime.spec.name, error = %err, "adapter could not offer part of the auction");
            }
            calls.extend(made.requests.into_iter().map(|r| (i, r, timeout_ms)));
        }
        (calls, outbound.into_bidder_params())
    }

    /// Turns one call's answer into candidates; returns the call's outcome: `bid`, `no_bid`,
    /// `timeout` or `error`.
    #[allow(clippy::too_many_arguments)]
    fn collect_bids(
        &self,
        request: &BidRequest,
        currency: &str,
        bidder: usize,
        call: &BidderRequest,
        result: Result<crate::bidder::BidderResponse, CallError>,
        candidates: &mut Vec<Candidate>,
        origins: &mut Vec<BidOrigin>,
    ) -> &'static str {
        let runtime: &BidderRuntime = &self.bidders[bidder];
        let response = match result {
            Ok(response) => response,
            Err(CallError::Timeout) => {
                runtime.metrics.timeouts.inc();
                return "timeout";
            }
            Err(err) => {
                tracing::debug!(bidder = %runtime.spec.name, error = %err, "bidder call failed");
                runtime.metrics.error(err.kind());
                return "error";
            }
        };
        let bids = match runtime.adapter.make_bids(request, call, &response) {
            Ok(Some(bids)) => bids,
            Ok(None) => {
                runtime.metrics.nobids.inc();
                return "no_bid";
            }
            Err(err) => {
                tracing::debug!(bidder = %runtime.spec.name, error = %err, "bidder response refused");
                runtime.metrics.error(err.kind());
                return "error";
            }
        };
        for err in &bids.errors {
            runtime.metrics.error(err.kind());
        }
        if bids.bids.is_empty() {
            runtime.metrics.nobids.inc();
            return "no_bid";
        }
        let before = candidates.len();
        let bid_currency = bids.currency.as_deref().unwrap_or(DEFAULT_CURRENCY);
        let fx = self.rates.convert(1.0, bid_currency, currency);
        for typed in bids.bids {
            runtime.metrics.bids.inc();
            let offered = call.imp_ids.contains(&typed.bid.impid);
            let Some(imp) = request
                .imp
                .iter()
                .position(|imp| imp.id == typed.bid.impid)
                .filter(|_| offered)
            else {
                runtime
                    .metrics
                    .rejected(LossReason::InvalidBidResponse.label());
                continue;
            };
            let Some(fx) = fx else {
                runtime.metrics.rejected("unknown_currency");
                continue;
            };
            let price = typed.bid.price.unwrap_or(f64::NAN) * fx * runtime.spec.adjustment;
            candidates.push(Candidate {
                bidder,
                imp,
                seat: typed
                    .seat
                    .unwrap_or_else(|| runtime.spec.name.as_str().into()),
                media_type: typed.media_type,
                bid: typed.bid,
                price,
            });
            origins.push(BidOrigin {
                currency: bid_currency.to_owned(),
                to_bidder: 1.0 / (fx * runtime.spec.adjustment),
            });
        }
        // Bids were sent but none could enter the auction.
        if candidates.len() > before {
            runtime.metrics.bid_answers.inc();
            "bid"
        } else {
            "error"
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn respond(
        &self,
        request: &BidRequest,
        currency: &str,
        terms: &[ImpTerms],
        candidates: &mut [Candidate],
        origins: &[BidOrigin],
        winners: &[crate::auction::Winner],
        losers: &[(usize, LossReason)],
        prebid: Option<&Ask>,
    ) -> Option<BidResponse> {
        // Losers first: the winners' bids are then moved into the response rather than copied.
        if self.config.notices.losses {
            self.fire_losses(request, terms, candidates, origins, winners, losers);
        }
        let seq = self.shared.auction_seq.fetch_add(1, Ordering::Relaxed);
        let auction_ref = AuctionRef {
            node: self.shared.process_tag,
            seq,
        };
        let reference = auction_ref.to_hex();
        let fee = self.config.fee;
        let to_base = self
            .rates
            .convert(1.0, currency, &self.config.currency)
            .unwrap_or(1.0);
        let mut seatbids: Vec<SeatBid> = Vec::new();
        for (n, winner) in winners.iter().enumerate() {
            let c = &mut candidates[winner.candidate];
            let origin = &origins[winner.candidate];
            let runtime = &self.bidders[c.bidder];
            let mut bid: Bid = std::mem::take(&mut c.bid);
            let (adm, nurl, burl, lurl) = (
                bid.adm.take(),
                bid.nurl.take(),
                bid.burl.take(),
                bid.lurl.take(),
            );
            let bid_price = bid.price.unwrap_or_default();
            let bidder_price = bidder_price(winner.clearing, origin.to_bidder, bid_price);
            let values = MacroValues {
                auction_id: &request.id,
                bid_id: &bid.id,
                imp_id: &bid.impid,
                seat_id: &c.seat,
                ad_id: bid.adid.as_deref().unwrap_or(""),
                price: Some(bidder_price),
                currency: &origin.currency,
                market_bid_ratio: Some(bidder_price / bid_price),
                ..MacroValues::default()
            };
            let notice_bid = NoticeBid {
                auction: Cow::Borrowed(&request.id),
                reference: auction_ref,
                bid: Cow::Borrowed(&bid.id),
                imp: Cow::Borrowed(&bid.impid),
                seat: Cow::Borrowed(&c.seat),
                ad: Cow::Borrowed(bid.adid.as_deref().unwrap_or("")),
                bidder: Cow::Borrowed(&runtime.spec.name),
                price: bidder_price,
                bid_price,
                cur: Cow::Borrowed(&origin.currency),
                gross_up: origin.to_bidder / (1.0 - fee),
                exp: now_secs() + self.config.notice_ttl_secs,
            };
            let notices = self.signer.notices(&notice_bid);
            let base = &self.notice_base;
            let (adm, nurl) = match adm.filter(|adm| !adm.is_empty()) {
                Some(adm) => {
                    let adm = expand_owned(adm, &values, Target::Markup);
                    let win = notice_url(
                        base,
                        "/win?t=",
                        &notices,
                        NoticeKind::Win,
                        nurl.as_deref(),
                        "&p=${AUCTION_PRICE}",
                    );
                    (Some(adm), Some(win))
                }
                // Without markup the caller fetches it from the partner's nurl, so it goes out as is.
                None => (None, nurl.map(|nurl| expand(&nurl, &values, Target::Url))),
            };
            bid.adm = adm;
            bid.nurl = nurl;
            bid.burl = Some(notice_url(
                base,
                "/bill?t=",
                &notices,
                NoticeKind::Bill,
                burl.as_deref(),
                "&p=${AUCTION_PRICE}",
            ));
            bid.lurl = Some(notice_url(
                base,
                "/loss?t=",
                &notices,
                NoticeKind::Loss,
                lurl.as_deref(),
                "&r=${AUCTION_LOSS}&m=${AUCTION_MIN_TO_WIN}",
            ));
            bid.id = {
                let mut id = Text::with_capacity(reference.len() + 4);
                id.push_str(&reference);
                id.push('-');
                id.push_str(itoa::Buffer::new().format(n));
                id
            };
            bid.price = Some(net_of_fee(winner.clearing, fee));
            // A Prebid client finds the bid under the code it used for this partner.
            let prebid_seat =
                prebid.and_then(|p| p.decorate_bid(&mut bid, c.media_type, &runtime.spec.name));
            let seat = prebid_seat.as_deref().unwrap_or(c.seat.as_str());
            runtime.metrics.wins.inc();
            runtime.metrics.win_price.observe(winner.clearing * to_base);
            self.shared
                .metrics
                .cleared_value
                .inc_by(winner.clearing * to_base / 1000.0);
            match seatbids
                .iter_mut()
                .find(|s| s.seat.as_deref() == Some(seat))
            {
                Some(seatbid) => seatbid.bid.push(bid),
                None => seatbids.push(SeatBid {
                    bid: vec![bid],
                    seat: Some(seat.into()),
                    ..SeatBid::default()
                }),
            }
        }
        if seatbids.is_empty() {
            return None;
        }
        let mut response = BidResponse {
            id: request.id.clone(),
            seatbid: seatbids,
            bidid: Some(reference),
            cur: Some(currency.into()),
            ..BidResponse::default()
        };
        if let Some(prebid) = prebid {
            prebid.finish(&mut response);
        }
        Some(response)
    }

    /// Tells every partner that lost (or was refused) why, off the request path.
    fn fire_losses(
        &self,
        request: &BidRequest,
        terms: &[ImpTerms],
        candidates: &[Candidate],
        origins: &[BidOrigin],
        winners: &[crate::auction::Winner],
        losers: &[(usize, LossReason)],
    ) {
        for &(i, reason) in losers {
            let c = &candidates[i];
            let Some(lurl) = c.bid.lurl.as_deref() else {
                continue;
            };
            let origin = &origins[i];
            // What it would have taken: the winning price, or the floor when nobody won.
            let to_win = winners
                .iter()
                .find(|w| candidates[w.candidate].imp == c.imp)
                .map_or(terms[c.imp].floor, |w| w.clearing);
            let values = MacroValues {
                auction_id: &request.id,
                bid_id: &c.bid.id,
                imp_id: &c.bid.impid,
                seat_id: &c.seat,
                ad_id: c.bid.adid.as_deref().unwrap_or(""),
                currency: &origin.currency,
                loss: Some(reason.code()),
                min_to_win: Some(to_win * origin.to_bidder),
                ..MacroValues::default()
            };
            let bidder = &self.bidders[c.bidder].spec.name;
            self.fire_notice(bidder, NoticeKind::Loss, expand(lurl, &values, Target::Url));
        }
    }
}
