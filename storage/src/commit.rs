//! The commit protocol every published artifact set follows (an ETL run, a model): its objects
//! are staged under one prefix in any order, the manifest is written last (its presence commits
//! the set: no reader uses a prefix without one), then a pointer (`latest.json`) names it.
//!
//! Before the manifest is written, [`Staging::abort`] deletes what was staged. Once it is
//! written, nothing is ever deleted: a failure to move the pointer is reported as exactly that,
//! the set standing committed.

use bytes::Bytes;
use thiserror::Error;

use crate::{Location, StorageError};

#[derive(Debug, Error)]
pub enum CommitError {
    /// Nothing was committed: the staged objects were deleted.
    #[error("cannot write {what} under {prefix}: {source}; nothing was committed")]
    NotCommitted {
        what: String,
        prefix: String,
        source: Box<StorageError>,
    },
    /// The set is committed (its manifest exists) but the pointer still names the previous one.
    #[error(
        "{manifest} is committed, but {pointer} could not be updated to name it ({source}); it still names the previous one"
    )]
    PointerNotMoved {
        manifest: String,
        pointer: String,
        source: Box<StorageError>,
    },
}

/// An artifact set being staged under `prefix` of a location.
pub struct Staging<'a> {
    location: &'a Location,
    prefix: String,
}

impl<'a> Staging<'a> {
    pub fn new(location: &'a Location, prefix: impl Into<String>) -> Self {
        Staging {
            location,
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The URL of `name` inside the set.
    pub fn url(&self, name: &str) -> String {
        self.location.child_url(&format!("{}/{name}", self.prefix))
    }

    /// Stages one object; a failure leaves the set to [`Self::abort`].
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<(), StorageError> {
        self.location
            .put(&format!("{}/{name}", self.prefix), bytes)
            .await
    }

    /// Deletes everything staged (the set was never committed). A prefix that holds
    /// `manifest_name` is a committed set, someone else's: it is left alone.
    pub async fn abort(self, manifest_name: &str) {
        if self
            .location
            .get(&format!("{}/{manifest_name}", self.prefix))
            .await
            .is_ok()
        {
            tracing::warn!(prefix = %self.prefix, "not deleting a committed set while aborting");
            return;
        }
        self.location.delete_prefix(&self.prefix).await;
    }

    /// Writes the manifest (committing the set), then `pointer` (relative to the location)
    /// with `pointer_json`. A manifest that cannot be written aborts the set.
    pub async fn commit(
        self,
        manifest_name: &str,
        manifest: Bytes,
        pointer: &str,
        pointer_json: Bytes,
    ) -> Result<String, CommitError> {
        let manifest_url = self.url(manifest_name);
        if let Err(source) = self.put(manifest_name, manifest).await {
            let prefix = self.location.child_url(&self.prefix);
            self.abort(manifest_name).await;
            return Err(CommitError::NotCommitted {
                what: manifest_name.to_owned(),
                prefix,
                source: Box::new(source),
            });
        }
        if let Err(source) = self.location.put(pointer, pointer_json).await {
            return Err(CommitError::PointerNotMoved {
                manifest: manifest_url,
                pointer: self.location.child_url(pointer),
                source: Box::new(source),
            });
        }
        Ok(manifest_url)
    }
}

/// A set staged under `dir` that was never committed (no manifest): what a killed or failed
/// run left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// e.g. `runs/20261201T155512Z-a3e66e6c`.
    pub prefix: String,
    pub url: String,
    pub objects: usize,
    pub bytes: u64,
    /// Seconds since its newest object was written: a set still being staged is young.
    pub idle_seconds: u64,
}

/// The sets under `dir` (one level: `dir/<id>/...`) without a `manifest_name`.
pub async fn leftovers(
    location: &Location,
    dir: &str,
    manifest_name: &str,
) -> Result<Vec<Leftover>, StorageError> {
    use futures::TryStreamExt;
    use std::collections::BTreeMap;
    let objects: Vec<_> = location
        .store()
        .list(Some(&location.path(dir)))
        .try_collect()
        .await
        .map_err(|e| location.error(dir, e))?;
    let base = location.path(dir);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // per set: (committed, objects, bytes, newest write)
    let mut sets: BTreeMap<String, (bool, usize, u64, i64)> = BTreeMap::new();
    for o in objects {
        let full = o.location.as_ref();
        let rest = full
            .strip_prefix(base.as_ref())
            .unwrap_or(full)
            .trim_start_matches('/');
        let Some((id, inner)) = rest.split_once('/') else {
            continue;
        };
        let set = sets.entry(id.to_owned()).or_default();
        set.0 |= inner == manifest_name;
        set.1 += 1;
        set.2 += o.size;
        set.3 = set.3.max(o.last_modified.timestamp());
    }
    Ok(sets
        .into_iter()
        .filter(|(_, (committed, ..))| !committed)
        .map(|(id, (_, objects, bytes, newest))| {
            let prefix = format!("{}/{id}", dir.trim_end_matches('/'));
            Leftover {
                url: location.child_url(&prefix),
                prefix,
                objects,
                bytes,
                idle_seconds: u64::try_from(now - newest).unwrap_or(0),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_in_order_and_aborts_what_was_staged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = Location::parse(dir.path().to_str().expect("utf8")).expect("location");
        let staging = Staging::new(&location, "runs/a");
        staging
            .put("data/part-0", Bytes::from_static(b"x"))
            .await
            .expect("put");
        staging.abort("manifest.json").await;
        assert!(location.list("runs/a").await.expect("list").is_empty());

        // a prefix holding its manifest is committed: an abort there deletes nothing
        let committed = Staging::new(&location, "runs/c");
        committed
            .put("manifest.json", Bytes::from_static(b"{}"))
            .await
            .expect("put");
        Staging::new(&location, "runs/c")
            .abort("manifest.json")
            .await;
        assert_eq!(location.list("runs/c").await.expect("list").len(), 1);

        let staging = Staging::new(&location, "runs/b");
        staging
            .put("data/part-0", Bytes::from_static(b"x"))
            .await
            .expect("put");
        let url = staging
            .commit(
                "manifest.json",
                Bytes::from_static(b"{}"),
                "latest.json",
                Bytes::from_static(b"{\"run\":\"b\"}"),
            )
            .await
            .expect("commits");
        assert!(url.ends_with("runs/b/manifest.json"), "{url}");
        assert_eq!(
            location.get("latest.json").await.expect("pointer"),
            Bytes::from_static(b"{\"run\":\"b\"}")
        );

        // a pointer that cannot be written: committed, said so, nothing deleted
        std::fs::create_dir_all(dir.path().join("blocked.json")).expect("a folder in the way");
        let staging = Staging::new(&location, "runs/c");
        let err = staging
            .commit(
                "manifest.json",
                Bytes::from_static(b"{}"),
                "blocked.json",
                Bytes::from_static(b"{}"),
            )
            .await
            .expect_err("pointer blocked");
        assert!(matches!(err, CommitError::PointerNotMoved { .. }), "{err}");
        assert!(dir.path().join("runs/c/manifest.json").is_file());
    }
}
