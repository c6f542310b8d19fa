//! Features evaluated one row at a time without DataFusion's per-call machinery, which dominates
//! on the one-row batches a scorer sees (about 1.5 us per expression, against tens of
//! nanoseconds here).
//!
//! Only the expression shapes whose semantics are plain are read: fields, literals, arithmetic,
//! comparisons, boolean logic, `CASE`, `IN`, null tests, numeric casts, `encode` and
//! `device_type`, each on the types DataFusion's coercion leaves them. Anything else keeps
//! DataFusion's physical expression for the whole feature. Where a row would take an
//! exceptional path (integer overflow, division by zero, a cast out of range), evaluation
//! declines and the caller asks DataFusion for that batch, so the answer, error or value, is
//! always DataFusion's. A property test compares the two on random expressions and values.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type, Schema};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, CastExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, Literal,
    NegativeExpr, NotExpr, TryCastExpr,
};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use rtb_features::FeatureVocabulary;

use crate::udf;

/// A request field's value, or a value computed from it. A request field is of its Arrow type
/// (`Str` for a string field, `I64` for an integer, `F64` for a float, `Bool`), or `Null`.
/// Types are fixed when a feature is compiled; a mismatch at run time is a decline to
/// DataFusion, never a guess.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    I32(i32),
    I64(i64),
    F64(f64),
    Str(&'a str),
}

impl Value<'_> {
    /// As a model input: Arrow's cast to Float64, null as NaN (LightGBM's missing).
    pub(crate) fn to_f64(self) -> Option<f64> {
        Some(match self {
            Value::Null => f64::NAN,
            Value::Bool(b) => f64::from(u8::from(b)),
            Value::I32(i) => f64::from(i),
            Value::I64(i) => i as f64,
            Value::F64(f) => f,
            Value::Str(_) => return None,
        })
    }
}

/// Where a row's request fields are read: a batch's columns, or typed values row by row.
pub(crate) trait Fields<'a> {
    /// Field `field` of `row`, which is of type `ty`.
    fn get(&self, row: usize, field: usize, ty: Ty) -> Value<'a>;
}

impl<'a> Fields<'a> for &'a RecordBatch {
    fn get(&self, row: usize, field: usize, ty: Ty) -> Value<'a> {
        let array = self.column(field);
        if array.is_null(row) {
            return Value::Null;
        }
        match ty {
            Ty::Bool => Value::Bool(array.as_boolean().value(row)),
            Ty::I32 => Value::I32(array.as_primitive::<Int32Type>().value(row)),
            Ty::I64 => Value::I64(array.as_primitive::<Int64Type>().value(row)),
            Ty::F64 => Value::F64(array.as_primitive::<Float64Type>().value(row)),
            Ty::Str => Value::Str(array.as_string::<i32>().value(row)),
            Ty::Null => Value::Null,
        }
    }
}

/// Row-major values, `width` to a row, each of its field's type.
pub(crate) struct Rows<'v, 'a> {
    pub values: &'v [Value<'a>],
    pub width: usize,
}

impl<'a> Fields<'a> for Rows<'_, 'a> {
    fn get(&self, row: usize, field: usize, _ty: Ty) -> Value<'a> {
        self.values
            .get(row * self.width + field)
            .copied()
            .unwrap_or(Value::Null)
    }
}

/// This row needs DataFusion.
#[derive(Debug)]
pub(crate) struct Decline;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Bool,
    I32,
    I64,
    F64,
    Str,
    Null,
}

impl Ty {
    fn of(data_type: &DataType) -> Option<Ty> {
        Some(match data_type {
            DataType::Boolean => Ty::Bool,
            DataType::Int32 => Ty::I32,
            DataType::Int64 => Ty::I64,
            DataType::Float64 => Ty::F64,
            DataType::Utf8 => Ty::Str,
            DataType::Null => Ty::Null,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Cmp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

#[derive(Debug)]
pub(crate) enum Node {
    Field(usize, Ty),
    Literal(Lit),
    Encode {
        field: usize,
        column: usize,
    },
    DeviceType(usize),
    Arith(Arith, Box<Node>, Box<Node>),
    Cmp(Cmp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    IsNull(Box<Node>),
    IsNotNull(Box<Node>),
    Negative(Box<Node>),
    Cast {
        arg: Box<Node>,
        to: Ty,
    },
    Case {
        base: Option<Box<Node>>,
        arms: Vec<(Node, Node)>,
        otherwise: Option<Box<Node>>,
    },
    InList {
        arg: Box<Node>,
        list: Vec<Node>,
        negated: bool,
    },
}

/// An owned literal (a `Value` borrows its text from the batch).
#[derive(Debug)]
pub(crate) enum Lit {
    Null,
    Bool(bool),
    I32(i32),
    I64(i64),
    F64(f64),
    Str(String),
}

impl Lit {
    fn value(&self) -> Value<'_> {
        match self {
            Lit::Null => Value::Null,
            Lit::Bool(b) => Value::Bool(*b),
            Lit::I32(i) => Value::I32(*i),
            Lit::I64(i) => Value::I64(*i),
            Lit::F64(f) => Value::F64(*f),
            Lit::Str(s) => Value::Str(s),
        }
    }
}

fn is<T: 'static>(expr: &Arc<dyn PhysicalExpr>) -> Option<&T> {
    let any: &dyn std::any::Any = expr.as_ref();
    any.downcast_ref::<T>()
}

/// Builds the native form of `expr`, or `None` when some part of it is not read natively.
pub(crate) fn build(
    expr: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
    vocabulary: &FeatureVocabulary,
) -> Option<Node> {
    let ty = |e: &Arc<dyn PhysicalExpr>| e.data_type(schema).ok().as_ref().and_then(Ty::of);
    let own = ty(expr)?;
    let sub = |e: &Arc<dyn PhysicalExpr>| build(e, schema, vocabulary).map(Box::new);
    let text_field = |e: &Arc<dyn PhysicalExpr>| {
        is::<Column>(e)
            .map(Column::index)
            .filter(|i| schema.field(*i).data_type() == &DataType::Utf8)
    };
    if let Some(column) = is::<Column>(expr) {
        return Some(Node::Field(column.index(), own));
    }
    if let Some(literal) = is::<Literal>(expr) {
        return Some(Node::Literal(match literal.value() {
            v if v.is_null() => Lit::Null,
            ScalarValue::Boolean(Some(b)) => Lit::Bool(*b),
            ScalarValue::Int32(Some(i)) => Lit::I32(*i),
            ScalarValue::Int64(Some(i)) => Lit::I64(*i),
            ScalarValue::Float64(Some(f)) => Lit::F64(*f),
            ScalarValue::Utf8(Some(s)) => Lit::Str(s.clone()),
            _ => return None,
        }));
    }
    if let Some(function) = is::<ScalarFunctionExpr>(expr) {
        return match (function.name(), function.args()) {
            ("device_type", [arg]) => text_field(arg).map(Node::DeviceType),
            ("encode", [name, arg]) => {
                let name = is::<Literal>(name).and_then(|l| match l.value() {
                    ScalarValue::Utf8(Some(n)) => Some(n.as_str()),
                    _ => None,
                })?;
                Some(Node::Encode {
                    field: text_field(arg)?,
                    column: vocabulary.position(name)?,
                })
            }
            _ => None,
        };
    }
    if let Some(binary) = is::<BinaryExpr>(expr) {
        let (l, r) = (binary.left(), binary.right());
        let (lt, rt) = (ty(l)?, ty(r)?);
        let arith = lt == rt && lt == own && matches!(own, Ty::I32 | Ty::I64 | Ty::F64);
        let cmp = lt == rt && own == Ty::Bool && lt != Ty::Null;
        let logic = lt == Ty::Bool && rt == Ty::Bool;
        enum Kind {
            Arith(Arith),
            Cmp(Cmp),
            And,
            Or,
        }
        let kind = match binary.op() {
            Operator::Plus if arith => Kind::Arith(Arith::Add),
            Operator::Minus if arith => Kind::Arith(Arith::Sub),
            Operator::Multiply if arith => Kind::Arith(Arith::Mul),
            Operator::Divide if arith => Kind::Arith(Arith::Div),
            Operator::Modulo if arith => Kind::Arith(Arith::Rem),
            Operator::Eq if cmp => Kind::Cmp(Cmp::Eq),
            Operator::NotEq if cmp => Kind::Cmp(Cmp::NotEq),
            Operator::Lt if cmp => Kind::Cmp(Cmp::Lt),
            Operator::LtEq if cmp => Kind::Cmp(Cmp::LtEq),
            Operator::Gt if cmp => Kind::Cmp(Cmp::Gt),
            Operator::GtEq if cmp => Kind::Cmp(Cmp::GtEq),
            Operator::And if logic => Kind::And,
            Operator::Or if logic => Kind::Or,
            _ => return None,
        };
        let (left, right) = (sub(l)?, sub(r)?);
        return Some(match kind {
            Kind::Arith(op) => Node::Arith(op, left, right),
            Kind::Cmp(op) => Node::Cmp(op, left, right),
            Kind::And => Node::And(left, right),
            Kind::Or => Node::Or(left, right),
        });
    }
    if let Some(not) = is::<NotExpr>(expr) {
        return (ty(not.arg())? == Ty::Bool).then_some(Node::Not(sub(not.arg())?));
    }
    if let Some(e) = is::<IsNullExpr>(expr) {
        return Some(Node::IsNull(sub(e.arg())?));
    }
    if let Some(e) = is::<IsNotNullExpr>(expr) {
        return Some(Node::IsNotNull(sub(e.arg())?));
    }
    if let Some(e) = is::<NegativeExpr>(expr) {
        return (matches!(own, Ty::I32 | Ty::I64 | Ty::F64) && ty(e.arg())? == own)
            .then_some(Node::Negative(sub(e.arg())?));
    }
    let numeric = |t: Ty| matches!(t, Ty::I32 | Ty::I64 | Ty::F64);
    let numeric_cast = |arg: &Arc<dyn PhysicalExpr>| -> Option<Node> {
        let from = ty(arg)?;
        if !((numeric(from) || from == Ty::Bool) && numeric(own) || from == own) {
            return None;
        }
        Some(Node::Cast {
            arg: sub(arg)?,
            to: own,
        })
    };
    if let Some(cast) = is::<CastExpr>(expr) {
        return numeric_cast(cast.expr());
    }
    if let Some(cast) = is::<TryCastExpr>(expr) {
        return numeric_cast(cast.expr());
    }
    if let Some(case) = is::<CaseExpr>(expr) {
        let base = match case.expr() {
            Some(base) => Some(sub(base)?),
            None => None,
        };
        let base_ty = match case.expr() {
            Some(base) => Some(ty(base)?),
            None => None,
        };
        let mut arms = Vec::with_capacity(case.when_then_expr().len());
        for (when, then) in case.when_then_expr() {
            let when_ty = ty(when)?;
            match base_ty {
                Some(b) if b != when_ty => return None,
                None if when_ty != Ty::Bool => return None,
                _ => {}
            }
            let then_ty = ty(then)?;
            if then_ty != own && then_ty != Ty::Null {
                return None;
            }
            arms.push((
                build(when, schema, vocabulary)?,
                build(then, schema, vocabulary)?,
            ));
        }
        let otherwise = match case.else_expr() {
            Some(e) if ty(e)? == own || ty(e)? == Ty::Null => Some(sub(e)?),
            Some(_) => return None,
            None => None,
        };
        return Some(Node::Case {
            base,
            arms,
            otherwise,
        });
    }
    if let Some(in_list) = is::<InListExpr>(expr) {
        let arg_ty = ty(in_list.expr())?;
        let mut list = Vec::with_capacity(in_list.list().len());
        for item in in_list.list() {
            // constant lists only: with a computed item DataFusion 55 can disagree with itself
            // (`3 IN (CASE WHEN a > 5 THEN 0 ELSE a END, 1)` is false at a = 3), and the
            // scorer must give what the ETL's engine gives, not what SQL means
            if ty(item)? != arg_ty || is::<Literal>(item).is_none() {
                return None;
            }
            list.push(build(item, schema, vocabulary)?);
        }
        return Some(Node::InList {
            arg: sub(in_list.expr())?,
            list,
            negated: in_list.negated(),
        });
    }
    None
}

/// DataFusion's order of two values of one type. Floats are in total order (NaN equals NaN and
/// is above infinity), where comparisons and `IN` take -0 as 0 and `CASE x WHEN` does not: the
/// engine's behaviour, measured by the property test below, not SQL's or IEEE's.
fn compare(
    l: Value<'_>,
    r: Value<'_>,
    zero_is_signed: bool,
) -> Result<std::cmp::Ordering, Decline> {
    let unsigned = |f: f64| if f == 0.0 { 0.0 } else { f };
    Ok(match (l, r) {
        (Value::Bool(a), Value::Bool(b)) => a.cmp(&b),
        (Value::I32(a), Value::I32(b)) => a.cmp(&b),
        (Value::I64(a), Value::I64(b)) => a.cmp(&b),
        (Value::F64(a), Value::F64(b)) if zero_is_signed => a.total_cmp(&b),
        (Value::F64(a), Value::F64(b)) => unsigned(a).total_cmp(&unsigned(b)),
        (Value::Str(a), Value::Str(b)) => a.cmp(b),
        _ => return Err(Decline),
    })
}

fn arith(op: Arith, l: Value<'_>, r: Value<'_>) -> Result<Value<'static>, Decline> {
    macro_rules! int {
        ($a:expr, $b:expr, $wrap:path) => {{
            let (a, b) = ($a, $b);
            // overflow and division by zero are DataFusion's to answer
            $wrap(
                match op {
                    Arith::Add => a.checked_add(b),
                    Arith::Sub => a.checked_sub(b),
                    Arith::Mul => a.checked_mul(b),
                    Arith::Div => a.checked_div(b),
                    Arith::Rem => a.checked_rem(b),
                }
                .ok_or(Decline)?,
            )
        }};
    }
    Ok(match (l, r) {
        (Value::Null, _) | (_, Value::Null) => Value::Null,
        (Value::I32(a), Value::I32(b)) => int!(a, b, Value::I32),
        (Value::I64(a), Value::I64(b)) => int!(a, b, Value::I64),
        // which NaN two NaNs give is unspecified (the compiler may swap the operands), and
        // comparisons order NaNs by sign: DataFusion's kernel answers, as for overflow
        (Value::F64(a), Value::F64(b)) if a.is_nan() && b.is_nan() => return Err(Decline),
        (Value::F64(a), Value::F64(b)) => Value::F64(match op {
            Arith::Add => a + b,
            Arith::Sub => a - b,
            Arith::Mul => a * b,
            Arith::Div => a / b,
            Arith::Rem => a % b,
        }),
        _ => return Err(Decline),
    })
}

/// A numeric cast as Arrow's: widening exactly, floats to integers truncated toward zero.
fn cast(value: Value<'_>, to: Ty) -> Result<Value<'_>, Decline> {
    // inside the target's range, where `as` truncates without saturating; outside (or at
    // its edge) is an error or a null depending on the cast: DataFusion's call
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    Ok(match (value, to) {
        (Value::Null, _) => Value::Null,
        (v @ Value::I32(_), Ty::I32)
        | (v @ Value::I64(_), Ty::I64)
        | (v @ Value::F64(_), Ty::F64)
        | (v @ Value::Bool(_), Ty::Bool)
        | (v @ Value::Str(_), Ty::Str) => v,
        (Value::Bool(b), Ty::I32) => Value::I32(i32::from(b)),
        (Value::Bool(b), Ty::I64) => Value::I64(i64::from(b)),
        (Value::Bool(b), Ty::F64) => Value::F64(f64::from(u8::from(b))),
        (Value::I32(i), Ty::I64) => Value::I64(i64::from(i)),
        (Value::I32(i), Ty::F64) => Value::F64(f64::from(i)),
        (Value::I64(i), Ty::F64) => Value::F64(i as f64),
        (Value::I64(i), Ty::I32) => Value::I32(i32::try_from(i).map_err(|_| Decline)?),
        (Value::F64(f), Ty::I64) if f > -LIMIT && f < LIMIT => Value::I64(f as i64),
        (Value::F64(f), Ty::I32) if f > f64::from(i32::MIN) - 1.0 && f < -f64::from(i32::MIN) => {
            Value::I32(f as i32)
        }
        _ => return Err(Decline),
    })
}

impl Node {
    pub(crate) fn eval<'a, S: Fields<'a>>(
        &'a self,
        fields: &S,
        row: usize,
        vocabulary: &FeatureVocabulary,
    ) -> Result<Value<'a>, Decline> {
        let eval = |n: &'a Node| n.eval(fields, row, vocabulary);
        let text = |field: usize| match fields.get(row, field, Ty::Str) {
            Value::Str(s) => Ok(Some(s)),
            Value::Null => Ok(None),
            _ => Err(Decline),
        };
        Ok(match self {
            Node::Field(i, ty) => fields.get(row, *i, *ty),
            Node::Literal(lit) => lit.value(),
            Node::Encode { field, column } => {
                let (_, indexer) = vocabulary.column_at(*column).ok_or(Decline)?;
                let index = indexer.index(text(*field)?);
                Value::I32(i32::try_from(index).unwrap_or(i32::MAX))
            }
            Node::DeviceType(field) => Value::I32(udf::cached_device_type(text(*field)?)),
            Node::Arith(op, l, r) => arith(*op, eval(l)?, eval(r)?)?,
            Node::Cmp(op, l, r) => {
                let (l, r) = (eval(l)?, eval(r)?);
                if l == Value::Null || r == Value::Null {
                    return Ok(Value::Null);
                }
                let ord = compare(l, r, false)?;
                Value::Bool(match op {
                    Cmp::Eq => ord.is_eq(),
                    Cmp::NotEq => ord.is_ne(),
                    Cmp::Lt => ord.is_lt(),
                    Cmp::LtEq => ord.is_le(),
                    Cmp::Gt => ord.is_gt(),
                    Cmp::GtEq => ord.is_ge(),
                })
            }
            // both sides always: DataFusion may evaluate the right side of a batch whose
            // other rows need it, so a row that would fail there declines here too
            Node::And(l, r) => match (eval(l)?, eval(r)?) {
                (Value::Bool(false), _) | (_, Value::Bool(false)) => Value::Bool(false),
                (Value::Bool(true), Value::Bool(true)) => Value::Bool(true),
                _ => Value::Null,
            },
            Node::Or(l, r) => match (eval(l)?, eval(r)?) {
                (Value::Bool(true), _) | (_, Value::Bool(true)) => Value::Bool(true),
                (Value::Bool(false), Value::Bool(false)) => Value::Bool(false),
                _ => Value::Null,
            },
            Node::Not(arg) => match eval(arg)? {
                Value::Bool(b) => Value::Bool(!b),
                _ => Value::Null,
            },
            Node::IsNull(arg) => Value::Bool(eval(arg)? == Value::Null),
            Node::IsNotNull(arg) => Value::Bool(eval(arg)? != Value::Null),
            Node::Negative(arg) => match eval(arg)? {
                Value::Null => Value::Null,
                Value::I32(i) => Value::I32(i.checked_neg().ok_or(Decline)?),
                Value::I64(i) => Value::I64(i.checked_neg().ok_or(Decline)?),
                Value::F64(f) => Value::F64(-f),
                _ => return Err(Decline),
            },
            Node::Cast { arg, to } => cast(eval(arg)?, *to)?,
            Node::Case {
                base,
                arms,
                otherwise,
            } => {
                let base = match base {
                    Some(b) => Some(eval(b)?),
                    None => None,
                };
                for (when, then) in arms {
                    let when = eval(when)?;
                    let taken = match base {
                        // `CASE x WHEN v`: x = v, where null matches nothing
                        Some(Value::Null) => false,
                        Some(b) => when != Value::Null && compare(b, when, true)?.is_eq(),
                        None => when == Value::Bool(true),
                    };
                    if taken {
                        return eval(then);
                    }
                }
                match otherwise {
                    Some(e) => eval(e)?,
                    None => Value::Null,
                }
            }
            Node::InList { arg, list, negated } => {
                let arg = eval(arg)?;
                match arg {
                    Value::Null => return Ok(Value::Null),
                    // whether -0 is in a list holding 0 depends on the list's other items in
                    // DataFusion 55 (yes for (0, 5), no for (0, 1, NULL)); its call
                    Value::F64(0.0) => return Err(Decline),
                    _ => {}
                }
                let mut saw_null = false;
                let mut found = false;
                for item in list {
                    match eval(item)? {
                        Value::Null => saw_null = true,
                        v => found |= compare(arg, v, false)?.is_eq(),
                    }
                }
                match (found, saw_null) {
                    (true, _) => Value::Bool(!negated),
                    (false, true) => Value::Null,
                    (false, false) => Value::Bool(*negated),
                }
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
    use proptest::prelude::*;
    use rtb_features::{FeatureContract, FeatureDef, FieldType, RequestField};

    use crate::compile::CompiledFeatures;
    use crate::compile::tests::vocabulary;

    use super::*;

    fn contract(expr: &str) -> FeatureContract {
        let field = |name: &str, field_type| RequestField {
            name: name.into(),
            field_type,
        };
        FeatureContract {
            format: 0,
            version: String::new(),
            job: "t".into(),
            key: "k".into(),
            request: vec![
                field("k", FieldType::String),
                field("a", FieldType::Integer),
                field("b", FieldType::Integer),
                field("x", FieldType::Float),
                field("y", FieldType::Float),
                field("s", FieldType::String),
                field("t", FieldType::String),
                field("f", FieldType::Boolean),
            ],
            features: vec![FeatureDef {
                name: "v".into(),
                expr: expr.into(),
            }],
            label: "label".into(),
            price: None,
            vocabulary_version: String::new(),
            vocabulary_columns: vec!["Domain".into()],
            openrtb: BTreeMap::new(),
            time_zone: "UTC".into(),
        }
    }

    fn number() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("a"),
            Just("b"),
            Just("x"),
            Just("y"),
            Just("0"),
            Just("1"),
            Just("-1"),
            Just("24"),
            Just("2147483647"),
            Just("9223372036854775807"),
            Just("0.0"),
            Just("2.5"),
            Just("-0.0"),
            Just("1e308"),
            Just("NULL"),
            Just("encode('Domain', s)"),
            Just("device_type(t)"),
            Just("CAST(f AS INT)"),
            Just("CAST('NaN' AS DOUBLE)"),
        ]
        .prop_map(str::to_owned);
        leaf.prop_recursive(4, 24, 3, |n| {
            let b = boolean(n.clone());
            prop_oneof![
                (
                    n.clone(),
                    prop::sample::select(vec!["+", "-", "*", "/", "%"]),
                    n.clone()
                )
                    .prop_map(|(l, op, r)| format!("({l} {op} {r})")),
                n.clone().prop_map(|v| format!("(-{v})")),
                (
                    n.clone(),
                    prop::sample::select(vec!["DOUBLE", "BIGINT", "INT"])
                )
                    .prop_map(|(v, t)| format!("CAST({v} AS {t})")),
                (
                    n.clone(),
                    prop::sample::select(vec!["DOUBLE", "BIGINT", "INT"])
                )
                    .prop_map(|(v, t)| format!("TRY_CAST({v} AS {t})")),
                (b.clone(), n.clone(), prop::option::of(n.clone())).prop_map(|(w, t, e)| match e {
                    Some(e) => format!("CASE WHEN {w} THEN {t} ELSE {e} END"),
                    None => format!("CASE WHEN {w} THEN {t} END"),
                }),
                (n.clone(), n.clone(), n.clone(), n.clone())
                    .prop_map(|(v, w, t, e)| format!("CASE {v} WHEN {w} THEN {t} ELSE {e} END")),
                (n.clone(), n.clone()).prop_map(|(l, r)| format!("COALESCE({l}, {r})")),
                n.clone().prop_map(|v| format!("abs({v})")),
            ]
        })
    }

    fn boolean(n: BoxedStrategy<String>) -> BoxedStrategy<String> {
        let leaf = prop_oneof![
            Just("f".to_owned()),
            Just("s = 'b'".to_owned()),
            Just("s < 'b'".to_owned()),
            Just("s IS NULL".to_owned()),
            Just("s IN ('a', 'zzz')".to_owned()),
            Just("s NOT IN ('a', NULL)".to_owned()),
        ];
        prop_oneof![
            leaf,
            (
                n.clone(),
                prop::sample::select(vec!["=", "<>", "<", "<=", ">", ">="]),
                n.clone()
            )
                .prop_map(|(l, op, r)| format!("({l} {op} {r})")),
            (
                n.clone(),
                prop::sample::select(vec!["AND", "OR"]),
                n.clone()
            )
                .prop_map(|(l, op, r)| format!("(({l} > 0) {op} ({r} IS NOT NULL))")),
            n.clone().prop_map(|v| format!("NOT ({v} < 1)")),
            (n.clone(), n.clone()).prop_map(|(v, w)| format!("{v} IN ({w}, 1, NULL)")),
            n.prop_map(|v| format!("{v} IS NULL")),
        ]
        .boxed()
    }

    fn rows() -> impl Strategy<Value = Vec<Row>> {
        let int = prop::sample::select(vec![
            None,
            Some(0),
            Some(1),
            Some(-1),
            Some(3),
            Some(24),
            Some(i64::MAX),
            Some(i64::MIN),
            Some(i64::from(i32::MAX) + 1),
        ]);
        let float = prop::sample::select(vec![
            None,
            Some(0.0),
            Some(-0.0),
            Some(1.5),
            Some(-3.7),
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
            Some(1e19),
            Some(2147483647.9),
        ]);
        let text = prop::sample::select(vec![None, Some("a"), Some("b"), Some("zzz"), Some("")]);
        let agent = prop::sample::select(vec![
            None,
            Some(
                "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 Chrome/28.0 Safari/537.36",
            ),
            Some("Mozilla/5.0 (iPhone; CPU iPhone OS 6_1 like Mac OS X) Mobile/10B143"),
            Some(""),
        ]);
        let flag = prop::sample::select(vec![None, Some(true), Some(false)]);
        prop::collection::vec(
            (int.clone(), int, float.clone(), float, text, agent, flag),
            1..6,
        )
    }

    type Row = (
        Option<i64>,
        Option<i64>,
        Option<f64>,
        Option<f64>,
        Option<&'static str>,
        Option<&'static str>,
        Option<bool>,
    );

    fn batch(compiled: &CompiledFeatures, rows: &[Row]) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("k"); rows.len()])),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.4).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.5).collect::<Vec<_>>(),
            )),
            Arc::new(BooleanArray::from(
                rows.iter().map(|r| r.6).collect::<Vec<_>>(),
            )),
        ];
        RecordBatch::try_new(Arc::clone(compiled.schema()), columns).expect("batch")
    }

    fn values(rows: &[Row]) -> Vec<Value<'static>> {
        let or_null = |v: Option<Value<'static>>| v.unwrap_or(Value::Null);
        rows.iter()
            .flat_map(|r| {
                [
                    Value::Str("k"),
                    or_null(r.0.map(Value::I64)),
                    or_null(r.1.map(Value::I64)),
                    or_null(r.2.map(Value::F64)),
                    or_null(r.3.map(Value::F64)),
                    or_null(r.4.map(Value::Str)),
                    or_null(r.5.map(Value::Str)),
                    or_null(r.6.map(Value::Bool)),
                ]
            })
            .collect()
    }

    /// Equal as model inputs: bit for bit (so -0 is not 0), any NaN equal to any NaN.
    fn same(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.to_bits() == y.to_bits() || x.is_nan() && y.is_nan())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn native_evaluation_is_datafusions(
            expr in prop_oneof![number(), boolean(number().boxed())],
            rows in rows(),
        ) {
            // expressions that do not plan (type errors) are not features to compare
            let Ok(compiled) = CompiledFeatures::compile(&contract(&expr), vocabulary()) else {
                return Ok(());
            };
            let batch = batch(&compiled, &rows);
            let check = |batch: &RecordBatch| -> Result<(), TestCaseError> {
                let ours = compiled.evaluate(batch).map_err(|e| e.to_string());
                let theirs = compiled.evaluate_by_datafusion(batch).map_err(|e| e.to_string());
                match (&ours, &theirs) {
                    (Ok(a), Ok(b)) => prop_assert!(same(a, b), "{expr}: {a:?} != {b:?}"),
                    (Err(a), Err(b)) => prop_assert_eq!(a, b),
                    _ => prop_assert!(false, "{expr}: {ours:?} against {theirs:?}"),
                }
                Ok(())
            };
            check(&batch)?;
            for row in 0..batch.num_rows() {
                check(&batch.slice(row, 1))?;
            }
            // the scorer's path: typed values, no batch unless DataFusion needs one
            let values = values(&rows);
            let ours = compiled.evaluate_values(&values).map_err(|e| e.to_string());
            let theirs = compiled.evaluate_by_datafusion(&batch).map_err(|e| e.to_string());
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => prop_assert!(same(a, b), "{expr}: {a:?} != {b:?}"),
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                _ => prop_assert!(false, "{expr}: {ours:?} against {theirs:?}"),
            }
        }
    }

    /// Where DataFusion's float semantics are its own (signed zeros, NaN) and where a row
    /// declines (overflow, division by zero): the native reading gives the engine's answer.
    #[test]
    fn engine_quirks_and_declines_are_the_engines() {
        let rows: Vec<Row> = vec![
            (Some(3), Some(0), Some(-0.0), Some(0.0), None, None, None),
            (
                Some(i64::MAX),
                Some(1),
                Some(f64::NAN),
                Some(f64::NAN),
                None,
                None,
                None,
            ),
            (
                Some(i64::MIN),
                Some(-1),
                Some(f64::NAN),
                Some(1.0),
                None,
                None,
                None,
            ),
            (
                Some(3),
                Some(2),
                Some(1.0),
                Some(f64::NAN),
                None,
                None,
                None,
            ),
        ];
        for expr in [
            "x = y",
            "x < y",
            "x = 0.0",
            "x < 0.0",
            "x > 1.0",
            "x = CAST('NaN' AS DOUBLE)",
            "CASE x WHEN 0.0 THEN 1 ELSE 0 END",
            "CASE x WHEN y THEN 1 ELSE 0 END",
            "x IN (0.0, 5.0)",
            "x IN (0.0, 1.0, NULL)",
            "x IN (CAST('NaN' AS DOUBLE), 5.0)",
            "a + b",
            "a * b",
            "-a",
            "a % b",
            "a / b",
            "CAST(x * 1e300 AS BIGINT)",
            "TRY_CAST(x * 1e300 AS BIGINT)",
        ] {
            let compiled = CompiledFeatures::compile(&contract(expr), vocabulary()).expect(expr);
            assert_eq!(compiled.evaluated_by_datafusion(), 0, "{expr}");
            let batch = batch(&compiled, &rows);
            for batch in
                std::iter::once(batch.clone()).chain((0..rows.len()).map(|r| batch.slice(r, 1)))
            {
                let ours = compiled.evaluate(&batch).map_err(|e| e.to_string());
                let theirs = compiled
                    .evaluate_by_datafusion(&batch)
                    .map_err(|e| e.to_string());
                match (&ours, &theirs) {
                    (Ok(a), Ok(b)) => assert!(same(a, b), "{expr}: {a:?} != {b:?}"),
                    _ => assert_eq!(ours, theirs, "{expr}"),
                }
            }
        }
    }

    #[test]
    fn the_common_shapes_are_read_natively() {
        for expr in [
            "a",
            "x",
            "f",
            "encode('Domain', s)",
            "device_type(t)",
            "(a - 1) * 24 + b",
            "a * b",
            "CASE WHEN a > 0 THEN CAST(x AS DOUBLE) / a END",
            "CASE WHEN x >= a THEN 1 ELSE 0 END",
            "CASE s WHEN 'a' THEN 1 WHEN 'b' THEN 2 ELSE 0 END",
            "COALESCE(a, -1)",
            "s IN ('a', 'b')",
            "NOT f AND a IS NOT NULL",
            "CAST(f AS INT) + encode('Domain', s)",
            "-x",
            "TRY_CAST(x AS BIGINT)",
        ] {
            let compiled = CompiledFeatures::compile(&contract(expr), vocabulary()).expect(expr);
            assert_eq!(compiled.evaluated_by_datafusion(), 0, "{expr}");
        }
    }
}
