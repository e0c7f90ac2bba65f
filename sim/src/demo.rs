//! The demand partners `bourse demo` starts on loopback: different speeds, prices and tastes.

use crate::bidder::{Behaviour, Latency, PriceDistribution, SimBidderConfig, Tail};
use bourse_engine::openrtb::MediaType;

/// Four plausible partners, all bidding in USD: a fast display buyer, a premium one with a
/// deal (`premium-q4`) and a slow tail, a first-price shader, and a video and audio specialist.
/// Each reads EUR and GBP floors at the rates `bourse demo` configures the exchange with.
pub fn demo_bidders() -> Vec<SimBidderConfig> {
    let mut bidders = partners();
    for bidder in &mut bidders {
        bidder.rates = [("EUR".to_owned(), 1.08), ("GBP".to_owned(), 1.27)].into();
    }
    bidders
}

fn partners() -> Vec<SimBidderConfig> {
    let mut swift = SimBidderConfig::new("swift-display");
    swift.seed = 1;
    swift.latency = Latency::LogNormal {
        median_ms: 8.0,
        sigma: 0.4,
    };
    swift.bid_rate = 0.9;
    swift.price = PriceDistribution::LogNormal {
        median: 1.2,
        sigma: 0.5,
    };
    swift.media = vec![MediaType::Banner, MediaType::Native];
    swift.adomain = vec!["shoes.example".into()];
    swift.cat = vec!["IAB18".into()];

    let mut premium = SimBidderConfig::new("premium-brands");
    premium.seed = 2;
    premium.latency = Latency::LogNormal {
        median_ms: 25.0,
        sigma: 0.5,
    };
    premium.tail = Some(Tail {
        share: 0.02,
        ms: 120.0,
    });
    premium.bid_rate = 0.6;
    premium.price = PriceDistribution::Uniform { min: 1.5, max: 4.0 };
    premium.media = vec![MediaType::Banner, MediaType::Video];
    premium.deal_ids = vec!["premium-q4".into()];
    premium.adomain = vec!["cars.example".into()];
    premium.cat = vec!["IAB2".into()];

    let mut shader = SimBidderConfig::new("shade-trader");
    shader.seed = 3;
    shader.latency = Latency::Uniform {
        min_ms: 5.0,
        max_ms: 30.0,
    };
    shader.bid_rate = 0.8;
    shader.price = PriceDistribution::Exponential { mean: 1.5 };
    shader.behaviour = Behaviour::Shading { factor: 0.75 };
    shader.media = vec![MediaType::Banner];
    shader.adomain = vec!["travel.example".into()];
    shader.cat = vec!["IAB20".into()];

    let mut video = SimBidderConfig::new("motion-video");
    video.seed = 4;
    video.latency = Latency::LogNormal {
        median_ms: 40.0,
        sigma: 0.3,
    };
    video.bid_rate = 0.7;
    video.price = PriceDistribution::LogNormal {
        median: 6.0,
        sigma: 0.4,
    };
    video.media = vec![MediaType::Video, MediaType::Audio];
    video.adomain = vec!["streaming.example".into()];
    video.cat = vec!["IAB1".into()];

    vec![swift, premium, shader, video]
}
