//! Realistic, seeded bid requests: a population of users, sites and apps from which a pool of
//! pre-serialized OpenRTB 2.6 requests is drawn, each sent with a fresh id spliced in.

use crate::bidder::PriceDistribution;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// What the generated requests look like: shares, distributions and population sizes.
///
/// Every field has a default, so a scenario only states what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mix {
    /// Share of requests coming from apps rather than sites, 0..1.
    pub app_share: f64,
    /// Most impressions in one request; each request draws 1..=`max_imps`.
    pub max_imps: u32,
    /// Relative weight of banner impressions.
    pub banner: f64,
    /// Relative weight of video impressions (640x360, mp4/webm, 5–30 s).
    pub video: f64,
    /// Relative weight of native impressions (a Native 1.2 request).
    pub native: f64,
    /// Relative weight of audio impressions.
    pub audio: f64,
    /// Share of impressions that carry a floor, 0..1.
    pub floor_share: f64,
    /// Distribution of floors, CPM.
    pub floor: PriceDistribution,
    /// Share of floors stated in EUR rather than USD, 0..1.
    pub eur_share: f64,
    /// Share of impressions offering a private-marketplace deal, 0..1.
    pub deal_share: f64,
    /// Deal ids offered (one drawn per deal impression); simulated bidders with matching
    /// `deal_ids` bid on them.
    pub deal_ids: Vec<String>,
    /// Distribution of deal floors, CPM.
    pub deal_floor: PriceDistribution,
    /// `tmax` of every request, milliseconds.
    pub tmax_ms: u32,
    /// Share of requests asking for a second-price auction (`at = 2`); the rest ask first price.
    pub second_price_share: f64,
    /// Share of requests under GDPR (`regs.gdpr = 1`).
    pub gdpr_share: f64,
    /// Share of requests with a US Privacy string.
    pub us_privacy_share: f64,
    /// Share of requests with a GPP string.
    pub gpp_share: f64,
    /// Share of users who carry a TCF consent string.
    pub consent_share: f64,
    /// Number of distinct users.
    pub users: usize,
    /// Number of distinct sites.
    pub sites: usize,
    /// Number of distinct apps.
    pub apps: usize,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            app_share: 0.3,
            max_imps: 3,
            banner: 0.8,
            video: 0.1,
            native: 0.1,
            audio: 0.0,
            floor_share: 0.7,
            floor: PriceDistribution::LogNormal {
                median: 0.5,
                sigma: 0.6,
            },
            eur_share: 0.0,
            deal_share: 0.0,
            deal_ids: Vec::new(),
            deal_floor: PriceDistribution::Fixed { value: 2.0 },
            tmax_ms: 300,
            second_price_share: 0.0,
            gdpr_share: 0.3,
            us_privacy_share: 0.2,
            gpp_share: 0.1,
            consent_share: 0.6,
            users: 10_000,
            sites: 300,
            apps: 100,
        }
    }
}

impl Mix {
    /// Checks shares, weights and sizes; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let shares = [
            ("app_share", self.app_share),
            ("floor_share", self.floor_share),
            ("eur_share", self.eur_share),
            ("deal_share", self.deal_share),
            ("second_price_share", self.second_price_share),
            ("gdpr_share", self.gdpr_share),
            ("us_privacy_share", self.us_privacy_share),
            ("gpp_share", self.gpp_share),
            ("consent_share", self.consent_share),
        ];
        for (name, share) in shares {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("mix.{name} must be between 0 and 1, got {share}"));
            }
        }
        let weights = [self.banner, self.video, self.native, self.audio];
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) || weights.iter().sum::<f64>() <= 0.0
        {
            return Err("mix.banner/video/native/audio must be >= 0 and not all 0".into());
        }
        if self.max_imps == 0 {
            return Err("mix.max_imps must be at least 1".into());
        }
        if self.tmax_ms == 0 {
            return Err("mix.tmax_ms must be at least 1".into());
        }
        if self.deal_share > 0.0 && self.deal_ids.is_empty() {
            return Err("mix.deal_share > 0 needs mix.deal_ids".into());
        }
        if self.users == 0 || self.sites == 0 || self.apps == 0 {
            return Err("mix.users, mix.sites and mix.apps must be at least 1".into());
        }
        Ok(())
    }
}

const USER_AGENTS: [(&str, &str, u8); 6] = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        "Windows",
        2,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15",
        "macOS",
        2,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        "iOS",
        4,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
        "Android",
        4,
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36",
        "Android",
        5,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
        "Linux",
        2,
    ),
];

/// Countries (ISO-3166 alpha-3) with their language, weighted roughly by ad traffic.
const COUNTRIES: [(&str, &str, u32); 10] = [
    ("USA", "en", 35),
    ("DEU", "de", 10),
    ("GBR", "en", 9),
    ("FRA", "fr", 8),
    ("BRA", "pt", 7),
    ("IND", "en", 7),
    ("JPN", "ja", 6),
    ("CAN", "en", 6),
    ("ESP", "es", 6),
    ("ITA", "it", 6),
];

const CATEGORIES: [&str; 10] = [
    "IAB1", "IAB2", "IAB3", "IAB9", "IAB12", "IAB15", "IAB17", "IAB18", "IAB19", "IAB20",
];

const WORDS: [&str; 12] = [
    "daily", "news", "sport", "tech", "travel", "food", "auto", "money", "style", "games", "music",
    "weather",
];

const BANNER_SIZES: [(u32, u32); 5] = [(300, 250), (728, 90), (320, 50), (300, 600), (970, 250)];

const CONSENT: &str = "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA";
const GPP: &str = "DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA.QA";

/// The Native 1.2 request every native impression carries: a title, a main image and a
/// sponsor line.
const NATIVE_REQUEST: &str = r#"{"ver":"1.2","context":2,"plcmttype":1,"plcmtcnt":1,"assets":[{"id":1,"required":1,"title":{"len":90}},{"id":2,"required":1,"img":{"type":3,"wmin":600,"hmin":314}},{"id":3,"required":0,"data":{"type":1,"len":25}}],"eventtrackers":[{"event":1,"methods":[1,2]}]}"#;

#[derive(Debug, Clone)]
struct User {
    id: String,
    consent: bool,
    agent: usize,
    ip: String,
    country: usize,
    ifa: String,
}

#[derive(Debug, Clone)]
struct Publisher {
    id: String,
    name: String,
    domain: String,
}

#[derive(Debug, Clone)]
struct Site {
    id: String,
    domain: String,
    cat: &'static str,
    publisher: usize,
}

#[derive(Debug, Clone)]
struct App {
    id: String,
    bundle: String,
    name: String,
    cat: &'static str,
    publisher: usize,
}

/// A seeded population of users, publishers, sites and apps that requests are drawn from.
#[derive(Debug, Clone)]
pub struct Population {
    users: Vec<User>,
    publishers: Vec<Publisher>,
    sites: Vec<Site>,
    apps: Vec<App>,
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// An index skewed towards the start, as popularity is: a few sites get most of the traffic.
fn popular(rng: &mut StdRng, len: usize) -> usize {
    let x: f64 = rng.random();
    ((x * x * x) * len as f64) as usize % len
}

fn chance(rng: &mut StdRng, p: f64) -> bool {
    rng.random::<f64>() < p
}

fn hex(rng: &mut StdRng, len: usize) -> String {
    (0..len)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).expect("a hex digit"))
        .collect()
}

impl Population {
    /// Draws a population of the mix's sizes from `seed`.
    pub fn new(seed: u64, mix: &Mix) -> Population {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x706f_7075_6c61_7465);
        let country_total: u32 = COUNTRIES.iter().map(|c| c.2).sum();
        let users = (0..mix.users)
            .map(|_| {
                let mut ticket = rng.random_range(0..country_total);
                let country = COUNTRIES
                    .iter()
                    .position(|c| {
                        let hit = ticket < c.2;
                        ticket = ticket.saturating_sub(c.2);
                        hit
                    })
                    .unwrap_or(0);
                User {
                    id: format!("u-{}", hex(&mut rng, 12)),
                    consent: chance(&mut rng, mix.consent_share),
                    agent: rng.random_range(0..USER_AGENTS.len()),
                    ip: format!(
                        "{}.{}.{}.{}",
                        rng.random_range(11..=223u8),
                        rng.random_range(0..=255u8),
                        rng.random_range(0..=255u8),
                        rng.random_range(1..=254u8)
                    ),
                    country,
                    ifa: format!(
                        "{}-{}-4{}-a{}-{}",
                        hex(&mut rng, 8),
                        hex(&mut rng, 4),
                        hex(&mut rng, 3),
                        hex(&mut rng, 3),
                        hex(&mut rng, 12)
                    ),
                }
            })
            .collect();
        let publishers: Vec<Publisher> = (0..(mix.sites + mix.apps).div_ceil(5))
            .map(|n| {
                let word = pick(&mut rng, &WORDS);
                Publisher {
                    id: format!("pub-{n}"),
                    name: format!("{} Media {n}", word[..1].to_uppercase() + &word[1..]),
                    domain: format!("{word}-media-{n}.example"),
                }
            })
            .collect();
        let sites = (0..mix.sites)
            .map(|n| Site {
                id: format!("site-{n}"),
                domain: format!(
                    "{}{}{n}.example",
                    pick(&mut rng, &WORDS),
                    pick(&mut rng, &WORDS)
                ),
                cat: CATEGORIES[rng.random_range(0..CATEGORIES.len())],
                publisher: rng.random_range(0..publishers.len()),
            })
            .collect();
        let apps = (0..mix.apps)
            .map(|n| {
                let word = pick(&mut rng, &WORDS);
                App {
                    id: format!("app-{n}"),
                    bundle: format!("com.example.{word}{n}"),
                    name: format!("{word} {n}"),
                    cat: CATEGORIES[rng.random_range(0..CATEGORIES.len())],
                    publisher: rng.random_range(0..publishers.len()),
                }
            })
            .collect();
        Population {
            users,
            publishers,
            sites,
            apps,
        }
    }

    /// Draws one bid request (without `id`) for the mix.
    pub fn request(&self, mix: &Mix, rng: &mut StdRng) -> Value {
        let user = &self.users[rng.random_range(0..self.users.len())];
        let (ua, os, devicetype) = USER_AGENTS[user.agent];
        let (country, language, _) = COUNTRIES[user.country];
        let in_app = chance(rng, mix.app_share);
        let imps: Vec<Value> = (1..=rng.random_range(1..=mix.max_imps))
            .map(|n| imp(mix, rng, n))
            .collect();
        let mut req = Map::new();
        req.insert("imp".into(), Value::Array(imps));
        let publisher;
        if in_app {
            let app = &self.apps[popular(rng, self.apps.len())];
            publisher = &self.publishers[app.publisher];
            req.insert(
                "app".into(),
                json!({
                    "id": app.id,
                    "name": app.name,
                    "bundle": app.bundle,
                    "storeurl": format!("https://apps.example/{}", app.bundle),
                    "cat": [app.cat],
                    "publisher": {"id": publisher.id, "name": publisher.name, "domain": publisher.domain},
                }),
            );
        } else {
            let site = &self.sites[popular(rng, self.sites.len())];
            publisher = &self.publishers[site.publisher];
            let page = format!(
                "https://{}/{}/{}",
                site.domain,
                pick(rng, &WORDS),
                rng.random_range(1..5000u32)
            );
            req.insert(
                "site".into(),
                json!({
                    "id": site.id,
                    "domain": site.domain,
                    "page": page,
                    "cat": [site.cat],
                    "publisher": {"id": publisher.id, "name": publisher.name, "domain": publisher.domain},
                }),
            );
        }
        let mut device = json!({
            "ua": ua,
            "ip": user.ip,
            "geo": {"country": country, "type": 2},
            "devicetype": devicetype,
            "os": os,
            "language": language,
            "js": 1,
        });
        if in_app {
            device["ifa"] = json!(user.ifa);
            device["lmt"] = json!(0);
        }
        req.insert("device".into(), device);
        let gdpr = chance(rng, mix.gdpr_share);
        let mut user_json = json!({"id": user.id});
        if gdpr && user.consent {
            user_json["consent"] = json!(CONSENT);
        }
        req.insert("user".into(), user_json);
        let at = if chance(rng, mix.second_price_share) {
            2
        } else {
            1
        };
        req.insert("at".into(), json!(at));
        req.insert("tmax".into(), json!(mix.tmax_ms));
        req.insert("cur".into(), json!(["USD"]));
        req.insert(
            "source".into(),
            json!({"schain": {"complete": 1, "ver": "1.0", "nodes": [
                {"asi": publisher.domain, "sid": publisher.id, "hp": 1}
            ]}}),
        );
        let mut regs = Map::new();
        regs.insert("gdpr".into(), json!(u8::from(gdpr)));
        if chance(rng, mix.us_privacy_share) {
            regs.insert("us_privacy".into(), json!("1YNN"));
        }
        if chance(rng, mix.gpp_share) {
            regs.insert("gpp".into(), json!(GPP));
            regs.insert("gpp_sid".into(), json!([2]));
        }
        req.insert("regs".into(), Value::Object(regs));
        if chance(rng, 0.2) {
            req.insert("bcat".into(), json!(["IAB25", "IAB26"]));
            req.insert("badv".into(), json!(["casino.example"]));
        }
        Value::Object(req)
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn imp(mix: &Mix, rng: &mut StdRng, n: u32) -> Value {
    let mut imp = Map::new();
    imp.insert("id".into(), json!(n.to_string()));
    let total = mix.banner + mix.video + mix.native + mix.audio;
    let draw = rng.random::<f64>() * total;
    if draw < mix.banner {
        let first = rng.random_range(0..BANNER_SIZES.len());
        let mut formats = vec![BANNER_SIZES[first]];
        if chance(rng, 0.3) {
            formats.push(BANNER_SIZES[(first + 1 + rng.random_range(0..4)) % 5]);
        }
        let formats: Vec<Value> = formats
            .iter()
            .map(|(w, h)| json!({"w": w, "h": h}))
            .collect();
        imp.insert(
            "banner".into(),
            json!({"format": formats, "pos": rng.random_range(0..4u8)}),
        );
    } else if draw < mix.banner + mix.video {
        imp.insert(
            "video".into(),
            json!({
                "mimes": ["video/mp4", "video/webm"],
                "minduration": 5,
                "maxduration": if chance(rng, 0.5) { 15 } else { 30 },
                "protocols": [2, 3, 5, 6],
                "w": 640,
                "h": 360,
                "plcmt": 1,
                "linearity": 1,
            }),
        );
    } else if draw < mix.banner + mix.video + mix.native {
        imp.insert(
            "native".into(),
            json!({"request": NATIVE_REQUEST, "ver": "1.2"}),
        );
    } else {
        imp.insert(
            "audio".into(),
            json!({"mimes": ["audio/mp4", "audio/mpeg"], "minduration": 5, "maxduration": 30}),
        );
    }
    if chance(rng, mix.floor_share) {
        let floor = round2(mix.floor.sample(rng).max(0.0));
        imp.insert("bidfloor".into(), json!(floor));
        let cur = if chance(rng, mix.eur_share) {
            "EUR"
        } else {
            "USD"
        };
        imp.insert("bidfloorcur".into(), json!(cur));
    }
    if chance(rng, mix.deal_share) && !mix.deal_ids.is_empty() {
        let deal = pick(rng, &mix.deal_ids);
        let floor = round2(mix.deal_floor.sample(rng).max(0.0));
        imp.insert(
            "pmp".into(),
            json!({"private_auction": 0, "deals": [{"id": deal, "bidfloor": floor, "bidfloorcur": "USD", "at": 1}]}),
        );
    }
    imp.insert("secure".into(), json!(1));
    Value::Object(imp)
}

/// Width of every request id: `{8 hex digits of the seed}-{15 decimal digits of the index}`.
pub const ID_LEN: usize = 24;

/// Where the id sits in every body: right after `{"id":"`.
const ID_OFFSET: usize = 7;

/// A pool of pre-serialized requests drawn from a seed. Request `i` is template `i % len` with
/// a unique, fixed-width id spliced over a placeholder, so producing a body is one copy.
#[derive(Debug, Clone)]
pub struct RequestPool {
    templates: Vec<Bytes>,
    seed_tag: u32,
}

impl RequestPool {
    /// Draws `size` requests (at least one) for `mix` from `seed`.
    pub fn generate(seed: u64, mix: &Mix, size: usize) -> RequestPool {
        let population = Population::new(seed, mix);
        let mut rng = StdRng::seed_from_u64(seed);
        let placeholder = "0".repeat(ID_LEN);
        let templates = (0..size.max(1))
            .map(|_| {
                let rest = serde_json::to_vec(&population.request(mix, &mut rng))
                    .expect("a JSON value serializes");
                let mut body = Vec::with_capacity(rest.len() + ID_LEN + 10);
                body.extend_from_slice(b"{\"id\":\"");
                body.extend_from_slice(placeholder.as_bytes());
                body.extend_from_slice(b"\",");
                // `rest` is a non-empty object (it always has `imp`): drop its opening brace.
                body.extend_from_slice(&rest[1..]);
                Bytes::from(body)
            })
            .collect();
        let mixed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        RequestPool {
            templates,
            seed_tag: (mixed >> 32) as u32,
        }
    }

    /// Number of distinct templates.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// Always false: a pool has at least one template.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// The id of request `i`, unique within a run and the same for the same seed.
    pub fn id(&self, i: u64) -> String {
        format!("{:08x}-{:015}", self.seed_tag, i % 1_000_000_000_000_000)
    }

    /// The body of request `i`.
    pub fn body(&self, i: u64) -> Bytes {
        let template = &self.templates[(i % self.templates.len() as u64) as usize];
        let mut body = template.to_vec();
        body[ID_OFFSET..ID_OFFSET + ID_LEN].copy_from_slice(self.id(i).as_bytes());
        Bytes::from(body)
    }
}
