//! Named settings shared by the ETL, the trainer and the scorer.
//!
//! The original kit keeps its configuration in AWS SSM Parameter Store under `/aik/...`
//! (`/aik/output_train`, `/aik/pipelineModelArtifactPath`, ...; see [`names`]). A
//! [`ParameterStore`] reads and writes those same names either in SSM or, on one machine, in a
//! local JSON object (`{ "/aik/output_train": "s3://bucket/train" }`), chosen by a spec string:
//!
//! | spec | store |
//! | --- | --- |
//! | `/path/params.json`, `params.json`, `file:///path/params.json` | [`FileStore`] |
//! | `ssm://` | [`SsmStore`]: AWS SSM, credentials and region from the environment |
//! | `ssm://?endpoint=http://127.0.0.1:5000&region=eu-west-1` | [`SsmStore`] with overrides |
//!
//! Every name must start with `/` and use only the characters SSM accepts, so a name that works
//! with the file store also works in SSM.

mod file;
pub mod names;
mod ssm;

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;
use url::Url;

pub use file::FileStore;
pub use ssm::{SsmSettings, SsmStore, StaticCredentials};

#[derive(Debug, Error)]
pub enum ParamsError {
    #[error(
        "{spec:?} is not a parameter store: write a path to a json file, file:///path/params.json \
         or ssm:// (optionally ssm://?endpoint=http://host:port&region=us-east-1); {reason}"
    )]
    BadSpec { spec: String, reason: String },
    #[error("parameter name {name:?} is not valid: {reason}; write it like /aik/output_train")]
    BadName { name: String, reason: &'static str },
    #[error(
        "parameter {name} has an empty value; ssm cannot store empty strings, so write a value"
    )]
    EmptyValue { name: String },
    #[error("cannot read parameter file {path}: {source}")]
    FileRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "parameter file {path} is not a json object of string values ({source}); fix it or move it away"
    )]
    FileParse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "cannot write parameter file {path}: {source}; it keeps its previous content; check that its folder is writable and has space"
    )]
    FileWrite {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "ssm {operation} of {name} failed: {detail}; check the aws credentials, region and endpoint"
    )]
    Ssm {
        operation: &'static str,
        name: String,
        detail: String,
    },
}

pub type Result<T, E = ParamsError> = std::result::Result<T, E>;

/// Where parameters live: a local JSON file or AWS SSM Parameter Store.
#[derive(Debug, Clone)]
pub enum ParameterStore {
    File(FileStore),
    Ssm(SsmStore),
}

impl ParameterStore {
    /// Opens a store from a spec: a path or `file://` URL for a JSON file, `ssm://` (with
    /// optional `?endpoint=...&region=...`) for SSM. Nothing is read or written yet; a file
    /// that does not exist reads as empty.
    pub async fn open(spec: &str) -> Result<Self> {
        Ok(match parse_spec(spec)? {
            Spec::File(path) => Self::File(FileStore::new(path)),
            Spec::Ssm(settings) => Self::Ssm(SsmStore::connect(settings).await?),
        })
    }

    /// Finds out before a run's work what would fail its last step: for a file, that it reads
    /// and its folder takes a new file; for SSM, that the credentials and endpoint answer a read
    /// (a missing write permission shows only at the write).
    pub async fn check(&self) -> Result<()> {
        match self {
            Self::File(store) => store.check().await,
            Self::Ssm(store) => store.get(names::MODEL_MANIFEST).await.map(|_| ()),
        }
    }

    /// What `--parameter-store` takes to open this store again, for a command to paste.
    pub fn spec(&self) -> String {
        match self {
            Self::File(store) => store.path().display().to_string(),
            Self::Ssm(store) => store.spec(),
        }
    }

    /// The value of `name`, or `None` when it was never set.
    pub async fn get(&self, name: &str) -> Result<Option<String>> {
        match self {
            Self::File(store) => store.get(name).await,
            Self::Ssm(store) => store.get(name).await,
        }
    }

    /// Sets `name` to `value`, replacing any earlier value.
    pub async fn put(&self, name: &str, value: &str) -> Result<()> {
        match self {
            Self::File(store) => store.put(name, value).await,
            Self::Ssm(store) => store.put(name, value).await,
        }
    }

    /// Sets several parameters; with duplicate names the last pair wins. All names and values are
    /// checked before anything is written. The file store writes them in one atomic step; SSM has
    /// no batch write, so there they are written one by one.
    pub async fn put_many<N: AsRef<str>, V: AsRef<str>>(&self, pairs: &[(N, V)]) -> Result<()> {
        match self {
            Self::File(store) => store.put_many(pairs).await,
            Self::Ssm(store) => store.put_many(pairs).await,
        }
    }

    /// The values of `names`, in the same order, `None` for each one never set.
    pub async fn get_many<N: AsRef<str>>(&self, names: &[N]) -> Result<Vec<Option<String>>> {
        match self {
            Self::File(store) => store.get_many(names).await,
            Self::Ssm(store) => store.get_many(names).await,
        }
    }
}

impl fmt::Display for ParameterStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(store) => write!(f, "file {}", store.path().display()),
            Self::Ssm(store) => write!(f, "{store}"),
        }
    }
}

#[derive(Debug, PartialEq)]
enum Spec {
    File(PathBuf),
    Ssm(SsmSettings),
}

fn parse_spec(spec: &str) -> Result<Spec> {
    let bad = |reason: &str| ParamsError::BadSpec {
        spec: spec.to_owned(),
        reason: reason.to_owned(),
    };
    if spec.trim().is_empty() {
        return Err(bad("it is empty"));
    }
    if let Some(rest) = spec.strip_prefix("ssm://") {
        let (host, query) = rest.split_once('?').unwrap_or((rest, ""));
        if !host.is_empty() && host != "/" {
            return Err(bad(
                "ssm:// takes no host or path, only ?endpoint= and ?region=",
            ));
        }
        let mut settings = SsmSettings::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "endpoint" => {
                    let endpoint = Url::parse(&value)
                        .map_err(|e| bad(&format!("endpoint {value:?} is not a url ({e})")))?;
                    if !matches!(endpoint.scheme(), "http" | "https") {
                        return Err(bad("the endpoint must be an http:// or https:// url"));
                    }
                    settings.endpoint = Some(value.into_owned());
                }
                "region" if !value.is_empty() => settings.region = Some(value.into_owned()),
                "region" => return Err(bad("region is empty")),
                other => return Err(bad(&format!("unknown option {other:?}"))),
            }
        }
        return Ok(Spec::Ssm(settings));
    }
    let path = if spec.starts_with("file:") {
        let url = Url::parse(spec).map_err(|e| bad(&format!("not a valid url ({e})")))?;
        url.to_file_path()
            .map_err(|()| bad("a file:// url needs an absolute local path"))?
    } else if spec.contains("://") {
        return Err(bad("unsupported scheme"));
    } else {
        PathBuf::from(spec)
    };
    let path = std::path::absolute(&path).map_err(|e| bad(&e.to_string()))?;
    Ok(Spec::File(path))
}

/// Checks a parameter name: SSM's rules, plus the leading `/` of a hierarchical name.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(ParamsError::BadName {
            name: name.to_owned(),
            reason,
        })
    };
    if !name.starts_with('/') {
        return bad("it must start with '/'");
    }
    if name.len() < 2 || name.ends_with('/') {
        return bad("it must not end with '/'");
    }
    if name.contains("//") {
        return bad("it must not contain '//'");
    }
    if name.len() > 1011 {
        return bad("it is longer than the 1011 characters ssm allows");
    }
    let first = name.trim_start_matches('/').to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return bad("names starting with aws or ssm are reserved by ssm");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-'))
    {
        return bad("only letters, digits and _ . - / are allowed");
    }
    Ok(())
}

fn validate_pair(name: &str, value: &str) -> Result<()> {
    validate_name(name)?;
    if value.is_empty() {
        return Err(ParamsError::EmptyValue {
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(
            parse_spec("params.json").expect("relative"),
            Spec::File(cwd.join("params.json"))
        );
        assert_eq!(
            parse_spec("/etc/aik/params.json").expect("absolute"),
            Spec::File(PathBuf::from("/etc/aik/params.json"))
        );
        assert_eq!(
            parse_spec("file:///etc/aik/params.json").expect("file url"),
            Spec::File(PathBuf::from("/etc/aik/params.json"))
        );
        assert_eq!(
            parse_spec("ssm://").expect("ssm"),
            Spec::Ssm(SsmSettings::default())
        );
        assert_eq!(
            parse_spec("ssm://?endpoint=http://127.0.0.1:5000&region=eu-west-1").expect("ssm"),
            Spec::Ssm(SsmSettings {
                endpoint: Some("http://127.0.0.1:5000".to_owned()),
                region: Some("eu-west-1".to_owned()),
                credentials: None,
            })
        );
        for bad in [
            "",
            "s3://bucket/params.json",
            "ssm://host",
            "ssm://?endpoint=127.0.0.1:5000",
            "ssm://?endpoint=ftp://x",
            "ssm://?color=red",
            "file://server/share/p.json",
        ] {
            let err = parse_spec(bad).expect_err(bad);
            assert!(matches!(err, ParamsError::BadSpec { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn names_are_checked() {
        for good in names::ALL.iter().copied().chain(["/a", "/x.y-z_1/B"]) {
            validate_name(good).expect(good);
        }
        for bad in [
            "",
            "/",
            "aik/output_train",
            "/aik/",
            "/aik//x",
            "/aik/with space",
            "/aik/é",
            "/aws/service/x",
            "/SSM-params/x",
        ] {
            let err = validate_name(bad).expect_err(bad);
            assert!(err.to_string().contains("/aik/output_train"), "{err}");
        }
    }
}
