//! The feature rows: the contract's expressions over the typed requests, with the label,
//! price, key and split the runner adds, written into `processed/{train,valid,test}/`.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::prelude::SessionContext;
use rtb_features::Split;
use rtb_features::manifest::SplitCounts;

use super::engine::{query_batches, write};
use super::{RunContext, Tally, contract};

/// The features with the runner's label, price, key and split, as a view.
const FEATURES_TABLE: &str = "features_with_split";

/// The feature rows, computed from the typed requests by the contract's expressions and
/// written straight into `processed/{train,valid,test}/` (without the split column).
///
/// Each split's write evaluates the features afresh with its split's filter pushed below them,
/// so every row's features are computed once and nothing is staged: staging them cost a write
/// and three reads of every feature row (a third of the job at 1M bids). The counts come from
/// one more pass over the key and label alone and must equal what the writes wrote.
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
    let select = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name())
        .filter(|n| *n != "split")
        .map(|c| contract::quote(c))
        .collect::<Vec<_>>()
        .join(", ");
    ctx.register_table(FEATURES_TABLE, df.into_view())?;
    let mut written = BTreeMap::new();
    for split in Split::ALL {
        let target = run.url(&format!("processed/{}/", split.as_str()));
        let df = ctx
            .sql(&format!(
                "SELECT {select} FROM {FEATURES_TABLE} WHERE split = '{}'",
                split.as_str()
            ))
            .await?;
        let (_, n) = write(ctx, df, &target, false).await?;
        written.insert(split.as_str(), n);
        tally.outputs.insert(split.as_str().into(), target);
    }
    tally
        .rows
        .insert("features".into(), written.values().sum::<u64>());
    let key = contract::quote(&contract.key);
    let counts = query_batches(
        ctx,
        &format!(
            "SELECT split, CAST(label AS BIGINT) AS label, count(*) AS n, \
             count(*) FILTER (WHERE {key} IS NULL) AS null_keys \
             FROM {FEATURES_TABLE} GROUP BY split, label"
        ),
    )
    .await?;
    let mut null_keys = 0;
    for batch in counts {
        let split_col = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let split_col = split_col.as_string::<i32>();
        let label = batch.column(1).as_primitive::<Int64Type>();
        let n = batch.column(2).as_primitive::<Int64Type>();
        let nulls = batch.column(3).as_primitive::<Int64Type>();
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
    tally.rows.insert("features_null_key".into(), null_keys);
    // the features are computed twice (written, then counted): a job whose rows differ between
    // two evaluations of the same inputs would train on counts that are not its rows
    for split in Split::ALL {
        let counted = tally.splits.get(split.as_str()).map_or(0, |c| c.rows);
        let wrote = written[split.as_str()];
        if counted != wrote {
            bail!(
                "the {} split wrote {wrote} rows but counts {counted}: the features step gives different rows on two evaluations of the same requests; make it deterministic (no random(), now() or LIMIT without ORDER BY)",
                split.as_str()
            );
        }
    }
    Ok(())
}
