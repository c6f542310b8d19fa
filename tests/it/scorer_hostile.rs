//! The real `rtb-scorer` under hostile clients: many connections that send their headers and
//! then trickle a partial body must each get a 408 and lose their socket, while ordinary
//! requests keep being answered, and every one is counted; an OpenRTB request amplifying its
//! shared fields over 1,000 impressions is bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rtb_params::names;

use crate::scorer_support::{
    call, free_port, json, publish_files, put_params, request, spawn, synthetic_rows, train,
    vocabulary, wait_for, workspace_binary,
};

#[test]
fn slow_bodies_are_cut_off_and_good_requests_still_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let base = format!("file://{}", root.display());
    let vocabulary = vocabulary(8);
    std::fs::create_dir_all(&root).expect("root");
    std::fs::write(
        root.join("vocabulary.json"),
        vocabulary.to_json().expect("json"),
    )
    .expect("vocabulary");
    let (x, y) = synthetic_rows(2000, 8, 5);
    let model = train(&x, &y, 10).save_string().expect("text");
    let m1 = publish_files(
        &root,
        &base,
        "m1",
        &model,
        &format!("{base}/vocabulary.json"),
        &vocabulary.version,
    );
    let params = dir.path().join("params.json");
    put_params(&params, &[(names::MODEL_MANIFEST, &m1)]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // a guessable admin token is refused at start, not served
    let mut weak = spawn(
        &workspace_binary("rtb-scorer"),
        &[
            "serve",
            "--parameter-store",
            params.to_str().expect("utf8"),
            "--listen",
            &listen,
            "--admin-token",
            " short ",
        ],
        &[],
        &dir.path().join("weak.log"),
    );
    assert!(!weak.wait_exit(Duration::from_secs(60)).success());
    assert!(
        weak.log_text()
            .contains("the admin token has 5 characters; use at least 16"),
        "{}",
        weak.log_text()
    );
    let mut process = spawn(
        &workspace_binary("rtb-scorer"),
        &[
            "serve",
            "--parameter-store",
            params.to_str().expect("utf8"),
            "--listen",
            &listen,
            "--workers",
            "2",
            "--body-timeout-ms",
            "500",
        ],
        &[],
        &dir.path().join("scorer.log"),
    );
    wait_for(&mut process, port, "/readyz", Duration::from_secs(60));

    // headers, then 10 of the 1,000 body bytes they announce, then nothing
    let slow = 300;
    let mut sockets: Vec<TcpStream> = (0..slow)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connects");
            s.write_all(
                b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"bidId\":",
            )
            .expect("partial request");
            s.set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            s
        })
        .collect();
    // meanwhile ordinary requests are answered
    let body = serde_json::to_vec(&request(1)).expect("json");
    for _ in 0..20 {
        let (status, answer) = call(port, "POST", "/v1/score", &[], &body).expect("answered");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    }
    let started = Instant::now();
    for s in &mut sockets {
        let mut answer = Vec::new();
        // the server answers and closes: read to the end
        s.read_to_end(&mut answer).expect("answer then close");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("body_timeout"), "{text}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "cut off near the deadline"
    );
    let (_, metrics) = call(port, "GET", "/metrics", &[], b"").expect("metrics");
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains(&format!(
            "rtb_scorer_errors_total{{kind=\"body_timeout\"}} {slow}"
        )),
        "every cut-off counted:\n{metrics}"
    );
    let (status, answer) = call(port, "POST", "/v1/score", &[], &body).expect("answered");
    assert_eq!(status, 200);
    assert!(json(&answer)["likelihood"].is_number());

    // OpenRTB amplification: 1,000 impressions sharing agent and domain at the field limit,
    // near the 1 MiB body limit; the shared fields are read and classified once, not per
    // impression
    let long = |c: char| {
        let mut ua = String::from("Mozilla/5.0 (Windows NT 6.1) ");
        ua.extend(std::iter::repeat_n(c, 8192 - ua.len()));
        ua
    };
    let openrtb = |ua: &str| {
        serde_json::to_vec(&serde_json::json!({
            "id": "amplify",
            "imp": (0..1000).map(|i| serde_json::json!({"id": i.to_string()})).collect::<Vec<_>>(),
            "site": {"domain": long('d')},
            "device": {"ua": ua, "geo": {"region": 1, "city": "1"}},
        }))
        .expect("json")
    };
    let (status, answer) =
        call(port, "POST", "/v1/openrtb", &[], &openrtb(&long('x'))).expect("answered");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(json(&answer)["imp"].as_array().map(Vec::len), Some(1000));
    // a field beyond the limit is refused, naming it, before any impression is scored
    let (status, answer) = call(
        port,
        "POST",
        "/v1/openrtb",
        &[],
        &openrtb(&format!("{}x", long('x'))),
    )
    .expect("answered");
    assert_eq!(status, 400);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("8193 bytes; at most 8192"), "{text}");
    process.terminate();
    assert!(process.wait_exit(Duration::from_secs(30)).success());
}
