//! The real `rtb-scorer` under hostile clients: many connections that send their headers and
//! then trickle a partial body must each get a 408 and lose their socket, while ordinary
//! requests keep being answered, and every one is counted; an OpenRTB request amplifying its
//! shared fields over 1,000 impressions is bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::scorer_support::{
    ModelStore, Process, call, free_port, json, request, spawn, synthetic_rows, train, wait_for,
    workspace_binary,
};

fn model_texts(iterations: &[usize]) -> Vec<String> {
    let (x, y) = synthetic_rows(2000, 8, 5);
    iterations
        .iter()
        .map(|n| train(&x, &y, *n).save_string().expect("text"))
        .collect()
}

/// `rtb-scorer serve` on a free loopback port over `params`, ready; `extra` flags appended.
fn serve(dir: &std::path::Path, params: &std::path::Path, extra: &[&str]) -> (Process, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "serve",
        "--parameter-store",
        params.to_str().expect("utf8"),
        "--listen",
        &listen,
        "--workers",
        "2",
    ];
    args.extend_from_slice(extra);
    let mut process = spawn(
        &workspace_binary("rtb-scorer"),
        &args,
        &[],
        &dir.join("scorer.log"),
    );
    wait_for(&mut process, port, "/readyz", Duration::from_secs(60));
    (process, port)
}

#[test]
fn slow_bodies_are_cut_off_and_good_requests_still_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ModelStore::new(dir.path());
    store.publish("m0", &model_texts(&[10])[0]);
    let params = &store.params;
    let listen = format!("127.0.0.1:{}", free_port());
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
    let (mut process, port) = serve(dir.path(), params, &["--body-timeout-ms", "500"]);

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

    refused_before_the_app_are_answered_and_counted(port);
    process.terminate();
    assert!(process.wait_exit(Duration::from_secs(30)).success());
}

/// What the HTTP layer refuses before any handler runs: a malformed request (after a good one
/// on the same connection), a request head over actix's 128 KiB buffer, and a head that never
/// completes. Each gets a JSON reason and is counted in `/metrics`.
fn refused_before_the_app_are_answered_and_counted(port: u16) {
    let exchange = |bytes: &[u8]| -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connects");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s.write_all(bytes).expect("sent");
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).expect("answer then close");
        String::from_utf8_lossy(&answer).into_owned()
    };
    let body_of = |answer: &str| -> serde_json::Value {
        let (_, body) = answer.rsplit_once("\r\n\r\n").expect("a head and a body");
        json(body.as_bytes())
    };
    let answer = exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let refused = &answer[answer.find("HTTP/1.1 400").expect("then a 400")..];
    assert_eq!(body_of(refused)["error"], "malformed_http", "{refused}");

    // exactly the buffer: the server reads all of it before answering, so the answer is
    // never lost to a reset over unread bytes
    let mut big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.resize(131_072, b'a');
    let answer = exchange(&big);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(body_of(&answer)["error"], "header_too_large", "{answer}");

    // a head that never ends: actix's 5 s request timeout
    let answer = exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let reason = body_of(&answer);
    assert_eq!(reason["error"], "request_head_timeout", "{answer}");
    assert!(
        reason["message"]
            .as_str()
            .is_some_and(|m| m.contains("in time"))
    );

    let (_, metrics) = call(port, "GET", "/metrics", &[], b"").expect("metrics");
    let metrics = String::from_utf8_lossy(&metrics);
    for kind in ["malformed_http", "header_too_large", "request_head_timeout"] {
        assert!(
            metrics.contains(&format!("rtb_scorer_errors_total{{kind=\"{kind}\"}} 1\n")),
            "{kind} counted once:\n{metrics}"
        );
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// 60 s of 2,000 requests/s, one in twenty of them bad, and a new model every 10 s: no good
/// request fails, every bad one is answered 4xx and counted, and memory stays flat.
#[test]
fn a_minute_of_mixed_load_and_reloads_fails_no_good_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = model_texts(&[10, 20]);
    let store = ModelStore::new(dir.path());
    store.publish("m0", &models[0]);
    let (mut process, port) = serve(dir.path(), &store.params, &["--reload-interval", "1"]);
    let pid = process.child.id();

    const SECONDS: u64 = 60;
    const CLIENTS: u64 = 4;
    const PER_CLIENT: u64 = 500; // per second
    let stop_at = Instant::now() + Duration::from_secs(SECONDS);
    let bad_bodies: [&[u8]; 4] = [
        b"{\"bidId\":",
        b"{\"hour\":\"seven\"}",
        b"[1,2,3]",
        b"{\"dayOfWeek\": 1e999}",
    ];
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            std::thread::spawn(move || {
                let mut http = crate::scorer_support::Http::connect(port).expect("connects");
                let (mut good, mut bad, mut failures) = (0u64, 0u64, Vec::new());
                let mut next = Instant::now();
                let mut i = c;
                while Instant::now() < stop_at {
                    let is_bad = i % 20 == 0;
                    let body = if is_bad {
                        bad_bodies[(i / 20 % 4) as usize].to_vec()
                    } else {
                        serde_json::to_vec(&request(i as usize)).expect("json")
                    };
                    match http.request("POST", "/v1/score", &[], &body) {
                        Ok((200, _)) if !is_bad => good += 1,
                        Ok((status, _)) if is_bad && (400..500).contains(&status) => bad += 1,
                        Ok((status, answer)) => failures.push(format!(
                            "bad={is_bad} {status}: {}",
                            String::from_utf8_lossy(&answer)
                        )),
                        Err(err) => {
                            failures.push(err.to_string());
                            http = crate::scorer_support::Http::connect(port).expect("reconnects");
                        }
                    }
                    i += CLIENTS;
                    next += Duration::from_micros(1_000_000 / PER_CLIENT);
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                (good, bad, failures)
            })
        })
        .collect();
    // a new model every 10 s, and the memory after warming up
    let mut rss = Vec::new();
    for round in 1..SECONDS / 10 {
        std::thread::sleep(Duration::from_secs(10));
        rss.push(rss_kib(pid));
        store.publish(&format!("m{round}"), &models[(round % 2) as usize]);
    }
    let (mut good, mut bad) = (0, 0);
    for client in clients {
        let (g, b, failures) = client.join().expect("client");
        assert!(
            failures.is_empty(),
            "{} failures: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        good += g;
        bad += b;
    }
    rss.push(rss_kib(pid));
    let total = good + bad;
    assert!(
        total >= SECONDS * CLIENTS * PER_CLIENT * 9 / 10,
        "the load ran: {total} requests"
    );
    let (_, metrics) = call(port, "GET", "/metrics", &[], b"").expect("metrics");
    let metrics = String::from_utf8_lossy(&metrics);
    let errors: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("rtb_scorer_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(
        errors, bad,
        "every bad request counted, nothing else:\n{metrics}"
    );
    let reloads = metrics
        .lines()
        .find(|l| l.starts_with("rtb_scorer_model_reloads_total{outcome=\"success\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        reloads >= SECONDS / 10 - 2,
        "models swapped in under load: {reloads}"
    );
    // warmed up after 10 s; then flat (allocator noise aside)
    let (first, last) = (rss[0], *rss.last().expect("rss"));
    assert!(
        last <= first + first / 5 + 8 * 1024,
        "memory grew from {first} KiB to {last} KiB: {rss:?}"
    );
    eprintln!(
        "soak: {good} good and {bad} bad requests in {SECONDS} s, {reloads} reloads, rss KiB {rss:?}"
    );
    process.terminate();
    assert!(process.wait_exit(Duration::from_secs(30)).success());
}
