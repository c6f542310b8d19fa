//! The feature rows: the contract's expressions over the typed requests, with the label,
//! price, key and split the runner adds, staged once and split into
//! `processed/{train,valid,test}/`.

use anyhow::{Context, bail};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use rtb_features::Split;
use rtb_features::manifest::SplitCounts;

use super::engine::{query_batches, write};
use super::{RunContext, Tally, contract};

/// The feature rows, computed from the typed requests by the contract's expressions, staged
/// once and split into `processed/{train,valid,test}/` (without the split column).
pub(super) async fn write_features(
    run: &RunContext<'_>,
    ctx: &SessionContext,
    contract: &rtb_features::FeatureContract,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let sql = contract::features_sql(run.job, contract)?;
    let df = ctx
        .sql(&sql)
        .await
        .context("the features of the contract do not plan over the requests")?;
    let staged = run.url("_work/features/");
    let (_, n) = write(ctx, df, &staged, false).await?;
    tally.rows.insert("features".into(), n);
    ctx.register_parquet("features_staged", &staged, ParquetReadOptions::default())
        .await?;
    let columns: Vec<String> = ctx
        .table("features_staged")
        .await?
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != "split")
        .collect();
    let select = columns
        .iter()
        .map(|c| contract::quote(c))
        .collect::<Vec<_>>()
        .join(", ");
    for split in Split::ALL {
        let target = run.url(&format!("processed/{}/", split.as_str()));
        let df = ctx
            .sql(&format!(
                "SELECT {select} FROM features_staged WHERE split = '{}'",
                split.as_str()
            ))
            .await?;
        write(ctx, df, &target, false).await?;
        tally.outputs.insert(split.as_str().into(), target);
    }
    let key = contract::quote(&contract.key);
    let null_keys = query_batches(
        ctx,
        &format!("SELECT count(*) AS n FROM features_staged WHERE {key} IS NULL"),
    )
    .await?;
    let null_keys = null_keys
        .first()
        .map_or(0, |b| b.column(0).as_primitive::<Int64Type>().value(0));
    tally
        .rows
        .insert("features_null_key".into(), null_keys as u64);
    let counts = query_batches(ctx, "SELECT split, CAST(label AS BIGINT) AS label, count(*) AS n FROM features_staged GROUP BY split, label").await?;
    for batch in counts {
        let split_col = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let split_col = split_col.as_string::<i32>();
        let label = batch.column(1).as_primitive::<Int64Type>();
        let n = batch.column(2).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            let Some(name) = Split::ALL
                .iter()
                .map(|s| s.as_str())
                .find(|s| split_col.is_valid(i) && *s == split_col.value(i))
            else {
                bail!(
                    "the features produced a row with split {:?}; split_of yields train, valid or test",
                    split_col.is_valid(i).then(|| split_col.value(i))
                );
            };
            let entry = tally.splits.entry(name.to_owned()).or_insert(SplitCounts {
                rows: 0,
                label_0: 0,
                label_1: 0,
            });
            let count = n.value(i) as u64;
            entry.rows += count;
            match label.is_valid(i).then(|| label.value(i)) {
                Some(0) => entry.label_0 += count,
                Some(1) => entry.label_1 += count,
                other => {
                    bail!(
                        "inference_requests produced label {other:?} for {count} rows; labels must be 0 or 1"
                    )
                }
            }
        }
    }
    run.out
        .delete_prefix(&format!("{}/_work/features", run.run_prefix))
        .await;
    Ok(())
}
