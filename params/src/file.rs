//! Parameters in a local JSON object, `{ "/aik/output_train": "s3://bucket/train" }`.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;

use crate::{ParamsError, Result, validate_name, validate_pair};

/// Serialises every read-modify-write of every file store in this process, so concurrent
/// writers (tasks, threads, clones of a store) never lose each other's updates. Writes are rare.
static WRITE_LOCK: Mutex<()> = Mutex::const_new(());
/// Makes temporary file names unique within this process.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A JSON file of parameters, for one machine.
///
/// Each write replaces the whole file atomically (a temporary file in the same folder, synced,
/// then renamed over it), so a reader never sees a half-written file, and writers within one
/// process are serialised. Writers in *different* processes are not coordinated: both updates
/// produce a valid file, but the last rename wins and may drop the other's change. Use SSM when
/// several machines or processes write parameters.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store in `path`. The file and its folders are created on the first write; until then
    /// every name reads as unset.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn get(&self, name: &str) -> Result<Option<String>> {
        validate_name(name)?;
        Ok(self.load().await?.remove(name))
    }

    pub async fn get_many<N: AsRef<str>>(&self, names: &[N]) -> Result<Vec<Option<String>>> {
        for name in names {
            validate_name(name.as_ref())?;
        }
        let all = self.load().await?;
        Ok(names
            .iter()
            .map(|name| all.get(name.as_ref()).cloned())
            .collect())
    }

    pub async fn put(&self, name: &str, value: &str) -> Result<()> {
        self.put_many(&[(name, value)]).await
    }

    pub async fn put_many<N: AsRef<str>, V: AsRef<str>>(&self, pairs: &[(N, V)]) -> Result<()> {
        for (name, value) in pairs {
            validate_pair(name.as_ref(), value.as_ref())?;
        }
        let _guard = WRITE_LOCK.lock().await;
        let mut all = self.load().await?;
        for (name, value) in pairs {
            all.insert(name.as_ref().to_owned(), value.as_ref().to_owned());
        }
        self.write_atomic(&all).await
    }

    /// What would fail a write, found before the work it would end: a file that cannot be
    /// read or parsed, a folder where no file can be created.
    pub async fn check(&self) -> Result<()> {
        self.load().await?;
        let write_err = |source| ParamsError::FileWrite {
            path: self.path.clone(),
            source,
        };
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        tokio::fs::create_dir_all(&dir).await.map_err(write_err)?;
        let probe = dir.join(format!(
            ".params-probe.{}.{}.tmp",
            std::process::id(),
            TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let written = tokio::fs::write(&probe, b"{}\n").await;
        let _ = tokio::fs::remove_file(&probe).await;
        written.map_err(write_err)
    }

    async fn load(&self) -> Result<BTreeMap<String, String>> {
        let bytes = match tokio::fs::read(&self.path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(source) => {
                return Err(ParamsError::FileRead {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(BTreeMap::new());
        }
        serde_json::from_slice(&bytes).map_err(|source| ParamsError::FileParse {
            path: self.path.clone(),
            source,
        })
    }

    async fn write_atomic(&self, all: &BTreeMap<String, String>) -> Result<()> {
        let write_err = |source| ParamsError::FileWrite {
            path: self.path.clone(),
            source,
        };
        let mut bytes = serde_json::to_vec_pretty(all).map_err(|e| write_err(e.into()))?;
        bytes.push(b'\n');

        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = self.path.file_name().ok_or_else(|| {
            write_err(std::io::Error::new(
                ErrorKind::InvalidInput,
                "the path names a folder, not a file",
            ))
        })?;
        tokio::fs::create_dir_all(&dir).await.map_err(write_err)?;
        remove_stale_temps(&dir, &file_name.to_string_lossy());

        let temp = dir.join(format!(
            ".{}.{}.{}.tmp",
            file_name.to_string_lossy(),
            std::process::id(),
            TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        // std::fs on a blocking thread, not tokio::fs: tokio's File reports a failed write
        // (ENOSPC) only on a later operation and `sync_all` drops it, so a full disk renamed an
        // empty file over the store
        let path = self.path.clone();
        let written = {
            let temp = temp.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                use std::io::Write;
                let mut file = std::fs::File::create(&temp)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                drop(file);
                std::fs::rename(&temp, &path)?;
                // the rename itself reaches the disk only with its folder
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                Ok(())
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        if let Err(source) = written {
            // best effort: the write already failed, and the previous file is untouched
            let _ = std::fs::remove_file(&temp);
            return Err(write_err(source));
        }
        Ok(())
    }
}

/// Temporary files a killed writer left beside the store (`.<name>.<pid>.<n>.tmp`), older than
/// an hour: no live writer takes that long.
fn remove_stale_temps(dir: &Path, file_name: &str) {
    let prefix = format!(".{file_name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        if name.starts_with(&prefix) && name.ends_with(".tmp") && stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names;

    fn store(dir: &tempfile::TempDir) -> FileStore {
        FileStore::new(dir.path().join("nested/deeper/params.json"))
    }

    #[tokio::test]
    async fn round_trip_and_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir);
        assert_eq!(store.get(names::OUTPUT_TRAIN).await.expect("get"), None);

        store
            .put(names::OUTPUT_TRAIN, "s3://bucket/train")
            .await
            .expect("put");
        store
            .put_many(&[
                (names::OUTPUT_TEST, "s3://bucket/test"),
                (names::XGBOOST_PATH, "file:///models/xgb.txt"),
            ])
            .await
            .expect("put_many");

        assert_eq!(
            store
                .get(names::OUTPUT_TRAIN)
                .await
                .expect("get")
                .as_deref(),
            Some("s3://bucket/train")
        );
        assert_eq!(store.get("/aik/never-set").await.expect("get"), None);
        assert_eq!(
            store
                .get_many(&[names::XGBOOST_PATH, "/aik/never-set", names::OUTPUT_TEST])
                .await
                .expect("get_many"),
            vec![
                Some("file:///models/xgb.txt".to_owned()),
                None,
                Some("s3://bucket/test".to_owned())
            ]
        );

        // the file is the documented plain JSON object, readable by another store
        let text = std::fs::read_to_string(store.path()).expect("read");
        let parsed: BTreeMap<String, String> = serde_json::from_str(&text).expect("json");
        assert_eq!(parsed.len(), 3);
        let again = FileStore::new(store.path());
        assert_eq!(
            again.get(names::OUTPUT_TEST).await.expect("get").as_deref(),
            Some("s3://bucket/test")
        );
    }

    #[tokio::test]
    async fn bad_names_and_values_are_rejected_before_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir);
        for bad in ["aik/output_train", "", "/aik/has space"] {
            let err = store.put(bad, "v").await.expect_err(bad);
            assert!(matches!(err, ParamsError::BadName { .. }), "{err}");
            let err = store.get(bad).await.expect_err(bad);
            assert!(matches!(err, ParamsError::BadName { .. }), "{err}");
        }
        let err = store
            .put_many(&[(names::OUTPUT_TRAIN, "ok"), ("no-slash", "v")])
            .await
            .expect_err("one bad name");
        assert!(err.to_string().contains("must start with '/'"), "{err}");
        let err = store.put(names::OUTPUT_TRAIN, "").await.expect_err("empty");
        assert!(matches!(err, ParamsError::EmptyValue { .. }), "{err}");
        assert!(!store.path().exists(), "nothing may be written");
    }

    #[tokio::test]
    async fn overwrite_is_atomic_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir);
        store.put(names::OUTPUT_TRAIN, "old").await.expect("put");
        store.put(names::OUTPUT_TEST, "kept").await.expect("put");
        let before = std::fs::metadata(store.path()).expect("meta");

        store.put(names::OUTPUT_TRAIN, "new").await.expect("put");
        assert_eq!(
            store
                .get(names::OUTPUT_TRAIN)
                .await
                .expect("get")
                .as_deref(),
            Some("new")
        );
        assert_eq!(
            store.get(names::OUTPUT_TEST).await.expect("get").as_deref(),
            Some("kept")
        );
        // replaced by rename: a new inode, not the old file rewritten in place
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let after = std::fs::metadata(store.path()).expect("meta");
            assert_ne!(before.ino(), after.ino());
        }
        let folder = store.path().parent().expect("parent");
        let entries: Vec<_> = std::fs::read_dir(folder)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(entries, vec![std::ffi::OsString::from("params.json")]);

        // what a writer killed between create and rename leaves is collected once stale
        let stale = folder.join(".params.json.4242.0.tmp");
        let fresh = folder.join(".params.json.4243.0.tmp");
        std::fs::write(&stale, b"{").expect("stale temp");
        std::fs::write(&fresh, b"{").expect("fresh temp");
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .and_then(|f| f.set_modified(old))
            .expect("age the temp");
        store.put(names::OUTPUT_TRAIN, "newer").await.expect("put");
        assert!(!stale.exists(), "a stale temp is removed");
        assert!(fresh.exists(), "a young one may be a live writer's");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir);
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                // separate stores on the same file share the process-wide lock
                let store = FileStore::new(store.path());
                tokio::spawn(async move { store.put(&format!("/aik/n{i}"), &i.to_string()).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("join").expect("put");
        }
        let names: Vec<String> = (0..32).map(|i| format!("/aik/n{i}")).collect();
        let values = store.get_many(&names).await.expect("get_many");
        for (i, value) in values.into_iter().enumerate() {
            assert_eq!(value, Some(i.to_string()));
        }
    }

    #[tokio::test]
    async fn unreadable_content_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("params.json");
        std::fs::write(&path, r#"{"/aik/x": 3}"#).expect("write");
        let err = FileStore::new(&path)
            .get("/aik/x")
            .await
            .expect_err("not strings");
        assert!(err.to_string().contains("fix it or move it away"), "{err}");
        std::fs::write(&path, "  \n").expect("write");
        assert_eq!(
            FileStore::new(&path).get("/aik/x").await.expect("get"),
            None
        );
    }
}
