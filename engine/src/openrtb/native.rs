//! The OpenRTB Native Ads 1.2 request and response markup (what `imp.native.request` and a native
//! bid's `adm` carry), with the spec's enumerations.
//!
//! Integers are read as `i64` and checked afterwards, so an out-of-range value is refused in our
//! own words (see `crate::native`) rather than by serde. Both the 1.2 form (`{"ver":…,
//! "assets":[…]}`) and the 1.0/1.1 wrapper older clients still send (`{"native":{…}}`) are read.

use super::Raw;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The lowest value the spec leaves to exchanges in every Native enumeration.
pub const EXCHANGE_SPECIFIC: i64 = 500;

/// A Native 1.2 request (section 4.1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NativeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ver: Option<String>,
    /// Context type (7.1): 1 content, 2 social, 3 product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<i64>,
    /// Context subtype (7.2): 10–15 content, 20–22 social, 30–32 product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contextsubtype: Option<i64>,
    /// Placement type (7.3): 1 in feed, 2 atomic unit, 3 outside content, 4 recommendation widget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plcmttype: Option<i64>,
    /// Identical placements in this layout (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plcmtcnt: Option<i64>,
    /// Sequence number of the ad in the stream (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assets: Vec<RequestAsset>,
    /// 1 when the supply side supports `assetsurl` responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aurlsupport: Option<i64>,
    /// 1 when the supply side supports `dcourl` responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durlsupport: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eventtrackers: Vec<EventTrackerRequest>,
    /// 1 when the supply side renders the buyer's privacy link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Raw>,
}

/// One asset a native placement asks for (4.2): exactly one of title, img, video and data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestAsset {
    /// Unique within the request; the response answers with the same id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// 1 when the bid must carry this asset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<TitleRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub img: Option<ImageRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Raw>,
}

impl RequestAsset {
    /// Whether a bid must answer this asset.
    pub fn is_required(&self) -> bool {
        self.required == Some(1)
    }

    /// Which kind of asset this is, when exactly one kind is present.
    pub fn kind(&self) -> Option<AssetKind> {
        let kinds = [
            (self.title.is_some(), AssetKind::Title),
            (self.img.is_some(), AssetKind::Img),
            (self.video.is_some(), AssetKind::Video),
            (self.data.is_some(), AssetKind::Data),
        ];
        let mut present = kinds.iter().filter(|(present, _)| *present);
        match (present.next(), present.next()) {
            (Some((_, kind)), None) => Some(*kind),
            _ => None,
        }
    }
}

/// The four kinds of native asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetKind {
    Title,
    Img,
    Video,
    Data,
}

impl AssetKind {
    /// The asset's field name.
    pub fn as_str(self) -> &'static str {
        match self {
            AssetKind::Title => "title",
            AssetKind::Img => "img",
            AssetKind::Video => "video",
            AssetKind::Data => "data",
        }
    }
}

/// A title asset (4.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TitleRequest {
    /// Most characters the title may have (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Raw>,
}

/// An image asset (4.4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageRequest {
    /// Image type (7.4): 1 icon, 2 logo (deprecated), 3 main.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub image_type: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub w: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wmin: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmin: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mimes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Raw>,
}

/// A video asset (4.5), answered with a VAST tag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mimes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minduration: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxduration: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Raw>,
}

/// A data asset (4.6): sponsor, description, rating, price, call to action, ...
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataRequest {
    /// Data type (7.4), required: 1 sponsored … 12 call to action.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Raw>,
}

/// An event the supply side can track, and how (4.7).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventTrackerRequest {
    /// Event type (7.6): 1 impression, 2 viewable MRC 50, 3 viewable MRC 100, 4 viewable video 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<i64>,
    /// Tracking methods (7.7): 1 image pixel, 2 JavaScript.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Raw>,
}

/// A Native 1.2 response (section 5.1), the `adm` of a native bid.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NativeResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assets: Vec<ResponseAsset>,
    /// Where the assets can be fetched instead of being embedded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assetsurl: Option<String>,
    /// Dynamic creative optimisation URL, for the same purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dcourl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
    /// Deprecated in 1.2 in favour of `eventtrackers`, still sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imptrackers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jstracker: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eventtrackers: Vec<EventTrackerResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Raw>,
}

/// One answered asset (5.2): the request asset's id and its content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseAsset {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<TitleResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub img: Option<ImageResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Raw>,
}

impl ResponseAsset {
    /// Which kind of asset this answers, when exactly one kind is present.
    pub fn kind(&self) -> Option<AssetKind> {
        let kinds = [
            (self.title.is_some(), AssetKind::Title),
            (self.img.is_some(), AssetKind::Img),
            (self.video.is_some(), AssetKind::Video),
            (self.data.is_some(), AssetKind::Data),
        ];
        let mut present = kinds.iter().filter(|(present, _)| *present);
        match (present.next(), present.next()) {
            (Some((_, kind)), None) => Some(*kind),
            _ => None,
        }
    }
}

/// A title answer (5.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TitleResponse {
    #[serde(default)]
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Raw>,
}

/// An image answer (5.4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageResponse {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub image_type: Option<i64>,
    #[serde(default)]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub w: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Raw>,
}

/// A video answer (5.5): the VAST document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoResponse {
    #[serde(default)]
    pub vasttag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Raw>,
}

/// A data answer (5.6).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataResponse {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<i64>,
    #[serde(default)]
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Raw>,
}

/// Where a click goes (5.7).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Link {
    #[serde(default)]
    pub url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clicktrackers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Raw>,
}

/// A tracker the buyer asks to be fired (5.8).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventTrackerResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customdata: Option<Raw>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Raw>,
}

/// Why a native document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeParseError {
    /// Where, inside the document (`assets[2].img.w`, or empty for the whole document).
    pub path: String,
    /// `json` when the text is not JSON (or not an object), `type` when a field has the wrong type.
    pub rule: &'static str,
    /// In our words.
    pub message: String,
}

/// The 1.0/1.1 wrapper: `{"native": {…}}`.
#[derive(Deserialize)]
struct Wrapper<'a> {
    #[serde(borrow, default)]
    native: Option<&'a RawValue>,
}

/// Reads a native document in the 1.2 form or inside the older `{"native": …}` wrapper. The
/// returned flag says whether the wrapper was used (paths then start with `native.`).
pub fn parse_native<T: DeserializeOwned>(text: &str) -> Result<(T, bool), NativeParseError> {
    let whole = |message: String| NativeParseError {
        path: String::new(),
        rule: "json",
        message,
    };
    if let Err(err) = serde_json::from_str::<&RawValue>(text) {
        return Err(whole(format!(
            "is not JSON (line {}, column {})",
            err.line(),
            err.column()
        )));
    }
    // serde would read a struct from an array, field by field: only an object is a document.
    if !text.trim_start().starts_with('{') {
        return Err(whole("must be a JSON object".to_owned()));
    }
    let wrapped = match serde_json::from_str::<Wrapper<'_>>(text) {
        Ok(Wrapper {
            native: Some(inner),
        }) if inner.get().trim_start().starts_with('{') => Some(inner.get()),
        _ => None,
    };
    let (body, prefix) = match wrapped {
        Some(inner) => (inner, "native."),
        None => (text, ""),
    };
    let mut de = serde_json::Deserializer::from_str(body);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => Ok((value, wrapped.is_some())),
        Err(err) => {
            let path = err.path().to_string();
            let path = if path == "." {
                prefix.trim_end_matches('.').to_owned()
            } else {
                format!("{prefix}{path}")
            };
            Err(NativeParseError {
                path,
                rule: "type",
                message: "holds a value Native 1.2 does not allow here (a wrong type, or a key \
                          given twice)"
                    .to_owned(),
            })
        }
    }
}
