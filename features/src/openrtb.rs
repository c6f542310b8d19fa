//! OpenRTB 2.5 / 2.6 bid requests as feature-job requests: one request row per impression,
//! each request field read from where the contract's `openrtb` mapping says.
//!
//! A source is one or more alternatives separated by `|`, the first present one wins:
//! - a dotted path from the top of the bid request (`device.geo.region`, `site.domain`), or
//!   from the impression being scored when it starts with `imp.` (`imp.bidfloor`,
//!   `imp.banner.w`, `imp.ext.advertiserId`);
//! - `@id`: `<request id>/<imp id>`;
//! - `@day_of_week` (1 = Sunday) and `@hour`: the request's time (`ext.timestamp`, epoch
//!   milliseconds or RFC 3339; else the time it arrived) in the contract's time zone;
//! - `@timestamp`: that time as the logs write it (`yyyyMMddHHmmssSSS`), for jobs that derive
//!   their time features from the `Timestamp` column;
//! - `@query.NAME`: the scoring call's query-string parameter `NAME`.
//!
//! Fields the kit's jobs use have default sources ([`default_source`]); a job adds or replaces
//! one with `-- openrtb: field = source`. Everything else an exchange sends is ignored.

use serde_json::{Map, Value};
use std::borrow::Cow;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpenRtbError {
    #[error("imp is empty; an openrtb bid request has at least one impression")]
    NoImpressions,
    #[error("an openrtb bid request is a json object with id and imp")]
    NotAnObject,
    #[error("id must be a string or a number")]
    BadId,
    #[error("imp must be an array of objects with an id")]
    BadImp,
    #[error(
        "openrtb source {0:?} is not a path (device.ua, imp.bidfloor), @id, @day_of_week, @hour or @query.NAME"
    )]
    BadSource(String),
}

/// The default source of a request field named as in the kit's jobs.
pub fn default_source(field: &str) -> Option<&'static str> {
    Some(match field {
        "bidId" => "@id",
        "dayOfWeek" => "@day_of_week",
        "hour" => "@hour",
        "timestamp" => "@timestamp",
        "regionId" => "device.geo.region",
        "cityId" => "device.geo.city",
        "domainId" => "site.domain | app.bundle",
        "advertiserId" => "imp.ext.advertiserId | ext.advertiserId | @query.advertiserId",
        "userAgent" => "device.ua",
        "ip" => "device.ip",
        "url" => "site.page",
        "adExchange" => "ext.adExchange",
        "adSlotId" => "imp.tagid",
        "adSlotWidth" => "imp.banner.w",
        "adSlotHeight" => "imp.banner.h",
        "adSlotVisibility" => "imp.ext.visibility",
        "adSlotFormat" => "imp.ext.format",
        "adSlotFloorPrice" => "imp.bidfloor",
        "biddingPrice" => "imp.ext.biddingPrice",
        _ => return None,
    })
}

/// One alternative of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Id,
    DayOfWeek,
    Hour,
    Timestamp,
    Query(String),
    /// A path from the top, or (`imp: true`) from the impression.
    Path {
        imp: bool,
        keys: Vec<String>,
    },
}

/// A parsed source: its alternatives in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source(pub Vec<Part>);

impl Source {
    pub fn parse(text: &str) -> Result<Source, OpenRtbError> {
        let bad = || OpenRtbError::BadSource(text.to_owned());
        let mut parts = Vec::new();
        for alt in text.split('|').map(str::trim) {
            let part = match alt {
                "@id" => Part::Id,
                "@day_of_week" => Part::DayOfWeek,
                "@hour" => Part::Hour,
                "@timestamp" => Part::Timestamp,
                _ if alt.starts_with("@query.") && alt.len() > 7 => {
                    Part::Query(alt[7..].to_owned())
                }
                _ => {
                    let keys: Vec<String> = alt.split('.').map(str::to_owned).collect();
                    if keys.iter().any(|k| {
                        k.is_empty()
                            || !k
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    }) {
                        return Err(bad());
                    }
                    match keys.split_first() {
                        Some((first, rest)) if first == "imp" && !rest.is_empty() => Part::Path {
                            imp: true,
                            keys: rest.to_vec(),
                        },
                        Some((first, _)) if first == "imp" => return Err(bad()),
                        _ => Part::Path { imp: false, keys },
                    }
                }
            };
            parts.push(part);
        }
        if parts.is_empty() {
            return Err(bad());
        }
        Ok(Source(parts))
    }

    /// Where a simulator puts a value so that this source reads it back: the first path
    /// alternative (the top-level request id for `@id`).
    pub fn first_path(&self) -> Option<(bool, &[String])> {
        self.0.iter().find_map(|p| match p {
            Part::Path { imp, keys } => Some((*imp, keys.as_slice())),
            _ => None,
        })
    }
}

/// What the caller knows beyond the body: the request's time in the contract's zone (its day of
/// week, hour and log timestamp), the query.
pub struct Context<'a> {
    pub day_of_week: u8,
    pub hour: u8,
    /// `yyyyMMddHHmmssSSS`.
    pub timestamp: &'a str,
    pub query: &'a [(String, String)],
}

/// When the bid request was made, as the exchange states it in `ext.timestamp`: epoch
/// milliseconds, or a text the caller parses (RFC 3339).
#[derive(Debug, Clone, PartialEq)]
pub enum RequestTime<'a> {
    EpochMillis(i64),
    Text(&'a str),
}

/// A decoded OpenRTB bid request: its id and impressions checked, the rest kept as json.
#[derive(Debug, Clone)]
pub struct OpenRtbRequest {
    pub id: String,
    pub imp_ids: Vec<String>,
    root: Map<String, Value>,
}

fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl OpenRtbRequest {
    pub fn from_value(value: Value) -> Result<Self, OpenRtbError> {
        let Value::Object(root) = value else {
            return Err(OpenRtbError::NotAnObject);
        };
        let id = root
            .get("id")
            .and_then(id_text)
            .ok_or(OpenRtbError::BadId)?;
        let imps = root
            .get("imp")
            .and_then(Value::as_array)
            .ok_or(OpenRtbError::BadImp)?;
        if imps.is_empty() {
            return Err(OpenRtbError::NoImpressions);
        }
        let imp_ids = imps
            .iter()
            .map(|imp| imp.get("id").and_then(id_text))
            .collect::<Option<Vec<_>>>()
            .ok_or(OpenRtbError::BadImp)?;
        Ok(OpenRtbRequest { id, imp_ids, root })
    }

    pub fn imps(&self) -> usize {
        self.imp_ids.len()
    }

    /// What names impression `imp` as a request: `<request id>/<imp id>`.
    pub fn imp_key(&self, imp: usize) -> Option<String> {
        Some(format!("{}/{}", self.id, self.imp_ids.get(imp)?))
    }

    /// `ext.timestamp`, when present and a number or a string.
    pub fn timestamp(&self) -> Option<RequestTime<'_>> {
        match self.root.get("ext")?.get("timestamp")? {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map(RequestTime::EpochMillis),
            Value::String(s) => Some(RequestTime::Text(s)),
            _ => None,
        }
    }

    /// The value `source` names for impression `imp`; `None` when no alternative is present
    /// (json null counts as absent).
    pub fn value(&self, source: &Source, imp: usize, context: &Context<'_>) -> Option<Value> {
        self.value_ref(source, imp, context).map(Cow::into_owned)
    }

    /// [`Self::value`] borrowed from the request where it is in it: a request-level field
    /// (the user agent, the domain) is read, not copied, for each of many impressions.
    pub fn value_ref(
        &self,
        source: &Source,
        imp: usize,
        context: &Context<'_>,
    ) -> Option<Cow<'_, Value>> {
        for part in &source.0 {
            let found = match part {
                Part::Id => self.imp_key(imp).map(|k| Cow::Owned(Value::String(k))),
                Part::DayOfWeek => Some(Cow::Owned(Value::from(context.day_of_week))),
                Part::Hour => Some(Cow::Owned(Value::from(context.hour))),
                Part::Timestamp => Some(Cow::Owned(Value::from(context.timestamp))),
                Part::Query(name) => context
                    .query
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| Cow::Owned(Value::String(v.clone()))),
                Part::Path { imp: in_imp, keys } => {
                    self.path(*in_imp, keys, imp).map(Cow::Borrowed)
                }
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }
}

impl OpenRtbRequest {
    fn path(&self, in_imp: bool, keys: &[String], imp: usize) -> Option<&Value> {
        let (mut at, rest) = if in_imp {
            (self.root.get("imp")?.get(imp)?, keys)
        } else {
            (self.root.get(keys.first()?)?, &keys[1..])
        };
        for key in rest {
            at = at.get(key)?;
        }
        (!at.is_null()).then_some(at)
    }
}

/// Places `value` where `source` reads it from, in an OpenRTB request with one impression
/// under construction (`root`); used by the simulator to replay request rows as OpenRTB.
pub fn place(root: &mut Map<String, Value>, source: &Source, value: Value) {
    let Some((in_imp, keys)) = source.first_path() else {
        return;
    };
    let mut at: &mut Map<String, Value> = if in_imp {
        let imps = root
            .entry("imp")
            .or_insert_with(|| Value::Array(vec![Value::Object(Map::new())]));
        match imps.as_array_mut().and_then(|a| a.first_mut()) {
            Some(Value::Object(imp)) => imp,
            _ => return,
        }
    } else {
        root
    };
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    for key in parents {
        let next = at
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        match next {
            Value::Object(map) => at = map,
            _ => return,
        }
    }
    at.insert(last.clone(), value);
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
            {"id": 2, "video": {"mimes": ["video/mp4"]}}
        ],
        "site": {"id": "102855", "domain": "trqRTuT-GNTYJNKbuKz", "cat": ["IAB3-1"]},
        "device": {"ua": "Mozilla/5.0 (iPhone)", "ip": "123.145.167.10",
                   "geo": {"country": "CHN", "region": 1, "city": "5"}},
        "ext": {"advertiserId": "1458", "timestamp": 1363000000000, "anything": [1, 2, 3]}
    }"#;

    fn get(request: &OpenRtbRequest, field: &str, imp: usize) -> Option<Value> {
        let source = Source::parse(default_source(field).expect("default")).expect("parses");
        let query = vec![("advertiserId".to_owned(), "9999".to_owned())];
        let context = Context {
            day_of_week: 2,
            hour: 13,
            timestamp: "20130311133000000",
            query: &query,
        };
        request.value(&source, imp, &context)
    }

    #[test]
    fn reads_a_full_request_through_the_default_sources() {
        let request =
            OpenRtbRequest::from_value(serde_json::from_str(SAMPLE).expect("json")).expect("ok");
        assert_eq!(
            request.timestamp(),
            Some(RequestTime::EpochMillis(1_363_000_000_000))
        );
        assert_eq!(request.imp_ids, ["1", "2"]);
        assert_eq!(
            get(&request, "bidId", 1),
            Some(Value::from("80ce30c53c16e6ede735f123ef6e32361bfc7b22/2"))
        );
        assert_eq!(
            get(&request, "advertiserId", 0),
            Some(Value::from(3358)),
            "imp ext wins"
        );
        assert_eq!(
            get(&request, "advertiserId", 1),
            Some(Value::from("1458")),
            "then request ext"
        );
        assert_eq!(get(&request, "regionId", 0), Some(Value::from(1)));
        assert_eq!(get(&request, "adSlotWidth", 0), Some(Value::from(300)));
        assert_eq!(get(&request, "adSlotWidth", 1), None);
        assert_eq!(get(&request, "hour", 1), Some(Value::from(13)));
        assert_eq!(
            get(&request, "timestamp", 0),
            Some(Value::from("20130311133000000"))
        );
        let bare = OpenRtbRequest::from_value(serde_json::json!({"id": "r", "imp": [{"id": "i"}]}))
            .expect("ok");
        assert_eq!(
            get(&bare, "advertiserId", 0),
            Some(Value::from("9999")),
            "then the query"
        );
        assert_eq!(get(&bare, "userAgent", 0), None);
    }

    #[test]
    fn bad_requests_and_sources_are_named() {
        let bad = |v: Value| OpenRtbRequest::from_value(v).expect_err("bad");
        assert_eq!(
            bad(serde_json::json!({"id": "r", "imp": []})),
            OpenRtbError::NoImpressions
        );
        assert_eq!(bad(serde_json::json!([1])), OpenRtbError::NotAnObject);
        assert_eq!(
            bad(serde_json::json!({"imp": [{"id": "1"}]})),
            OpenRtbError::BadId
        );
        assert_eq!(
            bad(serde_json::json!({"id": "r", "imp": [{}]})),
            OpenRtbError::BadImp
        );
        for source in ["", "imp", "a..b", "@nope", "device.u a"] {
            assert!(Source::parse(source).is_err(), "{source}");
        }
    }

    #[test]
    fn placed_values_read_back() {
        let mut root = Map::new();
        root.insert("id".into(), Value::from("r"));
        for (field, value) in [
            ("userAgent", Value::from("ua")),
            ("advertiserId", Value::from("1458")),
            ("adSlotFloorPrice", Value::from(5)),
            ("domainId", Value::from("d")),
        ] {
            let source = Source::parse(default_source(field).expect("default")).expect("parses");
            place(&mut root, &source, value);
        }
        root.get_mut("imp").expect("imp")[0]
            .as_object_mut()
            .expect("object")
            .insert("id".into(), Value::from("1"));
        let request = OpenRtbRequest::from_value(Value::Object(root)).expect("ok");
        assert_eq!(get(&request, "userAgent", 0), Some(Value::from("ua")));
        assert_eq!(get(&request, "advertiserId", 0), Some(Value::from("1458")));
        assert_eq!(get(&request, "adSlotFloorPrice", 0), Some(Value::from(5)));
        assert_eq!(get(&request, "domainId", 0), Some(Value::from("d")));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Mutations of a real request (a byte replaced, cut short) never panic.
        #[test]
        fn mutated_requests_never_panic(at in 0usize..2000, byte in any::<u8>(), cut in 0usize..2000) {
            let mut bytes = SAMPLE.as_bytes().to_vec();
            let at = at % bytes.len();
            bytes[at] = byte;
            bytes.truncate(cut.max(1));
            if let Ok(value) = serde_json::from_slice::<Value>(&bytes)
                && let Ok(request) = OpenRtbRequest::from_value(value)
            {
                for field in ["bidId", "advertiserId", "adSlotWidth", "userAgent"] {
                    let _ = get(&request, field, 0);
                    let _ = get(&request, field, 5);
                }
                let _ = request.timestamp();
            }
        }
    }
}
