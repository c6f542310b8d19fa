//! The parameter names of the original RTB Intelligence Kit, so every stage spells them the same.

/// Bucket that holds the kit's data.
pub const DATA_BUCKET: &str = "/aik/data-bucket";
/// Raw bid and impression logs.
pub const RAW_DATA: &str = "/aik/raw_data";
/// Bid request logs read by the ETL.
pub const BID_SOURCE: &str = "/aik/bid_source";
/// Impression logs read by the ETL.
pub const IMP_SOURCE: &str = "/aik/imp_source";
/// Training split written by the ETL.
pub const OUTPUT_TRAIN: &str = "/aik/output_train";
/// Test split written by the ETL.
pub const OUTPUT_TEST: &str = "/aik/output_test";
/// Verification split written by the ETL.
pub const OUTPUT_VERIFY: &str = "/aik/output_verify";
/// Transformed (feature) data written by the ETL.
pub const OUTPUT_TRANSFORMED: &str = "/aik/output_transformed";
/// Fitted feature pipeline.
pub const PIPELINE_MODEL_ARTIFACT_PATH: &str = "/aik/pipelineModelArtifactPath";
/// Schema of the fitted feature pipeline.
pub const PIPELINE_MODEL_ARTIFACT_SCHEMA_PATH: &str = "/aik/pipelineModelArtifactSchemaPath";
/// Sample requests used for inference.
pub const INFERENCE_DATA: &str = "/aik/inference_data";
/// Trained bid-filtering model.
pub const XGBOOST_PATH: &str = "/aik/xgboost/path";
/// Configuration of the monitoring stack.
pub const MONITORING_CONFIG: &str = "/aik/monitoring/config";
/// Region the kit was deployed in.
pub const CURRENT_REGION: &str = "/aik/current-region";

/// Every name above.
pub const ALL: &[&str] = &[
    DATA_BUCKET,
    RAW_DATA,
    BID_SOURCE,
    IMP_SOURCE,
    OUTPUT_TRAIN,
    OUTPUT_TEST,
    OUTPUT_VERIFY,
    OUTPUT_TRANSFORMED,
    PIPELINE_MODEL_ARTIFACT_PATH,
    PIPELINE_MODEL_ARTIFACT_SCHEMA_PATH,
    INFERENCE_DATA,
    XGBOOST_PATH,
    MONITORING_CONFIG,
    CURRENT_REGION,
];

// Names this project adds; the original kit has no equivalent.

/// Manifest of the committed ETL run the output locations above belong to.
pub const ETL_MANIFEST: &str = "/aik/etl/manifest";
/// Manifest of the published bid-filtering model (feature names, vocabulary version, metrics,
/// and the model file's location). `/aik/xgboost/path` names the model file for compatibility.
pub const MODEL_MANIFEST: &str = "/aik/model/manifest";
