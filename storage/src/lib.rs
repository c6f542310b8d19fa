//! Where artifacts and logs live: a local path, a `file://` URL or an `s3://` URL, all opened as
//! an `object_store`, so every stage has one code path for disk and S3.
//!
//! S3 credentials come from the standard environment (`AWS_ACCESS_KEY_ID`, ECS task role, ...);
//! `AWS_ENDPOINT_URL` (or `RTB_S3_ENDPOINT`) points at an S3-compatible server, addressed
//! path-style.

pub mod commit;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use thiserror::Error;
use tokio::io::AsyncReadExt;
use url::Url;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{location:?} is not a local path, file:// or s3:// url")]
    UnsupportedScheme { location: String },
    #[error("{location:?} is not a valid url: {source}")]
    BadUrl {
        location: String,
        source: url::ParseError,
    },
    #[error("s3 url {0:?} has no bucket; write it as s3://bucket/prefix")]
    NoBucket(String),
    #[error("cannot create local folder {path}: {source}")]
    LocalDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read local file {path}: {source}")]
    LocalRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("object store error at {location}: {source}")]
    Store {
        location: String,
        source: object_store::Error,
    },
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A folder-like location: a store plus a prefix inside it.
#[derive(Debug, Clone)]
pub struct Location {
    /// What the user wrote, normalised to a URL (`file:///abs/path`, `s3://bucket/prefix`).
    url: Url,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
}

impl Location {
    /// Opens a location. Local folders are created if missing.
    pub fn parse(location: &str) -> Result<Self> {
        let url = if location.contains("://") {
            Url::parse(location).map_err(|source| StorageError::BadUrl {
                location: location.to_owned(),
                source,
            })?
        } else {
            let path = absolute(Path::new(location))?;
            Url::from_directory_path(&path).map_err(|()| StorageError::UnsupportedScheme {
                location: location.to_owned(),
            })?
        };
        match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| StorageError::UnsupportedScheme {
                        location: location.to_owned(),
                    })?;
                std::fs::create_dir_all(&path).map_err(|source| StorageError::LocalDir {
                    path: path.clone(),
                    source,
                })?;
                let store = LocalFileSystem::new_with_prefix(&path).map_err(|source| {
                    StorageError::Store {
                        location: location.to_owned(),
                        source,
                    }
                })?;
                Ok(Location {
                    url,
                    store: Arc::new(store),
                    prefix: ObjectPath::default(),
                })
            }
            "s3" => {
                let bucket = url
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| StorageError::NoBucket(location.to_owned()))?
                    .to_owned();
                let store = s3_store(&bucket).map_err(|source| StorageError::Store {
                    location: location.to_owned(),
                    source,
                })?;
                let prefix = ObjectPath::from(url.path().trim_matches('/'));
                Ok(Location { url, store, prefix })
            }
            _ => Err(StorageError::UnsupportedScheme {
                location: location.to_owned(),
            }),
        }
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The object path of `name` under this location's prefix.
    pub fn path(&self, name: &str) -> ObjectPath {
        let mut path = self.prefix.clone();
        for part in name.split('/').filter(|p| !p.is_empty()) {
            path = path.clone().join(part);
        }
        path
    }

    /// The URL of `name` under this location, for manifests and the parameter store.
    pub fn child_url(&self, name: &str) -> String {
        let base = self.url.as_str().trim_end_matches('/');
        format!("{base}/{}", name.trim_start_matches('/'))
    }

    pub(crate) fn error(&self, name: &str, source: object_store::Error) -> StorageError {
        StorageError::Store {
            location: self.child_url(name),
            source,
        }
    }

    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&self.path(name), bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| self.error(name, e))
    }

    pub async fn get(&self, name: &str) -> Result<Bytes> {
        let result = self
            .store
            .get(&self.path(name))
            .await
            .map_err(|e| self.error(name, e))?;
        result.bytes().await.map_err(|e| self.error(name, e))
    }

    /// Streams a local file to `name` in parts, so large logs never sit whole in memory.
    pub async fn upload_file(&self, name: &str, file: &Path) -> Result<()> {
        upload_file_to(&self.store, &self.path(name), file)
            .await
            .map_err(|e| match e {
                StorageError::Store { source, .. } => self.error(name, source),
                other => other,
            })
    }

    /// Names (relative to this location) of all objects under `dir`.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>> {
        Ok(self
            .list_sized(dir)
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// Like [`Location::list`], with each object's size in bytes.
    /// Deletes every object under `dir`, as far as it can: what cannot be deleted is logged
    /// and left (cleaning up is never worth failing for).
    pub async fn delete_prefix(&self, dir: &str) {
        let Ok(names) = self.list(dir).await else {
            return;
        };
        for name in names {
            if let Err(err) = self.store.delete(&self.path(&name)).await {
                tracing::warn!(object = %name, error = %err, "cannot delete an object");
            }
        }
        // a local store deletes files, not the folders that held them
        if self.url.scheme() == "file"
            && let Ok(root) = Url::parse(&self.child_url(dir)).map(|u| u.to_file_path())
            && let Ok(root) = root
        {
            remove_empty_dirs(&root);
        }
    }

    pub async fn list_sized(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        use futures::TryStreamExt;
        let prefix = self.path(dir);
        let objects: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.error(dir, e))?;
        let base = self.prefix.as_ref();
        let mut names: Vec<(String, u64)> = objects
            .into_iter()
            .map(|o| {
                let full = o.location.as_ref();
                let name = full
                    .strip_prefix(base)
                    .unwrap_or(full)
                    .trim_start_matches('/')
                    .to_owned();
                (name, o.size)
            })
            .collect();
        names.sort();
        Ok(names)
    }
}

/// Removes `dir` and the folders under it that hold no file, bottom up; the rest stays.
fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Streams a local file to `path` of `store` in parts (see [`Location::upload_file`]).
pub async fn upload_file_to(
    store: &Arc<dyn ObjectStore>,
    path: &ObjectPath,
    file: &Path,
) -> Result<()> {
    let read_err = |source| StorageError::LocalRead {
        path: file.to_owned(),
        source,
    };
    let store_err = |source| StorageError::Store {
        location: path.to_string(),
        source,
    };
    let mut reader = tokio::fs::File::open(file).await.map_err(read_err)?;
    let upload = store.put_multipart(path).await.map_err(store_err)?;
    let mut writer = WriteMultipart::new(upload);
    let mut buf = vec![0u8; 8 << 20];
    loop {
        let n = reader.read(&mut buf).await.map_err(read_err)?;
        if n == 0 {
            break;
        }
        writer.wait_for_capacity(4).await.map_err(store_err)?;
        writer.write(&buf[..n]);
    }
    writer.finish().await.map(|_| ()).map_err(store_err)
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .map_err(|source| StorageError::LocalDir {
            path: path.to_owned(),
            source,
        })
}

/// Reads one object named by its whole URL or path (`s3://bucket/models/m/model.txt`,
/// `file:///data/manifest.json`, `/data/manifest.json`).
pub async fn get_url(url: &str) -> Result<Bytes> {
    let (parent, name) = url
        .trim_end_matches('/')
        .rsplit_once('/')
        .unwrap_or((".", url));
    let parent = if parent.is_empty() || parent.ends_with(':') || parent == "file://" {
        // "/model.txt" or "file:///model.txt": the object sits at the root
        format!("{parent}/")
    } else {
        parent.to_owned()
    };
    Location::parse(&parent)?.get(name).await
}

/// S3 credentials from the AWS SDK's default chain, the one the SSM client uses: environment,
/// shared `credentials`/`config` files and profiles (what `aws configure` writes), SSO, web
/// identity, ECS and EC2 instance roles. Resolved on first use and cached by the SDK.
#[derive(Debug, Default)]
struct AwsChain {
    provider:
        tokio::sync::OnceCell<Option<aws_credential_types::provider::SharedCredentialsProvider>>,
}

#[async_trait::async_trait]
impl object_store::CredentialProvider for AwsChain {
    type Credential = object_store::aws::AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<Self::Credential>> {
        use aws_credential_types::provider::ProvideCredentials;
        let missing = |detail: String| {
            object_store::Error::Generic {
            store: "S3",
            source: format!(
                "no AWS credentials found ({detail}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, run `aws configure`, or choose a profile with AWS_PROFILE"
            )
            .into(),
        }
        };
        let provider = self
            .provider
            .get_or_init(|| async {
                aws_config::load_defaults(aws_config::BehaviorVersion::latest())
                    .await
                    .credentials_provider()
            })
            .await
            .as_ref()
            .ok_or_else(|| missing("the AWS configuration has no credentials provider".into()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| missing(e.to_string()))?;
        Ok(Arc::new(object_store::aws::AwsCredential {
            key_id: credentials.access_key_id().to_owned(),
            secret_key: credentials.secret_access_key().to_owned(),
            token: credentials.session_token().map(str::to_owned),
        }))
    }
}

/// An S3 client for one bucket: credentials through the AWS SDK's default chain ([`AwsChain`]),
/// the endpoint from `RTB_S3_ENDPOINT` / `AWS_ENDPOINT_URL(_S3)` (path-style, for S3-compatible
/// servers).
pub fn s3_store(bucket: &str) -> object_store::Result<Arc<dyn ObjectStore>> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_credentials(Arc::new(AwsChain::default()));
    let endpoint = std::env::var("RTB_S3_ENDPOINT")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL_S3"))
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .ok();
    if let Some(endpoint) = endpoint {
        builder = builder
            .with_allow_http(endpoint.starts_with("http://"))
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false);
    }
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        builder = builder.with_region("us-east-1");
    }
    Ok(Arc::new(builder.build()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_round_trip_and_listing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("out");
        let location = Location::parse(root.to_str().expect("utf8")).expect("opens");
        location
            .put("a/b.txt", Bytes::from_static(b"hello"))
            .await
            .expect("put");
        let src = dir.path().join("src.bin");
        std::fs::write(&src, vec![7u8; 100_000]).expect("write");
        location.upload_file("a/c.bin", &src).await.expect("upload");
        assert_eq!(
            location.get("a/b.txt").await.expect("get"),
            Bytes::from_static(b"hello")
        );
        assert_eq!(location.get("a/c.bin").await.expect("get").len(), 100_000);
        assert_eq!(
            location.list("a").await.expect("list"),
            vec!["a/b.txt", "a/c.bin"]
        );
        assert!(location.child_url("a/b.txt").starts_with("file:///"));
        assert!(root.join("a/b.txt").is_file());
    }

    #[test]
    fn rejects_unknown_schemes_and_bucketless_urls() {
        assert!(matches!(
            Location::parse("gs://b/p"),
            Err(StorageError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            Location::parse("s3:///p"),
            Err(StorageError::NoBucket(_))
        ));
    }
}
