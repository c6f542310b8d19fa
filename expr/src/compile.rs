//! Feature expressions: read from a job's `features` step, compiled against a contract's
//! request schema, evaluated on request batches.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Expr, Volatility};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, SelectItem, SetExpr, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use rtb_features::{FeatureContract, FeatureDef, FeatureVocabulary, FieldType};
use thiserror::Error;

pub use crate::native::Value;
use crate::native::{self, Decline, Fields, Node, Rows};
use crate::udf;

/// The table a `features` step reads: the job's requests.
pub const REQUESTS_TABLE: &str = "inference_requests";

#[derive(Debug, Error)]
pub enum ExprError {
    #[error("the features step must be one SELECT of named expressions FROM {REQUESTS_TABLE}: {0}")]
    Shape(String),
    #[error("feature {feature} cannot be served: {reason}")]
    Feature { feature: String, reason: String },
    #[error(
        "request field {field} has type {found}; the request is json, so select it as a string, an integer, a float or a boolean (e.g. CAST({field} AS VARCHAR))"
    )]
    FieldType { field: String, found: String },
    #[error("cannot evaluate feature {feature}: {source}")]
    Evaluate {
        feature: String,
        source: DataFusionError,
    },
}

/// The SQL options every job and every compiled contract is planned with: identifiers stay as
/// written (iPinYou columns are CamelCase, as in the original notebook).
pub fn sql_config(mut config: SessionConfig) -> SessionConfig {
    config.options_mut().sql_parser.enable_ident_normalization = false;
    config
}

/// The json type of an Arrow column, when a request can carry it.
pub fn field_type_of(data_type: &DataType) -> Option<FieldType> {
    use DataType::*;
    Some(match data_type {
        Utf8 | Utf8View | LargeUtf8 | Null => FieldType::String,
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => FieldType::Integer,
        Float16 | Float32 | Float64 | Decimal128(..) | Decimal256(..) => FieldType::Float,
        Boolean => FieldType::Boolean,
        _ => return None,
    })
}

/// The Arrow type both sides give a request field of `field_type`.
pub fn arrow_type(field_type: FieldType) -> DataType {
    match field_type {
        FieldType::String => DataType::Utf8,
        FieldType::Integer => DataType::Int64,
        FieldType::Float => DataType::Float64,
        FieldType::Boolean => DataType::Boolean,
    }
}

/// The Arrow schema of a contract's request: every field nullable (a missing field is null).
pub fn request_schema(contract: &FeatureContract) -> SchemaRef {
    Arc::new(Schema::new(
        contract
            .request
            .iter()
            .map(|f| Field::new(&f.name, arrow_type(f.field_type), true))
            .collect::<Vec<_>>(),
    ))
}

/// The model inputs of a `features` step, in order: each select item's SQL text and name.
/// Only the statement's form is checked here; [`CompiledFeatures::compile`] checks each
/// expression against the request.
pub fn parse_features(sql: &str) -> Result<Vec<FeatureDef>, ExprError> {
    let shape = |m: &str| ExprError::Shape(m.to_owned());
    let statements =
        Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| ExprError::Shape(e.to_string()))?;
    let [Statement::Query(query)] = statements.as_slice() else {
        return Err(shape("it is not a single SELECT statement"));
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(shape("it is not a plain SELECT (no UNION, VALUES, ...)"));
    };
    let mut features = Vec::with_capacity(select.projection.len());
    for item in &select.projection {
        let (expr, name) = match item {
            SelectItem::ExprWithAlias { expr, alias } => (expr, alias.value.clone()),
            SelectItem::UnnamedExpr(expr) => {
                let name = match expr {
                    SqlExpr::Identifier(ident) => ident.value.clone(),
                    SqlExpr::CompoundIdentifier(parts) => {
                        parts.last().map(|p| p.value.clone()).unwrap_or_default()
                    }
                    other => {
                        return Err(ExprError::Shape(format!(
                            "name the feature `{other}`: write `{other} AS name`"
                        )));
                    }
                };
                (expr, name)
            }
            _ => {
                return Err(shape(
                    "`*` is not a feature list; name each model input (e.g. hour, encode('Domain', domainId) AS IndexDomain)",
                ));
            }
        };
        features.push(FeatureDef {
            name,
            expr: expr.to_string(),
        });
    }
    if features.is_empty() {
        return Err(shape("it selects nothing"));
    }
    Ok(features)
}

/// A context that knows every feature function, `encode` over `vocabulary`.
pub fn feature_context(vocabulary: Arc<FeatureVocabulary>) -> SessionContext {
    let ctx = SessionContext::new_with_config(sql_config(SessionConfig::new()));
    udf::register(&ctx);
    udf::register_encode(&ctx, vocabulary);
    ctx
}

/// Refuses what is not a function of one request alone.
fn check_row_wise(expr: &Expr) -> Result<(), String> {
    let mut problem = None;
    let _ = expr.apply(|e| {
        let found = match e {
            Expr::AggregateFunction(f) => Some(format!(
                "it uses the aggregate {}(), which depends on other rows",
                f.func.name()
            )),
            Expr::WindowFunction(_) => Some("it uses a window function, which depends on other rows".into()),
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => {
                Some("it uses a subquery, which reads other tables".into())
            }
            Expr::OuterReferenceColumn(..) | Expr::Placeholder(_) => {
                Some("it refers to something outside the request".into())
            }
            Expr::ScalarFunction(f) if f.func.signature().volatility != Volatility::Immutable => {
                Some(format!(
                    "{}() is not a function of the request alone (its value depends on when or where it runs)",
                    f.func.name()
                ))
            }
            _ => None,
        };
        if found.is_some() {
            problem = found;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    problem.map_or(Ok(()), Err)
}

fn is_model_input(data_type: &DataType) -> bool {
    data_type.is_numeric() || matches!(data_type, DataType::Boolean | DataType::Null)
}

/// How one feature is computed: natively where its shape allows (see [`native`]), with
/// DataFusion's physical expression for the rows it declines; otherwise by DataFusion alone.
#[derive(Debug)]
enum Kernel {
    Native {
        node: Node,
        fallback: Arc<dyn PhysicalExpr>,
    },
    Expr(Arc<dyn PhysicalExpr>),
}

/// Writes feature `j` of every row of `batch` into the row-major `out`, as DataFusion computes it.
fn datafusion_column(
    expr: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
    out: &mut [f64],
    j: usize,
    width: usize,
) -> Result<(), DataFusionError> {
    let rows = batch.num_rows();
    let values = expr.evaluate(batch)?.into_array(rows)?;
    let values = datafusion::arrow::compute::cast(&values, &DataType::Float64)?;
    let values = values.as_primitive::<Float64Type>();
    for row in 0..rows {
        out[row * width + j] = if values.is_valid(row) {
            values.value(row)
        } else {
            f64::NAN
        };
    }
    Ok(())
}

/// A contract's features as physical expressions over its request schema.
#[derive(Debug)]
pub struct CompiledFeatures {
    schema: SchemaRef,
    vocabulary: Arc<FeatureVocabulary>,
    exprs: Vec<(String, Kernel)>,
}

impl CompiledFeatures {
    /// Compiles every feature; the first that cannot be served is named.
    pub fn compile(
        contract: &FeatureContract,
        vocabulary: Arc<FeatureVocabulary>,
    ) -> Result<Self, ExprError> {
        let schema = request_schema(contract);
        let ctx = feature_context(Arc::clone(&vocabulary));
        let df_schema = DFSchema::try_from_qualified_schema(REQUESTS_TABLE, &schema)
            .map_err(|e| ExprError::Shape(format!("the request schema is not valid: {e}")))?;
        let df_schema = Arc::new(df_schema);
        // what the ETL's optimizer does to the same expressions: coerce types, then simplify
        // (some functions, e.g. coalesce, only exist in their simplified form)
        let simplifier = ExprSimplifier::new(
            SimplifyContext::builder()
                .with_schema(Arc::clone(&df_schema))
                .with_config_options(Arc::clone(ctx.state().config_options()))
                .build(),
        );
        let mut exprs = Vec::with_capacity(contract.features.len());
        for feature in &contract.features {
            let refuse = |reason: String| ExprError::Feature {
                feature: feature.name.clone(),
                reason,
            };
            let expr = ctx.parse_sql_expr(&feature.expr, &df_schema).map_err(|e| {
                refuse(format!(
                    "`{}` does not plan over the request: {e}",
                    feature.expr
                ))
            })?;
            check_row_wise(&expr).map_err(&refuse)?;
            let expr = simplifier
                .coerce(expr, &df_schema)
                .and_then(|e| simplifier.simplify(e))
                .map_err(|e| {
                    refuse(format!(
                        "`{}` does not plan over the request: {e}",
                        feature.expr
                    ))
                })?;
            let physical = ctx.create_physical_expr(expr, &df_schema).map_err(|e| {
                refuse(format!(
                    "`{}` does not plan over the request: {e}",
                    feature.expr
                ))
            })?;
            let data_type = physical
                .data_type(&schema)
                .map_err(|e| refuse(e.to_string()))?;
            if !is_model_input(&data_type) {
                return Err(refuse(format!(
                    "it is {data_type}, and a model input must be a number or a boolean; encode text with encode('Column', field)"
                )));
            }
            let kernel = match native::build(&physical, &schema, &vocabulary) {
                Some(node) => Kernel::Native {
                    node,
                    fallback: physical,
                },
                None => Kernel::Expr(physical),
            };
            exprs.push((feature.name.clone(), kernel));
        }
        Ok(CompiledFeatures {
            schema,
            vocabulary,
            exprs,
        })
    }

    /// The features DataFusion evaluates, not read natively.
    pub fn evaluated_by_datafusion(&self) -> usize {
        self.exprs
            .iter()
            .filter(|(_, k)| matches!(k, Kernel::Expr(_)))
            .count()
    }

    /// Every feature as DataFusion alone computes it: what the native reading must equal.
    #[cfg(test)]
    pub(crate) fn evaluate_by_datafusion(
        &self,
        batch: &RecordBatch,
    ) -> Result<Vec<f64>, ExprError> {
        let width = self.exprs.len();
        let mut out = vec![0.0; batch.num_rows() * width];
        for (j, (name, kernel)) in self.exprs.iter().enumerate() {
            let (Kernel::Native { fallback: expr, .. } | Kernel::Expr(expr)) = kernel;
            datafusion_column(expr, batch, &mut out, j, width).map_err(|source| {
                ExprError::Evaluate {
                    feature: name.clone(),
                    source,
                }
            })?;
        }
        Ok(out)
    }

    /// The request schema batches must have.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn len(&self) -> usize {
        self.exprs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exprs.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.exprs.iter().map(|(n, _)| n.as_str())
    }

    /// The model input rows of `batch`, row-major; a null feature is NaN (LightGBM's missing).
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<Vec<f64>, ExprError> {
        self.evaluate_from(&batch, batch.num_rows(), || Ok(batch.clone()))
    }

    /// The model input rows of requests given as typed values, row-major, one value per
    /// request field in the schema's order: what a scorer decodes a body into, with no
    /// Arrow batch built unless some feature needs DataFusion.
    pub fn evaluate_values(&self, values: &[Value<'_>]) -> Result<Vec<f64>, ExprError> {
        let width = self.schema.fields().len();
        let rows = values.len().checked_div(width).unwrap_or(0);
        let source = Rows { values, width };
        self.evaluate_from(&source, rows, || batch_of(&self.schema, values, rows))
    }

    fn evaluate_from<'a, S: Fields<'a>>(
        &'a self,
        fields: &S,
        rows: usize,
        batch: impl FnOnce() -> Result<RecordBatch, DataFusionError>,
    ) -> Result<Vec<f64>, ExprError> {
        let width = self.exprs.len();
        let mut out = vec![0.0; rows * width];
        let mut batch = Some(batch);
        let mut built: Option<RecordBatch> = None;
        for (j, (name, kernel)) in self.exprs.iter().enumerate() {
            let fail = |source| ExprError::Evaluate {
                feature: name.clone(),
                source,
            };
            let expr = match kernel {
                Kernel::Native { node, fallback } => {
                    let native = (0..rows).try_for_each(|row| {
                        out[row * width + j] = node
                            .eval(fields, row, &self.vocabulary)
                            .ok()
                            .and_then(Value::to_f64)
                            .ok_or(Decline)?;
                        Ok::<_, Decline>(())
                    });
                    if native.is_ok() {
                        continue;
                    }
                    fallback
                }
                Kernel::Expr(expr) => expr,
            };
            if built.is_none()
                && let Some(make) = batch.take()
            {
                built = Some(make().map_err(fail)?);
            }
            let Some(batch) = &built else {
                return Err(fail(DataFusionError::Internal("no request batch".into())));
            };
            datafusion_column(expr, batch, &mut out, j, width).map_err(fail)?;
        }
        Ok(out)
    }
}

/// The Arrow batch of row-major typed values, for the features DataFusion evaluates.
fn batch_of(
    schema: &SchemaRef,
    values: &[Value<'_>],
    rows: usize,
) -> Result<RecordBatch, DataFusionError> {
    use datafusion::arrow::array::{
        ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    };
    let width = schema.fields().len();
    let mismatch = |field: &Field, value: &Value<'_>| {
        DataFusionError::Internal(format!(
            "request field {} is {} but was given {value:?}",
            field.name(),
            field.data_type()
        ))
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(width);
    for (i, field) in schema.fields().iter().enumerate() {
        let column = (0..rows).map(|row| values[row * width + i]);
        let array: ArrayRef = match field.data_type() {
            DataType::Utf8 => {
                let mut b = StringBuilder::with_capacity(rows, rows * 16);
                for v in column {
                    match v {
                        Value::Str(s) => b.append_value(s),
                        Value::Null => b.append_null(),
                        other => return Err(mismatch(field, &other)),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Int64 => {
                let mut b = Int64Builder::with_capacity(rows);
                for v in column {
                    match v {
                        Value::I64(x) => b.append_value(x),
                        Value::Null => b.append_null(),
                        other => return Err(mismatch(field, &other)),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Float64 => {
                let mut b = Float64Builder::with_capacity(rows);
                for v in column {
                    match v {
                        Value::F64(x) => b.append_value(x),
                        Value::Null => b.append_null(),
                        other => return Err(mismatch(field, &other)),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Boolean => {
                let mut b = BooleanBuilder::with_capacity(rows);
                for v in column {
                    match v {
                        Value::Bool(x) => b.append_value(x),
                        Value::Null => b.append_null(),
                        other => return Err(mismatch(field, &other)),
                    }
                }
                Arc::new(b.finish())
            }
            other => {
                return Err(DataFusionError::Internal(format!(
                    "request field {} has type {other}",
                    field.name()
                )));
            }
        };
        columns.push(array);
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use rtb_features::{RequestField, StringIndexer};

    use super::*;

    fn contract(features: &[(&str, &str)]) -> FeatureContract {
        FeatureContract {
            format: 0,
            version: String::new(),
            job: "t".into(),
            key: "bidId".into(),
            request: vec![
                RequestField {
                    name: "bidId".into(),
                    field_type: FieldType::String,
                },
                RequestField {
                    name: "hour".into(),
                    field_type: FieldType::Integer,
                },
                RequestField {
                    name: "domainId".into(),
                    field_type: FieldType::String,
                },
                RequestField {
                    name: "userAgent".into(),
                    field_type: FieldType::String,
                },
            ],
            features: features
                .iter()
                .map(|(n, e)| FeatureDef {
                    name: (*n).into(),
                    expr: (*e).into(),
                })
                .collect(),
            label: "label".into(),
            price: None,
            vocabulary_version: String::new(),
            vocabulary_columns: vec!["Domain".into()],
            openrtb: BTreeMap::new(),
            time_zone: "UTC".into(),
        }
    }

    pub(crate) fn vocabulary() -> Arc<FeatureVocabulary> {
        Arc::new(FeatureVocabulary::new(vec![(
            "Domain".into(),
            StringIndexer::fit([Some("a"), Some("b"), Some("b")]),
        )]))
    }

    #[test]
    fn features_are_read_from_the_step() {
        let features = parse_features(
            "SELECT hour, encode('Domain', domainId) AS \"IndexDomain\", inference_requests.hour AS h2,\n CASE WHEN hour > 12 THEN 1 ELSE 0 END AS pm FROM inference_requests",
        )
        .expect("parses");
        let names: Vec<&str> = features.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["hour", "IndexDomain", "h2", "pm"]);
        assert_eq!(features[1].expr, "encode('Domain', domainId)");
        assert!(parse_features("SELECT hour + 1 FROM inference_requests").is_err());
        assert!(parse_features("SELECT * FROM inference_requests").is_err());
        assert!(parse_features("SELECT 1 UNION SELECT 2").is_err());
    }

    #[test]
    fn compiled_features_evaluate_a_batch() {
        let c = contract(&[
            ("hour", "hour"),
            ("IndexDomain", "encode('Domain', domainId)"),
            ("pm", "CASE WHEN hour >= 12 THEN 1 ELSE 0 END"),
            ("half", "hour / 2.0"),
            ("device", "device_type(userAgent)"),
            ("known_hour", "COALESCE(hour, -1)"),
        ]);
        let compiled = CompiledFeatures::compile(&c, vocabulary()).expect("compiles");
        // all read natively (the native module's property test holds them to DataFusion's)
        assert_eq!(compiled.evaluated_by_datafusion(), 0);
        let batch = RecordBatch::try_new(
            Arc::clone(compiled.schema()),
            vec![
                Arc::new(StringArray::from(vec![Some("1"), Some("2")])),
                Arc::new(Int64Array::from(vec![Some(13), None])),
                Arc::new(StringArray::from(vec![Some("b"), Some("zzz")])),
                Arc::new(StringArray::from(vec![None::<&str>, None])),
            ],
        )
        .expect("batch");
        let rows = compiled.evaluate(&batch).expect("evaluates");
        assert_eq!(&rows[..6], &[13.0, 0.0, 1.0, 6.5, 6.0, 13.0]);
        assert!(rows[6].is_nan(), "a null hour is missing");
        assert_eq!(rows[7], 2.0, "unseen domain takes the unknown index");
        assert_eq!(rows[8], 0.0, "null >= 12 is null, so ELSE");
        assert_eq!(rows[11], -1.0, "coalesce, which only exists simplified");
    }

    #[test]
    fn unservable_features_are_named() {
        for (expr, says) in [
            ("count(hour)", "aggregate"),
            ("row_number() OVER ()", "window"),
            ("random()", "not a function of the request alone"),
            ("now()", "not a function of the request alone"),
            ("domainId", "must be a number"),
            ("encode('Domian', domainId)", "not a vocabulary column"),
            ("encode(domainId, domainId)", "quoted constant"),
            ("nope + 1", "does not plan"),
        ] {
            let err = CompiledFeatures::compile(&contract(&[("f", expr)]), vocabulary())
                .expect_err(expr)
                .to_string();
            assert!(
                err.contains("feature f") && err.contains(says),
                "{expr}: {err}"
            );
        }
    }
}
