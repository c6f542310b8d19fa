//! The parts of an OpenRTB 2.5 / 2.6 `BidRequest` the bid-filtering model reads, and how they
//! become one [`BidRequest`] per impression.
//!
//! No maintained Rust crate covers OpenRTB 2.6, and the model needs five fields, so these types
//! hold only those (plus ids for the response). Everything else an exchange sends (unknown
//! fields, `ext` objects, 2.6 additions) is accepted and ignored, and the fields we read accept a
//! number where the spec says string, as exchanges send both.
//!
//! | model input | OpenRTB field |
//! | --- | --- |
//! | user agent | `device.ua` |
//! | region, city | `device.geo.region`, `device.geo.city` |
//! | domain | `site.domain`, else `app.bundle` |
//! | advertiser | `imp[].ext.advertiserId`, else `ext.advertiserId`, else the caller's default |
//! | day of week, hour | not in OpenRTB: the caller derives them from a time (see [`OpenRtbRequest::timestamp`]) |

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::request::BidRequest;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpenRtbError {
    #[error("imp is empty; an openrtb bid request has at least one impression")]
    NoImpressions,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenRtbRequest {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    pub imp: Vec<Imp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<Site>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<App>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Imp {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bidfloor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Site {
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub domain: Option<String>,
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub page: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct App {
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub bundle: Option<String>,
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Device {
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub ua: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo: Option<Geo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Geo {
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub region: Option<String>,
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub city: Option<String>,
}

/// A string, or a number written as its decimal text (`"region": 1` reads as `"1"`).
fn string_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(de::Error::invalid_type(
            unexpected(&other),
            &"a string or a number",
        )),
    }
}

fn opt_string_or_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(de::Error::invalid_type(
            unexpected(&other),
            &"a string, a number or null",
        )),
    }
}

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

/// A text field of an `ext` object: a string, or a number's decimal text.
fn ext_text<'a>(ext: Option<&'a Value>, key: &str) -> Option<std::borrow::Cow<'a, str>> {
    match ext?.get(key)? {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// When the bid request was made, as the exchange states it in `ext.timestamp`: epoch
/// milliseconds, or a text the caller parses (RFC 3339).
#[derive(Debug, Clone, PartialEq)]
pub enum RequestTime<'a> {
    EpochMillis(i64),
    Text(&'a str),
}

impl OpenRtbRequest {
    /// `ext.timestamp`, when present and a number or a string.
    pub fn timestamp(&self) -> Option<RequestTime<'_>> {
        match self.ext.as_ref()?.get("timestamp")? {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map(RequestTime::EpochMillis),
            Value::String(s) => Some(RequestTime::Text(s)),
            _ => None,
        }
    }

    /// The domain the ad would show on: `site.domain`, else `app.bundle`.
    pub fn domain(&self) -> Option<&str> {
        self.site
            .as_ref()
            .and_then(|s| s.domain.as_deref())
            .or_else(|| self.app.as_ref().and_then(|a| a.bundle.as_deref()))
    }

    /// One model request per impression, in `imp` order. `day_of_week` (1 = Sunday) and `hour`
    /// come from the caller, who knows the time zone the model was trained in;
    /// `default_advertiser` applies to impressions whose `ext` names none.
    pub fn bid_requests(
        &self,
        day_of_week: u8,
        hour: u8,
        default_advertiser: Option<&str>,
    ) -> Result<Vec<BidRequest>, OpenRtbError> {
        if self.imp.is_empty() {
            return Err(OpenRtbError::NoImpressions);
        }
        let device = self.device.as_ref();
        let geo = device.and_then(|d| d.geo.as_ref());
        let request_advertiser = ext_text(self.ext.as_ref(), "advertiserId");
        Ok(self
            .imp
            .iter()
            .map(|imp| {
                let advertiser = ext_text(imp.ext.as_ref(), "advertiserId")
                    .or_else(|| request_advertiser.clone())
                    .map(|a| a.into_owned())
                    .or_else(|| default_advertiser.map(str::to_owned));
                BidRequest {
                    bid_id: format!("{}/{}", self.id, imp.id),
                    day_of_week,
                    hour,
                    region_id: geo.and_then(|g| g.region.clone()),
                    city_id: geo.and_then(|g| g.city.clone()),
                    domain_id: self.domain().map(str::to_owned),
                    advertiser_id: advertiser,
                    user_agent: device.and_then(|d| d.ua.clone()),
                    bidding_price: None,
                    paying_price: None,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = r#"{
        "id": "80ce30c53c16e6ede735f123ef6e32361bfc7b22",
        "at": 1, "cur": ["USD"], "tmax": 120,
        "imp": [
            {"id": "1", "bidfloor": 0.03, "banner": {"w": 300, "h": 250, "pos": 0},
             "ext": {"advertiserId": 3358}},
            {"id": "2", "video": {"mimes": ["video/mp4"]}}
        ],
        "site": {"id": "102855", "domain": "trqRTuT-GNTYJNKbuKz", "cat": ["IAB3-1"],
                 "publisher": {"id": "8953", "name": "foobar.com"}},
        "device": {"ua": "Mozilla/5.0 (iPhone; CPU iPhone OS 6_1 like Mac OS X) AppleWebKit/536.26 (KHTML, like Gecko) Version/6.0 Mobile/10B143 Safari/8536.25",
                   "ip": "123.145.167.10", "devicetype": 1,
                   "geo": {"country": "CHN", "region": 1, "city": "5", "lat": 35.012345, "ext": {"x": 1}}},
        "user": {"id": "55816b39711f9b5acf3b90e313ed29e51665623f"},
        "regs": {"ext": {"gdpr": 0}},
        "source": {"schain": {"complete": 1, "nodes": []}},
        "ext": {"advertiserId": "1458", "timestamp": 1363000000000, "anything": [1, 2, 3]}
    }"#;

    #[test]
    fn reads_a_full_request_and_ignores_what_it_does_not_need() {
        let request: OpenRtbRequest = serde_json::from_str(SAMPLE).expect("parses");
        assert_eq!(
            request.timestamp(),
            Some(RequestTime::EpochMillis(1_363_000_000_000))
        );
        let rows = request.bid_requests(2, 13, Some("9999")).expect("imps");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].bid_id, "80ce30c53c16e6ede735f123ef6e32361bfc7b22/1");
        assert_eq!(
            rows[0].advertiser_id.as_deref(),
            Some("3358"),
            "imp ext wins"
        );
        assert_eq!(
            rows[1].advertiser_id.as_deref(),
            Some("1458"),
            "then request ext"
        );
        assert_eq!(rows[0].region_id.as_deref(), Some("1"));
        assert_eq!(rows[0].city_id.as_deref(), Some("5"));
        assert_eq!(rows[0].domain_id.as_deref(), Some("trqRTuT-GNTYJNKbuKz"));
        assert_eq!(rows[0].device_type(), crate::DeviceType::Smartphone);
        assert_eq!((rows[1].day_of_week, rows[1].hour), (2, 13));
    }

    #[test]
    fn apps_use_their_bundle_and_a_bare_request_is_all_unknown() {
        let app = r#"{"id":"r","imp":[{"id":"i"}],"app":{"bundle":"com.example.game"}}"#;
        let request: OpenRtbRequest = serde_json::from_str(app).expect("parses");
        let rows = request.bid_requests(1, 0, None).expect("one imp");
        assert_eq!(rows[0].domain_id.as_deref(), Some("com.example.game"));
        assert_eq!(rows[0].advertiser_id, None);
        assert_eq!(rows[0].user_agent, None);
        let none: OpenRtbRequest = serde_json::from_str(r#"{"id":"r","imp":[]}"#).expect("parses");
        assert_eq!(
            none.bid_requests(1, 0, None),
            Err(OpenRtbError::NoImpressions)
        );
    }

    #[test]
    fn wrong_types_are_named() {
        let err = serde_json::from_str::<OpenRtbRequest>(
            r#"{"id":"r","imp":[{"id":"i"}],"device":{"ua":["x"]}}"#,
        )
        .expect_err("ua must be text");
        assert!(
            err.to_string().contains("a string, a number or null"),
            "{err}"
        );
        let err = serde_json::from_str::<OpenRtbRequest>(r#"{"id":"r"}"#).expect_err("no imp");
        assert!(err.to_string().contains("missing field `imp`"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary bytes never panic the decoders.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(request) = serde_json::from_slice::<OpenRtbRequest>(&bytes) {
                let _ = request.bid_requests(1, 0, None);
                let _ = request.timestamp();
            }
            if let Ok(request) = serde_json::from_slice::<BidRequest>(&bytes) {
                let _ = request.device_type();
            }
        }

        /// Mutations of a real request (a byte replaced, cut short) never panic either.
        #[test]
        fn mutated_requests_never_panic(at in 0usize..2000, byte in any::<u8>(), cut in 0usize..2000) {
            let mut bytes = SAMPLE.as_bytes().to_vec();
            let at = at % bytes.len();
            bytes[at] = byte;
            bytes.truncate(cut.max(1));
            if let Ok(request) = serde_json::from_slice::<OpenRtbRequest>(&bytes) {
                let _ = request.bid_requests(7, 23, Some("a"));
            }
        }
    }
}
