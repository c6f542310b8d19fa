//! Request bodies to typed requests, with errors that name the problem. Decoding never panics:
//! the property tests feed it arbitrary bytes.

use rtb_features::{BidRequest, OpenRtbRequest};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::metrics::ErrorKind;

/// A request the scorer will not score, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    pub kind: ErrorKind,
    pub message: String,
}

impl DecodeError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        DecodeError {
            kind,
            message: message.into(),
        }
    }

    fn at(self, path: &str) -> Self {
        DecodeError {
            kind: self.kind,
            message: format!("{path}: {}", self.message),
        }
    }
}

/// serde_json's categories as error kinds: bad syntax or a truncated body is malformed JSON;
/// a readable document with the wrong shape is a wrong type, a missing field or a bad value.
fn from_json_error(err: &serde_json::Error, body: &[u8]) -> DecodeError {
    use serde_json::error::Category;
    let message = err.to_string();
    let kind = match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => ErrorKind::MalformedJson,
        Category::Data if message.starts_with("missing field") => ErrorKind::MissingField,
        Category::Data if message.starts_with("invalid type") => ErrorKind::WrongType,
        Category::Data => ErrorKind::InvalidValue,
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return DecodeError::new(
            ErrorKind::MalformedJson,
            "the body is empty; send a json object",
        );
    }
    DecodeError::new(kind, message)
}

/// Checks what serde cannot: the ranges of day of week and hour.
fn validate(request: &BidRequest) -> Result<(), DecodeError> {
    if !(1..=7).contains(&request.day_of_week) {
        return Err(DecodeError::new(
            ErrorKind::InvalidValue,
            format!(
                "dayOfWeek is {}; it must be 1 (Sunday) to 7 (Saturday)",
                request.day_of_week
            ),
        ));
    }
    if request.hour > 23 {
        return Err(DecodeError::new(
            ErrorKind::InvalidValue,
            format!("hour is {}; it must be 0 to 23", request.hour),
        ));
    }
    Ok(())
}

/// One request in the original's fields.
pub fn score_request(body: &[u8]) -> Result<BidRequest, DecodeError> {
    let request: BidRequest =
        serde_json::from_slice(body).map_err(|e| from_json_error(&e, body))?;
    validate(&request)?;
    Ok(request)
}

#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(borrow)]
    requests: Vec<&'a RawValue>,
}

/// `{"requests": [...]}` with at most `max` requests; an error names the request it is in.
pub fn batch_request(body: &[u8], max: usize) -> Result<Vec<BidRequest>, DecodeError> {
    let batch: Batch<'_> = serde_json::from_slice(body).map_err(|e| from_json_error(&e, body))?;
    if batch.requests.len() > max {
        return Err(DecodeError::new(
            ErrorKind::BatchTooLarge,
            format!(
                "the batch holds {} requests; at most {max} are allowed per call",
                batch.requests.len()
            ),
        ));
    }
    batch
        .requests
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            score_request(raw.get().as_bytes()).map_err(|e| e.at(&format!("requests[{i}]")))
        })
        .collect()
}

/// An OpenRTB 2.5 / 2.6 bid request; at most `max` impressions.
pub fn openrtb_request(body: &[u8], max: usize) -> Result<OpenRtbRequest, DecodeError> {
    let request: OpenRtbRequest =
        serde_json::from_slice(body).map_err(|e| from_json_error(&e, body))?;
    if request.imp.is_empty() {
        return Err(DecodeError::new(
            ErrorKind::InvalidValue,
            "imp is empty; an openrtb bid request has at least one impression",
        ));
    }
    if request.imp.len() > max {
        return Err(DecodeError::new(
            ErrorKind::BatchTooLarge,
            format!(
                "the request holds {} impressions; at most {max} are allowed per call",
                request.imp.len()
            ),
        ));
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = r#"{"bidId":"b1","dayOfWeek":2,"hour":13,"regionId":"1","cityId":"1",
        "domainId":"d","advertiserId":"1458","userAgent":"Mozilla/5.0","biddingPrice":300,"payingPrice":12}"#;

    #[test]
    fn names_each_kind_of_bad_input() {
        assert!(score_request(GOOD.as_bytes()).is_ok());
        let kind = |body: &str| score_request(body.as_bytes()).expect_err(body).kind;
        assert_eq!(kind("{\"bidId\":"), ErrorKind::MalformedJson);
        assert_eq!(kind("not json"), ErrorKind::MalformedJson);
        assert_eq!(kind(""), ErrorKind::MalformedJson);
        assert_eq!(
            kind(r#"{"bidId":"b","dayOfWeek":2}"#),
            ErrorKind::MissingField
        );
        assert_eq!(
            kind(
                r#"{"bidId":"b","dayOfWeek":"2","hour":1,"regionId":null,"cityId":null,"domainId":null,"advertiserId":null,"userAgent":null}"#
            ),
            ErrorKind::WrongType
        );
        assert_eq!(
            kind(
                r#"{"bidId":"b","dayOfWeek":300,"hour":1,"regionId":null,"cityId":null,"domainId":null,"advertiserId":null,"userAgent":null}"#
            ),
            ErrorKind::InvalidValue
        );
        let err = score_request(
            r#"{"bidId":"b","dayOfWeek":8,"hour":1,"regionId":null,"cityId":null,"domainId":null,"advertiserId":null,"userAgent":null}"#.as_bytes(),
        )
        .expect_err("day 8");
        assert!(err.message.contains("dayOfWeek is 8"), "{}", err.message);
        let err = score_request(r#"{"bidId":"b","dayOfWeek":2}"#.as_bytes()).expect_err("missing");
        assert!(err.message.contains("hour"), "{}", err.message);
    }

    #[test]
    fn batches_are_bounded_and_name_the_bad_element() {
        let body = format!("{{\"requests\":[{GOOD},{GOOD}]}}");
        assert_eq!(batch_request(body.as_bytes(), 2).expect("two").len(), 2);
        let err = batch_request(body.as_bytes(), 1).expect_err("over");
        assert_eq!(err.kind, ErrorKind::BatchTooLarge);
        let body = format!("{{\"requests\":[{GOOD},{{\"bidId\":\"x\"}}]}}");
        let err = batch_request(body.as_bytes(), 10).expect_err("bad second");
        assert_eq!(err.kind, ErrorKind::MissingField);
        assert!(
            err.message.starts_with("requests[1]: missing field"),
            "{}",
            err.message
        );
        let err = batch_request(b"[1,2]", 10).expect_err("not an object");
        assert_eq!(err.kind, ErrorKind::WrongType);
    }

    #[test]
    fn openrtb_needs_impressions() {
        let err = openrtb_request(br#"{"id":"r","imp":[]}"#, 10).expect_err("none");
        assert_eq!(err.kind, ErrorKind::InvalidValue);
        let err = openrtb_request(br#"{"id":"r","imp":[{"id":"1"},{"id":"2"}]}"#, 1)
            .expect_err("too many");
        assert_eq!(err.kind, ErrorKind::BatchTooLarge);
        assert!(openrtb_request(br#"{"id":"r","imp":[{"id":"1"}],"ext":{"x":[]}}"#, 1).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = score_request(&bytes);
            let _ = batch_request(&bytes, 5);
            let _ = openrtb_request(&bytes, 5);
        }

        /// Json-looking text (the shape a fuzzer reaches slowly) never panics either.
        #[test]
        fn json_like_text_never_panics(text in r#"[\{\}\[\]":,0-9a-zA-Z \-\.]{0,200}"#) {
            let _ = score_request(text.as_bytes());
            let _ = batch_request(text.as_bytes(), 5);
            let _ = openrtb_request(text.as_bytes(), 5);
        }

        /// Any values in the right fields either decode to a valid request or name a problem.
        #[test]
        fn typed_fields_decode_or_explain(
            dow in any::<i64>(), hour in any::<i64>(),
            region in prop::option::of(".{0,12}"), ua in prop::option::of(".{0,40}"),
        ) {
            let body = serde_json::json!({
                "bidId": "b", "dayOfWeek": dow, "hour": hour, "regionId": region,
                "cityId": null, "domainId": "d", "advertiserId": null, "userAgent": ua,
            });
            let body = serde_json::to_vec(&body).expect("json");
            match score_request(&body) {
                Ok(request) => {
                    prop_assert!((1..=7).contains(&request.day_of_week) && request.hour < 24);
                    let _ = request.device_type();
                }
                Err(err) => prop_assert!(
                    matches!(err.kind, ErrorKind::InvalidValue),
                    "{:?}", err
                ),
            }
        }
    }
}
