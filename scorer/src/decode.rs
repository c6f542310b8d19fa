//! Request bodies to request rows: json objects (or OpenRTB impressions) typed by the model's
//! feature contract into one Arrow batch, with errors that name the problem. Decoding never
//! panics: the property tests feed it arbitrary bytes.
//!
//! A request field takes the json value as it is: a missing field or `null` is null, as a
//! request written by the ETL omits a null field. A string field also takes a number (its
//! decimal text, as exchanges send ids both ways); an integer field takes whole numbers only.
//! Unknown fields are ignored. The contract's key field must be present: it names the answer.

use std::borrow::Cow;
use std::collections::HashMap;

use rtb_expr::Value as FieldValue;
use rtb_features::openrtb::{Context, Source};
use rtb_features::{FeatureContract, FieldType, OpenRtbRequest};
use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
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

/// A json value as a request field reads it, borrowed from the body where it can be.
#[derive(Debug)]
enum Scalar<'de> {
    Null,
    Str(Cow<'de, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    /// An array or an object: never a field's value, kept for the message.
    Other(Value),
}

impl Scalar<'_> {
    /// An owned json value (an OpenRTB field's), moved rather than copied.
    /// A json value borrowed where it can be: strings of the request are not copied.
    fn from_json_cow<'de>(value: Cow<'de, Value>) -> Scalar<'de> {
        match value {
            Cow::Borrowed(Value::String(s)) => Scalar::Str(Cow::Borrowed(s)),
            Cow::Borrowed(other) => Scalar::from_json(other.clone()),
            Cow::Owned(v) => Scalar::from_json(v),
        }
    }

    fn from_json(value: Value) -> Scalar<'static> {
        match value {
            Value::Null => Scalar::Null,
            Value::String(s) => Scalar::Str(Cow::Owned(s)),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Scalar::Int(i),
                (None, Some(u), _) => Scalar::UInt(u),
                (None, None, f) => Scalar::Float(f.unwrap_or(f64::NAN)),
            },
            Value::Bool(b) => Scalar::Bool(b),
            other => Scalar::Other(other),
        }
    }

    /// A number's decimal text, as serde_json writes it.
    fn number_text(&self) -> Option<String> {
        match self {
            Scalar::Int(i) => Some(i.to_string()),
            Scalar::UInt(u) => Some(u.to_string()),
            Scalar::Float(f) => serde_json::Number::from_f64(*f).map(|n| n.to_string()),
            _ => None,
        }
    }

    /// The value as an error message shows it: json, short, whatever it is.
    fn shown(&self) -> String {
        let text = match self {
            Scalar::Null => "null".to_owned(),
            Scalar::Str(s) => serde_json::to_string(s.as_ref()).unwrap_or_default(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Other(v) => v.to_string(),
            number => number.number_text().unwrap_or_else(|| "a number".into()),
        };
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
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a json value")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v).map_or(Scalar::UInt(v), Scalar::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(SeqAccessDeserializer::new(seq)).map(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(MapAccessDeserializer::new(map)).map(Scalar::Other)
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

/// The longest text a request field may hold. Real user agents, domains and ids are far shorter;
/// the bound keeps each field's work (the device type of a user agent) small.
pub const MAX_FIELD_BYTES: usize = 8192;

impl<'de> Scalar<'de> {
    /// The value a field of `field_type` holds; `lenient` also reads numbers written as
    /// strings (OpenRTB).
    fn typed(self, name: &str, field_type: FieldType, lenient: bool) -> Result<Self, DecodeError> {
        let wrong = |value: &Scalar<'_>, expected: &str| {
            DecodeError::new(
                ErrorKind::WrongType,
                format!("{name} is {}; it must be {expected} or null", value.shown()),
            )
        };
        if let Scalar::Str(text) = &self
            && text.len() > MAX_FIELD_BYTES
        {
            return Err(DecodeError::new(
                ErrorKind::InvalidValue,
                format!(
                    "{name} is {} bytes; at most {MAX_FIELD_BYTES} are accepted",
                    text.len()
                ),
            ));
        }
        Ok(match (field_type, self) {
            (_, Scalar::Null) => Scalar::Null,
            (FieldType::String, s @ Scalar::Str(_)) => s,
            (FieldType::String, number @ (Scalar::Int(_) | Scalar::UInt(_) | Scalar::Float(_))) => {
                match number.number_text() {
                    Some(text) => Scalar::Str(Cow::Owned(text)),
                    None => return Err(wrong(&number, "a string")),
                }
            }
            (FieldType::String, other) => return Err(wrong(&other, "a string")),
            (FieldType::Integer, i @ Scalar::Int(_)) => i,
            (FieldType::Integer, number @ (Scalar::UInt(_) | Scalar::Float(_))) => {
                return Err(DecodeError::new(
                    ErrorKind::InvalidValue,
                    format!(
                        "{name} is {}; it must be a whole number between -2^63 and 2^63-1",
                        number.shown()
                    ),
                ));
            }
            (FieldType::Integer, Scalar::Str(s)) if lenient => match s.trim().parse::<i64>() {
                Ok(i) => Scalar::Int(i),
                Err(_) => return Err(wrong(&Scalar::Str(s), "a whole number")),
            },
            (FieldType::Integer, other) => return Err(wrong(&other, "a whole number")),
            (FieldType::Float, Scalar::Int(i)) => Scalar::Float(i as f64),
            (FieldType::Float, Scalar::UInt(u)) => Scalar::Float(u as f64),
            (FieldType::Float, f @ Scalar::Float(_)) => f,
            (FieldType::Float, Scalar::Str(s)) if lenient => match s.trim().parse::<f64>() {
                Ok(f) => Scalar::Float(f),
                Err(_) => return Err(wrong(&Scalar::Str(s), "a number")),
            },
            (FieldType::Float, other) => return Err(wrong(&other, "a number")),
            (FieldType::Boolean, b @ Scalar::Bool(_)) => b,
            (FieldType::Boolean, other) => return Err(wrong(&other, "true or false")),
        })
    }

    /// A typed field's value as the feature evaluator reads it.
    fn value(&self) -> FieldValue<'_> {
        match self {
            Scalar::Str(s) => FieldValue::Str(s),
            Scalar::Int(i) => FieldValue::I64(*i),
            Scalar::Float(f) => FieldValue::F64(*f),
            Scalar::Bool(b) => FieldValue::Bool(*b),
            // not left by `typed`
            Scalar::Null | Scalar::UInt(_) | Scalar::Other(_) => FieldValue::Null,
        }
    }
}

/// How a model's requests are laid out, built once per model load: the batch schema, each
/// field's type and a name lookup, so a body is read in one pass with no per-field allocation.
#[derive(Debug)]
pub struct RequestLayout {
    key: String,
    fields: Vec<(String, FieldType)>,
    /// Request field name to its slot; the key has a slot of its own after the fields when it
    /// is not a field.
    slots: HashMap<String, usize>,
    key_slot: usize,
}

impl RequestLayout {
    pub fn new(contract: &FeatureContract) -> Self {
        let fields: Vec<(String, FieldType)> = contract
            .request
            .iter()
            .map(|f| (f.name.clone(), f.field_type))
            .collect();
        let mut slots: HashMap<String, usize> = HashMap::with_capacity(fields.len() + 1);
        for (i, (name, _)) in fields.iter().enumerate() {
            slots.entry(name.clone()).or_insert(i);
        }
        let next = fields.len();
        let key_slot = *slots.entry(contract.key.clone()).or_insert(next);
        RequestLayout {
            key: contract.key.clone(),
            fields,
            slots,
            key_slot,
        }
    }

    fn slot_count(&self) -> usize {
        self.fields.len().max(self.key_slot + 1)
    }
}

/// One request object read into its slots: known fields kept (the last of a repeated name, as
/// serde_json's maps do), everything else skipped unread.
struct Slots<'l>(&'l RequestLayout);

impl<'de> DeserializeSeed<'de> for Slots<'_> {
    type Value = Vec<Option<Scalar<'de>>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Slots<'_> {
    type Value = Vec<Option<Scalar<'de>>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a json object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut slots: Vec<Option<Scalar<'de>>> = Vec::new();
        slots.resize_with(self.0.slot_count(), || None);
        while let Some(slot) = map.next_key_seed(SlotOf(self.0))? {
            match slot {
                Some(i) => slots[i] = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(slots)
    }
}

/// A key's slot, or `None` for a name the contract does not know.
struct SlotOf<'l>(&'l RequestLayout);

impl<'de> DeserializeSeed<'de> for SlotOf<'_> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for SlotOf<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.slots.get(v).copied())
    }
}

/// Request rows decoded for one model's contract: each field's typed value, row by row,
/// borrowed from the body (`'b`) where it can be.
pub struct RequestRows<'a, 'b> {
    layout: &'a RequestLayout,
    cells: Vec<Scalar<'b>>,
    keys: Vec<String>,
}

impl<'a, 'b> RequestRows<'a, 'b> {
    pub fn new(layout: &'a RequestLayout, capacity: usize) -> Self {
        RequestRows {
            layout,
            cells: Vec::with_capacity(capacity * layout.fields.len()),
            keys: Vec::with_capacity(capacity),
        }
    }

    /// The keys of the rows pushed so far, as the answers name them.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every row's fields, row-major, as the feature evaluator reads them.
    pub fn values(&self) -> Vec<FieldValue<'_>> {
        self.cells.iter().map(Scalar::value).collect()
    }

    /// One json request object (the body of a single call, or one element of a batch).
    pub fn push_json(&mut self, body: &'b [u8]) -> Result<(), DecodeError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let slots = Slots(self.layout)
            .deserialize(&mut de)
            .and_then(|slots| de.end().map(|()| slots))
            .map_err(|e| from_json_error(&e, body))?;
        self.push_slots(slots)
    }

    fn push_slots(&mut self, mut slots: Vec<Option<Scalar<'b>>>) -> Result<(), DecodeError> {
        let layout = self.layout;
        let key_name = &layout.key;
        let key = match &slots[layout.key_slot] {
            Some(Scalar::Str(s)) => s.to_string(),
            Some(number @ (Scalar::Int(_) | Scalar::UInt(_) | Scalar::Float(_))) => {
                number.number_text().unwrap_or_default()
            }
            Some(other) => {
                return Err(DecodeError::new(
                    ErrorKind::WrongType,
                    format!("{key_name} is {}; it must be a string", other.shown()),
                ));
            }
            None => {
                return Err(DecodeError::new(
                    ErrorKind::MissingField,
                    format!("missing field `{key_name}`: it names the request in the answer"),
                ));
            }
        };
        let start = self.cells.len();
        for ((name, field_type), slot) in layout.fields.iter().zip(&mut slots) {
            let value = match slot.take() {
                Some(value) => value.typed(name, *field_type, false),
                None => Ok(Scalar::Null),
            };
            match value {
                Ok(value) => self.cells.push(value),
                Err(err) => {
                    self.cells.truncate(start);
                    return Err(err);
                }
            }
        }
        self.keys.push(key);
        Ok(())
    }

    /// One OpenRTB impression, each field read from its source.
    pub fn push_openrtb(
        &mut self,
        request: &'b OpenRtbRequest,
        imp: usize,
        sources: &[Option<Source>],
        context: &Context<'_>,
    ) -> Result<(), DecodeError> {
        let key = request.imp_key(imp).unwrap_or_default();
        let start = self.cells.len();
        for ((name, field_type), source) in self.layout.fields.iter().zip(sources) {
            let value = match source
                .as_ref()
                .and_then(|s| request.value_ref(s, imp, context))
            {
                Some(value) => Scalar::from_json_cow(value)
                    .typed(name, *field_type, true)
                    .map_err(|e| e.at(&format!("imp[{imp}] field {name}"))),
                None => Ok(Scalar::Null),
            };
            match value {
                Ok(value) => self.cells.push(value),
                Err(err) => {
                    self.cells.truncate(start);
                    return Err(err);
                }
            }
        }
        self.keys.push(key);
        Ok(())
    }
}

/// One request: a json object of the contract's request fields.
pub fn score_request<'b>(
    body: &'b [u8],
    rows: &mut RequestRows<'_, 'b>,
) -> Result<(), DecodeError> {
    rows.push_json(body)
}

#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(borrow)]
    requests: Vec<&'a RawValue>,
}

/// `{"requests": [...]}` with at most `max` requests; an error names the request it is in.
pub fn batch_request<'b>(
    body: &'b [u8],
    max: usize,
    rows: &mut RequestRows<'_, 'b>,
) -> Result<(), DecodeError> {
    let batch: Batch<'b> = serde_json::from_slice(body).map_err(|e| from_json_error(&e, body))?;
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

    fn rows<'b>() -> RequestRows<'static, 'b> {
        static LAYOUT: std::sync::OnceLock<RequestLayout> = std::sync::OnceLock::new();
        let layout = LAYOUT.get_or_init(|| RequestLayout::new(&contract()));
        RequestRows::new(layout, 4)
    }

    /// The typed values of one request, in the contract's field order.
    fn decode(body: &str) -> Result<Vec<String>, DecodeError> {
        let mut rows = rows();
        score_request(body.as_bytes(), &mut rows)?;
        assert_eq!(rows.len(), 1);
        Ok(rows.values().iter().map(|v| format!("{v:?}")).collect())
    }

    #[test]
    fn fields_are_typed_by_the_contract() {
        let values = decode(GOOD).expect("decodes");
        assert_eq!(
            values,
            [
                "Str(\"b1\")",
                "I64(2)",
                "I64(13)",
                "Str(\"1\")",
                "Str(\"Mozilla/5.0\")",
                "F64(1.5)",
                "Null"
            ],
            "typed by the contract; unknown fields ignored; a missing field is null"
        );
        let values = decode(r#"{"bidId":7,"regionId":344,"hour":null,"floor":2,"hour":5}"#)
            .expect("numbers as ids");
        assert_eq!(values[0], "Str(\"7\")");
        assert_eq!(values[3], "Str(\"344\")");
        assert_eq!(
            values[2], "I64(5)",
            "the last of a repeated field, as serde_json's maps"
        );
        assert_eq!(values[5], "F64(2.0)");
        let values = decode(r#"{"bidId":"a\"b","userAgent":"x\u00e9"}"#).expect("escapes");
        assert_eq!(values[0], "Str(\"a\\\"b\")");
        assert_eq!(values[4], "Str(\"xé\")");
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
        assert_eq!(r.len(), 2);
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
                Ok(()) => prop_assert_eq!(r.len(), 1),
                Err(err) => prop_assert!(
                    matches!(err.kind, ErrorKind::InvalidValue),
                    "{:?}", err
                ),
            }
        }
    }
}
