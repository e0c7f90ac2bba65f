//! The bodies of bourse's fuzz targets, shared by the libFuzzer binaries (`fuzz_targets/`) and
//! the corpus replay test (`tests/replay.rs`), so that a committed input runs the same code in
//! both. Each body panics exactly when it found a bug.

use std::sync::OnceLock;

// Instrumented code calls libFuzzer's coverage hooks: link its runtime into the replay test too.
#[cfg(fuzzing)]
use libfuzzer_sys as _;

use bourse_engine::exchange::BeaconToken;
use bourse_engine::notice::{Sealed, TokenSigner, WinToken};
use bourse_engine::openrtb::BidRequest;
use bourse_engine::validate::{Limits, Rejection, validate};

/// The four targets, by the name of their binary and corpus folder.
pub const TARGETS: [&str; 4] = ["openrtb_request", "tokens", "config", "ad_request"];

/// Runs the body of the target called `name` on one input.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "openrtb_request" => openrtb_request(data),
        "tokens" => tokens(data),
        "config" => config(data),
        "ad_request" => ad_request(data),
        other => panic!("no fuzz target called {other}"),
    }
}

/// A bid request body as `/openrtb2/auction` reads it: parse, then validate, or explain the parse
/// failure. Whatever parses must also survive a round trip through our own serializer, and read
/// the same in place as by value.
pub fn openrtb_request(data: &[u8]) {
    // The auction reads a request onto the heap, filled in place and through the direct reader
    // where it can; it must read what serde's by-value reader reads, and refuse what it
    // refuses in the same words.
    let (in_place, _) = bourse_engine::openrtb::from_json_text_boxed::<BidRequest>(data);
    let by_value = serde_json::from_slice::<BidRequest>(data);
    match (&in_place, &by_value) {
        (Ok(boxed), Ok(value)) => {
            assert_eq!(**boxed, *value, "read in place differently");
            // Kept raw values compare by meaning: their text must be the same too, and so must
            // where the members were found (partner bodies are spliced from there).
            assert_eq!(
                serde_json::to_vec(&**boxed).expect("a parsed request serializes"),
                serde_json::to_vec(value).expect("a parsed request serializes"),
                "read in place into different text"
            );
            let text = std::str::from_utf8(data).ok();
            let members = |request: &BidRequest| text.and_then(|t| request.arrival.members(t));
            assert_eq!(members(boxed), members(value), "members noted differently");
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "refused differently"),
        _ => panic!("one reader took what the other refused: {in_place:?} / {by_value:?}"),
    }
    match by_value {
        Ok(req) => {
            let _ = validate(&req, &Limits::default());
            // The 2.5 moves and the Native reader refuse bad input; they never panic on it.
            let mut upconverted = req.clone();
            let _ = bourse_engine::openrtb::upconvert::upconvert(&mut upconverted);
            let _ = bourse_engine::native::NativeImps::parse(&req);
            let text = serde_json::to_vec(&req).expect("a parsed request serializes");
            // The auction writes bodies with its own writer: byte for byte serde's text.
            assert_eq!(
                String::from_utf8_lossy(&bourse_engine::openrtb::to_json(&req)),
                String::from_utf8_lossy(&text),
                "the direct writer wrote different text"
            );
            let again: BidRequest =
                serde_json::from_slice(&text).expect("our own output parses back");
            let text_again = serde_json::to_vec(&again).expect("a parsed request serializes");
            assert_eq!(
                String::from_utf8_lossy(&text),
                String::from_utf8_lossy(&text_again),
                "a request changed on a round trip"
            );
        }
        Err(_) => {
            let rejection = Rejection::from_parse_error(data);
            assert_eq!(rejection.error, "invalid_request");
        }
    }
}

/// The key the structured mode seals with. libFuzzer records the operands of comparisons and
/// splices them into later inputs, so a token sealed here soon turns up as a "forged" one: the
/// tokens from outside are therefore checked against a key nothing here ever signs with.
fn sealing_signer() -> &'static TokenSigner {
    static SIGNER: OnceLock<TokenSigner> = OnceLock::new();
    SIGNER.get_or_init(|| TokenSigner::new(b"fuzz-sealing-key"))
}

/// The key tokens from outside are opened with; nothing in the fuzzer signs with it.
fn outside_signer() -> &'static TokenSigner {
    static SIGNER: OnceLock<TokenSigner> = OnceLock::new();
    SIGNER.get_or_init(|| TokenSigner::new(b"fuzz-key-never-signed-with"))
}

/// Signed notice and beacon tokens. The first byte picks a mode:
///
/// - even: the rest, as text, is a token from the outside world: opening it as any kind and
///   verifying it as a win token must fail cleanly (it cannot carry a signature of our key);
/// - odd: the rest is a payload (its length as a little-endian `u16`, then its bytes) and edits.
///   When the payload decodes as a token (postcard, as sealed tokens carry them: this is how
///   structured tokens are made, whatever fields the token types gain), that token is sealed
///   with our key and must open back to itself, never as the other type; then the sealed text is
///   altered as the edits say (replace, drop or insert a character, three bytes each): an altered
///   token must never open.
pub fn tokens(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        let signer = outside_signer();
        assert!(
            signer.open::<WinToken>(text).is_err(),
            "a forged win token opened"
        );
        assert!(
            signer.verify(text, 0).is_err(),
            "a forged win token verified"
        );
        assert!(
            signer.open::<BeaconToken>(text).is_err(),
            "a forged beacon opened"
        );
        return;
    }
    let Some((len, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let (payload, edits) = rest.split_at((u16::from_le_bytes(*len) as usize).min(rest.len()));
    sealed_roundtrip::<WinToken, BeaconToken>(payload, edits);
    sealed_roundtrip::<BeaconToken, WinToken>(payload, edits);
}

/// Seals a `T` decoded from `payload`, opens it, opens it as an `Other` (never accepted: each
/// sealed type signs its own domain) and alters it.
fn sealed_roundtrip<T: Sealed, Other: Sealed>(payload: &[u8], edits: &[u8]) {
    let Ok(token) = postcard::from_bytes::<T>(payload) else {
        return;
    };
    let signer = sealing_signer();
    let text = signer.seal(&token);
    let opened: T = signer.open(&text).expect("our own sealed token opens");
    // Compared encoded: a NaN price is not equal to itself.
    assert_eq!(
        postcard::to_allocvec(&opened).unwrap(),
        postcard::to_allocvec(&token).unwrap(),
        "a token changed between seal and open"
    );
    assert!(
        signer.open::<Other>(&text).is_err(),
        "a sealed token opened as another type"
    );
    let altered = alter(&text, edits);
    if altered != text {
        assert!(
            signer.open::<T>(&altered).is_err(),
            "an altered token opened: {text:?} became {altered:?}"
        );
    }
}

/// Applies `edits`, three bytes each (what, where, with), to `text`.
fn alter(text: &str, edits: &[u8]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for edit in edits.chunks_exact(3) {
        let (what, at, with) = (edit[0], edit[1] as usize, edit[2]);
        match what % 3 {
            0 if !bytes.is_empty() => {
                let at = at % bytes.len();
                bytes[at] = with;
            }
            1 if !bytes.is_empty() => {
                bytes.remove(at % bytes.len());
            }
            _ => bytes.insert(at % (bytes.len() + 1), with),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A config file through the kernel's loader with every compiled-in plugin kind: errors are
/// fine, panics are not. Only UTF-8 is tried, as the loader reads files as UTF-8 text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    static KERNEL: OnceLock<bourse_kernel::Kernel> = OnceLock::new();
    let kernel = KERNEL.get_or_init(bourse::kernel);
    if let Err(errors) = kernel.load_config_str(text, "fuzz.toml") {
        // Reporting the errors is part of loading: it formats every location.
        let _ = errors.to_string();
    }
}

mod ad;
pub use ad::{ad_request, ad_response};
