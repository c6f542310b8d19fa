//! Finding the committed ETL run to train on: by location (`--run`), or through the parameter
//! store under the original kit's names.
//!
//! A run is committed once its `manifest.json` exists (see `rtb-etl`'s `run` module); the
//! trainer reads nothing from a run without one, and checks that the vocabulary it will record
//! is the one the manifest names.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rtb_features::manifest::outputs;
use rtb_features::{EtlManifest, FeatureContract, FeatureVocabulary};
use rtb_params::{ParameterStore, names};
use rtb_storage::StorageError;

use crate::{Result, TrainerError};

/// A committed run, located and checked.
#[derive(Debug, Clone)]
pub struct EtlRun {
    pub manifest_url: String,
    pub manifest: EtlManifest,
    /// Split name (`train`, `valid`, `test`) to its folder URL.
    pub splits: BTreeMap<&'static str, String>,
    pub vocabulary_url: String,
    /// `sha256:...`, read from the vocabulary file and equal to the manifest's.
    pub vocabulary_version: String,
    /// What the run's job defines as the model inputs, read and checked against the manifest.
    pub contract: FeatureContract,
}

/// The split names, in the order they are read.
pub const SPLITS: [&str; 3] = ["train", "valid", "test"];

/// The local file system path of a location, when it is one (`/p`, `p`, `file:///p`).
pub(crate) fn local_path(location: &str) -> Option<PathBuf> {
    if location.starts_with("file://") {
        return url::Url::parse(location)
            .ok()
            .and_then(|u| u.to_file_path().ok());
    }
    (!location.contains("://")).then(|| PathBuf::from(location))
}

fn is_not_found(err: &StorageError) -> bool {
    matches!(
        err,
        StorageError::Store {
            source: object_store::Error::NotFound { .. },
            ..
        }
    )
}

/// Reads one object by URL (`.../name.json`); `Ok(None)` when it does not exist.
async fn get_url(url: &str) -> Result<Option<bytes::Bytes>> {
    if let Some(path) = local_path(url)
        && !path.is_file()
    {
        return Ok(None);
    }
    match rtb_storage::get_url(url).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if is_not_found(&err) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

fn child(folder: &str, name: &str) -> String {
    format!("{}/{name}", folder.trim_end_matches('/'))
}

/// Locates a run from `--run`: a run folder, its `manifest.json`, an ETL output folder (its
/// `latest.json` names the newest run) or that `latest.json`.
pub async fn from_location(run: &str) -> Result<EtlRun> {
    let not_found = || TrainerError::RunNotFound {
        location: run.to_owned(),
    };
    let candidates: Vec<String> = if run.ends_with(".json") {
        vec![run.to_owned()]
    } else {
        vec![child(run, "manifest.json"), child(run, "latest.json")]
    };
    for url in candidates {
        let Some(bytes) = get_url(&url).await? else {
            continue;
        };
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| TrainerError::BadManifest {
                url: url.clone(),
                reason: format!("not json ({e})"),
            })?;
        // latest.json: { "run_id", "manifest" }; a manifest has outputs
        let manifest_url = if json.get("outputs").is_none() {
            match json.get("manifest").and_then(|m| m.as_str()) {
                Some(m) => m.to_owned(),
                None => {
                    return Err(TrainerError::BadManifest {
                        url,
                        reason: "neither a run manifest (no outputs) nor latest.json (no manifest)"
                            .into(),
                    });
                }
            }
        } else {
            url
        };
        return load(&manifest_url).await;
    }
    Err(not_found())
}

/// Locates a run through the parameter store: the split folders under `/aik/output_train`,
/// `/aik/output_verify`, `/aik/output_test`, the vocabulary under
/// `/aik/pipelineModelArtifactPath`, and the run's manifest under `/aik/etl/manifest` (or,
/// when that is unset, the run holding the train split). The two must agree.
pub async fn from_store(store: &ParameterStore) -> Result<EtlRun> {
    let wanted = [
        names::OUTPUT_TRAIN,
        names::OUTPUT_VERIFY,
        names::OUTPUT_TEST,
        names::PIPELINE_MODEL_ARTIFACT_PATH,
        names::ETL_MANIFEST,
    ];
    let values = store.get_many(&wanted).await?;
    let missing = |name: &'static str| TrainerError::MissingParameter {
        name,
        store: store.to_string(),
        spec: store.spec(),
    };
    let mut found: BTreeMap<&'static str, String> = BTreeMap::new();
    for (&name, value) in wanted.iter().zip(values) {
        if let Some(v) = value {
            found.insert(name, v);
        } else if name != names::ETL_MANIFEST {
            return Err(missing(name));
        }
    }
    let manifest_url = match found.get(names::ETL_MANIFEST) {
        Some(url) => url.clone(),
        None => {
            let train = found[names::OUTPUT_TRAIN].trim_end_matches('/');
            // the layout since the splits are written in one pass, then the one before
            let run = train
                .strip_suffix("/processed/features/split=train")
                .or_else(|| train.strip_suffix("/processed/train"))
                .ok_or_else(|| missing(names::ETL_MANIFEST))?;
            child(run, "manifest.json")
        }
    };
    let run = load(&manifest_url).await?;
    for (name, split) in [
        (names::OUTPUT_TRAIN, "train"),
        (names::OUTPUT_VERIFY, "valid"),
        (names::OUTPUT_TEST, "test"),
    ] {
        let value = &found[name];
        let expected = &run.splits[split];
        if value.trim_end_matches('/') != expected.trim_end_matches('/') {
            return Err(TrainerError::StoreMismatch {
                name,
                value: value.clone(),
                manifest: manifest_url.clone(),
                expected: expected.clone(),
            });
        }
    }
    let vocabulary = &found[names::PIPELINE_MODEL_ARTIFACT_PATH];
    if vocabulary != &run.vocabulary_url {
        return Err(TrainerError::StoreMismatch {
            name: names::PIPELINE_MODEL_ARTIFACT_PATH,
            value: vocabulary.clone(),
            manifest: manifest_url,
            expected: run.vocabulary_url,
        });
    }
    Ok(run)
}

/// Reads and checks a run manifest and its vocabulary.
async fn load(manifest_url: &str) -> Result<EtlRun> {
    let bad = |reason: String| TrainerError::BadManifest {
        url: manifest_url.to_owned(),
        reason,
    };
    let bytes = get_url(manifest_url)
        .await?
        .ok_or_else(|| TrainerError::RunNotFound {
            location: manifest_url.to_owned(),
        })?;
    let manifest: EtlManifest =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not an etl manifest ({e})")))?;
    let mut splits = BTreeMap::new();
    for split in SPLITS {
        let url = manifest
            .outputs
            .get(split)
            .ok_or_else(|| bad(format!("it lists no {split} output")))?;
        splits.insert(split, url.clone());
    }
    let vocabulary_url = manifest
        .outputs
        .get(outputs::VOCABULARY)
        .ok_or_else(|| bad("it lists no vocabulary output".into()))?
        .clone();
    let bad_vocabulary = |reason: String| TrainerError::BadVocabulary {
        url: vocabulary_url.clone(),
        reason,
    };
    let text = get_url(&vocabulary_url)
        .await?
        .ok_or_else(|| bad_vocabulary("it does not exist".into()))?;
    let text = std::str::from_utf8(&text).map_err(|e| bad_vocabulary(e.to_string()))?;
    let vocabulary =
        FeatureVocabulary::from_json(text).map_err(|e| bad_vocabulary(e.to_string()))?;
    if vocabulary.version != manifest.vocabulary.version {
        return Err(TrainerError::VocabularyMismatch {
            url: vocabulary_url,
            found: vocabulary.version,
            expected: manifest.vocabulary.version,
        });
    }
    let contract_url = manifest
        .outputs
        .get(outputs::CONTRACT)
        .ok_or_else(|| bad("it lists no feature contract; it was written by an older rtb-etl, re-run `rtb-etl run`".into()))?
        .clone();
    let bad_contract = |reason: String| TrainerError::BadManifest {
        url: contract_url.clone(),
        reason,
    };
    let text = get_url(&contract_url)
        .await?
        .ok_or_else(|| bad_contract("the feature contract does not exist".into()))?;
    let text = std::str::from_utf8(&text).map_err(|e| bad_contract(e.to_string()))?;
    let contract = FeatureContract::from_json(text).map_err(|e| bad_contract(e.to_string()))?;
    if contract.version != manifest.contract_version
        || contract.vocabulary_version != vocabulary.version
    {
        return Err(bad_contract(format!(
            "it is version {} over vocabulary {}, but the run manifest says {} over {}; the run was changed after it was committed, re-run `rtb-etl run`",
            contract.version,
            contract.vocabulary_version,
            manifest.contract_version,
            vocabulary.version
        )));
    }
    Ok(EtlRun {
        manifest_url: manifest_url.to_owned(),
        splits,
        vocabulary_version: vocabulary.version,
        vocabulary_url,
        contract,
        manifest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_are_recognised() {
        assert_eq!(local_path("data/x"), Some(PathBuf::from("data/x")));
        assert_eq!(local_path("file:///tmp/x"), Some(PathBuf::from("/tmp/x")));
        assert_eq!(local_path("s3://bucket/x"), None);
    }

    #[tokio::test]
    async fn a_missing_run_is_named_and_nothing_is_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path().join("features");
        let err = from_location(run.to_str().expect("utf8"))
            .await
            .expect_err("no run");
        assert!(matches!(err, TrainerError::RunNotFound { .. }), "{err}");
        assert!(err.to_string().contains("rtb-etl run"), "{err}");
        assert!(!run.exists());

        let store_path = dir.path().join("params.json");
        let store = ParameterStore::open(store_path.to_str().expect("utf8"))
            .await
            .expect("store");
        let err = from_store(&store).await.expect_err("empty store");
        assert!(
            matches!(
                err,
                TrainerError::MissingParameter {
                    name: names::OUTPUT_TRAIN,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_manifest_whose_vocabulary_changed_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path().join("runs/r1");
        std::fs::create_dir_all(&run).expect("mkdir");
        let vocabulary = FeatureVocabulary::new(Vec::new());
        std::fs::write(
            run.join("vocabulary.json"),
            vocabulary.to_json().expect("json"),
        )
        .expect("write");
        let url = |name: &str| run.join(name).to_string_lossy().into_owned();
        let contract = rtb_features::contract::bid_filtering(&vocabulary.version);
        std::fs::write(
            run.join("feature-contract.json"),
            contract.to_json().expect("json"),
        )
        .expect("write");
        let manifest = EtlManifest {
            run_id: "r1".into(),
            job: rtb_features::manifest::JobInfo {
                name: "j".into(),
                source: "builtin".into(),
                sha256: String::new(),
                params: BTreeMap::new(),
                categorical: Vec::new(),
                read_as: rtb_features::Dialect::Strict,
            },
            versions: BTreeMap::new(),
            inputs: Vec::new(),
            rows: BTreeMap::new(),
            splits: BTreeMap::new(),
            vocabulary: rtb_features::manifest::VocabularyInfo {
                version: "sha256:00".into(),
                sizes: BTreeMap::new(),
            },
            contract_version: contract.version.clone(),
            outputs: BTreeMap::from([
                ("train".into(), url("train/")),
                ("valid".into(), url("valid/")),
                ("test".into(), url("test/")),
                ("vocabulary".into(), url("vocabulary.json")),
                ("contract".into(), url("feature-contract.json")),
            ]),
            durations_ms: BTreeMap::new(),
            memory_limit_bytes: 0,
            committed_at: String::new(),
        };
        let manifest = serde_json::to_value(&manifest).expect("json");
        std::fs::write(run.join("manifest.json"), manifest.to_string()).expect("write");
        let err = from_location(run.to_str().expect("utf8"))
            .await
            .expect_err("mismatch");
        assert!(
            matches!(err, TrainerError::VocabularyMismatch { .. }),
            "{err}"
        );

        let mut fixed = manifest.clone();
        fixed["vocabulary"]["version"] = vocabulary.version.clone().into();
        std::fs::write(run.join("manifest.json"), fixed.to_string()).expect("write");
        let latest = serde_json::json!({ "run_id": "r1", "manifest": url("manifest.json") });
        std::fs::write(dir.path().join("latest.json"), latest.to_string()).expect("write");
        let found = from_location(dir.path().to_str().expect("utf8"))
            .await
            .expect("found through latest.json");
        assert_eq!(found.manifest.run_id, "r1");
        assert_eq!(found.vocabulary_version, vocabulary.version);
        assert_eq!(found.contract, contract);

        // a contract edited after the run was committed is refused
        let edited = contract
            .to_json()
            .expect("json")
            .replace("\"hour\"", "\"hour\" + 1");
        std::fs::write(run.join("feature-contract.json"), edited).expect("write");
        let err = from_location(dir.path().to_str().expect("utf8"))
            .await
            .expect_err("edited contract");
        assert!(err.to_string().contains("feature-contract.json"), "{err}");
        assert_eq!(found.splits["test"], url("test/"));
    }
}
