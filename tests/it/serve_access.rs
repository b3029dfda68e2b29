//! Who may connect before any upgrade: the browser `Origin`
//! check (403), the per-client-IP limit (503), and the plain routes
//! `/healthz` (liveness) and `/readyz` (readiness).

use crate::support;

use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Upgrade with these extra headers: `Ok` when connected, else the status.
async fn connect_with(url: &str, headers: &[(&'static str, String)]) -> Result<Client, u16> {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(skillmon::protocol::SUBPROTOCOL),
    );
    for (k, v) in headers {
        req.headers_mut()
            .insert(*k, HeaderValue::from_str(v).unwrap());
    }
    match tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect timed out")
    {
        Ok((ws, _)) => Ok(Client::from_ws(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("expected an HTTP answer or a connection, got {e}"),
    }
}

fn origin(o: &str) -> Vec<(&'static str, String)> {
    vec![("Origin", o.to_owned())]
}

fn metric(server: &skillmon::server::Handle, name: &str) -> String {
    let text = server.stats().prometheus();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_origins_are_checked_before_the_upgrade() {
    let (server, _db, _conn) = serve_seeded(LONG_INTERVAL).await;
    let url = server.url();
    let port = server.addr.port();
    let allowed: Vec<(&str, Vec<(&'static str, String)>)> = vec![
        ("no Origin (not a browser)", vec![]),
        (
            "a loopback page on another port",
            origin("http://localhost:3000"),
        ),
        ("a 127.0.0.1 page", origin("https://127.0.0.1")),
        ("an [::1] page", origin("http://[::1]:8080")),
        ("a *.localhost page", origin("http://app.localhost:5173")),
    ];
    for (what, headers) in allowed {
        let mut c = connect_with(&url, &headers)
            .await
            .unwrap_or_else(|s| panic!("{what}: refused with {s}"));
        assert_eq!(c.next_frame().await["type"], "connected", "{what}");
    }
    let refused: Vec<(&str, Vec<(&'static str, String)>)> = vec![
        ("a foreign site", origin("https://evil.example")),
        ("null (a sandboxed page or a file)", origin("null")),
        (
            // Bound to loopback, the request's own Host is no reference (a
            // DNS-rebinding page controls it): tests/serve_host.rs.
            "a page named like the request's Host",
            vec![
                ("Host", format!("127.0.0.1:{port}")),
                ("Origin", format!("http://127.0.0.1.evil.example:{port}")),
            ],
        ),
        (
            "a look-alike of localhost",
            origin("http://localhost.evil.example"),
        ),
    ];
    for (i, (what, headers)) in refused.iter().enumerate() {
        assert_eq!(connect_with(&url, headers).await.err(), Some(403), "{what}");
        assert_eq!(
            metric(&server, "skillmon_origin_rejections_total"),
            (i + 1).to_string()
        );
    }
    // The 403 names the origin and the fix.
    let r = http_raw(
        server.addr,
        &format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Origin: https://evil.example\r\n\r\n",
            server.addr
        ),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(
        r.body.contains("https://evil.example") && r.body.contains("--allow-origin"),
        "{}",
        r.body
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_origins_and_star_are_allowed() {
    let (db, _conn) = TestDb::seeded();
    let mut cfg = config(&db.path, LONG_INTERVAL, 10);
    cfg.net.allow_origins = vec!["https://dash.example".into(), "null".into()];
    let server = start(cfg).await;
    for o in ["https://dash.example", "HTTPS://DASH.EXAMPLE/", "null"] {
        assert!(connect_with(&server.url(), &origin(o)).await.is_ok(), "{o}");
    }
    assert_eq!(
        connect_with(&server.url(), &origin("https://evil.example"))
            .await
            .err(),
        Some(403)
    );
    server.stop().await.unwrap();

    let mut cfg = config(&db.path, LONG_INTERVAL, 10);
    cfg.net.allow_origins = vec!["*".into()];
    let server = start(cfg).await;
    for o in ["https://evil.example", "null"] {
        assert!(connect_with(&server.url(), &origin(o)).await.is_ok(), "{o}");
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limit_answers_503_and_counts() {
    let (db, _conn) = TestDb::seeded();
    let mut cfg = config(&db.path, LONG_INTERVAL, 10);
    cfg.net.max_connections_per_ip = 2;
    let server = start(cfg).await;
    let (mut a, _) = Client::connect(&server.url()).await;
    let (_b, _) = Client::connect(&server.url()).await;
    assert_eq!(connect_with(&server.url(), &[]).await.err(), Some(503));
    // Every socket from the address counts, plain HTTP included.
    let r = http_get(server.addr, "/healthz").await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("--max-connections-per-ip"), "{}", r.body);
    assert_eq!(metric(&server, "skillmon_per_ip_rejections_total"), "2");
    // The first clients are unaffected; when one leaves, a new one gets in.
    assert_eq!(a.ping(json!(1)).await["type"], "pong");
    close_and_await_slot(a, &server.url()).await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_until_the_database_appears_healthz_stays_200() {
    let db = TestDb::missing();
    let server = serve(&db.path, SHORT_INTERVAL).await;
    let (mut c, _) = Client::connect(&server.url()).await;
    c.next_update().await;
    let r = http_get(server.addr, "/readyz").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("never read successfully"), "{}", r.body);
    assert!(r.body.contains("no such file"), "the reason: {}", r.body);
    let (code, h) = health(server.addr).await;
    assert_eq!(
        (code, h["status"].as_str()),
        (200, Some("degraded")),
        "liveness: {h}"
    );

    let conn = db.create();
    seed_basic(&conn);
    // One poll per tick (awaiting an update, never sleeping).
    let until = tokio::time::Instant::now() + DEADLINE;
    let r = loop {
        c.next_update().await;
        let r = http_get(server.addr, "/readyz").await;
        if r.status == 200 {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "never ready: {}",
            r.body
        );
    };
    assert!(r.body.starts_with("ready: database read"), "{}", r.body);
    // HEAD gets the status alone.
    let r = http_raw(
        server.addr,
        "HEAD /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    server.stop().await.unwrap();
}

/// The real binary on `host`, logging at info (killed if the test fails).
fn spawn_serve(
    home: &std::path::Path,
    db: &std::path::Path,
    host: &str,
    token: Option<&str>,
) -> ServeChild {
    let mut cmd = command(home);
    cmd.args(["serve", "--port", "0", "--host", host, "--db"])
        .arg(db);
    if let Some(t) = token {
        cmd.env("SKILLMON_TOKEN", t);
    }
    ServeChild::spawn(cmd)
}

const WARNING: &str = "anyone who can reach this port can read your skill data";

#[test]
fn a_public_address_without_a_token_is_warned_about_once() {
    let home = tempfile::tempdir().unwrap();
    let db = TestDb::missing();
    let mut server = spawn_serve(home.path(), &db.path, "0.0.0.0", None);
    let before = &server.before;
    assert_eq!(
        before.iter().filter(|l| l.contains(WARNING)).count(),
        1,
        "{before:?}"
    );
    assert!(server.terminate().success());
    for (host, token) in [("0.0.0.0", Some("a-token-1234")), ("127.0.0.1", None)] {
        let mut server = spawn_serve(home.path(), &db.path, host, token);
        let before = &server.before;
        assert!(
            !before.iter().any(|l| l.contains(WARNING)),
            "{host}: {before:?}"
        );
        assert!(server.terminate().success());
    }
}

#[test]
fn a_refused_origin_is_named_in_the_log() {
    let home = tempfile::tempdir().unwrap();
    let db = TestDb::missing();
    let mut server = spawn_serve(home.path(), &db.path, "127.0.0.1", None);
    let port = server.port;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let url = format!("ws://127.0.0.1:{port}/ws");
        connect_with(&url, &origin("https://evil.example"))
            .await
            .err()
    });
    assert_eq!(status, Some(403));
    let until = std::time::Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        let line = server
            .lines
            .recv_timeout(left)
            .expect("a log line naming the origin");
        if line.contains("https://evil.example") {
            assert!(line.contains("--allow-origin"), "{line}");
            break;
        }
    }
    assert!(server.terminate().success());
}
