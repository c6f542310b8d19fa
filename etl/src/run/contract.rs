//! A job's feature contract: every step planned before any data is read (so a job the scorer
//! could not serve is refused up front), then the SQL the runner executes around the job's own
//! steps: the request as the scorer types it, and the feature rows computed from it.

use std::sync::Arc;

use anyhow::{Context, bail};
use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::DFSchema;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::{MemTable, ViewTable};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::prelude::SessionContext;
use rtb_expr::{CompiledFeatures, REQUESTS_TABLE, arrow_type, field_type_of, parse_features};
use rtb_features::openrtb::default_source;
use rtb_features::vocabulary::{FeatureVocabulary, StringIndexer};
use rtb_features::{FeatureContract, FeatureDef, FieldType, LABEL_NAME, PRICE_NAME, RequestField};

use crate::job::{Job, StepRole};
use crate::udf;

/// The table the job's own `inference_requests` step is registered as; `inference_requests`
/// itself is that step typed as the scorer types a request.
pub(super) const REQUESTS_STEP_TABLE: &str = "__requests_step";
const LABEL_COLUMN: &str = "__label";
const PRICE_COLUMN: &str = "__price";

/// What planning the job found: the request, the features and the price column.
#[derive(Debug, Clone)]
pub(super) struct JobPlan {
    pub request: Vec<RequestField>,
    pub features: Vec<FeatureDef>,
    /// The `inference_requests` column holding the price, when there is one.
    pub price: Option<String>,
}

pub(super) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A vocabulary with the job's columns and no labels: enough to plan `encode` calls.
fn placeholder_vocabulary(job: &Job) -> FeatureVocabulary {
    FeatureVocabulary::new(
        job.categorical
            .iter()
            .map(|c| (c.clone(), StringIndexer::fit(std::iter::empty())))
            .collect(),
    )
}

/// The request fields of the `inference_requests` step's output, and its price column.
fn request_fields(
    job: &Job,
    schema: &DFSchema,
) -> anyhow::Result<(Vec<RequestField>, Option<String>)> {
    let has = |name: &str| schema.fields().iter().any(|f| f.name() == name);
    if !has(&job.label) {
        bail!(
            "inference_requests has no label column {:?}; select the label (1 = the bid won) as {:?}, or name its column with `-- label:`",
            job.label,
            job.label
        );
    }
    let price = match &job.price {
        Some(p) if !has(p) => bail!(
            "inference_requests has no price column {p:?}, which `-- price:` names; select it or remove the directive"
        ),
        Some(p) => Some(p.clone()),
        None => has(PRICE_NAME).then(|| PRICE_NAME.to_owned()),
    };
    let mut request = Vec::new();
    for field in schema.fields() {
        let name = field.name();
        if name == &job.label || price.as_ref() == Some(name) {
            continue;
        }
        let field_type =
            field_type_of(field.data_type()).ok_or_else(|| rtb_expr::ExprError::FieldType {
                field: name.clone(),
                found: field.data_type().to_string(),
            })?;
        request.push(RequestField {
            name: name.clone(),
            field_type,
        });
    }
    if !request.iter().any(|f| f.name == job.key) {
        bail!(
            "inference_requests has no key field {:?}; select the request id as {:?}, or name it with `-- key:`",
            job.key,
            job.key
        );
    }
    Ok((request, price))
}

/// Refuses a features step that is more than named expressions over the requests.
fn check_shape(plan: &LogicalPlan) -> anyhow::Result<()> {
    let found = match plan {
        LogicalPlan::Projection(p) => match p.input.as_ref() {
            LogicalPlan::TableScan(t) if t.table_name.table() == REQUESTS_TABLE => return Ok(()),
            LogicalPlan::SubqueryAlias(_) => {
                bail!(
                    "the features step reads FROM {REQUESTS_TABLE} with an alias; write the column names without one"
                )
            }
            other => other.display().to_string(),
        },
        other => other.display().to_string(),
    };
    bail!(
        "the features step must be SELECT <named expressions> FROM {REQUESTS_TABLE}, with no WHERE, GROUP BY, JOIN, ORDER BY, LIMIT or DISTINCT: each request is scored alone, so each feature is a function of one request (found {found})"
    )
}

/// Refuses a requests step whose rows could differ between two evaluations. A run evaluates
/// it (and the views between it and `transformed`) once for the inference data and once for
/// the features: `random()` sampling or a `now()` stamp there would make the features rows
/// other than the requests, and their counts other than what was written.
fn check_repeatable(plan: &LogicalPlan) -> anyhow::Result<()> {
    match changing_call(plan)? {
        None => Ok(()),
        Some(name) => bail!(
            "the inference_requests step (or a step it reads after transformed) calls {name}(), whose value changes from one run of the step to the next; the runner reads the step twice (the requests, then the features), so both would hold other rows. Sample or stamp rows in the transformed step, which is written once"
        ),
    }
}

/// The first function in `plan`, or in the views it reads, whose value is not fixed by its
/// arguments. The plan is the unoptimised one: the optimiser folds `now()` into a constant.
fn changing_call(plan: &LogicalPlan) -> anyhow::Result<Option<String>> {
    let mut found = None;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(view) = provider.downcast_ref::<ViewTable>()
        {
            found = changing_call(view.logical_plan())
                .map_err(|e| DataFusionError::External(e.into()))?;
        }
        if found.is_none() {
            node.apply_expressions(|expr| {
                expr.apply(|e| {
                    if let Expr::ScalarFunction(f) = e
                        && f.func.signature().volatility != Volatility::Immutable
                    {
                        found = Some(f.func.name().to_owned());
                    }
                    Ok(if found.is_some() {
                        TreeNodeRecursion::Stop
                    } else {
                        TreeNodeRecursion::Continue
                    })
                })
            })?;
        }
        Ok(if found.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(found)
}

/// Plans every step of `job` without reading data, and compiles its features the way the
/// scorer will. `ctx` is a planning context of its own: the steps are registered in it.
pub(super) async fn check(ctx: &SessionContext, job: &Job) -> anyhow::Result<JobPlan> {
    job.check_roles()?;
    let placeholder = Arc::new(placeholder_vocabulary(job));
    let mut planned: Option<(Vec<RequestField>, Option<String>)> = None;
    for step in &job.steps {
        let sql = job.render(step)?;
        if step.role == StepRole::Features {
            let (request, price) = planned
                .clone()
                .context("features before inference_requests")?;
            let features = parse_features(&sql)?;
            let contract = assemble(
                job,
                &JobPlan {
                    request,
                    features: features.clone(),
                    price: price.clone(),
                },
                &placeholder,
            )?;
            CompiledFeatures::compile(&contract, Arc::clone(&placeholder))?;
            // the shape is checked over the request as the scorer types it
            let schema = rtb_expr::request_schema(&contract);
            ctx.deregister_table(REQUESTS_TABLE)?;
            ctx.register_table(
                REQUESTS_TABLE,
                Arc::new(MemTable::try_new(schema, vec![vec![]])?),
            )?;
            let df = ctx
                .sql(&sql)
                .await
                .context("job step features does not plan")?;
            check_shape(df.logical_plan())?;
            return Ok(JobPlan {
                request: contract.request,
                features,
                price,
            });
        }
        let df = ctx
            .sql(&sql)
            .await
            .with_context(|| format!("job step {} does not plan", step.name))?;
        match step.role {
            StepRole::Requests => {
                check_repeatable(df.logical_plan())?;
                planned = Some(request_fields(job, df.schema())?);
            }
            StepRole::Transformed => {
                let columns: Vec<&str> = df
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                if let Some(missing) = job
                    .categorical
                    .iter()
                    .find(|c| !columns.contains(&c.as_str()))
                {
                    bail!(
                        "categorical column {missing} is not a column of the transformed step (it has {})",
                        columns.join(", ")
                    );
                }
                udf::register_encode(ctx, Arc::clone(&placeholder));
                // written once and read back, as in a run: what it calls runs once, and the
                // requests step's own plan stops at it
                let schema = Arc::new(df.schema().as_arrow().clone());
                ctx.register_table(
                    step.name.as_str(),
                    Arc::new(MemTable::try_new(schema, vec![vec![]])?),
                )?;
                continue;
            }
            _ => {}
        }
        ctx.register_table(step.name.as_str(), df.into_view())?;
    }
    bail!("job has no features step")
}

/// The contract for `plan` over `vocabulary`.
pub(super) fn assemble(
    job: &Job,
    plan: &JobPlan,
    vocabulary: &FeatureVocabulary,
) -> anyhow::Result<FeatureContract> {
    let openrtb = plan
        .request
        .iter()
        .filter_map(|f| {
            job.openrtb
                .get(&f.name)
                .cloned()
                .or_else(|| default_source(&f.name).map(str::to_owned))
                .map(|s| (f.name.clone(), s))
        })
        .collect();
    if let Some(unknown) = job
        .openrtb
        .keys()
        .find(|k| !plan.request.iter().any(|f| &f.name == *k))
    {
        bail!(
            "`-- openrtb: {unknown} = ...` names no request field; inference_requests selects {}",
            plan.request
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(FeatureContract {
        format: 0,
        version: String::new(),
        job: job.name.clone(),
        key: job.key.clone(),
        request: plan.request.clone(),
        features: plan.features.clone(),
        label: LABEL_NAME.to_owned(),
        price: plan.price.as_ref().map(|_| PRICE_NAME.to_owned()),
        vocabulary_version: vocabulary.version.clone(),
        vocabulary_columns: job.categorical.clone(),
        openrtb,
        time_zone: job.time_zone.clone(),
    }
    .sealed()?)
}

fn arrow_name(field_type: FieldType) -> String {
    arrow_type(field_type).to_string()
}

/// `inference_requests` as the scorer types a request, with the label and price alongside.
pub(super) fn requests_sql(job: &Job, plan: &JobPlan) -> String {
    let mut columns: Vec<String> = plan
        .request
        .iter()
        .map(|f| {
            format!(
                "arrow_cast({q}, '{}') AS {q}",
                arrow_name(f.field_type),
                q = quote(&f.name)
            )
        })
        .collect();
    columns.push(format!("{} AS {}", quote(&job.label), quote(LABEL_COLUMN)));
    if let Some(price) = &plan.price {
        columns.push(format!("{} AS {}", quote(price), quote(PRICE_COLUMN)));
    }
    format!(
        "SELECT {} FROM {}",
        columns.join(", "),
        quote(REQUESTS_STEP_TABLE)
    )
}

/// The request fields alone: what the inference data holds.
pub(super) fn inference_data_sql(contract: &FeatureContract) -> String {
    let columns: Vec<String> = contract.request.iter().map(|f| quote(&f.name)).collect();
    format!("SELECT {} FROM {REQUESTS_TABLE}", columns.join(", "))
}

/// The feature rows: the label, the contract's expressions, the price, the key and the split.
pub(super) fn features_sql(job: &Job, contract: &FeatureContract) -> anyhow::Result<String> {
    let seed: i64 = match job.params.get("split_seed") {
        None => 42,
        Some(v) => v
            .parse()
            .with_context(|| format!("parameter split_seed = {v:?} must be an integer"))?,
    };
    let train = job.number("train_fraction", 0.8)?;
    let valid = job.number("valid_fraction", 0.1)?;
    let mut columns = vec![format!(
        "CAST({} AS INT) AS {}",
        quote(LABEL_COLUMN),
        quote(LABEL_NAME)
    )];
    for feature in &contract.features {
        columns.push(format!("({}) AS {}", feature.expr, quote(&feature.name)));
    }
    if contract.price.is_some() {
        columns.push(format!(
            "TRY_CAST({} AS BIGINT) AS {}",
            quote(PRICE_COLUMN),
            quote(PRICE_NAME)
        ));
    }
    let key = quote(&contract.key);
    columns.push(format!("{key} AS {key}"));
    columns.push(format!(
        "split_of(arrow_cast({key}, 'Utf8'), {seed}, {train:?}, {valid:?}) AS split"
    ));
    Ok(format!(
        "SELECT {} FROM {REQUESTS_TABLE}",
        columns.join(", ")
    ))
}
