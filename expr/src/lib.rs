//! One evaluator of a feature job's model inputs, for the ETL and the scorer alike.
//!
//! A job's `features` step is a list of SQL expressions over its request (`inference_requests`).
//! The ETL runs them as SQL over every request row; the scorer compiles the same expression
//! texts, with the same functions ([`udf`]) and the same SQL options ([`sql_config`]), into
//! DataFusion physical expressions once per model load and evaluates them on each request
//! batch: the common shapes by a row-at-a-time reading of those expressions (`native`) that
//! hands every exceptional row back to DataFusion, the rest by DataFusion. One definition, one
//! engine's semantics, both sides.

pub mod compile;
mod native;
pub mod udf;

pub use compile::{
    CompiledFeatures, ExprError, REQUESTS_TABLE, Value, arrow_type, field_type_of, parse_features,
    request_schema, sql_config,
};
