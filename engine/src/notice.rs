//! Win, billing and loss notices: OpenRTB macro substitution and signed notice tokens. Their
//! delivery to partners is `delivery.rs`.

use crate::openrtb::Text;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::borrow::Cow;

/// Values for the OpenRTB substitution macros (spec 4.4); `None` leaves a macro empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MacroValues<'a> {
    /// `${AUCTION_ID}`: the bid request id.
    pub auction_id: &'a str,
    /// `${AUCTION_BID_ID}`: the bidder's bid id (or its response's `bidid`).
    pub bid_id: &'a str,
    /// `${AUCTION_IMP_ID}`.
    pub imp_id: &'a str,
    /// `${AUCTION_SEAT_ID}`.
    pub seat_id: &'a str,
    /// `${AUCTION_AD_ID}`.
    pub ad_id: &'a str,
    /// `${AUCTION_PRICE}`: clearing price in the bid's currency and scale.
    pub price: Option<f64>,
    /// `${AUCTION_CURRENCY}`.
    pub currency: &'a str,
    /// `${AUCTION_MBR}`: clearing price divided by the bid.
    pub market_bid_ratio: Option<f64>,
    /// `${AUCTION_LOSS}`: loss reason code.
    pub loss: Option<u16>,
    /// `${AUCTION_MIN_TO_WIN}`: the price that would have won.
    pub min_to_win: Option<f64>,
    /// `${AUCTION_IMP_TS}`: when the impression happened, Unix milliseconds.
    pub imp_ts: Option<u64>,
}

fn price_text(v: f64) -> String {
    let text = format!("{v:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Where substituted text goes: URLs get percent-encoded values, markup gets them raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A notice URL.
    Url,
    /// Ad markup.
    Markup,
}

/// Replaces every known `${AUCTION_*}` macro (optionally with `:B64`) in `template`.
/// Unknown macros are left as they are.
pub fn expand(template: &str, v: &MacroValues<'_>, target: Target) -> String {
    if !template.contains("${") {
        return template.to_owned();
    }
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let (name, b64) = match after[..end].strip_suffix(":B64") {
            Some(name) => (name, true),
            None => (&after[..end], false),
        };
        // Text values are borrowed; only numbers are formatted.
        let value: Option<Cow<'_, str>> = match name {
            "AUCTION_ID" => Some(v.auction_id.into()),
            "AUCTION_BID_ID" => Some(v.bid_id.into()),
            "AUCTION_IMP_ID" => Some(v.imp_id.into()),
            "AUCTION_SEAT_ID" => Some(v.seat_id.into()),
            "AUCTION_AD_ID" => Some(v.ad_id.into()),
            "AUCTION_PRICE" => Some(v.price.map(price_text).unwrap_or_default().into()),
            "AUCTION_CURRENCY" => Some(v.currency.into()),
            "AUCTION_MBR" => Some(
                v.market_bid_ratio
                    .map(price_text)
                    .unwrap_or_default()
                    .into(),
            ),
            "AUCTION_LOSS" => Some(v.loss.map(|l| l.to_string()).unwrap_or_default().into()),
            "AUCTION_MIN_TO_WIN" => Some(v.min_to_win.map(price_text).unwrap_or_default().into()),
            "AUCTION_IMP_TS" => Some(v.imp_ts.map(|t| t.to_string()).unwrap_or_default().into()),
            _ => None,
        };
        match value {
            Some(value) => {
                let value = if b64 {
                    B64.encode(&*value).into()
                } else {
                    value
                };
                match target {
                    Target::Url => {
                        out.extend(url::form_urlencoded::byte_serialize(value.as_bytes()))
                    }
                    Target::Markup => out.push_str(&value),
                }
            }
            None => out.push_str(&rest[start..start + 2 + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// [`expand`] on text already owned: handed back as it is, without a copy, when it holds no macro
/// (most markup).
pub fn expand_owned(text: String, v: &MacroValues<'_>, target: Target) -> String {
    if text.contains("${") {
        expand(&text, v, target)
    } else {
        text
    }
}

/// What bourse needs, when the supply side fires one notice, to notify the winning partner.
/// It travels inside our own nurl, burl or lurl, signed, so any node can serve the notice. Each
/// URL carries its own token, bound to its kind and holding only that kind's partner URL, so a
/// token is short and cannot be replayed as another kind of notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WinToken {
    /// Which notice this token is good for.
    pub kind: NoticeKind,
    /// Bid request id.
    pub auction: String,
    /// Our own id of the auction, unique across nodes: every path that can bill or notify
    /// de-duplicates under it, whatever id the supply side gave its request.
    pub reference: AuctionRef,
    /// The partner's bid id.
    pub bid: String,
    /// Impression id.
    pub imp: String,
    /// Seat that won.
    pub seat: String,
    /// The partner's ad id (empty when it sent none).
    pub ad: String,
    /// Bidder name from config.
    pub bidder: String,
    /// Clearing price in the partner's currency and scale.
    pub price: f64,
    /// The partner's bid price, same terms.
    pub bid_price: f64,
    /// The partner's currency.
    pub cur: String,
    /// Partner price units per unit of the price we quoted upstream (fee, currency, adjustment).
    pub gross_up: f64,
    /// The partner's own URL template for this kind of notice (its nurl, burl or lurl).
    pub partner_url: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

/// Our own id of one auction: the node's random tag and the auction's number there. Kept as two
/// integers inside tokens (a dozen bytes where its text takes twenty, so every token hashes
/// fewer bytes) and written as hex text wherever it is shown or used as a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuctionRef {
    /// Random per exchange instance start, so references never repeat across nodes or restarts.
    pub node: u64,
    /// The auction's number on that node.
    pub seq: u64,
}

impl AuctionRef {
    /// The reference as text: `node` as 16 hex digits, then `seq` in hex. Written by hand, as
    /// every winning bid's id and every answer's `bidid` is this text: the formatting machinery
    /// with padding costs several times as much.
    pub fn to_hex(&self) -> Text {
        // Written into a buffer first: a `Text` pushed a digit at a time checks its layout on
        // every push, and one made with room for 32 would live on the heap.
        let mut digits = [0u8; 32];
        let seq = push_hex(&mut digits, self.seq, 1);
        let node = push_hex(&mut digits[..32 - seq], self.node, 16);
        let text = &digits[32 - seq - node..];
        Text::from(std::str::from_utf8(text).expect("hex digits are ASCII"))
    }
}

/// Writes `value` in lower-case hex, zero-padded to at least `min_digits` digits, at the end of
/// `out`; returns how many digits it wrote.
fn push_hex(out: &mut [u8], value: u64, min_digits: usize) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let count = (64 - value.leading_zeros() as usize)
        .div_ceil(4)
        .max(min_digits);
    let end = out.len();
    for (digit, place) in out[end - count..].iter_mut().rev().enumerate() {
        *place = DIGITS[((value >> (digit * 4)) & 0xf) as usize];
    }
    count
}

impl std::fmt::Display for AuctionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl WinToken {
    /// The impression's one billing key: the same for its beacon, its bill notice and any other
    /// path that can bill it, on every node.
    pub fn billing_key(&self) -> String {
        bounded_key(format!("{}:{}", self.reference, self.imp))
    }

    /// The key under which this kind of notice for this bid is honoured once.
    pub fn notice_key(&self) -> String {
        bounded_key(format!(
            "{}:{}:{}:{}:{}",
            self.kind.as_str(),
            self.reference,
            self.imp,
            self.bidder,
            self.bid
        ))
    }
}

/// Longest de-duplication key kept verbatim; longer ones (ids are the supply side's and the
/// partners' to choose) become a digest of the same text.
const MAX_VERBATIM_KEY: usize = 160;

fn bounded_key(key: String) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    if key.len() <= MAX_VERBATIM_KEY {
        return key;
    }
    let mut text = String::from("h:");
    for byte in Sha256::digest(key.as_bytes()) {
        // Writing into a String cannot fail.
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// A value signed into one of our URLs. Its type's domain is part of what is signed, so a token
/// of one type is never accepted as another (a page-visible beacon as a bill notice, say).
pub trait Sealed: Serialize + serde::de::DeserializeOwned {
    /// Mixed into the signature; distinct for every sealed type. One byte is enough (no domain
    /// is a prefix of another) and keeps the MAC's input, hashed for every token, short.
    const DOMAIN: &'static [u8];
}

impl Sealed for WinToken {
    const DOMAIN: &'static [u8] = b"N";
}

/// Why a notice token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token we could have made.
    #[error("malformed token")]
    Malformed,
    /// The signature does not match: forged or altered.
    #[error("bad signature")]
    BadSignature,
    /// Valid but past its expiry.
    #[error("token expired")]
    Expired,
}

/// Signs and verifies notice tokens with HMAC-SHA256.
#[derive(Clone)]
pub struct TokenSigner {
    /// The MAC with the key already absorbed: cloning it skips the key schedule per token.
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

const SIGNATURE_BYTES: usize = 16;
/// Room for a token part (ids, names, a partner URL): postcard's own buffer starts small and
/// grew several times per part.
const TOKEN_PART_BYTES: usize = 256;

impl TokenSigner {
    /// A signer with this secret key.
    pub fn new(key: &[u8]) -> Self {
        TokenSigner {
            // HMAC takes keys of any length.
            keyed: Hmac::<Sha256>::new_from_slice(key).expect("any key length"),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.keyed.clone()
    }

    /// Signs a notice token for `token.kind` and `token.partner_url`.
    pub fn sign(&self, token: &WinToken) -> String {
        self.notices(&NoticeBid::of(token))
            .sign(token.kind, token.partner_url.as_deref())
    }

    /// Starts the notice tokens of one winning bid: what every kind shares is serialized,
    /// encoded and hashed once, and each kind's token then costs only its own few bytes
    /// ([`NoticeTokens::sign`]).
    pub fn notices(&self, bid: &NoticeBid<'_>) -> NoticeTokens {
        let shared = postcard::to_extend(bid, Vec::with_capacity(TOKEN_PART_BYTES))
            .expect("token serializes");
        let mut mac = self.mac();
        mac.update(WinToken::DOMAIN);
        // The shared part's length is signed too, so no byte can move between the two parts.
        mac.update(&(shared.len() as u32).to_le_bytes());
        mac.update(&shared);
        let mut prefix = String::with_capacity(shared.len() * 4 / 3 + 4);
        B64.encode_string(&shared, &mut prefix);
        prefix.push('.');
        NoticeTokens { prefix, mac }
    }

    /// Checks a notice token's signature, then its expiry against `now` (Unix seconds).
    pub fn verify(&self, text: &str, now: u64) -> Result<WinToken, TokenError> {
        let mut parts = text.split('.');
        let (Some(shared), Some(own), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(another_token_or_malformed(text));
        };
        let decode = |part: &str| B64.decode(part).map_err(|_| TokenError::Malformed);
        let (shared, own, signature) = (decode(shared)?, decode(own)?, decode(signature)?);
        if signature.len() != SIGNATURE_BYTES {
            return Err(TokenError::Malformed);
        }
        let shared_len = u32::try_from(shared.len()).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(WinToken::DOMAIN);
        mac.update(&shared_len.to_le_bytes());
        mac.update(&shared);
        mac.update(&own);
        mac.verify_truncated_left(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        let shared: NoticeBid<'_> =
            postcard::from_bytes(&shared).map_err(|_| TokenError::Malformed)?;
        let own: OwnPart<'_> = postcard::from_bytes(&own).map_err(|_| TokenError::Malformed)?;
        let token = shared.into_token(own);
        if token.exp < now {
            return Err(TokenError::Expired);
        }
        Ok(token)
    }

    /// Signs any sealed type the same way; the caller puts its own expiry inside.
    pub fn seal<T: Sealed>(&self, value: &T) -> String {
        // postcard, not JSON: no field names and no escaping, so the URL stays short.
        let payload = postcard::to_allocvec(value).expect("token serializes");
        let mut mac = self.mac();
        mac.update(T::DOMAIN);
        mac.update(&payload);
        let signature = mac.finalize().into_bytes();
        let mut text = String::with_capacity((payload.len() + SIGNATURE_BYTES) * 4 / 3 + 4);
        B64.encode_string(&payload, &mut text);
        text.push('.');
        B64.encode_string(&signature[..SIGNATURE_BYTES], &mut text);
        text
    }

    /// Checks the signature of a sealed value and decodes it; expiry is the caller's.
    pub fn open<T: Sealed>(&self, text: &str) -> Result<T, TokenError> {
        let Some((payload, signature)) = text.split_once('.').filter(|(_, s)| !s.contains('.'))
        else {
            return Err(another_token_or_malformed(text));
        };
        let payload = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
        let signature = B64.decode(signature).map_err(|_| TokenError::Malformed)?;
        if signature.len() != SIGNATURE_BYTES {
            return Err(TokenError::Malformed);
        }
        let mut mac = self.mac();
        mac.update(T::DOMAIN);
        mac.update(&payload);
        mac.verify_truncated_left(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        postcard::from_bytes(&payload).map_err(|_| TokenError::Malformed)
    }
}

/// Why a token of the other shape (a sealed value where a notice token is expected, or the
/// reverse) is refused: it is ours in form but not good here, so it counts as forged, like a
/// token of another sealed type; anything else is malformed.
fn another_token_or_malformed(text: &str) -> TokenError {
    let count = text.split('.').count();
    if (2..=3).contains(&count) && text.split('.').all(|p| B64.decode(p).is_ok()) {
        TokenError::BadSignature
    } else {
        TokenError::Malformed
    }
}

/// The notice tokens of one winning bid, its shared part already signed: see
/// [`TokenSigner::notices`].
pub struct NoticeTokens {
    /// The shared part, encoded, and the separator after it.
    prefix: String,
    /// The MAC with the domain and the shared part absorbed.
    mac: Hmac<Sha256>,
}

impl NoticeTokens {
    /// The token for one kind of notice, holding that kind's partner URL:
    /// `base64(shared).base64(kind and URL).base64(signature)`.
    pub fn sign(&self, kind: NoticeKind, partner_url: Option<&str>) -> String {
        let mut text = String::with_capacity(self.token_bytes(partner_url));
        self.sign_into(kind, partner_url, &mut text);
        text
    }

    /// [`NoticeTokens::sign`], appending the token to `out` (the notice URL being written)
    /// rather than to a string of its own. The caller sizes `out` ([`NoticeTokens::token_bytes`]
    /// for the token), so that the URL is allocated once.
    pub fn sign_into(&self, kind: NoticeKind, partner_url: Option<&str>, out: &mut String) {
        let part = OwnPart {
            kind,
            partner_url: partner_url.map(Cow::Borrowed),
        };
        let mut stack = [0u8; TOKEN_PART_BYTES];
        let heap;
        let own: &[u8] = match postcard::to_slice(&part, &mut stack) {
            Ok(own) => own,
            // Only a partner URL of some hundreds of bytes does not fit on the stack.
            Err(_) => {
                heap = postcard::to_extend(&part, Vec::new()).expect("token serializes");
                &heap
            }
        };
        let mut mac = self.mac.clone();
        mac.update(own);
        let signature = mac.finalize().into_bytes();
        out.push_str(&self.prefix);
        B64.encode_string(own, out);
        out.push('.');
        B64.encode_string(&signature[..SIGNATURE_BYTES], out);
    }

    /// Room for one token: the shared prefix, then the own part (kind, the URL and its length:
    /// at most 8 bytes besides the URL) and the signature, base64 encoded.
    pub fn token_bytes(&self, partner_url: Option<&str>) -> usize {
        let own = 8 + partner_url.map_or(0, str::len);
        self.prefix.len() + (own + SIGNATURE_BYTES).div_ceil(3) * 4 + 1
    }
}

/// What every kind of notice token of one bid carries: a [`WinToken`] less its kind and partner
/// URL, borrowed when signing (nothing is copied) and, where it can be, when verifying.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoticeBid<'a> {
    /// Bid request id.
    #[serde(borrow)]
    pub auction: Cow<'a, str>,
    /// Our own id of the auction.
    pub reference: AuctionRef,
    /// The partner's bid id.
    #[serde(borrow)]
    pub bid: Cow<'a, str>,
    /// Impression id.
    #[serde(borrow)]
    pub imp: Cow<'a, str>,
    /// Seat that won.
    #[serde(borrow)]
    pub seat: Cow<'a, str>,
    /// The partner's ad id (empty when it sent none).
    #[serde(borrow)]
    pub ad: Cow<'a, str>,
    /// Bidder name from config.
    #[serde(borrow)]
    pub bidder: Cow<'a, str>,
    /// Clearing price in the partner's currency and scale.
    pub price: f64,
    /// The partner's bid price, same terms.
    pub bid_price: f64,
    /// The partner's currency.
    #[serde(borrow)]
    pub cur: Cow<'a, str>,
    /// Partner price units per unit of the price we quoted upstream.
    pub gross_up: f64,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

/// What one kind of notice token carries on its own.
#[derive(Serialize, Deserialize)]
struct OwnPart<'a> {
    kind: NoticeKind,
    #[serde(borrow)]
    partner_url: Option<Cow<'a, str>>,
}

impl<'a> NoticeBid<'a> {
    /// The shared part of a whole token, borrowed from it.
    pub fn of(token: &'a WinToken) -> Self {
        NoticeBid {
            auction: Cow::Borrowed(&token.auction),
            reference: token.reference,
            bid: Cow::Borrowed(&token.bid),
            imp: Cow::Borrowed(&token.imp),
            seat: Cow::Borrowed(&token.seat),
            ad: Cow::Borrowed(&token.ad),
            bidder: Cow::Borrowed(&token.bidder),
            price: token.price,
            bid_price: token.bid_price,
            cur: Cow::Borrowed(&token.cur),
            gross_up: token.gross_up,
            exp: token.exp,
        }
    }

    fn into_token(self, own: OwnPart<'_>) -> WinToken {
        WinToken {
            kind: own.kind,
            auction: self.auction.into_owned(),
            reference: self.reference,
            bid: self.bid.into_owned(),
            imp: self.imp.into_owned(),
            seat: self.seat.into_owned(),
            ad: self.ad.into_owned(),
            bidder: self.bidder.into_owned(),
            price: self.price,
            bid_price: self.bid_price,
            cur: self.cur.into_owned(),
            gross_up: self.gross_up,
            partner_url: own.partner_url.map(Cow::into_owned),
            exp: self.exp,
        }
    }
}

/// The kind of notice being fired at a partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NoticeKind {
    /// nurl.
    Win,
    /// burl.
    Bill,
    /// lurl.
    Loss,
}

impl NoticeKind {
    /// Label for metrics and routes.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Win => "win",
            NoticeKind::Bill => "bill",
            NoticeKind::Loss => "loss",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_auction_reference_reads_as_padded_node_then_sequence_in_hex() {
        for (node, seq) in [
            (0, 0),
            (0xab, 1),
            (u64::MAX, u64::MAX),
            (0x0123_4567_89ab_cdef, 0x10),
            (1 << 60, (1 << 36) - 1),
        ] {
            let reference = AuctionRef { node, seq };
            assert_eq!(reference.to_hex(), format!("{node:016x}{seq:x}"));
            assert_eq!(reference.to_string(), reference.to_hex());
        }
    }

    #[test]
    fn expands_every_macro_and_leaves_unknown_ones() {
        let values = MacroValues {
            auction_id: "a 1",
            bid_id: "b",
            imp_id: "i",
            seat_id: "s",
            ad_id: "ad",
            price: Some(1.25),
            currency: "EUR",
            market_bid_ratio: Some(0.5),
            loss: Some(102),
            min_to_win: Some(2.0),
            imp_ts: Some(42),
        };
        let url = "http://x/?a=${AUCTION_ID}&b=${AUCTION_BID_ID}&i=${AUCTION_IMP_ID}&s=${AUCTION_SEAT_ID}&ad=${AUCTION_AD_ID}&p=${AUCTION_PRICE}&c=${AUCTION_CURRENCY}&m=${AUCTION_MBR}&l=${AUCTION_LOSS}&w=${AUCTION_MIN_TO_WIN}&t=${AUCTION_IMP_TS}&u=${OTHER}&p64=${AUCTION_PRICE:B64}";
        assert_eq!(
            expand(url, &values, Target::Url),
            "http://x/?a=a+1&b=b&i=i&s=s&ad=ad&p=1.25&c=EUR&m=0.5&l=102&w=2&t=42&u=${OTHER}&p64=MS4yNQ"
        );
        assert_eq!(
            expand(
                "<img src=x?p=${AUCTION_PRICE}>${AUCTION_ID}",
                &values,
                Target::Markup
            ),
            "<img src=x?p=1.25>a 1"
        );
        assert_eq!(
            expand("unterminated ${AUCTION_PRICE", &values, Target::Url),
            "unterminated ${AUCTION_PRICE"
        );
    }

    fn token() -> WinToken {
        WinToken {
            kind: NoticeKind::Win,
            auction: "a".into(),
            reference: AuctionRef { node: 0xab, seq: 1 },
            bid: "b".into(),
            imp: "1".into(),
            seat: "s".into(),
            ad: String::new(),
            bidder: "dsp".into(),
            price: 1.5,
            bid_price: 2.0,
            cur: "USD".into(),
            gross_up: 1.1,
            partner_url: Some("http://dsp/win?p=${AUCTION_PRICE}".into()),
            exp: 1000,
        }
    }

    #[test]
    fn tokens_verify_and_refuse_tampering_and_expiry() {
        let signer = TokenSigner::new(b"secret");
        let text = signer.sign(&token());
        assert_eq!(signer.verify(&text, 999), Ok(token()));
        assert_eq!(signer.verify(&text, 1001), Err(TokenError::Expired));
        assert_eq!(
            TokenSigner::new(b"other").verify(&text, 0),
            Err(TokenError::BadSignature)
        );
        let mut altered = token();
        altered.price = 0.01;
        let (_, rest) = text.split_once('.').unwrap();
        let forged = format!(
            "{}.{rest}",
            B64.encode(postcard::to_allocvec(&NoticeBid::of(&altered)).unwrap())
        );
        assert_eq!(signer.verify(&forged, 0), Err(TokenError::BadSignature));
        // The signature binds each token to its kind: a bill token's kind part on a win token
        // does not verify.
        let notices = signer.notices(&NoticeBid::of(&token()));
        let win = notices.sign(NoticeKind::Win, None);
        let bill = notices.sign(NoticeKind::Bill, None);
        let win_parts: Vec<&str> = win.split('.').collect();
        let bill_parts: Vec<&str> = bill.split('.').collect();
        let swapped = format!("{}.{}.{}", win_parts[0], bill_parts[1], win_parts[2]);
        assert_eq!(signer.verify(&swapped, 0), Err(TokenError::BadSignature));
        assert_eq!(
            signer.verify(&bill, 0).map(|t| t.kind),
            Ok(NoticeKind::Bill)
        );
        assert_eq!(signer.verify("garbage", 0), Err(TokenError::Malformed));
        assert_eq!(signer.verify("a.b", 0), Err(TokenError::Malformed));
        assert_eq!(signer.verify("a.b.c.d", 0), Err(TokenError::Malformed));
        assert_eq!(
            signer.verify(&format!("{text}."), 0),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn tokens_signed_into_a_url_carry_any_partner_url_and_fit_their_room() {
        let signer = TokenSigner::new(b"secret");
        let notices = signer.notices(&NoticeBid::of(&token()));
        // No URL, a short one, and ones longer than the stack buffer the kind part is
        // written into first.
        let long = format!("http://dsp/loss?x={}", "y".repeat(600));
        let medium = format!("http://dsp/bill?x={}", "z".repeat(TOKEN_PART_BYTES - 20));
        for url in [
            None,
            Some("http://dsp/win?p=${AUCTION_PRICE}"),
            Some(&*medium),
            Some(&*long),
        ] {
            let alone = notices.sign(NoticeKind::Loss, url);
            let mut into = String::with_capacity(17 + notices.token_bytes(url));
            into.push_str("https://x/loss?t=");
            let (before, room) = (into.len(), into.capacity());
            notices.sign_into(NoticeKind::Loss, url, &mut into);
            assert_eq!(&into[before..], alone);
            assert_eq!(into.capacity(), room, "sized by token_bytes, never grown");
            assert!(
                alone.len() <= notices.token_bytes(url),
                "{} > room",
                alone.len()
            );
            let read = signer.verify(&alone, 0).unwrap();
            assert_eq!(read.kind, NoticeKind::Loss);
            assert_eq!(read.partner_url.as_deref(), url);
        }
    }

    /// Another sealed type whose payload happens to decode as a notice token.
    #[derive(Serialize, serde::Deserialize)]
    struct Lookalike(WinToken);

    impl Sealed for Lookalike {
        const DOMAIN: &'static [u8] = b"L";
    }

    #[test]
    fn a_token_of_another_type_is_refused_even_when_its_payload_decodes() {
        let signer = TokenSigner::new(b"secret");
        let text = signer.seal(&Lookalike(token()));
        assert_eq!(
            signer.open::<WinToken>(&text),
            Err(TokenError::BadSignature)
        );
        assert!(signer.verify(&text, 0).is_err());
    }

    #[test]
    fn a_shared_part_cannot_lend_bytes_to_the_kind_part() {
        // Moving the boundary between the two parts keeps the signed bytes' concatenation but
        // changes the signed length, so it is refused.
        let signer = TokenSigner::new(b"secret");
        let text = signer.sign(&token());
        let parts: Vec<&str> = text.split('.').collect();
        let mut shared = B64.decode(parts[0]).unwrap();
        let mut own = B64.decode(parts[1]).unwrap();
        own.insert(0, shared.pop().unwrap());
        let moved = format!("{}.{}.{}", B64.encode(&shared), B64.encode(&own), parts[2]);
        assert_eq!(signer.verify(&moved, 0), Err(TokenError::BadSignature));
    }

    #[test]
    fn every_path_bills_one_impression_under_one_bounded_key() {
        let mut bill = token();
        bill.kind = NoticeKind::Bill;
        let mut win = token();
        win.bid = "another bid".into();
        assert_eq!(bill.billing_key(), "00000000000000ab1:1");
        assert_eq!(bill.billing_key(), win.billing_key());
        assert_ne!(bill.notice_key(), win.notice_key());
        let mut long = token();
        long.imp = "i".repeat(5_000);
        let key = long.billing_key();
        assert!(
            key.len() <= MAX_VERBATIM_KEY && key.starts_with("h:"),
            "{key}"
        );
        long.imp.push('j');
        assert_ne!(long.billing_key(), key);
    }
}
