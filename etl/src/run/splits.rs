//! The feature rows: the contract's expressions over the typed requests, with the label,
//! price, key and split the runner adds, written into `processed/features/split={train,valid,test}/`.

use anyhow::{Context, bail};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use rtb_features::Split;
use rtb_features::manifest::SplitCounts;

use super::engine::{query_batches, write};
use super::{RunContext, Tally, contract};

/// The feature rows, computed from the typed requests by the contract's expressions and
/// written into `processed/features/split={train,valid,test}/` (without the split column).
///
/// One pass computes every row once and sends it to its split's folder; the counts are then
/// read from the written files (the label and the key alone), so they are the rows written.
/// Before, each split was written by a pass of its own and counted by a fourth one: the
/// requests were read and the split hash evaluated four times per row. The folders are the
/// engine's partitioned write's (`<column>=<value>`): renaming them would copy every object on
/// S3, where one copy is limited to 5 GB.
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
    let (_, written) = write(
        ctx,
        df,
        &run.url(&format!("{FEATURES}/")),
        false,
        &["split"],
    )
    .await?;
    let folder = format!("{}/{FEATURES}", run.run_prefix);
    let mut written_splits = Vec::new();
    for name in run.out.list(&folder).await? {
        let value = name
            .strip_prefix(&folder)
            .and_then(|rest| rest.trim_start_matches('/').split_once('/'))
            .map(|(dir, _)| dir.strip_prefix("split=").unwrap_or(dir))
            .with_context(|| format!("unexpected object {name} among the written features"))?;
        let Some(split) = Split::ALL.into_iter().find(|s| s.as_str() == value) else {
            bail!(
                "the features produced rows with split {value:?}; split_of yields train, valid or test"
            );
        };
        if !written_splits.contains(&split) {
            written_splits.push(split);
        }
    }
    for split in Split::ALL {
        tally
            .outputs
            .insert(split.as_str().into(), run.url(&split_folder(split)));
    }
    tally.rows.insert("features".into(), written);
    let null_keys = count_splits(run, ctx, contract, &written_splits, tally).await?;
    tally.rows.insert("features_null_key".into(), null_keys);

    let counted: u64 = tally.splits.values().map(|c| c.rows).sum();
    let requests = tally.rows.get("inference_requests").copied();
    check_counts(written, counted, requests)
}

/// The folder of the feature rows, under a run.
const FEATURES: &str = "processed/features";

/// The folder of one split's rows, under a run.
fn split_folder(split: Split) -> String {
    format!("{FEATURES}/split={}/", split.as_str())
}

/// Counts each written split's rows by label, into `tally.splits`, and returns the rows
/// without a key.
async fn count_splits(
    run: &RunContext<'_>,
    ctx: &SessionContext,
    contract: &rtb_features::FeatureContract,
    written_splits: &[Split],
    tally: &mut Tally,
) -> anyhow::Result<u64> {
    let key = contract::quote(&contract.key);
    let mut selects = Vec::new();
    for split in Split::ALL {
        // a split that got no row has no folder to read
        if !written_splits.contains(&split) {
            continue;
        }
        let table = format!("__split_{}", split.as_str());
        ctx.register_parquet(
            &table,
            &run.url(&split_folder(split)),
            ParquetReadOptions::default(),
        )
        .await?;
        selects.push(format!(
            "SELECT '{}' AS split, CAST(label AS BIGINT) AS label, count(*) AS n, \
             count(*) FILTER (WHERE {key} IS NULL) AS null_keys FROM {table} GROUP BY label",
            split.as_str()
        ));
    }
    if selects.is_empty() {
        return Ok(0);
    }
    let counts = query_batches(ctx, &selects.join(" UNION ALL ")).await;
    for split in Split::ALL {
        ctx.deregister_table(format!("__split_{}", split.as_str()))?;
    }
    let mut null_keys = 0;
    for batch in counts.context("cannot count the written splits")? {
        let split_col = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let split_col = split_col.as_string::<i32>();
        let label = batch.column(1).as_primitive::<Int64Type>();
        let n = batch.column(2).as_primitive::<Int64Type>();
        let nulls = batch.column(3).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            let entry = tally
                .splits
                .entry(split_col.value(i).to_owned())
                .or_insert(SplitCounts {
                    rows: 0,
                    label_0: 0,
                    label_1: 0,
                });
            let count = n.value(i) as u64;
            null_keys += nulls.value(i) as u64;
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
    Ok(null_keys)
}

/// The features are one row per request, and the counts are read back from what was written:
/// any difference is a requests step that changed between its two evaluations (what
/// `contract::check` cannot see, e.g. a LIMIT without ORDER BY) or files that are not the
/// write's.
fn check_counts(written: u64, counted: u64, requests: Option<u64>) -> anyhow::Result<()> {
    if counted != written {
        bail!(
            "the splits hold {counted} rows but the features write wrote {written}: the written files are not what the write produced; run the job again"
        );
    }
    if let Some(requests) = requests
        && requests != written
    {
        bail!(
            "the features wrote {written} rows from {requests} requests: the inference_requests step gives other rows on two evaluations of the same input; make it deterministic (no random(), now() or LIMIT without ORDER BY)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_counts;

    #[test]
    fn counts_must_agree_with_the_write_and_the_requests() {
        assert!(check_counts(10, 10, Some(10)).is_ok());
        assert!(check_counts(0, 0, None).is_ok());
        let err = check_counts(10, 9, Some(10))
            .expect_err("a short read-back")
            .to_string();
        assert!(err.contains("splits hold 9 rows"), "{err}");
        let err = check_counts(10, 10, Some(12))
            .expect_err("more requests than rows")
            .to_string();
        assert!(
            err.contains("10 rows from 12 requests") && err.contains("no random()"),
            "{err}"
        );
    }
}
