//! The `train` command: locate a committed ETL run, read its splits, train, evaluate, report,
//! publish. Nothing is written before training and evaluation have succeeded in memory.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use clap::Args;
use rtb_features::LABEL_NAME;
use rtb_params::ParameterStore;
use tracing::info;

use crate::data::{Split, read_split};
use crate::fit::{Fitted, fit};
use crate::metrics::{Evaluation, evaluate};
use crate::previous::{self, Previous};
use crate::publish::{
    Destination, MANIFEST_FILE, MODEL_FILE, MODELS_DIR, MetricsSummary, ModelFiles, SplitInfo,
    TrainingRecord, model_id, publish, sha256_hex,
};
use crate::report::{self, PageFacts};
use crate::source::{self, EtlRun};
use crate::{Result, TrainerError, params};
use rtb_model::ModelManifest;

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// The ETL run to train on: its folder, its manifest.json, or an ETL output folder (or its
    /// latest.json) for the newest run; local or s3://. Without it the run is found in the
    /// parameter store (/aik/output_train, /aik/output_verify, /aik/output_test,
    /// /aik/pipelineModelArtifactPath, /aik/etl/manifest).
    #[arg(long, env = "RTB_RUN")]
    pub run: Option<String>,
    /// Where the run's locations are read and the model pointers written: a JSON file (path or
    /// file://) or ssm:// (AWS SSM Parameter Store; ssm://?endpoint=URL for an emulator).
    #[arg(
        long,
        env = "RTB_PARAMETER_STORE",
        default_value = "data/parameter-store.json"
    )]
    pub parameter_store: String,
    /// Folder or s3:// prefix; the model goes under <out>/models/<model_id>/.
    #[arg(long, env = "RTB_TRAIN_OUT", default_value = "data")]
    pub out: String,
    /// LightGBM parameter override, key=value (repeatable), e.g. --param learning_rate=0.1.
    /// Its environment twin is RTB_TRAIN_PARAM, not RTB_PARAM, which holds the ETL's job
    /// parameters.
    #[arg(long = "param", env = "RTB_TRAIN_PARAM", value_delimiter = ',')]
    pub params: Vec<String>,
    /// Probability thresholds for the confusion matrix and its ratios.
    #[arg(
        long,
        env = "RTB_THRESHOLDS",
        value_delimiter = ',',
        default_value = "0.5,0.1"
    )]
    pub thresholds: Vec<f64>,
    /// Share of won impressions the recommended filter threshold must keep.
    #[arg(long, env = "RTB_WINS_KEPT", default_value_t = 0.99)]
    pub wins_kept: f64,
    /// LightGBM threads (default: the number of cores); same as --param num_threads=N.
    #[arg(long, env = "RTB_THREADS")]
    pub threads: Option<usize>,
}

impl TrainArgs {
    /// The defaults, training the run at `run`.
    pub fn for_run(run: &str, out: &str, parameter_store: &str) -> Self {
        TrainArgs {
            run: Some(run.to_owned()),
            parameter_store: parameter_store.to_owned(),
            out: out.to_owned(),
            params: Vec::new(),
            thresholds: vec![0.5, 0.1],
            wins_kept: 0.99,
            threads: None,
        }
    }
}

/// What a training published, for the summary printed at the end.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub manifest_url: String,
    pub report_url: String,
    /// The published manifest, as the scorer reads it.
    pub manifest: ModelManifest,
    /// How the model came about (also in the manifest's extra fields).
    pub record: TrainingRecord,
    pub evaluation: Evaluation,
    /// The model this one replaces in the parameter store, compared where it can be.
    pub previous: Previous,
}

fn check_inputs(args: &TrainArgs) -> Result<()> {
    for t in &args.thresholds {
        if !(*t > 0.0 && *t < 1.0) {
            return Err(TrainerError::BadThreshold { value: *t });
        }
    }
    if !(args.wins_kept > 0.0 && args.wins_kept <= 1.0) {
        return Err(TrainerError::BadParam {
            param: "--wins-kept".into(),
            reason: format!(
                "{} is not a share of wins; pass a number in (0, 1], e.g. 0.99",
                args.wins_kept
            ),
        });
    }
    Ok(())
}

async fn read_splits(run: &EtlRun) -> Result<Vec<Split>> {
    let mut splits = Vec::with_capacity(source::SPLITS.len());
    for name in source::SPLITS {
        let url = &run.splits[name];
        let split = read_split(name, url, &run.contract.feature_names()).await?;
        if let Some(counts) = run.manifest.splits.get(name)
            && counts.rows != split.rows() as u64
        {
            return Err(TrainerError::RowCountMismatch {
                split: name,
                url: url.clone(),
                found: split.rows(),
                expected: counts.rows,
            });
        }
        split.require_both_labels()?;
        info!(
            split = name,
            rows = split.rows(),
            wins = split.wins(),
            files = split.files,
            "read split"
        );
        splits.push(split);
    }
    Ok(splits)
}

/// Trains, evaluates and publishes one model.
pub async fn run(args: &TrainArgs) -> Result<TrainOutcome> {
    let started = Instant::now();
    check_inputs(args)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    let params = params::resolve(&args.params, threads)?;
    let store = ParameterStore::open(&args.parameter_store).await?;
    // found out now, not after training and committing the model
    store.check().await?;
    if let Ok(out) = rtb_storage::Location::parse(&args.out)
        && let Ok(left) = rtb_storage::commit::leftovers(&out, MODELS_DIR, MANIFEST_FILE).await
        && !left.is_empty()
    {
        let urls: Vec<&str> = left.iter().map(|l| l.url.as_str()).collect();
        tracing::warn!(
            "{} uncommitted model folder(s) (killed or failed trainings; never served): {}; `rtb-etl gc --out {}` deletes them",
            left.len(),
            urls.join(", "),
            args.out
        );
    }
    let run = match &args.run {
        Some(location) => source::from_location(location).await?,
        None => source::from_store(&store).await?,
    };
    info!(
        run_id = %run.manifest.run_id,
        manifest = %run.manifest_url,
        "training on etl run"
    );
    let mut durations: BTreeMap<&'static str, u64> = BTreeMap::new();
    let phase = Instant::now();
    let splits = read_splits(&run).await?;
    durations.insert("read", phase.elapsed().as_millis() as u64);

    // read before training: what the user is about to replace, scored on the same test rows
    let published = previous::load(&store, &run.contract).await;
    let thresholds = args.thresholds.clone();
    let wins_kept = args.wins_kept;
    let fit_params = params.clone();
    let names = run.contract.feature_names();
    let (splits, fitted, evaluation, previous, charts, evaluate_ms, report_ms) =
        tokio::task::spawn_blocking(move || -> Result<_> {
            let fitted = fit(&splits[0], &splits[1], &splits[2], &names, &fit_params)?;
            let phase = Instant::now();
            let test = &splits[2];
            let evaluation = evaluate(
                &fitted.test_scores,
                &test.y,
                test.price.as_deref(),
                &thresholds,
                wins_kept,
            );
            let previous = published.evaluate(
                &test.x,
                &test.y,
                test.price.as_deref(),
                &thresholds,
                wins_kept,
            );
            let evaluate_ms = phase.elapsed().as_millis() as u64;
            let phase = Instant::now();
            let charts = report::charts(&fitted, &evaluation, &previous, &test.y)?;
            let report_ms = phase.elapsed().as_millis() as u64;
            Ok((
                splits,
                fitted,
                evaluation,
                previous,
                charts,
                evaluate_ms,
                report_ms,
            ))
        })
        .await
        .map_err(|e| TrainerError::Task(e.to_string()))??;
    durations.insert("train", fitted.train_ms);
    durations.insert("select_iteration", fitted.select_ms);
    durations.insert("predict_test", fitted.predict_ms);
    durations.insert("evaluate", evaluate_ms);
    durations.insert("charts", report_ms);
    info!(
        trees = fitted.trees_trained,
        best_iteration = fitted.best_iteration,
        train_ms = fitted.train_ms,
        roc_auc = evaluation.roc_auc,
        "trained and evaluated"
    );
    if let Previous::Unreadable { manifest, reason } = &previous {
        tracing::warn!(%manifest, "the published model cannot be read to compare with: {reason}");
    }

    // the stored manifest's total covers everything up to publishing
    durations.insert("total", started.elapsed().as_millis() as u64);
    let phase = Instant::now();
    let model_sha256 = sha256_hex(fitted.model_text.as_bytes());
    let (destination, id) =
        Destination::fresh(&args.out, &model_id(&model_sha256, chrono::Utc::now())).await?;
    let record = training_record(
        &destination,
        &run,
        &splits,
        &params,
        &fitted,
        &evaluation,
        &durations,
    );
    let manifest = ModelManifest {
        model_id: id.clone(),
        format: rtb_model::manifest::LIGHTGBM_TEXT.to_owned(),
        model: destination.url(MODEL_FILE),
        model_sha256: model_sha256.clone(),
        features: run.contract.feature_names(),
        vocabulary_version: run.vocabulary_version.clone(),
        vocabulary: run.vocabulary_url.clone(),
        contract: run.contract.clone(),
        best_iteration: Some(fitted.best_iteration),
        created_at: Some(chrono::Utc::now().to_rfc3339()),
        extra: record.to_fields()?,
    };
    let metrics_json = metrics_document(&manifest, &record, &fitted, &evaluation, &previous)?;
    let facts = PageFacts {
        model_id: &id,
        etl_run_id: &run.manifest.run_id,
        etl_manifest: &run.manifest_url,
        vocabulary_version: &run.vocabulary_version,
        splits: splits
            .iter()
            .map(|s| (s.name, s.rows(), s.wins()))
            .collect(),
        params: &params,
        durations_ms: &durations,
    };
    let page = report::html(&facts, &fitted, &evaluation, &previous, &charts);
    let mut report_files: Vec<(String, Bytes)> = vec![
        ("report/report.html".into(), Bytes::from(page)),
        ("report/metrics.json".into(), Bytes::from(metrics_json)),
    ];
    for chart in charts {
        report_files.push((format!("report/{}", chart.file), Bytes::from(chart.png)));
    }
    let files = ModelFiles {
        model: Bytes::from(fitted.model_text.clone()),
        report: report_files,
    };
    publish(&destination, &files, &manifest, &store).await?;
    durations.insert("publish", phase.elapsed().as_millis() as u64);
    info!(
        model_id = %id,
        total_ms = started.elapsed().as_millis() as u64,
        "published model"
    );
    Ok(TrainOutcome {
        manifest_url: destination.url(MANIFEST_FILE),
        report_url: record.report.clone(),
        manifest,
        record: TrainingRecord {
            durations_ms: durations,
            ..record
        },
        evaluation,
        previous,
    })
}

fn training_record(
    destination: &Destination,
    run: &EtlRun,
    splits: &[Split],
    params: &serde_json::Map<String, serde_json::Value>,
    fitted: &Fitted,
    evaluation: &Evaluation,
    durations: &BTreeMap<&'static str, u64>,
) -> TrainingRecord {
    TrainingRecord {
        objective: "binary",
        label: LABEL_NAME,
        etl_run_id: run.manifest.run_id.clone(),
        etl_manifest: run.manifest_url.clone(),
        splits: splits
            .iter()
            .map(|s| {
                (
                    s.name,
                    SplitInfo {
                        url: s.url.clone(),
                        rows: s.rows(),
                        wins: s.wins(),
                    },
                )
            })
            .collect(),
        params: params.clone(),
        trees_trained: fitted.trees_trained,
        early_stopping_metric: fitted.metric.clone(),
        valid_metric_at_best: fitted
            .valid_metric
            .get(fitted.best_iteration.saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN),
        metrics: MetricsSummary {
            split: "test",
            rows: evaluation.rows,
            wins: evaluation.wins,
            roc_auc: evaluation.roc_auc,
            pr_auc: evaluation.pr_auc,
            log_loss: evaluation.log_loss,
            thresholds: evaluation.thresholds.clone(),
            recommended_filter: evaluation.filtering.recommended,
        },
        training_time_ms: fitted.train_ms,
        durations_ms: durations.clone(),
        report: destination.url("report/report.html"),
        metrics_file: destination.url("report/metrics.json"),
        versions: BTreeMap::from([
            ("rtb-trainer", env!("CARGO_PKG_VERSION").to_owned()),
            (
                "lightgbm model format",
                fitted
                    .model_text
                    .lines()
                    .find_map(|l| l.strip_prefix("version="))
                    .unwrap_or("unknown")
                    .to_owned(),
            ),
        ]),
    }
}

fn metrics_document(
    manifest: &ModelManifest,
    record: &TrainingRecord,
    fitted: &Fitted,
    evaluation: &Evaluation,
    previous: &Previous,
) -> Result<Vec<u8>> {
    let document = serde_json::json!({
        "model_id": manifest.model_id,
        "etl_run_id": record.etl_run_id,
        "vocabulary_version": manifest.vocabulary_version,
        "test": evaluation,
        "validation": {
            "metric": fitted.metric,
            "by_iteration": fitted.valid_metric,
            "train_by_iteration": fitted.train_metric,
            "train_rows_measured": fitted.train_metric_rows,
            "best_iteration": fitted.best_iteration,
            "trees_trained": fitted.trees_trained,
        },
        "feature_importance": report::feature_importance(fitted),
        "previous_model": previous,
    });
    serde_json::to_vec_pretty(&document).map_err(|source| TrainerError::Json {
        what: "the metrics",
        source,
    })
}

/// The summary printed at the end of a training.
pub fn render(outcome: &TrainOutcome) -> String {
    use std::fmt::Write;
    let (m, rec) = (&outcome.manifest, &outcome.record);
    let e = &outcome.evaluation;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "published model {} trained on etl run {}",
        m.model_id, rec.etl_run_id
    );
    let _ = writeln!(s, "  model     {}", m.model);
    let _ = writeln!(s, "  manifest  {}", outcome.manifest_url);
    let _ = writeln!(s, "  report    {}", outcome.report_url);
    let _ = writeln!(
        s,
        "{:<8} {:>10} {:>8} {:>8}",
        "split", "rows", "wins", "win %"
    );
    for (name, info) in &rec.splits {
        let _ = writeln!(
            s,
            "{:<8} {:>10} {:>8} {:>7.2}%",
            name,
            info.rows,
            info.wins,
            100.0 * info.wins as f64 / info.rows.max(1) as f64
        );
    }
    let _ = writeln!(
        s,
        "trees: {} kept of {} trained (best validation {} {:.5}); training {:.2}s",
        m.best_iteration.unwrap_or_default(),
        rec.trees_trained,
        rec.early_stopping_metric,
        rec.valid_metric_at_best,
        rec.training_time_ms as f64 / 1000.0
    );
    if m.best_iteration == Some(rec.trees_trained) {
        let _ = writeln!(
            s,
            "  the best iteration is the last one trained: more rounds may still help (--param num_iterations={})",
            rec.trees_trained * 2
        );
    }
    let _ = writeln!(
        s,
        "test: ROC AUC {:.4}, PR AUC {:.4}, log loss {:.4}",
        e.roc_auc, e.pr_auc, e.log_loss
    );
    let _ = writeln!(
        s,
        "{:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8}",
        "threshold", "TP", "FP", "TN", "FN", "accuracy", "precision", "recall", "F1", "MCC"
    );
    for t in &e.thresholds {
        let [precision, recall, f1, mcc] = t.shown_ratios();
        let _ = writeln!(
            s,
            "{:>9} {:>8} {:>8} {:>8} {:>8} {:>8.4} {:>9} {:>8} {:>8} {:>8}",
            t.threshold,
            t.true_positives,
            t.false_positives,
            t.true_negatives,
            t.false_negatives,
            t.accuracy,
            precision,
            recall,
            f1,
            mcc
        );
    }
    let c = &e.calibration;
    let _ = writeln!(
        s,
        "calibration: mean predicted {:.4} against a win rate of {:.4}, expected calibration error {:.4}",
        c.mean_predicted, c.observed_rate, c.expected_calibration_error
    );
    let r = e.filtering.recommended;
    let _ = writeln!(
        s,
        "bid filter: p >= {:.4} keeps {:.2}% of wins ({}) and filters {:.2}% of bid requests",
        r.threshold,
        100.0 * r.wins_kept_share,
        r.spend_kept_share.map_or_else(
            || "spend kept unknown: no PayingPrice column".to_owned(),
            |s| format!("{:.2}% of spend", 100.0 * s)
        ),
        100.0 * r.filtered_share
    );
    if let Some(line) = outcome.previous.summary(e) {
        let _ = writeln!(s, "{line}");
    }
    let durations: Vec<String> = rec
        .durations_ms
        .iter()
        .map(|(k, v)| format!("{k} {:.2}s", *v as f64 / 1000.0))
        .collect();
    let _ = writeln!(s, "durations: {}", durations.join(", "));
    s
}
