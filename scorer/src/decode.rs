//! Request bodies to request rows: json objects (or OpenRTB impressions) typed by the model's
//! feature contract into one Arrow batch, with errors that name the problem. Decoding never
//! panics: the property tests feed it arbitrary bytes.
//!
//! A request field takes the json value as it is: a missing field or `null` is null, as a
//! request written by the ETL omits a null field. A string field also takes a number (its
//! decimal text, as exchanges send ids both ways); an integer field takes whole numbers only.
//! Unknown fields are ignored. The contract's key field must be present: it names the answer.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use datafusion::arrow::datatypes::SchemaRef;
use rtb_features::openrtb::{Context, Source};
use rtb_features::{FeatureContract, FieldType, OpenRtbRequest};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

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

enum Column {
    String(StringBuilder),
    Integer(Int64Builder),
    Float(Float64Builder),
    Boolean(BooleanBuilder),
}

impl Column {
    fn new(field_type: FieldType, capacity: usize) -> Column {
        match field_type {
            FieldType::String => {
                Column::String(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            FieldType::Integer => Column::Integer(Int64Builder::with_capacity(capacity)),
            FieldType::Float => Column::Float(Float64Builder::with_capacity(capacity)),
            FieldType::Boolean => Column::Boolean(BooleanBuilder::with_capacity(capacity)),
        }
    }

    fn null(&mut self) {
        match self {
            Column::String(b) => b.append_null(),
            Column::Integer(b) => b.append_null(),
            Column::Float(b) => b.append_null(),
            Column::Boolean(b) => b.append_null(),
        }
    }

    /// Appends `value`; `lenient` also reads numbers written as strings (OpenRTB).
    fn push(&mut self, name: &str, value: &Value, lenient: bool) -> Result<(), DecodeError> {
        let wrong = |expected: &str| {
            DecodeError::new(
                ErrorKind::WrongType,
                format!("{name} is {}; it must be {expected} or null", shown(value)),
            )
        };
        match (self, value) {
            (column, Value::Null) => column.null(),
            (Column::String(b), Value::String(s)) => b.append_value(s),
            (Column::String(b), Value::Number(n)) => b.append_value(n.to_string()),
            (Column::String(_), _) => return Err(wrong("a string")),
            (Column::Integer(b), Value::Number(n)) => match n.as_i64() {
                Some(i) => b.append_value(i),
                None => {
                    return Err(DecodeError::new(
                        ErrorKind::InvalidValue,
                        format!(
                            "{name} is {n}; it must be a whole number between -2^63 and 2^63-1"
                        ),
                    ));
                }
            },
            (Column::Integer(b), Value::String(s)) if lenient => match s.trim().parse::<i64>() {
                Ok(i) => b.append_value(i),
                Err(_) => return Err(wrong("a whole number")),
            },
            (Column::Integer(_), _) => return Err(wrong("a whole number")),
            (Column::Float(b), Value::Number(n)) => match n.as_f64() {
                Some(f) => b.append_value(f),
                None => return Err(wrong("a number")),
            },
            (Column::Float(b), Value::String(s)) if lenient => match s.trim().parse::<f64>() {
                Ok(f) => b.append_value(f),
                Err(_) => return Err(wrong("a number")),
            },
            (Column::Float(_), _) => return Err(wrong("a number")),
            (Column::Boolean(b), Value::Bool(v)) => b.append_value(*v),
            (Column::Boolean(_), _) => return Err(wrong("true or false")),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::String(b) => Arc::new(b.finish()),
            Column::Integer(b) => Arc::new(b.finish()),
            Column::Float(b) => Arc::new(b.finish()),
            Column::Boolean(b) => Arc::new(b.finish()),
        }
    }
}

/// A value as an error message shows it: short, whatever it is.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 40 {
        let mut cut = 40;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &text[..cut])
    } else {
        text
    }
}

/// Request rows being decoded for one model's contract.
pub struct RequestRows<'a> {
    schema: SchemaRef,
    contract: &'a FeatureContract,
    columns: Vec<Column>,
    keys: Vec<String>,
}

impl<'a> RequestRows<'a> {
    pub fn new(contract: &'a FeatureContract, schema: &SchemaRef, capacity: usize) -> Self {
        RequestRows {
            schema: Arc::clone(schema),
            contract,
            columns: contract
                .request
                .iter()
                .map(|f| Column::new(f.field_type, capacity))
                .collect(),
            keys: Vec::with_capacity(capacity),
        }
    }

    /// The keys of the rows pushed so far, as the answers name them.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// One json request.
    pub fn push(&mut self, request: &Map<String, Value>) -> Result<(), DecodeError> {
        let key_name = &self.contract.key;
        let key = match request.get(key_name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(DecodeError::new(
                    ErrorKind::WrongType,
                    format!("{key_name} is {}; it must be a string", shown(other)),
                ));
            }
            None => {
                return Err(DecodeError::new(
                    ErrorKind::MissingField,
                    format!("missing field `{key_name}`: it names the request in the answer"),
                ));
            }
        };
        for (field, column) in self.contract.request.iter().zip(&mut self.columns) {
            let name = &field.name;
            match request.get(name) {
                Some(value) => column.push(name, value, false)?,
                None => column.null(),
            }
        }
        self.keys.push(key);
        Ok(())
    }

    /// One OpenRTB impression, each field read from its source.
    pub fn push_openrtb(
        &mut self,
        request: &OpenRtbRequest,
        imp: usize,
        sources: &[Option<Source>],
        context: &Context<'_>,
    ) -> Result<(), DecodeError> {
        let key = request.imp_key(imp).unwrap_or_default();
        for ((field, column), source) in self
            .contract
            .request
            .iter()
            .zip(&mut self.columns)
            .zip(sources)
        {
            let name = &field.name;
            match source.as_ref().and_then(|s| request.value(s, imp, context)) {
                Some(value) => column
                    .push(name, &value, true)
                    .map_err(|e| e.at(&format!("imp[{imp}] field {name}")))?,
                None => column.null(),
            }
        }
        self.keys.push(key);
        Ok(())
    }

    pub fn finish(&mut self) -> Result<RecordBatch, DecodeError> {
        let columns = self.columns.iter_mut().map(Column::finish).collect();
        RecordBatch::try_new(Arc::clone(&self.schema), columns).map_err(|e| {
            DecodeError::new(
                ErrorKind::Internal,
                format!("cannot assemble the request rows: {e}"),
            )
        })
    }
}

fn object(body: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    serde_json::from_slice(body).map_err(|e| from_json_error(&e, body))
}

/// One request: a json object of the contract's request fields.
pub fn score_request(body: &[u8], rows: &mut RequestRows<'_>) -> Result<(), DecodeError> {
    rows.push(&object(body)?)
}

#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(borrow)]
    requests: Vec<&'a RawValue>,
}

/// `{"requests": [...]}` with at most `max` requests; an error names the request it is in.
pub fn batch_request(
    body: &[u8],
    max: usize,
    rows: &mut RequestRows<'_>,
) -> Result<(), DecodeError> {
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
    for (i, raw) in batch.requests.iter().enumerate() {
        score_request(raw.get().as_bytes(), rows).map_err(|e| e.at(&format!("requests[{i}]")))?;
    }
    Ok(())
}

/// An OpenRTB 2.5 / 2.6 bid request; at most `max` impressions.
pub fn openrtb_request(body: &[u8], max: usize) -> Result<OpenRtbRequest, DecodeError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| from_json_error(&e, body))?;
    let request = OpenRtbRequest::from_value(value).map_err(|e| {
        let kind = match e {
            rtb_features::OpenRtbError::NoImpressions => ErrorKind::InvalidValue,
            _ => ErrorKind::WrongType,
        };
        DecodeError::new(kind, e.to_string())
    })?;
    if request.imps() > max {
        return Err(DecodeError::new(
            ErrorKind::BatchTooLarge,
            format!(
                "the request holds {} impressions; at most {max} are allowed per call",
                request.imps()
            ),
        ));
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rtb_features::RequestField;

    const GOOD: &str = r#"{"bidId":"b1","dayOfWeek":2,"hour":13,"regionId":"1","cityId":"1",
        "domainId":"d","advertiserId":"1458","userAgent":"Mozilla/5.0","biddingPrice":300,"floor":1.5,"extra":[1]}"#;

    fn contract() -> FeatureContract {
        let field = |name: &str, field_type| RequestField {
            name: name.into(),
            field_type,
        };
        FeatureContract {
            format: 1,
            version: String::new(),
            job: "t".into(),
            key: "bidId".into(),
            request: vec![
                field("bidId", FieldType::String),
                field("dayOfWeek", FieldType::Integer),
                field("hour", FieldType::Integer),
                field("regionId", FieldType::String),
                field("userAgent", FieldType::String),
                field("floor", FieldType::Float),
                field("mobile", FieldType::Boolean),
            ],
            features: Vec::new(),
            label: "label".into(),
            price: None,
            vocabulary_version: String::new(),
            vocabulary_columns: Vec::new(),
            openrtb: Default::default(),
            time_zone: "UTC".into(),
        }
    }

    fn rows() -> RequestRows<'static> {
        static CONTRACT: std::sync::OnceLock<FeatureContract> = std::sync::OnceLock::new();
        let c = CONTRACT.get_or_init(contract);
        RequestRows::new(c, &rtb_expr::request_schema(c), 4)
    }

    fn decode(body: &str) -> Result<RecordBatch, DecodeError> {
        let mut rows = rows();
        score_request(body.as_bytes(), &mut rows)?;
        rows.finish()
    }

    #[test]
    fn fields_are_typed_by_the_contract() {
        let batch = decode(GOOD).expect("decodes");
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.num_columns(), 7);
        assert!(batch.column(6).is_null(0), "a missing field is null");
        let batch = decode(r#"{"bidId":7,"regionId":344,"hour":null}"#).expect("numbers as ids");
        let region = batch
            .column(3)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .expect("text");
        assert_eq!(region.value(0), "344");
        assert!(batch.column(2).is_null(0));
    }

    #[test]
    fn names_each_kind_of_bad_input() {
        let kind = |body: &str| decode(body).expect_err(body).kind;
        assert_eq!(kind("{\"bidId\":"), ErrorKind::MalformedJson);
        assert_eq!(kind("not json"), ErrorKind::MalformedJson);
        assert_eq!(kind(""), ErrorKind::MalformedJson);
        assert_eq!(kind(r#"{"hour":2}"#), ErrorKind::MissingField);
        assert_eq!(kind(r#"{"bidId":"b","hour":"2"}"#), ErrorKind::WrongType);
        assert_eq!(kind(r#"{"bidId":"b","hour":7.5}"#), ErrorKind::InvalidValue);
        assert_eq!(kind(r#"{"bidId":"b","mobile":1}"#), ErrorKind::WrongType);
        assert_eq!(
            kind(r#"{"bidId":"b","userAgent":{"a":1}}"#),
            ErrorKind::WrongType
        );
        assert_eq!(kind(r#"[1,2]"#), ErrorKind::WrongType);
        let err = decode(r#"{"bidId":"b","hour":"13"}"#).expect_err("text hour");
        assert!(err.message.contains("hour is \"13\""), "{}", err.message);
    }

    #[test]
    fn batches_are_bounded_and_name_the_bad_element() {
        let body = format!("{{\"requests\":[{GOOD},{GOOD}]}}");
        let mut r = rows();
        batch_request(body.as_bytes(), 2, &mut r).expect("two");
        assert_eq!(r.finish().expect("batch").num_rows(), 2);
        assert_eq!(r.keys(), ["b1", "b1"]);
        let err = batch_request(body.as_bytes(), 1, &mut rows()).expect_err("over");
        assert_eq!(err.kind, ErrorKind::BatchTooLarge);
        let body = format!("{{\"requests\":[{GOOD},{{\"hour\":1}}]}}");
        let err = batch_request(body.as_bytes(), 10, &mut rows()).expect_err("bad second");
        assert_eq!(err.kind, ErrorKind::MissingField);
        assert!(
            err.message.starts_with("requests[1]: missing field"),
            "{}",
            err.message
        );
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
            let _ = score_request(&bytes, &mut rows());
            let _ = batch_request(&bytes, 5, &mut rows());
            let _ = openrtb_request(&bytes, 5);
        }

        /// Json-looking text (the shape a fuzzer reaches slowly) never panics either.
        #[test]
        fn json_like_text_never_panics(text in r#"[\{\}\[\]":,0-9a-zA-Z \-\.]{0,200}"#) {
            let _ = score_request(text.as_bytes(), &mut rows());
            let _ = batch_request(text.as_bytes(), 5, &mut rows());
            let _ = openrtb_request(text.as_bytes(), 5);
        }

        /// Any values in the right fields either decode to one row or name a problem.
        #[test]
        fn typed_fields_decode_or_explain(
            dow in any::<i64>(), hour in prop::option::of(any::<f64>()),
            region in prop::option::of(".{0,12}"), ua in prop::option::of(".{0,40}"),
        ) {
            let body = serde_json::json!({
                "bidId": "b", "dayOfWeek": dow, "hour": hour, "regionId": region, "userAgent": ua,
            });
            let body = serde_json::to_vec(&body).expect("json");
            let mut r = rows();
            match score_request(&body, &mut r) {
                Ok(()) => prop_assert_eq!(r.finish().expect("batch").num_rows(), 1),
                Err(err) => prop_assert!(
                    matches!(err.kind, ErrorKind::InvalidValue),
                    "{:?}", err
                ),
            }
        }
    }
}
