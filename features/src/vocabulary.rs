//! Spark ML `StringIndexer` semantics, fitted by the ETL and applied by ETL and scorer alike.
//!
//! Spark (3.x, `stringOrderType = frequencyDesc`): labels by frequency descending, ties by the
//! label ascending in Java `String` order (UTF-16 code units), nulls ignored when fitting; with
//! `handleInvalid = "keep"` an unseen label or a null maps to `labels.len()`.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum VocabularyError {
    #[error("vocabulary is not valid json: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "vocabulary version {stated} does not match its content (hash {actual}); the file was edited or truncated, re-run the etl"
    )]
    VersionMismatch { stated: String, actual: String },
    #[error("vocabulary column {column} lists label {label:?} twice")]
    DuplicateLabel { column: String, label: String },
}

/// Java's `String.compareTo`: UTF-16 code unit order. It differs from Rust's byte order only for
/// characters above U+FFFF against U+E000..U+FFFF, but "exact" means exact.
fn java_order(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// One fitted column: `labels[i]` has index `i`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "IndexerFile", into = "IndexerFile")]
pub struct StringIndexer {
    labels: Vec<String>,
    positions: HashMap<String, u32, foldhash::fast::RandomState>,
}

#[derive(Serialize, Deserialize)]
struct IndexerFile {
    labels: Vec<String>,
}

impl From<IndexerFile> for StringIndexer {
    fn from(file: IndexerFile) -> Self {
        StringIndexer::from_ordered_labels(file.labels)
    }
}

impl From<StringIndexer> for IndexerFile {
    fn from(indexer: StringIndexer) -> Self {
        IndexerFile {
            labels: indexer.labels,
        }
    }
}

impl StringIndexer {
    /// Fits from `(label, count)` pairs; each label must appear once (nulls already excluded).
    pub fn fit_from_counts(counts: impl IntoIterator<Item = (String, u64)>) -> Self {
        let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
        counts.sort_by(|(la, ca), (lb, cb)| cb.cmp(ca).then_with(|| java_order(la, lb)));
        StringIndexer::from_ordered_labels(counts.into_iter().map(|(l, _)| l).collect())
    }

    /// Fits from raw values, as Spark does on a column: nulls are skipped.
    pub fn fit<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> Self {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for v in values.into_iter().flatten() {
            *counts.entry(v).or_default() += 1;
        }
        StringIndexer::fit_from_counts(counts.into_iter().map(|(l, c)| (l.to_owned(), c)))
    }

    fn from_ordered_labels(labels: Vec<String>) -> Self {
        let positions = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        StringIndexer { labels, positions }
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The index of the "keep" bucket: unseen labels and nulls.
    pub fn unknown_index(&self) -> u32 {
        u32::try_from(self.labels.len()).unwrap_or(u32::MAX)
    }

    pub fn index(&self, label: Option<&str>) -> u32 {
        label
            .and_then(|l| self.positions.get(l).copied())
            .unwrap_or_else(|| self.unknown_index())
    }
}

/// The fitted encodings of a job's categorical columns, versioned by a hash of their content.
/// A job's `-- categorical:` columns, in the order it declares them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureVocabulary {
    /// `sha256:` and the hex digest of the columns' names and labels.
    pub version: String,
    columns: Vec<(String, StringIndexer)>,
}

impl FeatureVocabulary {
    /// Columns keep the given order, which is part of the version.
    pub fn new(columns: Vec<(String, StringIndexer)>) -> Self {
        let version = Self::content_hash(&columns);
        FeatureVocabulary { version, columns }
    }

    fn content_hash(columns: &[(String, StringIndexer)]) -> String {
        let mut hasher = Sha256::new();
        for (column, indexer) in columns {
            hasher.update((column.len() as u64).to_le_bytes());
            hasher.update(column.as_bytes());
            hasher.update((indexer.labels.len() as u64).to_le_bytes());
            for label in &indexer.labels {
                hasher.update((label.len() as u64).to_le_bytes());
                hasher.update(label.as_bytes());
            }
        }
        let digest = hasher.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    pub fn columns(&self) -> impl Iterator<Item = (&str, &StringIndexer)> {
        self.columns.iter().map(|(c, i)| (c.as_str(), i))
    }

    /// The position of `column` among the columns, for [`Self::column_at`].
    pub fn position(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|(c, _)| c == column)
    }

    pub fn column_at(&self, position: usize) -> Option<(&str, &StringIndexer)> {
        self.columns.get(position).map(|(c, i)| (c.as_str(), i))
    }

    pub fn get(&self, column: &str) -> Option<&StringIndexer> {
        self.columns
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, i)| i)
    }

    pub fn to_json(&self) -> Result<String, VocabularyError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Loads and checks a vocabulary: no duplicate label, and the stated version equal to the
    /// content hash.
    pub fn from_json(json: &str) -> Result<Self, VocabularyError> {
        let vocabulary: FeatureVocabulary = serde_json::from_str(json)?;
        for (column, indexer) in &vocabulary.columns {
            if indexer.positions.len() != indexer.labels.len() {
                let mut seen = std::collections::HashSet::new();
                let label = indexer
                    .labels
                    .iter()
                    .find(|l| !seen.insert(*l))
                    .cloned()
                    .unwrap_or_default();
                return Err(VocabularyError::DuplicateLabel {
                    column: column.clone(),
                    label,
                });
            }
        }
        let actual = Self::content_hash(&vocabulary.columns);
        if actual != vocabulary.version {
            return Err(VocabularyError::VersionMismatch {
                stated: vocabulary.version,
                actual,
            });
        }
        Ok(vocabulary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frequency_then_label_then_keep() {
        let values = ["b", "a", "c", "b", "a", "d", "c", "b"];
        let indexer = StringIndexer::fit(values.iter().map(|v| Some(*v)).chain([None, None, None]));
        // b:3, then a:2 and c:2 tie -> a first, then d:1; nulls are not labels
        assert_eq!(indexer.labels(), ["b", "a", "c", "d"]);
        assert_eq!(indexer.index(Some("b")), 0);
        assert_eq!(indexer.index(Some("c")), 2);
        assert_eq!(indexer.index(Some("zzz")), 4);
        assert_eq!(indexer.index(None), 4);
    }

    #[test]
    fn ties_use_java_string_order() {
        // "10" < "9" as strings: ids are labels, not numbers
        let indexer =
            StringIndexer::fit_from_counts([("9".into(), 5), ("10".into(), 5), ("1".into(), 5)]);
        assert_eq!(indexer.labels(), ["1", "10", "9"]);
        // U+FF5E sorts after U+1F600 in UTF-16 (surrogates are 0xD83D..), unlike in UTF-8
        let indexer =
            StringIndexer::fit_from_counts([("\u{FF5E}".into(), 1), ("\u{1F600}".into(), 1)]);
        assert_eq!(indexer.labels(), ["\u{1F600}", "\u{FF5E}"]);
    }

    fn sample_vocabulary() -> FeatureVocabulary {
        FeatureVocabulary::new(
            ["AdvertiserID", "Domain", "RegionID", "CityID"]
                .iter()
                .map(|c| {
                    (
                        (*c).to_owned(),
                        StringIndexer::fit([Some("x"), Some("y"), Some("y")]),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn round_trips_and_detects_tampering() {
        let vocabulary = sample_vocabulary();
        let json = vocabulary.to_json().expect("json");
        let back = FeatureVocabulary::from_json(&json).expect("loads");
        assert_eq!(back, vocabulary);
        assert_eq!(back.get("Domain").expect("column").labels(), ["y", "x"]);
        assert!(back.get("Nope").is_none());
        assert!(vocabulary.version.starts_with("sha256:"));
        let tampered = json.replacen("\"y\"", "\"z\"", 1);
        assert!(matches!(
            FeatureVocabulary::from_json(&tampered),
            Err(VocabularyError::VersionMismatch { .. })
        ));
    }

    proptest! {
        #[test]
        fn indices_are_a_dense_frequency_ranking(values in prop::collection::vec(prop::option::of("[a-e]{0,2}"), 0..200)) {
            let indexer = StringIndexer::fit(values.iter().map(|v| v.as_deref()));
            let count = |l: &str| values.iter().filter(|v| v.as_deref() == Some(l)).count();
            let labels = indexer.labels();
            for (i, w) in labels.windows(2).enumerate() {
                let (ca, cb) = (count(&w[0]), count(&w[1]));
                prop_assert!(ca > cb || (ca == cb && w[0] < w[1]), "order broken at {}", i);
            }
            for v in &values {
                let idx = indexer.index(v.as_deref()) as usize;
                match v {
                    Some(l) => prop_assert_eq!(&labels[idx], l),
                    None => prop_assert_eq!(idx, labels.len()),
                }
            }
            let distinct: std::collections::HashSet<_> = values.iter().flatten().collect();
            prop_assert_eq!(labels.len(), distinct.len());
        }
    }
}
