//! Reading a train / valid / test split: every `.parquet` file of a split folder (local or S3),
//! checked column by column, into a row-major matrix of the contract's features (in its order),
//! a label vector and, when every file carries it, the paying price of each row. A null feature
//! is NaN, LightGBM's missing value, as the scorer serves it.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rtb_features::{LABEL_NAME, PRICE_NAME};
use rtb_storage::Location;

use crate::source::local_path;
use crate::{Result, TrainerError};

/// One split in memory: `x` holds `features` values per row, in the contract's order.
#[derive(Debug, Clone)]
pub struct Split {
    pub name: &'static str,
    pub url: String,
    pub files: usize,
    /// Values per row.
    pub features: usize,
    pub x: Vec<f64>,
    pub y: Vec<f32>,
    /// [`PRICE_NAME`] per row (null read as 0); `None` unless every file has the column.
    pub price: Option<Vec<f64>>,
}

impl Split {
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    pub fn wins(&self) -> usize {
        self.y.iter().filter(|y| **y > 0.5).count()
    }

    /// Sorts rows by (features, label). Bagging draws rows by position, so without this the
    /// model would depend on how the ETL engine partitioned its output (embedded, or which
    /// executor wrote which file); sorted, the same rows always train the same model.
    pub fn canonical_order(&mut self) {
        let width = self.features;
        let row = |i: usize| &self.x[i * width..(i + 1) * width];
        let mut order: Vec<usize> = (0..self.rows()).collect();
        order.sort_unstable_by(|&a, &b| {
            row(a)
                .iter()
                .zip(row(b))
                .map(|(l, r)| l.total_cmp(r))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(self.y[a].total_cmp(&self.y[b]))
        });
        let x = order.iter().flat_map(|&i| row(i).iter().copied()).collect();
        let y = order.iter().map(|&i| self.y[i]).collect();
        let price = self
            .price
            .as_ref()
            .map(|p| order.iter().map(|&i| p[i]).collect());
        self.x = x;
        self.y = y;
        self.price = price;
    }

    /// Fails unless the split holds rows of both labels.
    pub fn require_both_labels(&self) -> Result<()> {
        let wins = self.wins();
        if self.rows() == 0 {
            return Err(TrainerError::EmptySplit {
                split: self.name,
                url: self.url.clone(),
            });
        }
        if wins == 0 || wins == self.rows() {
            return Err(TrainerError::SingleClass {
                split: self.name,
                url: self.url.clone(),
                label: u8::from(wins > 0),
                rows: self.rows(),
            });
        }
        Ok(())
    }
}

/// Reads every Parquet file directly under `url` (a folder or `s3://` prefix): the label, the
/// `features` columns in that order, and the price when every file has it.
pub async fn read_split(name: &'static str, url: &str, features: &[String]) -> Result<Split> {
    if let Some(path) = local_path(url)
        && !path.is_dir()
    {
        return Err(TrainerError::SplitNotFound {
            split: name,
            url: url.to_owned(),
        });
    }
    let location = Location::parse(url)?;
    let files: Vec<String> = location
        .list("")
        .await?
        .into_iter()
        .filter(|f| {
            !f.contains('/')
                && f.ends_with(".parquet")
                && !f.starts_with('.')
                && !f.starts_with('_')
        })
        .collect();
    if files.is_empty() {
        return Err(TrainerError::NoParquetFiles {
            split: name,
            url: url.to_owned(),
        });
    }
    let mut contents = Vec::with_capacity(files.len());
    for file in &files {
        contents.push((location.child_url(file), location.get(file).await?));
    }
    let url = url.to_owned();
    let count = files.len();
    let features = features.to_vec();
    // decoding and checking is CPU work: keep it off the async workers
    tokio::task::spawn_blocking(move || {
        let mut split = Split {
            name,
            url,
            files: count,
            features: features.len(),
            x: Vec::new(),
            y: Vec::new(),
            price: Some(Vec::new()),
        };
        for (file, bytes) in contents {
            decode(
                name,
                &file,
                bytes,
                &features,
                &mut split.x,
                &mut split.y,
                &mut split.price,
            )?;
        }
        if split.rows() == 0 {
            return Err(TrainerError::EmptySplit {
                split: name,
                url: split.url,
            });
        }
        split.canonical_order();
        Ok(split)
    })
    .await
    .map_err(|e| TrainerError::Task(e.to_string()))?
}

/// Appends one Parquet file's rows to `x`, `y` and `price`; a file without a price column
/// sets `price` to `None` for good.
pub fn decode(
    split: &'static str,
    file: &str,
    bytes: Bytes,
    features: &[String],
    x: &mut Vec<f64>,
    y: &mut Vec<f32>,
    price: &mut Option<Vec<f64>>,
) -> Result<()> {
    let parquet_error = |reason: String| TrainerError::Parquet {
        split,
        file: file.to_owned(),
        reason,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| parquet_error(e.to_string()))?;
    let schema = Arc::clone(builder.schema());
    if schema.column_with_name(PRICE_NAME).is_none() {
        *price = None;
    }
    let priced = price.is_some();
    let width = features.len();
    let columns: Vec<&str> = std::iter::once(LABEL_NAME)
        .chain(features.iter().map(String::as_str))
        .chain(priced.then_some(PRICE_NAME))
        .collect();
    let mut roots = Vec::with_capacity(columns.len());
    for &column in &columns {
        let Some((index, field)) = schema.column_with_name(column) else {
            return Err(TrainerError::MissingColumn {
                split,
                file: file.to_owned(),
                column: column.to_owned(),
                found: schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        if !is_numeric(field.data_type()) {
            return Err(TrainerError::WrongType {
                split,
                file: file.to_owned(),
                column: column.to_owned(),
                found: field.data_type().to_string(),
            });
        }
        roots.push(index);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| parquet_error(e.to_string()))?;
    let mut first_row = 0;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(e.to_string()))?;
        let rows = batch.num_rows();
        let mut values: Vec<Vec<f64>> = Vec::with_capacity(columns.len());
        for &column in &columns {
            let array = batch
                .column_by_name(column)
                .ok_or_else(|| parquet_error(format!("column {column} vanished while reading")))?;
            // a lost bid has no paying price: null is "nothing paid", not bad data; the label
            // must be there; a null feature is a missing value
            let nulls = match column {
                LABEL_NAME => Nulls::Refused,
                PRICE_NAME if priced => Nulls::Zero,
                _ => Nulls::Missing,
            };
            values.push(numbers(split, file, column, array, first_row, nulls)?);
        }
        for (i, label) in values[0].iter().enumerate() {
            if *label != 0.0 && *label != 1.0 {
                return Err(TrainerError::BadLabel {
                    split,
                    file: file.to_owned(),
                    row: first_row + i + 1,
                    value: *label,
                });
            }
            y.push(*label as f32);
        }
        x.reserve(rows * width);
        for row in 0..rows {
            x.extend(values[1..=width].iter().map(|column| column[row]));
        }
        if let (Some(price), Some(values)) = (price.as_mut(), values.get(width + 1)) {
            if let Some((i, value)) = values.iter().enumerate().find(|(_, v)| **v < 0.0) {
                return Err(TrainerError::NegativePrice {
                    split,
                    file: file.to_owned(),
                    row: first_row + i + 1,
                    value: *value,
                });
            }
            price.extend_from_slice(values);
        }
        first_row += rows;
    }
    Ok(())
}

fn is_numeric(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
    )
}

/// What a null in a column means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nulls {
    Refused,
    Zero,
    /// NaN: LightGBM's missing value.
    Missing,
}

/// A numeric column as `f64`, refusing infinities, NaN where nulls are refused, and nulls as
/// `nulls` says (`first_row` numbers rows in error messages, 1-based within the file).
fn numbers(
    split: &'static str,
    file: &str,
    column: &str,
    array: &ArrayRef,
    first_row: usize,
    nulls: Nulls,
) -> Result<Vec<f64>> {
    let column_name = || column.to_owned();
    if array.null_count() > 0 && nulls == Nulls::Refused {
        let row = (0..array.len()).find(|i| array.is_null(*i)).unwrap_or(0);
        return Err(TrainerError::NullValue {
            split,
            file: file.to_owned(),
            column: column_name(),
            row: first_row + row + 1,
        });
    }
    macro_rules! widen {
        ($t:ty) => {
            array
                .as_primitive::<$t>()
                .values()
                .iter()
                .map(|v| *v as f64)
                .collect()
        };
    }
    let mut values: Vec<f64> = match array.data_type() {
        DataType::Boolean => array
            .as_boolean()
            .values()
            .iter()
            .map(|v| f64::from(u8::from(v)))
            .collect(),
        DataType::Int8 => widen!(Int8Type),
        DataType::Int16 => widen!(Int16Type),
        DataType::Int32 => widen!(Int32Type),
        DataType::Int64 => widen!(Int64Type),
        DataType::UInt8 => widen!(UInt8Type),
        DataType::UInt16 => widen!(UInt16Type),
        DataType::UInt32 => widen!(UInt32Type),
        DataType::UInt64 => widen!(UInt64Type),
        DataType::Float32 => widen!(Float32Type),
        DataType::Float64 => widen!(Float64Type),
        other => {
            return Err(TrainerError::WrongType {
                split,
                file: file.to_owned(),
                column: column_name(),
                found: other.to_string(),
            });
        }
    };
    let missing = if nulls == Nulls::Zero { 0.0 } else { f64::NAN };
    if array.null_count() > 0 {
        for (i, v) in values.iter_mut().enumerate() {
            if array.is_null(i) {
                *v = missing;
            }
        }
    }
    let bad = |v: &f64| v.is_infinite() || (v.is_nan() && nulls != Nulls::Missing);
    if let Some((row, value)) = values.iter().enumerate().find(|(_, v)| bad(v)) {
        return Err(TrainerError::NotFinite {
            split,
            file: file.to_owned(),
            column: column_name(),
            row: first_row + row + 1,
            value: *value,
        });
    }
    Ok(values)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow_array::{Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{Field, Schema};
    use parquet::arrow::ArrowWriter;

    /// The kit job's features, as its contract lists them.
    pub(crate) const FEATURE_NAMES: [&str; 7] = [
        "dow",
        "hour",
        "IndexAdvertiserID",
        "IndexDomain",
        "IndexRegionID",
        "IndexCityID",
        "device_type_id",
    ];
    pub(crate) const FEATURES: usize = FEATURE_NAMES.len();

    pub(crate) fn names() -> Vec<String> {
        FEATURE_NAMES.iter().map(|n| (*n).to_owned()).collect()
    }

    /// A Parquet file with the given columns (all nullable).
    pub(crate) fn parquet(columns: Vec<(&str, ArrayRef)>) -> Bytes {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .expect("batch");
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, schema, None).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        Bytes::from(out)
    }

    /// Split columns as the ETL writes them, `rows` rows, label = row parity.
    pub(crate) fn split_columns(rows: usize) -> Vec<(&'static str, ArrayRef)> {
        let mut columns: Vec<(&'static str, ArrayRef)> = vec![(
            LABEL_NAME,
            Arc::new(Int32Array::from_iter_values(
                (0..rows).map(|i| (i % 2) as i32),
            )),
        )];
        for (c, name) in FEATURE_NAMES.iter().enumerate() {
            let values = (0..rows).map(|i| (i * (c + 1)) as i64);
            columns.push((name, Arc::new(Int64Array::from_iter_values(values))));
        }
        columns
    }

    fn read(columns: Vec<(&'static str, ArrayRef)>) -> Result<(Vec<f64>, Vec<f32>)> {
        read_priced(columns).map(|(x, y, _)| (x, y))
    }

    /// Features, labels and prices of one file.
    type Decoded = (Vec<f64>, Vec<f32>, Option<Vec<f64>>);

    fn read_priced(columns: Vec<(&'static str, ArrayRef)>) -> Result<Decoded> {
        let (mut x, mut y, mut price) = (Vec::new(), Vec::new(), Some(Vec::new()));
        decode(
            "train",
            "f.parquet",
            parquet(columns),
            &names(),
            &mut x,
            &mut y,
            &mut price,
        )?;
        Ok((x, y, price))
    }

    fn replace(
        mut columns: Vec<(&'static str, ArrayRef)>,
        name: &str,
        array: ArrayRef,
    ) -> Vec<(&'static str, ArrayRef)> {
        for c in &mut columns {
            if c.0 == name {
                c.1 = Arc::clone(&array);
            }
        }
        columns
    }

    #[test]
    fn canonical_order_does_not_depend_on_the_input_order() {
        let rows: Vec<([f64; FEATURES], f32)> = (0..50)
            .map(|i| {
                let v = f64::from(i % 7);
                (
                    [v, f64::from(i % 3), 1.0, v, 0.0, 2.0, f64::from(i % 2)],
                    f32::from(u8::from(i % 5 == 0)),
                )
            })
            .collect();
        let split = |order: &mut dyn Iterator<Item = usize>| {
            let mut s = Split {
                name: "train",
                url: String::new(),
                files: 1,
                features: FEATURES,
                x: Vec::new(),
                y: Vec::new(),
                price: Some(Vec::new()),
            };
            for i in order {
                s.x.extend_from_slice(&rows[i].0);
                s.y.push(rows[i].1);
                // a price that is a function of the row: it must travel with it
                if let Some(p) = s.price.as_mut() {
                    p.push(rows[i].0.iter().sum::<f64>() + f64::from(rows[i].1));
                }
            }
            s.canonical_order();
            s
        };
        let forward = split(&mut (0..rows.len()));
        let backward = split(&mut (0..rows.len()).rev());
        assert_eq!(forward.x, backward.x);
        assert_eq!(forward.y, backward.y);
        assert_eq!(forward.price, backward.price);
        let price = forward.price.as_ref().expect("priced");
        for (i, row) in forward.x.chunks(FEATURES).enumerate() {
            assert_eq!(price[i], row.iter().sum::<f64>() + f64::from(forward.y[i]));
        }
        assert_eq!(forward.rows(), rows.len());
        assert_eq!(forward.wins(), rows.iter().filter(|r| r.1 > 0.5).count());
        // sorted by the first feature, then the next ones
        let firsts: Vec<f64> = forward.x.chunks(FEATURES).map(|r| r[0]).collect();
        assert!(firsts.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn reads_rows_in_feature_order_whatever_the_file_order() {
        let mut columns = split_columns(3);
        columns.reverse();
        columns.push(("extra", Arc::new(StringArray::from(vec!["a", "b", "c"]))));
        let (x, y) = read(columns).expect("reads");
        assert_eq!(y, vec![0.0, 1.0, 0.0]);
        assert_eq!(x.len(), 3 * FEATURES);
        // row 2: feature c holds 2 * (c + 1)
        let row2: Vec<f64> = (0..FEATURES).map(|c| (2 * (c + 1)) as f64).collect();
        assert_eq!(&x[2 * FEATURES..], row2.as_slice());
    }

    #[test]
    fn the_price_column_is_optional_and_null_means_nothing_paid() {
        let (_, _, price) = read_priced(split_columns(3)).expect("reads");
        assert_eq!(price, None, "no column, no spend");
        let mut columns = split_columns(3);
        columns.push((
            PRICE_NAME,
            Arc::new(Int64Array::from(vec![None, Some(250), None])),
        ));
        let (x, _, price) = read_priced(columns).expect("reads");
        assert_eq!(price, Some(vec![0.0, 250.0, 0.0]));
        assert_eq!(x.len(), 3 * FEATURES, "the price is not a feature");

        let text = replace(
            {
                let mut c = split_columns(2);
                c.push((PRICE_NAME, Arc::new(Int64Array::from(vec![1, 2]))));
                c
            },
            PRICE_NAME,
            Arc::new(StringArray::from(vec!["1", "x"])),
        );
        assert!(matches!(
            read_priced(text),
            Err(TrainerError::WrongType { ref column, .. }) if column == PRICE_NAME
        ));

        let mut negative = split_columns(3);
        negative.push((PRICE_NAME, Arc::new(Int64Array::from(vec![10, -5, 0]))));
        let err = read_priced(negative).expect_err("negative price");
        assert!(
            matches!(err, TrainerError::NegativePrice { row: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn bad_columns_are_named() {
        let missing: Vec<_> = split_columns(2)
            .into_iter()
            .filter(|(n, _)| *n != "hour")
            .collect();
        let err = read(missing).expect_err("missing column");
        assert!(matches!(
            err,
            TrainerError::MissingColumn { ref column, .. } if column == "hour"
        ));
        assert!(err.to_string().contains("IndexDomain"), "{err}");

        let text = replace(
            split_columns(2),
            "dow",
            Arc::new(StringArray::from(vec!["Mon", "Tue"])),
        );
        let err = read(text).expect_err("wrong type");
        assert!(
            matches!(err, TrainerError::WrongType { ref column, .. } if column == "dow"),
            "{err}"
        );
        assert!(err.to_string().contains("Utf8"), "{err}");

        // a null feature is a missing value, as the scorer serves it; so is NaN
        let nulls = replace(
            split_columns(3),
            "IndexCityID",
            Arc::new(Int32Array::from(vec![Some(1), None, Some(3)])),
        );
        let (x, _) = read(nulls).expect("a null feature reads as missing");
        assert!(x[FEATURES + 5].is_nan());
        let nan = replace(
            split_columns(3),
            "hour",
            Arc::new(Float64Array::from(vec![1.0, 2.0, f64::NAN])),
        );
        assert!(read(nan).expect("nan is missing").0[2 * FEATURES + 1].is_nan());
        let infinite = replace(
            split_columns(3),
            "hour",
            Arc::new(Float64Array::from(vec![1.0, 2.0, f64::INFINITY])),
        );
        let err = read(infinite).expect_err("infinity");
        assert!(
            matches!(
                err,
                TrainerError::NotFinite { ref column, row: 3, .. } if column == "hour"
            ),
            "{err}"
        );
        let null_label = replace(
            split_columns(3),
            LABEL_NAME,
            Arc::new(Int32Array::from(vec![Some(1), None, Some(0)])),
        );
        let err = read(null_label).expect_err("null label");
        assert!(
            matches!(err, TrainerError::NullValue { row: 2, .. }),
            "{err}"
        );

        let label = replace(
            split_columns(3),
            LABEL_NAME,
            Arc::new(Int32Array::from(vec![0, 2, 1])),
        );
        let err = read(label).expect_err("label 2");
        assert!(
            matches!(err, TrainerError::BadLabel { row: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("must be 0 (no win) or 1 (win)"));

        let err = {
            let (mut x, mut y, mut price) = (Vec::new(), Vec::new(), None);
            decode(
                "test",
                "junk.parquet",
                Bytes::from_static(b"not parquet"),
                &names(),
                &mut x,
                &mut y,
                &mut price,
            )
            .expect_err("junk")
        };
        assert!(matches!(err, TrainerError::Parquet { split: "test", .. }));
    }

    #[tokio::test]
    async fn split_folders_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("train");
        std::fs::create_dir_all(&folder).expect("mkdir");
        std::fs::write(folder.join("a.parquet"), parquet(split_columns(4))).expect("write");
        std::fs::write(folder.join("b.parquet"), parquet(split_columns(2))).expect("write");
        std::fs::write(folder.join("_SUCCESS"), "").expect("write");
        let url = folder.to_string_lossy().into_owned();
        let split = read_split("train", &url, &names()).await.expect("reads");
        assert_eq!((split.rows(), split.files, split.wins()), (6, 2, 3));
        split.require_both_labels().expect("both labels");
        assert_eq!(split.price, None);

        // spend is all or nothing: one file without prices drops them for the whole split
        let priced = |rows: usize| {
            let mut c = split_columns(rows);
            c.push((
                PRICE_NAME,
                Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i as i64))),
            ));
            parquet(c)
        };
        let mixed = dir.path().join("mixed");
        std::fs::create_dir_all(&mixed).expect("mkdir");
        std::fs::write(mixed.join("a.parquet"), priced(4)).expect("write");
        let mixed_url = mixed.to_string_lossy().into_owned();
        let all = read_split("train", &mixed_url, &names())
            .await
            .expect("reads");
        assert_eq!(all.price.as_ref().map(Vec::len), Some(4));
        std::fs::write(mixed.join("b.parquet"), parquet(split_columns(2))).expect("write");
        let some = read_split("train", &mixed_url, &names())
            .await
            .expect("reads");
        assert_eq!((some.rows(), some.price), (6, None));

        let one_class = Split {
            y: vec![0.0; 3],
            ..split.clone()
        };
        assert!(matches!(
            one_class.require_both_labels(),
            Err(TrainerError::SingleClass { label: 0, .. })
        ));

        let empty = dir.path().join("valid");
        std::fs::create_dir_all(&empty).expect("mkdir");
        let empty_url = empty.to_string_lossy().into_owned();
        assert!(matches!(
            read_split("valid", &empty_url, &names()).await,
            Err(TrainerError::NoParquetFiles { .. })
        ));
        std::fs::write(empty.join("a.parquet"), parquet(split_columns(0))).expect("write");
        assert!(matches!(
            read_split("valid", &empty_url, &names()).await,
            Err(TrainerError::EmptySplit { split: "valid", .. })
        ));
        let gone = dir.path().join("nope").to_string_lossy().into_owned();
        assert!(matches!(
            read_split("test", &gone, &names()).await,
            Err(TrainerError::SplitNotFound { .. })
        ));
        assert!(!dir.path().join("nope").exists(), "reading creates nothing");
    }
}
