//! SQL functions that wrap the shared feature code, so SQL jobs and the scorer compute the same
//! values: `device_type(user_agent)` and `split_of(key, seed, train_fraction, valid_fraction)`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int32Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::as_string_array;
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use rtb_features::device_type;

/// Every function jobs may call, for registries that are not a `SessionContext`.
pub fn all() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::from(DeviceTypeUdf::new())),
        Arc::new(ScalarUDF::from(SplitOfUdf::new())),
    ]
}

pub fn register(ctx: &SessionContext) {
    for function in all() {
        ctx.register_udf(function.as_ref().clone());
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
/// regexes off the hot path. Bounded so a pathological input cannot grow it without end.
const UA_CACHE_LIMIT: usize = 100_000;

thread_local! {
    static UA_CACHE: RefCell<HashMap<String, i32>> = RefCell::new(HashMap::new());
}

fn cached_device_type(ua: Option<&str>) -> i32 {
    let Some(ua) = ua else {
        return i32::from(device_type(None).id());
    };
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
        match arg {
            ColumnarValue::Scalar(ScalarValue::Utf8(ua)) => Ok(ColumnarValue::Scalar(
                ScalarValue::Int32(Some(cached_device_type(ua.as_deref()))),
            )),
            ColumnarValue::Scalar(other) => {
                exec_err!("device_type expects a string, got {other:?}")
            }
            ColumnarValue::Array(array) => {
                let agents = as_string_array(array)?;
                let ids: Int32Array = agents
                    .iter()
                    .map(|ua| Some(cached_device_type(ua)))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(ids) as ArrayRef))
            }
        }
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
        let assign = |k: Option<&str>| {
            k.map(|k| rtb_features::split::assign(k.as_bytes(), seed, train, valid).as_str())
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
