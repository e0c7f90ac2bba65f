//! The exchange's auction hooks answered by the signed WebAssembly plugins of the running `wasm`
//! instance: OpenRTB objects turned into the plugins' typed views, their answers into the
//! engine's decisions. A failing call (trap, time or fuel out, bad output) is skipped for that
//! auction, counted by the wasm host and, repeated, quarantines the plugin.

use std::sync::Arc;

use bourse_engine::openrtb::{BidRequest, Imp};
use bourse_engine::{AuctionHooks, BidHook, HookBid, RequestHook};
use bourse_wasm::{
    BidDecision, BidView, FloorContext, Hook, HooksSlot, ImpView, RequestView, Size, Verdict,
};

/// [`AuctionHooks`] over the plugins in a [`HooksSlot`].
pub struct WasmAuctionHooks {
    slot: HooksSlot,
}

impl WasmAuctionHooks {
    pub fn new(slot: HooksSlot) -> Self {
        WasmAuctionHooks { slot }
    }
}

impl AuctionHooks for WasmAuctionHooks {
    fn active(&self) -> bool {
        self.slot
            .load()
            .as_ref()
            .is_some_and(|registry| registry.has_hooks())
    }

    fn filter_request(&self, request: &BidRequest) -> RequestHook {
        let Some(registry) = self.slot.load_full() else {
            return RequestHook::Keep(Vec::new());
        };
        let filters = registry.hooks_for(Hook::RequestFilter);
        if filters.is_empty() {
            return RequestHook::Keep(Vec::new());
        }
        let view = request_view(request);
        let mut enrich = Vec::new();
        for filter in &filters {
            match filter.filter_request(&view) {
                Ok(decision) => match decision.verdict {
                    Verdict::Drop(reason) => {
                        return RequestHook::Drop(format!("{}: {reason}", filter.name()));
                    }
                    Verdict::Keep => {
                        enrich.extend(decision.enrich.into_iter().map(|p| (p.key, p.value)));
                    }
                },
                Err(e) => tracing::debug!(error = %e, "request filter skipped"),
            }
        }
        RequestHook::Keep(enrich)
    }

    fn floors(&self, request: &BidRequest, floors: &mut [f64]) {
        let Some(registry) = self.slot.load_full() else {
            return;
        };
        let rules = registry.hooks_for(Hook::FloorRule);
        if rules.is_empty() {
            return;
        }
        let publisher_id = publisher_id(request).unwrap_or_default().to_owned();
        let country = country(request);
        let device_type = device_type(request);
        let hour = utc_hour();
        for (imp, floor) in request.imp.iter().zip(floors.iter_mut()) {
            let mut context = FloorContext {
                placement_id: imp.tagid.as_deref().unwrap_or_default().to_owned(),
                publisher_id: publisher_id.clone(),
                country: country.clone(),
                hour,
                device_type,
                current_floor: *floor,
            };
            // Rules apply in name order, each seeing the floor the one before it set.
            for rule in &rules {
                match rule.floor(&context) {
                    Ok(set) => context.current_floor = set,
                    Err(e) => tracing::debug!(error = %e, "floor rule skipped"),
                }
            }
            *floor = context.current_floor;
        }
    }

    fn filter_bids(&self, request: &BidRequest, bids: &[HookBid<'_>]) -> Vec<BidHook> {
        let mut decided = vec![BidHook::Keep; bids.len()];
        let Some(registry) = self.slot.load_full() else {
            return decided;
        };
        let filters = registry.hooks_for(Hook::BidFilter);
        if filters.is_empty() {
            return decided;
        }
        let view = request_view(request);
        let mut views: Vec<BidView> = bids.iter().map(bid_view).collect();
        for filter in &filters {
            let decisions = match filter.filter_bids(&view, &views) {
                Ok(decisions) => decisions,
                Err(e) => {
                    tracing::debug!(error = %e, "bid filter skipped");
                    continue;
                }
            };
            for ((slot, view), decision) in decided.iter_mut().zip(&mut views).zip(decisions) {
                match decision {
                    // A bid one filter dropped stays dropped, whatever the next one says.
                    _ if matches!(slot, BidHook::Drop(_)) => {}
                    BidDecision::Keep => {}
                    BidDecision::Drop(reason) => {
                        *slot = BidHook::Drop(format!("{}: {reason}", filter.name()));
                    }
                    BidDecision::Adjust(price) => {
                        view.price = price;
                        *slot = BidHook::Adjust(price);
                    }
                }
            }
        }
        decided
    }
}

/// The hooks' view of a bid.
fn bid_view(bid: &HookBid<'_>) -> BidView {
    let b = &bid.candidate.bid;
    BidView {
        imp_id: b.impid.to_string(),
        bidder: bid.bidder.to_owned(),
        price: bid.candidate.price,
        adomain: b.adomain.iter().map(ToString::to_string).collect(),
        cat: b.cat.iter().map(ToString::to_string).collect(),
        crid: b.crid.as_deref().map(str::to_owned),
        w: b.w.unwrap_or(0),
        h: b.h.unwrap_or(0),
        deal_id: b.dealid.as_deref().map(str::to_owned),
    }
}

/// The hooks' view of a request: the fields they decide on, never the user's ids.
fn request_view(request: &BidRequest) -> RequestView {
    RequestView {
        id: request.id.to_string(),
        site_domain: request
            .site
            .as_ref()
            .and_then(|s| s.domain.as_deref().map(str::to_owned)),
        app_domain: request.app.as_ref().and_then(|a| {
            a.bundle
                .as_deref()
                .or(a.domain.as_deref())
                .map(str::to_owned)
        }),
        publisher_id: publisher_id(request).map(str::to_owned),
        country: country(request),
        device_type: device_type(request),
        user_id_present: request
            .user
            .as_ref()
            .is_some_and(|u| u.id.is_some() || u.buyeruid.is_some()),
        imps: request.imp.iter().map(imp_view).collect(),
    }
}

fn imp_view(imp: &Imp) -> ImpView {
    let mut sizes = Vec::new();
    if let Some(banner) = &imp.banner {
        sizes.extend(
            banner
                .format
                .iter()
                .filter_map(|f| Some(Size { w: f.w?, h: f.h? })),
        );
        if let (Some(w), Some(h)) = (banner.w, banner.h) {
            sizes.push(Size { w, h });
        }
    }
    if let Some(video) = &imp.video
        && let (Some(w), Some(h)) = (video.w, video.h)
    {
        sizes.push(Size { w, h });
    }
    ImpView {
        id: imp.id.to_string(),
        sizes,
        floor: imp.bidfloor.unwrap_or(0.0),
        placement_id: imp.tagid.as_deref().map(str::to_owned),
    }
}

fn publisher_id(request: &BidRequest) -> Option<&str> {
    let from_site = request.site.as_ref().and_then(|s| s.publisher.as_ref());
    let from_app = request.app.as_ref().and_then(|a| a.publisher.as_ref());
    from_site.or(from_app).and_then(|p| p.id.as_deref())
}

fn country(request: &BidRequest) -> Option<String> {
    request
        .device
        .as_ref()
        .and_then(|d| d.geo.as_ref())
        .and_then(|g| g.country.as_deref().map(str::to_owned))
}

/// OpenRTB list 5.21 fits a byte; anything else is not a device type.
fn device_type(request: &BidRequest) -> Option<u8> {
    request
        .device
        .as_ref()
        .and_then(|d| d.devicetype)
        .and_then(|t| u8::try_from(t).ok())
}

fn utc_hour() -> u8 {
    ((bourse_kernel::unix_now_ms() / 3_600_000) % 24) as u8
}

/// The slot the `wasm` kind fills and the exchange's hooks read.
pub fn slot() -> HooksSlot {
    Arc::new(arc_swap::ArcSwapOption::empty())
}
