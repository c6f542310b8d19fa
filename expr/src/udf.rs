//! SQL functions that wrap the shared feature code, so SQL jobs and the scorer compute the same
//! values: `device_type(user_agent)`, `encode(column, value)` (the fitted `StringIndexer` of a
//! vocabulary column), `split_of(key, seed, train_fraction, valid_fraction)`, and Spark's casts
//! for jobs that must read as the original's did: `spark_int(text)` (`CAST(text AS INT)`) and
//! `spark_dayofweek(text)` (`dayofweek(text)`, through Spark's string-to-date cast).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::cast::as_string_array;
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use rtb_features::{FeatureVocabulary, device_type};

/// The functions that need no fitted state, for registries that are not a `SessionContext`
/// (`encode` travels with its vocabulary inside the plan, see [`encode_udf_bytes`]).
pub fn all() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::from(DeviceTypeUdf::new())),
        Arc::new(ScalarUDF::from(SplitOfUdf::new())),
        Arc::new(ScalarUDF::from(SparkCastUdf::new(
            "spark_int",
            rtb_features::spark::cast_int,
        ))),
        Arc::new(ScalarUDF::from(SparkCastUdf::new(
            "spark_dayofweek",
            rtb_features::spark::day_of_week,
        ))),
    ]
}

pub fn register(ctx: &SessionContext) {
    for function in all() {
        ctx.register_udf(function.as_ref().clone());
    }
}

/// Registers `encode` over `vocabulary`, replacing any earlier one.
pub fn register_encode(ctx: &SessionContext, vocabulary: Arc<FeatureVocabulary>) {
    ctx.register_udf(ScalarUDF::from(EncodeUdf::new(vocabulary)));
}

/// `encode('Domain', value)`: the index Spark's `StringIndexer` fitted on vocabulary column
/// `Domain` gives `value` (cast to text); unseen values and nulls take the column's unknown
/// index. The column must be a constant naming a vocabulary column, checked when planning.
#[derive(Debug)]
pub struct EncodeUdf {
    signature: Signature,
    vocabulary: Arc<FeatureVocabulary>,
}

impl PartialEq for EncodeUdf {
    fn eq(&self, other: &Self) -> bool {
        self.vocabulary.version == other.vocabulary.version
    }
}

impl Eq for EncodeUdf {}

impl std::hash::Hash for EncodeUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.vocabulary.version.hash(state);
    }
}

impl EncodeUdf {
    pub fn new(vocabulary: Arc<FeatureVocabulary>) -> Self {
        EncodeUdf {
            signature: Signature::any(2, Volatility::Immutable),
            vocabulary,
        }
    }

    pub fn vocabulary(&self) -> &Arc<FeatureVocabulary> {
        &self.vocabulary
    }

    fn indexer(&self, column: &ScalarValue) -> Result<&rtb_features::StringIndexer> {
        let name = match column {
            ScalarValue::Utf8(Some(n))
            | ScalarValue::Utf8View(Some(n))
            | ScalarValue::LargeUtf8(Some(n)) => n,
            other => {
                return plan_err!(
                    "encode takes the vocabulary column as a quoted constant, e.g. encode('Domain', domainId); got {other}"
                );
            }
        };
        self.vocabulary.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.vocabulary.columns().map(|(c, _)| c).collect();
            DataFusionError::Plan(format!(
                "encode: {name:?} is not a vocabulary column; the job's `-- categorical:` columns are {}",
                known.join(", ")
            ))
        })
    }
}

/// Marks an `encode` function whose vocabulary travels in a plan sent to another process.
const ENCODE_PREFIX: &[u8] = b"rtb.encode.v1:";

/// The bytes a plan codec writes for `udf` when it is an `encode` (its vocabulary), else none.
pub fn encode_udf_bytes(udf: &ScalarUDF, buf: &mut Vec<u8>) -> Result<bool> {
    let any: &dyn std::any::Any = udf.inner().as_ref();
    let Some(encode) = any.downcast_ref::<EncodeUdf>() else {
        return Ok(false);
    };
    buf.extend_from_slice(ENCODE_PREFIX);
    let json = encode
        .vocabulary
        .to_json()
        .map_err(|e| DataFusionError::Internal(format!("cannot encode a vocabulary: {e}")))?;
    buf.extend_from_slice(json.as_bytes());
    Ok(true)
}

/// The `encode` function [`encode_udf_bytes`] wrote, or `None` for other bytes.
pub fn decode_udf_bytes(buf: &[u8]) -> Result<Option<Arc<ScalarUDF>>> {
    let Some(body) = buf.strip_prefix(ENCODE_PREFIX) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(body)
        .map_err(|e| DataFusionError::Internal(format!("encode vocabulary is not utf-8: {e}")))?;
    let vocabulary = FeatureVocabulary::from_json(text).map_err(|e| {
        DataFusionError::Internal(format!(
            "encode vocabulary sent by another rtb process: {e}"
        ))
    })?;
    Ok(Some(Arc::new(ScalarUDF::from(EncodeUdf::new(Arc::new(
        vocabulary,
    ))))))
}

impl ScalarUDFImpl for EncodeUdf {
    fn name(&self) -> &str {
        "encode"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        match args.scalar_arguments.first() {
            Some(Some(column)) => {
                self.indexer(column)?;
            }
            _ => {
                return plan_err!(
                    "encode takes the vocabulary column as a quoted constant, e.g. encode('Domain', domainId)"
                );
            }
        }
        Ok(Arc::new(Field::new(self.name(), DataType::Int32, false)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [ColumnarValue::Scalar(column), value] = args.args.as_slice() else {
            return exec_err!("encode takes (column, value) with a constant column");
        };
        let indexer = self.indexer(column)?;
        match value {
            ColumnarValue::Scalar(v) => {
                let text = if v.is_null() {
                    None
                } else {
                    Some(v.cast_to(&DataType::Utf8)?.to_string())
                };
                let index = indexer.index(text.as_deref());
                Ok(ColumnarValue::Scalar(ScalarValue::Int32(Some(
                    i32::try_from(index).unwrap_or(i32::MAX),
                ))))
            }
            ColumnarValue::Array(array) => {
                let text = datafusion::arrow::compute::cast(array, &DataType::Utf8)?;
                let text = as_string_array(&text)?;
                let ids: Int32Array = text
                    .iter()
                    .map(|v| Some(i32::try_from(indexer.index(v)).unwrap_or(i32::MAX)))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(ids) as ArrayRef))
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DeviceTypeUdf {
    signature: Signature,
}

impl DeviceTypeUdf {
    pub fn new() -> Self {
        DeviceTypeUdf {
            signature: Signature::uniform(1, vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

impl Default for DeviceTypeUdf {
    fn default() -> Self {
        Self::new()
    }
}

/// Distinct user agents are few next to rows; classifying each once per thread keeps woothee's
/// regexes off the hot path. Bounded in entries and in what one entry may hold, so hostile
/// input (the scorer's requests) cannot grow it without end.
const UA_CACHE_LIMIT: usize = 100_000;
/// Longer agents are classified every time, never kept: real ones are a few hundred bytes.
const UA_CACHE_MAX_LEN: usize = 1024;

thread_local! {
    static UA_CACHE: RefCell<HashMap<String, i32, foldhash::fast::RandomState>> =
        RefCell::new(HashMap::default());
}

thread_local! {
    /// The last agent too long for the cache: the impressions of one OpenRTB request share
    /// their agent, which is then classified once, not once per impression.
    static LAST_LONG_UA: RefCell<(String, i32)> = const { RefCell::new((String::new(), 0)) };
}

pub(crate) fn cached_device_type(ua: Option<&str>) -> i32 {
    let Some(ua) = ua else {
        return i32::from(device_type(None).id());
    };
    if ua.len() > UA_CACHE_MAX_LEN {
        return LAST_LONG_UA.with(|last| {
            let mut last = last.borrow_mut();
            if last.0 != ua {
                *last = (ua.to_owned(), i32::from(device_type(Some(ua)).id()));
            }
            last.1
        });
    }
    UA_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(id) = cache.get(ua) {
            return *id;
        }
        let id = i32::from(device_type(Some(ua)).id());
        if cache.len() >= UA_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(ua.to_owned(), id);
        id
    })
}

/// A text argument, scalar or column, mapped to Int32 value by value (NULL in, `f(None)`).
fn map_text_to_i32(
    arg: &ColumnarValue,
    name: &str,
    f: impl Fn(Option<&str>) -> Option<i32>,
) -> Result<ColumnarValue> {
    match arg {
        ColumnarValue::Scalar(ScalarValue::Utf8(text)) => Ok(ColumnarValue::Scalar(
            ScalarValue::Int32(f(text.as_deref())),
        )),
        ColumnarValue::Scalar(other) => exec_err!("{name} expects a string, got {other:?}"),
        ColumnarValue::Array(array) => {
            let values: Int32Array = as_string_array(array)?.iter().map(f).collect();
            Ok(ColumnarValue::Array(Arc::new(values) as ArrayRef))
        }
    }
}

impl ScalarUDFImpl for DeviceTypeUdf {
    fn name(&self) -> &str {
        "device_type"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return exec_err!("device_type takes one argument, the user agent");
        };
        map_text_to_i32(arg, "device_type", |ua| Some(cached_device_type(ua)))
    }
}

/// A Spark cast from text to INT, null where Spark's non-ANSI rules give null (never an error:
/// one odd value must not stop a job).
#[derive(Debug)]
pub struct SparkCastUdf {
    name: &'static str,
    signature: Signature,
    cast: fn(&str) -> Option<i32>,
}

// a function is known by its name: each name is registered with one cast
impl PartialEq for SparkCastUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for SparkCastUdf {}

impl std::hash::Hash for SparkCastUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl SparkCastUdf {
    pub fn new(name: &'static str, cast: fn(&str) -> Option<i32>) -> Self {
        SparkCastUdf {
            name,
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
            cast,
        }
    }
}

impl ScalarUDFImpl for SparkCastUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return exec_err!("{} takes one argument, a text", self.name);
        };
        map_text_to_i32(arg, self.name, |text| text.and_then(self.cast))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SplitOfUdf {
    signature: Signature,
}

impl SplitOfUdf {
    pub fn new() -> Self {
        SplitOfUdf {
            signature: Signature::exact(
                vec![
                    DataType::Utf8,
                    DataType::Int64,
                    DataType::Float64,
                    DataType::Float64,
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl Default for SplitOfUdf {
    fn default() -> Self {
        Self::new()
    }
}

fn scalar_f64(value: &ColumnarValue, what: &str) -> Result<f64> {
    match value {
        ColumnarValue::Scalar(ScalarValue::Float64(Some(v))) if (0.0..=1.0).contains(v) => Ok(*v),
        _ => exec_err!("split_of: {what} must be a constant between 0 and 1"),
    }
}

impl ScalarUDFImpl for SplitOfUdf {
    fn name(&self) -> &str {
        "split_of"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [key, seed, train, valid] = args.args.as_slice() else {
            return exec_err!("split_of takes (key, seed, train_fraction, valid_fraction)");
        };
        let seed = match seed {
            ColumnarValue::Scalar(ScalarValue::Int64(Some(s))) => *s as u64,
            _ => return exec_err!("split_of: seed must be an integer constant"),
        };
        let (train, valid) = (
            scalar_f64(train, "train_fraction")?,
            scalar_f64(valid, "valid_fraction")?,
        );
        if train + valid > 1.0 {
            return exec_err!(
                "split_of: train_fraction + valid_fraction must not exceed 1, got {}",
                train + valid
            );
        }
        // a null key is hashed as the empty key: such rows all land in one split, never lost
        let assign = |k: Option<&str>| {
            Some(
                rtb_features::split::assign(k.unwrap_or_default().as_bytes(), seed, train, valid)
                    .as_str(),
            )
        };
        match key {
            ColumnarValue::Scalar(ScalarValue::Utf8(k)) => Ok(ColumnarValue::Scalar(
                ScalarValue::Utf8(assign(k.as_deref()).map(str::to_owned)),
            )),
            ColumnarValue::Scalar(other) => {
                exec_err!("split_of expects a string key, got {other:?}")
            }
            ColumnarValue::Array(array) => {
                let keys = as_string_array(array)?;
                let splits: StringArray = keys.iter().map(assign).collect();
                debug_assert_eq!(splits.len(), keys.len());
                Ok(ColumnarValue::Array(Arc::new(splits) as ArrayRef))
            }
        }
    }
}
