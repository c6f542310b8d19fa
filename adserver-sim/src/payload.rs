//! What each call sends and what its answer means, per endpoint. Bodies are serialised once at
//! start (a batch body is the concatenation of serialised requests), so the send path does no
//! JSON work.
//!
//! | endpoint | path | one call carries |
//! | --- | --- | --- |
//! | single | `/v1/score` | one request, the line as the ETL wrote it |
//! | batch | `/v1/score/batch` | `{"requests": [...]}` with `--batch-size` requests |
//! | openrtb | `/v1/openrtb` | an OpenRTB 2.5 `BidRequest` with one impression |
//!
//! An OpenRTB call carries each field where its default OpenRTB source reads it
//! (`rtb_features::openrtb::default_source`: `userAgent` in `device.ua`, `adSlotWidth` in
//! `imp[0].banner.w`, ...); fields without a default source are not sent.

use bytes::{BufMut, Bytes, BytesMut};
use clap::ValueEnum;
use rtb_features::openrtb::{Source, default_source, place};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Result, SimError};
use crate::http::{CallError, CallErrorKind};
use crate::requests::Request;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// POST /v1/score, one request per call.
    Single,
    /// POST /v1/score/batch, --batch-size requests per call.
    Batch,
    /// POST /v1/openrtb, one OpenRTB 2.5 bid request (one impression) per call.
    Openrtb,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Single => "/v1/score",
            Endpoint::Batch => "/v1/score/batch",
            Endpoint::Openrtb => "/v1/openrtb",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Single => "single",
            Endpoint::Batch => "batch",
            Endpoint::Openrtb => "openrtb",
        }
    }
}

/// A UTC offset, `+08:00` or `Z`, in minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcOffset(i32);

impl UtcOffset {
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            SimError::BadConfig(format!(
                "time zone offset {text:?} is not valid; write it like +08:00, -05:00 or Z"
            ))
        };
        if text == "Z" || text == "z" {
            return Ok(UtcOffset(0));
        }
        let (sign, rest) = match text.as_bytes().first() {
            Some(b'+') => (1, &text[1..]),
            Some(b'-') => (-1, &text[1..]),
            _ => return Err(bad()),
        };
        let (hours, minutes) = rest.split_once(':').ok_or_else(bad)?;
        if hours.len() != 2 || minutes.len() != 2 {
            return Err(bad());
        }
        let hours: i32 = hours.parse().map_err(|_| bad())?;
        let minutes: i32 = minutes.parse().map_err(|_| bad())?;
        if hours > 18 || minutes > 59 {
            return Err(bad());
        }
        Ok(UtcOffset(sign * (hours * 60 + minutes)))
    }

    fn rfc3339(self) -> String {
        if self.0 == 0 {
            return "Z".into();
        }
        let sign = if self.0 < 0 { '-' } else { '+' };
        let m = self.0.abs();
        format!("{sign}{:02}:{:02}", m / 60, m % 60)
    }
}

/// The local time a request's day of week (1 = Sunday) and hour stand for: half past the hour
/// in the week of 10 March 2013 (a Sunday; the iPinYou season's week), at `offset`. A scorer in
/// a time zone with that offset reads the same day and hour back.
pub fn request_time(day_of_week: u8, hour: u8, offset: UtcOffset) -> String {
    format!(
        "2013-03-{:02}T{:02}:30:00{}",
        9 + u32::from(day_of_week.clamp(1, 7)),
        hour.min(23),
        offset.rfc3339()
    )
}

/// A request's day of week and hour, when it carries both (`dayOfWeek`, `hour`).
fn day_hour(request: &Request) -> Option<(u8, u8)> {
    let get = |name: &str| {
        request
            .get(name)?
            .as_u64()
            .and_then(|v| u8::try_from(v).ok())
    };
    Some((get("dayOfWeek")?, get("hour")?))
}

/// An OpenRTB 2.5 bid request carrying the request's fields where the scorer reads them, and
/// its day and hour as `ext.timestamp` at `offset`.
pub fn openrtb_request(request: &Request, offset: UtcOffset) -> Value {
    let id = match request.get("bidId") {
        Some(Value::String(s)) => s.clone(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => "request".to_owned(),
    };
    let mut root = Map::new();
    root.insert("id".into(), Value::String(id));
    root.insert("imp".into(), serde_json::json!([{ "id": "1" }]));
    for (field, value) in request {
        let Some(source) = default_source(field).and_then(|s| Source::parse(s).ok()) else {
            continue;
        };
        if !value.is_null() {
            place(&mut root, &source, value.clone());
        }
    }
    if let Some((day, hour)) = day_hour(request) {
        let ext = root
            .entry("ext")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(ext) = ext {
            ext.insert(
                "timestamp".into(),
                Value::String(request_time(day, hour, offset)),
            );
        }
    }
    Value::Object(root)
}

/// One call's body, and what a good answer to it holds.
#[derive(Debug, Clone)]
pub struct CallBody {
    pub body: Bytes,
    pub rows: usize,
    /// For OpenRTB: the day of week and hour the scorer should read from the timestamp.
    pub day_hour: Option<(u8, u8)>,
}

/// The loaded requests, serialised for one endpoint.
#[derive(Debug)]
pub struct Payloads {
    endpoint: Endpoint,
    batch_size: usize,
    /// One serialised request (or OpenRTB request) per loaded record.
    bodies: Vec<Bytes>,
    day_hours: Vec<Option<(u8, u8)>>,
}

impl Payloads {
    pub fn new(
        endpoint: Endpoint,
        batch_size: usize,
        requests: &[Request],
        offset: UtcOffset,
    ) -> Result<Self> {
        if requests.is_empty() {
            return Err(SimError::BadConfig("no requests to send".into()));
        }
        if batch_size == 0 {
            return Err(SimError::BadConfig(
                "--batch-size must be at least 1".into(),
            ));
        }
        let json = |value: serde_json::Result<Vec<u8>>| {
            value
                .map(Bytes::from)
                .map_err(|e| SimError::BadConfig(format!("cannot serialise a request: {e}")))
        };
        let bodies = requests
            .iter()
            .map(|r| match endpoint {
                Endpoint::Openrtb => json(serde_json::to_vec(&openrtb_request(r, offset))),
                Endpoint::Single | Endpoint::Batch => json(serde_json::to_vec(r)),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Payloads {
            endpoint,
            batch_size: if endpoint == Endpoint::Batch {
                batch_size
            } else {
                1
            },
            bodies,
            day_hours: requests.iter().map(day_hour).collect(),
        })
    }

    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// Rows (scored requests) per call.
    pub fn rows_per_call(&self) -> usize {
        self.batch_size
    }

    /// The body of call number `sequence`: the loaded requests in order, cycling when more are
    /// sent than were loaded.
    pub fn call(&self, sequence: u64) -> CallBody {
        let n = self.bodies.len() as u64;
        let first = sequence.wrapping_mul(self.batch_size as u64) % n;
        match self.endpoint {
            Endpoint::Single | Endpoint::Openrtb => CallBody {
                body: self.bodies[first as usize].clone(),
                rows: 1,
                day_hour: if self.endpoint == Endpoint::Openrtb {
                    self.day_hours[first as usize]
                } else {
                    None
                },
            },
            Endpoint::Batch => {
                let indexes = (0..self.batch_size as u64).map(|k| ((first + k) % n) as usize);
                let size: usize = indexes.clone().map(|i| self.bodies[i].len() + 1).sum();
                let mut body = BytesMut::with_capacity(size + 16);
                body.put_slice(b"{\"requests\":[");
                for (k, i) in indexes.enumerate() {
                    if k > 0 {
                        body.put_u8(b',');
                    }
                    body.put_slice(&self.bodies[i]);
                }
                body.put_slice(b"]}");
                CallBody {
                    body: body.freeze(),
                    rows: self.batch_size,
                    day_hour: None,
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct Likelihood {
    likelihood: f64,
}

#[derive(Deserialize)]
struct BatchAnswer {
    results: Vec<Likelihood>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenRtbAnswer {
    day_of_week: u8,
    hour: u8,
    imp: Vec<Likelihood>,
}

/// The likelihoods in a 200 answer, and whether an OpenRTB answer read another day or hour
/// than was meant.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub likelihoods: Vec<f64>,
    pub time_mismatch: bool,
}

/// Reads an answer to `call`; anything but 200 with the expected likelihoods is an error.
pub fn read_answer(
    endpoint: Endpoint,
    call: &CallBody,
    status: u16,
    body: &[u8],
) -> Result<Scored, CallError> {
    if status != 200 {
        return Err(CallError::new(
            CallErrorKind::Status(status),
            String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        ));
    }
    let bad = |e: String| CallError::new(CallErrorKind::BadResponse, e);
    let json = |e: serde_json::Error| bad(format!("the answer is not the expected json: {e}"));
    let (likelihoods, time_mismatch) = match endpoint {
        Endpoint::Single => {
            let answer: Likelihood = serde_json::from_slice(body).map_err(json)?;
            (vec![answer.likelihood], false)
        }
        Endpoint::Batch => {
            let answer: BatchAnswer = serde_json::from_slice(body).map_err(json)?;
            (
                answer.results.into_iter().map(|r| r.likelihood).collect(),
                false,
            )
        }
        Endpoint::Openrtb => {
            let answer: OpenRtbAnswer = serde_json::from_slice(body).map_err(json)?;
            let mismatch = call
                .day_hour
                .is_some_and(|expected| expected != (answer.day_of_week, answer.hour));
            (
                answer.imp.into_iter().map(|r| r.likelihood).collect(),
                mismatch,
            )
        }
    };
    if likelihoods.len() != call.rows {
        return Err(bad(format!(
            "{} likelihoods for {} requests",
            likelihoods.len(),
            call.rows
        )));
    }
    if let Some(odd) = likelihoods.iter().find(|l| !(0.0..=1.0).contains(*l)) {
        return Err(bad(format!("likelihood {odd} is not a probability")));
    }
    Ok(Scored {
        likelihoods,
        time_mismatch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(i: u8) -> Request {
        let value = serde_json::json!({
            "bidId": format!("b{i}"),
            "dayOfWeek": 1 + i % 7,
            "hour": i % 24,
            "regionId": "344",
            "cityId": "350",
            "domainId": "trqRTu",
            "advertiserId": "3386",
            "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 6_1 like Mac OS X)",
            "adSlotFloorPrice": 5,
            "biddingPrice": 300,
        });
        match value {
            Value::Object(map) => map,
            _ => unreachable!("an object"),
        }
    }

    #[test]
    fn offsets_parse_and_times_land_on_the_day_and_hour() {
        assert_eq!(UtcOffset::parse("+08:00").expect("cn"), UtcOffset(480));
        assert_eq!(UtcOffset::parse("-05:30").expect("x"), UtcOffset(-330));
        assert_eq!(UtcOffset::parse("Z").expect("utc"), UtcOffset(0));
        for bad in ["8", "+8:00", "+08", "+19:00", "UTC", ""] {
            assert!(UtcOffset::parse(bad).is_err(), "{bad}");
        }
        // 2013-03-10 was a Sunday: day 1 in Spark's numbering
        assert_eq!(request_time(1, 0, UtcOffset(0)), "2013-03-10T00:30:00Z");
        assert_eq!(
            request_time(7, 23, UtcOffset(480)),
            "2013-03-16T23:30:00+08:00"
        );
    }

    #[test]
    fn openrtb_requests_carry_what_the_scorer_reads_back() {
        use rtb_features::OpenRtbRequest;
        use rtb_features::openrtb::Context;
        let original = request(3);
        let openrtb = OpenRtbRequest::from_value(openrtb_request(&original, UtcOffset(0)))
            .expect("a valid openrtb request");
        assert_eq!(
            openrtb.timestamp(),
            Some(rtb_features::RequestTime::Text("2013-03-13T03:30:00Z"))
        );
        // the scorer's own reading of it, through the shared default sources
        let context = Context {
            day_of_week: 4,
            hour: 3,
            timestamp: "20130313033000000",
            query: &[],
        };
        for (field, value) in &original {
            let source = Source::parse(default_source(field).expect("default")).expect("parses");
            let read = openrtb.value(&source, 0, &context);
            let expected = match field.as_str() {
                "bidId" => Some(Value::from("b3/1")),
                _ => Some(value.clone()),
            };
            assert_eq!(read, expected, "{field}");
        }
    }

    #[test]
    fn calls_cycle_through_the_loaded_requests() {
        let requests: Vec<Request> = (0..5).map(request).collect();
        let single =
            Payloads::new(Endpoint::Single, 100, &requests, UtcOffset(0)).expect("payloads");
        assert_eq!(single.rows_per_call(), 1);
        let bid = |c: CallBody| -> String {
            let body: Value = serde_json::from_slice(&c.body).expect("request");
            body["bidId"].as_str().expect("id").to_owned()
        };
        assert_eq!(bid(single.call(0)), "b0");
        assert_eq!(bid(single.call(7)), "b2", "cycles past the fifth");

        let batch = Payloads::new(Endpoint::Batch, 3, &requests, UtcOffset(0)).expect("batch");
        let call = batch.call(1);
        assert_eq!(call.rows, 3);
        let body: Value = serde_json::from_slice(&call.body).expect("json");
        let ids: Vec<&str> = body["requests"]
            .as_array()
            .expect("array")
            .iter()
            .map(|r| r["bidId"].as_str().expect("id"))
            .collect();
        assert_eq!(ids, ["b3", "b4", "b0"]);

        let openrtb =
            Payloads::new(Endpoint::Openrtb, 9, &requests, UtcOffset(0)).expect("openrtb");
        let call = openrtb.call(2);
        assert_eq!(call.day_hour, Some((3, 2)));
        let body: Value = serde_json::from_slice(&call.body).expect("openrtb");
        assert_eq!(body["id"], "b2");
        assert!(Payloads::new(Endpoint::Batch, 0, &requests, UtcOffset(0)).is_err());
    }

    #[test]
    fn answers_are_checked() {
        let one = CallBody {
            body: Bytes::new(),
            rows: 1,
            day_hour: Some((2, 13)),
        };
        let ok = read_answer(
            Endpoint::Single,
            &one,
            200,
            br#"{"bidId":"b","likelihood":0.25,"modelVersion":"m"}"#,
        )
        .expect("ok");
        assert_eq!(ok.likelihoods, [0.25]);
        let kind = |endpoint, status, body: &[u8]| {
            read_answer(endpoint, &one, status, body)
                .expect_err("error")
                .kind
        };
        assert_eq!(
            kind(Endpoint::Single, 503, b"{}"),
            CallErrorKind::Status(503)
        );
        assert_eq!(
            kind(Endpoint::Single, 200, b"nope"),
            CallErrorKind::BadResponse
        );
        assert_eq!(
            kind(Endpoint::Single, 200, br#"{"likelihood":1.5}"#),
            CallErrorKind::BadResponse
        );
        assert_eq!(
            kind(Endpoint::Batch, 200, br#"{"results":[]}"#),
            CallErrorKind::BadResponse,
            "one likelihood per request"
        );
        let answer =
            br#"{"id":"b","dayOfWeek":2,"hour":14,"imp":[{"impId":"1","likelihood":0.5}]}"#;
        let scored = read_answer(Endpoint::Openrtb, &one, 200, answer).expect("ok");
        assert!(scored.time_mismatch, "hour 14 read for hour 13");
    }
}
