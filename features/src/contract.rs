//! The feature contract: what a feature job promises the trainer and the scorer.
//!
//! The ETL derives it from the job (`inference_requests` declares the request, `features` the
//! model inputs as SQL expressions over that request) and writes it beside the vocabulary. The
//! trainer trains on exactly its features in its order and embeds it in the model manifest; the
//! scorer compiles its expressions once per model load and evaluates them on each request. Both
//! sides evaluate the same SQL text with the same engine, so a feature is defined once: in the
//! job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The contract format this code reads and writes.
pub const CONTRACT_FORMAT: u32 = 1;

/// The label column of the training splits.
pub const LABEL_NAME: &str = "label";

/// The price column of the training splits: what a won impression cost (CPM), null for a lost
/// bid. Not a model input; the trainer reports the spend a filter keeps from it.
pub const PRICE_NAME: &str = "PayingPrice";

/// The type of a request field, as JSON sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Text; `""` and `"null"` read as null, as empty fields and the literal `null` do in the
    /// logs.
    String,
    /// A whole number (64-bit).
    Integer,
    /// A number (64-bit float).
    Float,
    Boolean,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Integer => "integer",
            FieldType::Float => "float",
            FieldType::Boolean => "boolean",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestField {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
}

/// One model input: its column name and its SQL expression over the request fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureDef {
    pub name: String,
    pub expr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureContract {
    pub format: u32,
    /// `sha256:` and the hex digest of everything below.
    pub version: String,
    pub job: String,
    /// The request field that identifies a request (the response echoes it; the split hashes it).
    pub key: String,
    /// Request fields in the order the job selects them.
    pub request: Vec<RequestField>,
    /// Model inputs in training order.
    pub features: Vec<FeatureDef>,
    /// The label column of the training splits.
    pub label: String,
    /// The price column of the training splits (not a model input), when the job has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    /// The vocabulary `encode(...)` reads; the scorer must load exactly this version.
    pub vocabulary_version: String,
    /// The vocabulary columns the features encode.
    pub vocabulary_columns: Vec<String>,
    /// Where an OpenRTB request carries each request field (see `openrtb` module).
    pub openrtb: BTreeMap<String, String>,
    /// The zone of the logs' timestamps, in which an OpenRTB request's time becomes the day of
    /// week and hour the model was trained with.
    pub time_zone: String,
}

#[derive(Debug, Error)]
pub enum ContractError {
    #[error("feature contract is not valid json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("feature contract format {0} is not supported (this build reads {CONTRACT_FORMAT})")]
    Format(u32),
    #[error(
        "feature contract version {stated} does not match its content ({actual}); the file was edited, re-run the etl"
    )]
    VersionMismatch { stated: String, actual: String },
    #[error("feature contract is inconsistent: {0}")]
    Inconsistent(String),
}

impl FeatureContract {
    /// Fills in `format` and `version` from the content, after checking it.
    pub fn sealed(mut self) -> Result<Self, ContractError> {
        self.format = CONTRACT_FORMAT;
        self.check()?;
        self.version = self.content_hash();
        Ok(self)
    }

    fn content_hash(&self) -> String {
        let mut unsealed = self.clone();
        unsealed.version = String::new();
        // field order is fixed by the struct, maps are sorted: the json is canonical
        let bytes = serde_json::to_vec(&unsealed).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    fn check(&self) -> Result<(), ContractError> {
        let bad = |m: String| Err(ContractError::Inconsistent(m));
        let mut seen = std::collections::HashSet::new();
        for field in &self.request {
            if !seen.insert(field.name.as_str()) {
                return bad(format!("request field {} is listed twice", field.name));
            }
        }
        if !self.request.iter().any(|f| f.name == self.key) {
            return bad(format!("the key {} is not a request field", self.key));
        }
        if self.features.is_empty() {
            return bad("it has no features".into());
        }
        let mut names = std::collections::HashSet::new();
        for feature in &self.features {
            if !names.insert(feature.name.as_str()) {
                return bad(format!("feature {} is listed twice", feature.name));
            }
            if [Some(&self.label), self.price.as_ref(), Some(&self.key)]
                .contains(&Some(&feature.name))
            {
                return bad(format!(
                    "feature {} has the name of the label, price or key column",
                    feature.name
                ));
            }
        }
        for field in self.openrtb.keys() {
            if !self.request.iter().any(|f| &f.name == field) {
                return bad(format!(
                    "openrtb maps {field}, which is not a request field"
                ));
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> Result<String, ContractError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Loads and checks a contract: a known format, consistent, the version its content's hash.
    pub fn from_json(text: &str) -> Result<Self, ContractError> {
        let contract: FeatureContract = serde_json::from_str(text)?;
        contract.verify()?;
        Ok(contract)
    }

    /// Checks a contract read from elsewhere (e.g. embedded in a model manifest).
    pub fn verify(&self) -> Result<(), ContractError> {
        if self.format != CONTRACT_FORMAT {
            return Err(ContractError::Format(self.format));
        }
        self.check()?;
        let actual = self.content_hash();
        if actual != self.version {
            return Err(ContractError::VersionMismatch {
                stated: self.version.clone(),
                actual,
            });
        }
        Ok(())
    }

    pub fn feature_names(&self) -> Vec<String> {
        self.features.iter().map(|f| f.name.clone()).collect()
    }

    pub fn field(&self, name: &str) -> Option<&RequestField> {
        self.request.iter().find(|f| f.name == name)
    }
}

/// The contract of the kit's job (`etl/jobs/bid-filtering.sql`) over a vocabulary version, as
/// `rtb-etl` derives it (a test there holds the two equal): for tests and benchmarks that need a
/// model without running the ETL.
pub fn bid_filtering(vocabulary_version: &str) -> FeatureContract {
    let field = |name: &str, field_type| RequestField {
        name: name.to_owned(),
        field_type,
    };
    let feature = |name: &str, expr: &str| FeatureDef {
        name: name.to_owned(),
        expr: expr.to_owned(),
    };
    let request = vec![
        field("bidId", FieldType::String),
        field("dayOfWeek", FieldType::Integer),
        field("hour", FieldType::Integer),
        field("regionId", FieldType::String),
        field("cityId", FieldType::String),
        field("domainId", FieldType::String),
        field("advertiserId", FieldType::String),
        field("userAgent", FieldType::String),
        field("biddingPrice", FieldType::Integer),
    ];
    let openrtb = request
        .iter()
        .filter_map(|f| {
            crate::openrtb::default_source(&f.name).map(|s| (f.name.clone(), s.to_owned()))
        })
        .collect();
    FeatureContract {
        format: CONTRACT_FORMAT,
        version: String::new(),
        job: "bid-filtering".into(),
        key: "bidId".into(),
        request,
        features: vec![
            feature("dow", "\"dayOfWeek\""),
            feature("hour", "\"hour\""),
            feature(
                "IndexAdvertiserID",
                "encode('AdvertiserID', \"advertiserId\")",
            ),
            feature("IndexDomain", "encode('Domain', \"domainId\")"),
            feature("IndexRegionID", "encode('RegionID', \"regionId\")"),
            feature("IndexCityID", "encode('CityID', \"cityId\")"),
            feature("device_type_id", "device_type(\"userAgent\")"),
        ],
        label: LABEL_NAME.into(),
        price: Some(PRICE_NAME.into()),
        vocabulary_version: vocabulary_version.to_owned(),
        vocabulary_columns: ["AdvertiserID", "Domain", "RegionID", "CityID"]
            .map(str::to_owned)
            .to_vec(),
        openrtb,
        time_zone: "Asia/Shanghai".into(),
    }
    .sealed()
    .unwrap_or_else(|e| panic!("the kit contract is consistent: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> FeatureContract {
        FeatureContract {
            format: 0,
            version: String::new(),
            job: "j".into(),
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
            ],
            features: vec![FeatureDef {
                name: "hour".into(),
                expr: "hour".into(),
            }],
            label: "label".into(),
            price: None,
            vocabulary_version: "sha256:00".into(),
            vocabulary_columns: Vec::new(),
            openrtb: BTreeMap::from([("hour".into(), "@hour".into())]),
            time_zone: "Asia/Shanghai".into(),
        }
    }

    #[test]
    fn sealed_contracts_round_trip_and_edits_are_caught() {
        let contract = sample().sealed().expect("seals");
        assert!(contract.version.starts_with("sha256:"));
        let json = contract.to_json().expect("json");
        assert_eq!(FeatureContract::from_json(&json).expect("loads"), contract);
        let edited = json.replace("\"expr\": \"hour\"", "\"expr\": \"hour + 1\"");
        assert!(matches!(
            FeatureContract::from_json(&edited),
            Err(ContractError::VersionMismatch { .. })
        ));
    }

    #[test]
    fn inconsistent_contracts_are_refused() {
        let mut c = sample();
        c.key = "id".into();
        assert!(c.sealed().is_err());
        let mut c = sample();
        c.features.clear();
        assert!(c.sealed().is_err());
        let mut c = sample();
        c.openrtb.insert("nope".into(), "device.ua".into());
        assert!(c.sealed().is_err());
        let mut c = sample();
        c.features[0].name = "label".into();
        assert!(c.sealed().is_err());
    }
}
