//! Plain HTTP on the WebSocket port: 426 for plain requests (compat),
//! `/healthz` and `/metrics` (ext), a clear status for malformed upgrade
//! requests, 503 past the connection limit.

use crate::support;

use support::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade_request(method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut s = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s
}

fn good_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Version", "13"),
    ]
}

fn without(name: &str) -> Vec<(&'static str, &'static str)> {
    good_headers()
        .into_iter()
        .filter(|(k, _)| *k != name)
        .collect()
}

fn with(name: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut h = without(name);
    h.push((name, value));
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_requests_get_426() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, LONG_INTERVAL).await;
    for req in [
        "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned(),
        "GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned(),
        "POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n".to_owned(),
        "GET /ws HTTP/1.0\r\n\r\n".to_owned(),
    ] {
        let r = http_raw(server.addr, &req).await;
        assert_eq!(r.status, 426, "{req:?} -> {}", r.head);
        assert_eq!(r.header("upgrade").as_deref(), Some("websocket"));
        assert!(r.body.contains("WebSocket"), "{}", r.body);
        assert_eq!(
            r.header("content-length").and_then(|v| v.parse().ok()),
            Some(r.body.len())
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, SHORT_INTERVAL).await;
    let (mut c, _) = Client::connect_and_update(&server.url()).await;

    let r = http_get(server.addr, "/healthz").await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let h: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["db"], "ok");
    assert_eq!(h["server"], skillmon::SERVER_NAME);
    assert_eq!(h["connections"], 1);
    assert!(h["uptime_seconds"].is_number());
    // HEAD: the same status, no body; a query string is ignored.
    let r = http_raw(
        server.addr,
        "HEAD /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(
        http_get(server.addr, "/healthz?verbose=1").await.status,
        200
    );

    let r = http_get(server.addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{}",
        r.head
    );
    let text = r.body;
    assert!(text.contains("# TYPE skillmon_connections gauge"), "{text}");
    assert!(
        text.lines().any(|l| l == "skillmon_connections 1"),
        "{text}"
    );
    assert!(text.contains("skillmon_db_state{state=\"ok\"} 1"), "{text}");
    // Every sample line is `name[{labels}] number`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        assert!(name.starts_with("skillmon_"), "{line}");
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    let ticks = |t: &str| -> u64 {
        t.lines()
            .find_map(|l| l.strip_prefix("skillmon_ticks_total "))
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = ticks(&text);
    c.next_update().await;
    c.next_update().await;
    let after = ticks(&http_get(server.addr, "/metrics").await.body);
    assert!(after > before, "{before} -> {after}");

    drop(c);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_upgrade_requests_get_a_status_naming_the_problem() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, LONG_INTERVAL).await;
    let cases: Vec<(String, u16, &str)> = vec![
        (upgrade_request("POST", "/ws", &good_headers()), 405, "GET"),
        (
            upgrade_request("GET", "/ws", &without("Sec-WebSocket-Key")),
            400,
            "Sec-WebSocket-Key",
        ),
        (
            upgrade_request("GET", "/ws", &with("Sec-WebSocket-Key", "   ")),
            400,
            "Sec-WebSocket-Key",
        ),
        (
            upgrade_request("GET", "/ws", &with("Sec-WebSocket-Version", "8")),
            426,
            "13",
        ),
        (
            upgrade_request("GET", "/ws", &without("Sec-WebSocket-Version")),
            426,
            "13",
        ),
        (
            upgrade_request("GET", "/ws", &without("Connection")),
            400,
            "Connection",
        ),
        (
            upgrade_request("GET", "/ws", &good_headers()).replace("HTTP/1.1", "HTTP/1.0"),
            400,
            "HTTP/1.1",
        ),
        ("\x01\x02 garbage\r\n\r\n".to_owned(), 400, "malformed"),
        (
            format!(
                "GET /ws HTTP/1.1\r\n{}\r\n",
                (0..60).fold(String::new(), |mut h, i| {
                    use std::fmt::Write as _;
                    let _ = write!(h, "X-H{i}: v\r\n");
                    h
                })
            ),
            431,
            "headers",
        ),
        (
            format!("GET /ws HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(9000)),
            431,
            "bytes",
        ),
    ];
    for (req, status, says) in cases {
        let r = http_raw(server.addr, &req).await;
        let shown: String = req.chars().take(80).collect();
        assert_eq!(r.status, status, "{shown:?} -> {}", r.head);
        assert!(r.body.contains(says), "{shown:?} -> {:?}", r.body);
    }
    let r = http_raw(server.addr, &upgrade_request("POST", "/", &good_headers())).await;
    assert_eq!(r.header("allow").as_deref(), Some("GET"));
    let r = http_raw(
        server.addr,
        &upgrade_request("GET", "/", &with("Sec-WebSocket-Version", "8")),
    )
    .await;
    assert_eq!(r.header("sec-websocket-version").as_deref(), Some("13"));

    // Still serving WebSockets, on any path (compat).
    let url = format!("ws://{}/any/path?x=1", server.addr);
    let (mut c, _) = Client::connect(&url).await;
    assert_eq!(names(&c.next_update().await).len(), 4);
    let (stats_ok, _) = server.stats().health_json();
    assert!(stats_ok);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_limit_gets_503() {
    let (db, _conn) = TestDb::seeded();
    let mut cfg = config(&db.path, LONG_INTERVAL, 10);
    cfg.max_connections = 1;
    let server = start(cfg).await;
    let (mut a, _) = Client::connect_and_update(&server.url()).await;
    match tokio_tungstenite::connect_async(server.url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503);
            assert!(resp.headers().contains_key("retry-after"));
        }
        Err(e) => panic!("expected HTTP 503, got {e}"),
        Ok(_) => panic!("expected HTTP 503, got a connection"),
    }
    // Plain HTTP is not counted against the limit.
    assert_eq!(health(server.addr).await.0, 200);
    // The first client is unaffected; once it leaves, a new one gets in.
    a.ping(serde_json::json!(1)).await;
    close_and_await_slot(a, &server.url()).await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_never_send_a_request_are_limited_too() {
    use tokio::io::AsyncReadExt;
    let db = TestDb::missing();
    let mut cfg = config(&db.path, LONG_INTERVAL, 10);
    cfg.max_connections = 1;
    let server = start(cfg).await;
    // max_connections + 128 idle sockets are held open (slack for health
    // checks and handshakes in flight) ...
    let mut idle = Vec::new();
    for _ in 0..129 {
        idle.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    // ... the next gets 503 at once, without sending anything.
    let mut extra = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(DEADLINE, extra.read_to_end(&mut got))
        .await
        .expect("an answer without sending a request")
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    drop(idle);
    server.stop().await.unwrap();
}
