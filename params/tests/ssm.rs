//! The SSM store against a real SSM emulator: moto's server, started here on a free local port.
//! CI installs it (`pip install 'moto[server]'`); without it this test fails rather than skips.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rtb_params::{ParameterStore, ParamsError, SsmSettings, SsmStore, StaticCredentials, names};

const INSTALL_HINT: &str = "install it with: pip install 'moto[server]'";

/// A running `moto_server`, killed when dropped (also when the test panics).
struct MotoServer {
    child: Child,
    endpoint: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl MotoServer {
    fn start() -> Self {
        let binary = find_on_path("moto_server").unwrap_or_else(|| {
            panic!(
                "moto_server is not on PATH; the ssm tests need moto's SSM emulator: {INSTALL_HINT}"
            )
        });
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("moto_server.log");
        let log_file = std::fs::File::create(&log).expect("create moto log");
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL_HINT}", binary.display()));
        let mut server = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        server.wait_until_listening(port);
        server
    }

    fn wait_until_listening(&mut self, port: u16) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("poll moto_server") {
                panic!(
                    "moto_server exited early ({status}); its output:\n{}\n{INSTALL_HINT}",
                    self.log_text()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {addr} within 60 s; its output:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_on_path(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

async fn store(server: &MotoServer) -> ParameterStore {
    let settings = SsmSettings {
        endpoint: Some(server.endpoint.clone()),
        region: Some("us-east-1".to_owned()),
        credentials: Some(StaticCredentials {
            access_key_id: "test".to_owned(),
            secret_access_key: "test".to_owned(),
        }),
    };
    ParameterStore::Ssm(SsmStore::connect(settings).await.expect("connect"))
}

#[tokio::test]
async fn ssm_round_trip_against_moto() {
    let server = MotoServer::start();
    let store = store(&server).await;
    assert!(store.to_string().contains(&server.endpoint), "{store}");

    // nothing there yet
    assert_eq!(store.get(names::OUTPUT_TRAIN).await.expect("get"), None);

    store
        .put(names::OUTPUT_TRAIN, "s3://bucket/train")
        .await
        .expect("put");
    store
        .put_many(&[
            (names::OUTPUT_TEST, "s3://bucket/test"),
            (names::PIPELINE_MODEL_ARTIFACT_PATH, "s3://bucket/pipeline"),
            (names::XGBOOST_PATH, "s3://bucket/models/xgb"),
            (names::CURRENT_REGION, "us-east-1"),
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
    assert_eq!(
        store
            .get(names::XGBOOST_PATH)
            .await
            .expect("get")
            .as_deref(),
        Some("s3://bucket/models/xgb")
    );

    // overwrite
    store
        .put(names::OUTPUT_TRAIN, "s3://other/train")
        .await
        .expect("overwrite");
    assert_eq!(
        store
            .get(names::OUTPUT_TRAIN)
            .await
            .expect("get")
            .as_deref(),
        Some("s3://other/train")
    );

    // missing
    assert_eq!(
        store.get("/aik/never-set").await.expect("get missing"),
        None
    );

    // more names than one GetParameters call takes, in order, with gaps
    let mut wanted: Vec<&str> = names::ALL.to_vec();
    wanted.push("/aik/never-set");
    let values = store.get_many(&wanted).await.expect("get_many");
    assert_eq!(values.len(), wanted.len());
    for (name, value) in wanted.iter().zip(&values) {
        let expected = match *name {
            names::OUTPUT_TRAIN => Some("s3://other/train"),
            names::OUTPUT_TEST => Some("s3://bucket/test"),
            names::PIPELINE_MODEL_ARTIFACT_PATH => Some("s3://bucket/pipeline"),
            names::XGBOOST_PATH => Some("s3://bucket/models/xgb"),
            names::CURRENT_REGION => Some("us-east-1"),
            _ => None,
        };
        assert_eq!(value.as_deref(), expected, "{name}");
    }

    // a bad name never reaches the server
    let err = store.put("aik/no-slash", "v").await.expect_err("bad name");
    assert!(matches!(err, ParamsError::BadName { .. }), "{err}");

    // a name SSM reserves is refused before any request, as the file store refuses it
    let err = store.put("/ssm/x", "v").await.expect_err("reserved name");
    assert!(matches!(err, ParamsError::BadName { .. }), "{err}");

    drop(server);
}

#[tokio::test]
async fn unreachable_endpoint_is_an_ssm_error() {
    let settings = SsmSettings {
        endpoint: Some(format!("http://127.0.0.1:{}", free_port())),
        region: Some("us-east-1".to_owned()),
        credentials: Some(StaticCredentials {
            access_key_id: "test".to_owned(),
            secret_access_key: "test".to_owned(),
        }),
    };
    let store = SsmStore::connect(settings).await.expect("connect");
    let err = store
        .get(names::OUTPUT_TRAIN)
        .await
        .expect_err("nothing listens there");
    assert!(
        matches!(&err, ParamsError::Ssm { name, .. } if name == names::OUTPUT_TRAIN),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("check the aws credentials, region and endpoint"),
        "{err}"
    );
}
