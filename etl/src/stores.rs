//! The object stores every engine process resolves URLs with: the client, and on a cluster the
//! scheduler and every executor alike, so a job's `file://` and `s3://` URLs mean the same thing
//! everywhere.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreRegistry;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use url::Url;

/// Serves `file://` from the local file system and `s3://bucket` from one S3 client per
/// bucket, built on first use from the standard AWS environment (keys, ECS task role, instance
/// profile; `RTB_S3_ENDPOINT` / `AWS_ENDPOINT_URL` for S3-compatible servers).
#[derive(Debug)]
pub struct StoreRegistry {
    local: Arc<dyn ObjectStore>,
    /// `scheme://authority` -> store; also holds stores registered explicitly.
    stores: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Default for StoreRegistry {
    fn default() -> Self {
        StoreRegistry {
            local: Arc::new(LocalFileSystem::new()),
            stores: RwLock::new(HashMap::new()),
        }
    }
}

fn key(url: &Url) -> String {
    format!("{}://{}", url.scheme(), url.authority())
}

impl ObjectStoreRegistry for StoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.stores
            .write()
            .ok()
            .and_then(|mut stores| stores.insert(key(url), store))
    }

    fn deregister_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        self.stores
            .write()
            .ok()
            .and_then(|mut stores| stores.remove(&key(url)))
            .ok_or_else(|| {
                DataFusionError::Execution(format!("no object store registered for {url}"))
            })
    }

    fn get_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        let key = key(url);
        if let Some(store) = self.stores.read().ok().and_then(|s| s.get(&key).cloned()) {
            return Ok(store);
        }
        match url.scheme() {
            "file" => Ok(Arc::clone(&self.local)),
            "s3" => {
                let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "s3 url {url} has no bucket; write it as s3://bucket/prefix"
                    ))
                })?;
                let store = rtb_storage::s3_store(bucket)
                    .map_err(|e| DataFusionError::ObjectStore(Box::new(e)))?;
                let mut stores = self.stores.write().map_err(|_| {
                    DataFusionError::Execution("object store registry poisoned".into())
                })?;
                // a racing thread may have built one first: keep a single client per bucket
                Ok(Arc::clone(stores.entry(key).or_insert(store)))
            }
            other => Err(DataFusionError::Execution(format!(
                "no object store for {other}:// urls ({url}); use file:// or s3://"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_per_bucket_and_clear_errors() {
        let registry = StoreRegistry::default();
        let url = |s: &str| Url::parse(s).expect("url");
        let a = registry.get_store(&url("s3://bucket-a/x")).expect("s3");
        let a2 = registry.get_store(&url("s3://bucket-a/y/z")).expect("s3");
        let b = registry.get_store(&url("s3://bucket-b/x")).expect("s3");
        assert!(Arc::ptr_eq(&a, &a2));
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(registry.get_store(&url("file:///tmp")).is_ok());
        let err = registry
            .get_store(&url("gs://bucket/x"))
            .expect_err("unsupported");
        assert!(err.to_string().contains("use file:// or s3://"), "{err}");
    }
}
