//! Authentication on `serve` (issue 12): the static token and session-buddy's
//! HS256 JWT, as a Bearer header before the upgrade (401 / 403) or as the
//! first frame after it (close 4001 "Authentication failed"), `?token=`
//! refused with 400, `/metrics` behind the token, and tokens never in a log
//! line (the real binary, logs captured).

use crate::support;

use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use skillmon::server::auth::{Failure, Secret};
use skillmon::server::{Handle, ServeConfig};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const TOKEN: &str = "static-Token-7f3a9c";
const JWT_SECRET: &str = "jwt-secret-51d2e8b0";
const PERMISSION: &str = "session-buddy:read";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A JWT as session-buddy mints them, with `alg` and claims of our choice.
fn jwt(alg: Algorithm, secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn claims(exp_in: i64, permissions: &[&str]) -> Value {
    json!({"user_id": "ada", "permissions": permissions, "iat": now(), "exp": now() + exp_in})
}

fn valid_jwt() -> String {
    jwt(Algorithm::HS256, JWT_SECRET, claims(600, &[PERMISSION]))
}

/// An unsigned token: `{"alg":"none"}`.
fn alg_none_jwt() -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64.encode(claims(600, &[PERMISSION]).to_string());
    format!("{header}.{body}.")
}

fn auth_config(db: &std::path::Path, interval: Duration) -> ServeConfig {
    let mut cfg = config(db, interval, 10);
    cfg.net.auth.token = Secret::new(TOKEN);
    cfg.net.auth.jwt_secret = Secret::new(JWT_SECRET);
    cfg.net.auth.require_permission = Some(PERMISSION.into());
    cfg
}

async fn auth_server(interval: Duration) -> (TestDb, Handle) {
    let (db, _conn) = TestDb::seeded();
    let server = start(auth_config(&db.path, interval)).await;
    (db, server)
}

/// The upgrade with `Authorization: Bearer <token>`: the connected client,
/// or the HTTP status and headers of the refusal.
async fn connect_bearer(
    url: &str,
    token: &str,
) -> Result<Client, tokio_tungstenite::tungstenite::http::Response<Option<Vec<u8>>>> {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    // An ext client: its first update comes right after `connected`.
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(skillmon::protocol::SUBPROTOCOL),
    );
    match tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect timed out")
    {
        Ok((ws, _)) => Ok(Client::from_ws(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(*resp),
        Err(e) => panic!("expected an HTTP answer or a connection, got {e}"),
    }
}

async fn get_with(server: &Handle, path: &str, token: Option<&str>) -> HttpResponse {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    http_raw(
        server.addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n",
            server.addr
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_checked_before_the_upgrade() {
    let (_db, server) = auth_server(LONG_INTERVAL).await;
    let url = server.url();
    let hs512 = jwt(Algorithm::HS512, JWT_SECRET, claims(600, &[PERMISSION]));
    let expired = jwt(Algorithm::HS256, JWT_SECRET, claims(-600, &[PERMISSION]));
    let other_secret = jwt(
        Algorithm::HS256,
        "not-the-secret",
        claims(600, &[PERMISSION]),
    );
    let no_exp = jwt(
        Algorithm::HS256,
        JWT_SECRET,
        json!({"user_id": "ada", "permissions": [PERMISSION]}),
    );
    let no_permission = jwt(Algorithm::HS256, JWT_SECRET, claims(600, &["other"]));
    let cases: Vec<(&str, String, u16, Failure)> = vec![
        ("wrong static token", "nope".into(), 401, Failure::Invalid),
        ("expired", expired, 401, Failure::Expired),
        ("alg none", alg_none_jwt(), 401, Failure::Algorithm),
        (
            "HS512 with the right secret",
            hs512,
            401,
            Failure::Algorithm,
        ),
        ("bad signature", other_secret, 401, Failure::Invalid),
        ("no exp", no_exp, 401, Failure::NoExpiry),
        (
            "missing permission",
            no_permission,
            403,
            Failure::Permission,
        ),
    ];
    for (what, token, status, reason) in &cases {
        let before = server.shared.stats.auth_failures(*reason);
        let Err(resp) = connect_bearer(&url, token).await else {
            panic!("{what}: connected");
        };
        assert_eq!(resp.status().as_u16(), *status, "{what}");
        if *status == 401 {
            assert_eq!(
                resp.headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.starts_with("Bearer")),
                Some(true),
                "{what}: {resp:?}"
            );
        }
        let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
        assert!(
            !body.contains(token.as_str()),
            "{what}: token echoed: {body}"
        );
        assert_eq!(
            server.shared.stats.auth_failures(*reason),
            before + 1,
            "{what}: counted as {reason}"
        );
    }
    // The static token and a valid JWT both get in, authenticated.
    for token in [TOKEN.to_owned(), valid_jwt()] {
        let mut c = connect_bearer(&url, &token).await.expect("valid token");
        let hello = c.next_frame().await;
        assert_eq!(hello["type"], "connected");
        assert_eq!(hello["authenticated"], true);
        assert_eq!(names(&c.next_update().await).len(), 4);
        // session-buddy clients also send the token frame: ignored, no error.
        c.send_json(json!({"token": token})).await;
        assert_eq!(c.ping(json!(1)).await["type"], "pong");
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_frame_token_as_session_buddy() {
    let (_db, server) = auth_server(LONG_INTERVAL).await;
    for token in [valid_jwt(), TOKEN.to_owned()] {
        let mut c = Client::connect_raw(&server.url()).await;
        c.send_json(json!({"token": token})).await;
        let hello = c.next_frame().await;
        assert_eq!(hello["type"], "connected", "nothing before connected");
        assert_eq!(hello["authenticated"], true);
        assert_eq!(names(&c.next_update().await).len(), 4);
    }
    // A session-buddy client (no subprotocol) does exactly the same.
    let (ws, _) = tokio_tungstenite::connect_async(server.url())
        .await
        .unwrap();
    let mut c = Client::from_ws(ws);
    c.send_json(json!({"token": valid_jwt()})).await;
    let hello = c.next_frame().await;
    assert_eq!(
        (hello["type"].as_str(), hello["authenticated"].as_bool()),
        (Some("connected"), Some(true))
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_first_frame_is_closed_with_4001_and_nothing_else() {
    let (_db, server) = auth_server(LONG_INTERVAL).await;
    let expired = jwt(Algorithm::HS256, JWT_SECRET, claims(-600, &[PERMISSION]));
    let no_permission = jwt(Algorithm::HS256, JWT_SECRET, claims(600, &[]));
    let hs512 = jwt(Algorithm::HS512, JWT_SECRET, claims(600, &[PERMISSION]));
    let cases: Vec<(&str, Value, Failure)> = vec![
        ("wrong", json!({"token": "nope"}), Failure::Invalid),
        ("expired", json!({"token": expired}), Failure::Expired),
        (
            "alg none",
            json!({"token": alg_none_jwt()}),
            Failure::Algorithm,
        ),
        ("HS512", json!({"token": hs512}), Failure::Algorithm),
        (
            "missing permission",
            json!({"token": no_permission}),
            Failure::Permission,
        ),
        (
            "a subscribe first",
            json!({"type": "subscribe"}),
            Failure::Missing,
        ),
        ("empty token", json!({"token": ""}), Failure::Missing),
    ];
    for (what, frame, reason) in cases {
        let before = server.shared.stats.auth_failures(reason);
        let mut c = Client::connect_raw(&server.url()).await;
        c.send_json(frame).await;
        match c.next_event().await {
            Event::Close(Some(4001), why) => assert_eq!(why, "Authentication failed", "{what}"),
            other => panic!("{what}: expected close 4001 first, got {other:?}"),
        }
        assert_eq!(
            server.shared.stats.auth_failures(reason),
            before + 1,
            "{what}"
        );
    }
    let text = server.shared.stats.prometheus();
    assert!(
        text.lines()
            .any(|l| l == "skillmon_closes_total{code=\"4001\"} 7"),
        "{text}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_first_frame_within_the_timeout_is_closed_with_4001() {
    let (db, _conn) = TestDb::seeded();
    let mut cfg = auth_config(&db.path, SHORT_INTERVAL);
    // session-buddy's 5 s, shortened so the test does not wait for it.
    cfg.net.auth.first_frame_timeout = Duration::from_millis(300);
    let server = start(cfg).await;
    let mut c = Client::connect_raw(&server.url()).await;
    // Ticks go by (SHORT_INTERVAL) but no update reaches the silent client:
    // the first thing it sees is the close.
    match c.next_event().await {
        Event::Close(Some(4001), why) => assert_eq!(why, "Authentication failed"),
        other => panic!("expected close 4001, got {other:?}"),
    }
    assert_eq!(server.shared.stats.auth_failures(Failure::Timeout), 1);
    // The default is session-buddy's.
    assert_eq!(
        skillmon::server::auth::AuthConfig::default().first_frame_timeout,
        Duration::from_secs(5)
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_url_gets_400_pointing_at_the_header() {
    let (_db, server) = auth_server(LONG_INTERVAL).await;
    let url = format!("ws://{}/ws?token={TOKEN}", server.addr);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 400);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("Authorization: Bearer"), "{body}");
            assert!(!body.contains(TOKEN), "{body}");
        }
        Err(e) => panic!("expected HTTP 400, got {e}"),
        Ok(_) => panic!("expected HTTP 400, got a connection"),
    }
    assert_eq!(server.shared.stats.auth_failures(Failure::TokenInUrl), 1);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_client_misses_no_tick_while_others_are_refused() {
    let (_db, server) = auth_server(SHORT_INTERVAL).await;
    let mut good = connect_bearer(&server.url(), TOKEN).await.unwrap();
    assert_eq!(good.next_frame().await["authenticated"], true);
    let first = good.next_update().await["seq"].as_u64().unwrap();
    for i in 0..6u64 {
        // A refused client between two ticks ...
        assert!(connect_bearer(&server.url(), "wrong").await.is_err());
        let mut bad = Client::connect_raw(&server.url()).await;
        bad.send_json(json!({"token": "wrong"})).await;
        assert_eq!(bad.close_code_within(DEADLINE).await, 4001);
        // ... and the good one's seq stays contiguous: nothing skipped.
        let u = good.next_update().await;
        assert_eq!(u["seq"].as_u64(), Some(first + i + 1), "{u}");
    }
    assert_eq!(server.shared.stats.skipped(), 0);
    server.stop().await.unwrap();
}

/// Strict Prometheus text format 0.0.4: `# HELP name text`, `# TYPE name
/// kind` before its samples, samples `name{label="value",…} number` whose
/// name belongs to the last TYPE'd family. Returns (name+labels, value).
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut family: Option<(String, String)> = None;
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(valid_name(name), "HELP name {line:?}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(valid_name(name), "{line:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line:?}"
            );
            family = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("sample: series value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').expect("labels end with }");
                for pair in labels.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    assert!(valid_name(k), "{line:?}");
                    assert!(
                        v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
                        "{line:?}"
                    );
                }
                name
            }
            None => series,
        };
        assert!(valid_name(name), "{line:?}");
        let (fam, kind) = family.as_ref().expect("a TYPE line before samples");
        assert_eq!(
            name, fam,
            "sample of another family than its TYPE: {line:?}"
        );
        if kind == "counter" {
            assert!(name.ends_with("_total"), "{line:?}");
            assert!(value >= 0.0, "{line:?}");
        }
        samples.push((series.to_owned(), value));
    }
    samples
}

fn sample(samples: &[(String, f64)], series: &str) -> Option<f64> {
    samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_need_the_token() {
    let (_db, server) = auth_server(LONG_INTERVAL).await;
    let r = get_with(&server, "/metrics", None).await;
    assert_eq!(r.status, 401, "{}", r.head);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer"))
    );
    let r = get_with(&server, "/metrics", Some("wrong")).await;
    assert_eq!(r.status, 401);
    assert!(connect_bearer(&server.url(), "wrong").await.is_err());

    let r = get_with(&server, "/metrics", Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(!r.body.contains(TOKEN));
    let samples = parse_prometheus(&r.body);
    assert_eq!(sample(&samples, "skillmon_connections"), Some(0.0));
    assert!(sample(&samples, "skillmon_ticks_total").is_some());
    assert_eq!(
        sample(&samples, "skillmon_db_state{state=\"ok\"}"),
        Some(1.0)
    );
    // Two bad tokens on /metrics (one missing, one wrong) and one on the upgrade.
    assert_eq!(
        sample(&samples, "skillmon_auth_failures_total{reason=\"invalid\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(&samples, "skillmon_auth_failures_total{reason=\"missing\"}"),
        Some(1.0)
    );
    for family in [
        "skillmon_origin_rejections_total",
        "skillmon_per_ip_rejections_total",
        "skillmon_tls_handshake_failures_total",
    ] {
        assert_eq!(sample(&samples, family), Some(0.0), "{family}");
    }
    // The JWT works for scrapes too.
    assert_eq!(
        get_with(&server, "/metrics", Some(&valid_jwt()))
            .await
            .status,
        200
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_details_need_the_token() {
    let (db, server) = auth_server(LONG_INTERVAL).await;
    let path = db.path.display().to_string();
    let anon = get_with(&server, "/healthz", None).await;
    assert_eq!(anon.status, 200);
    let v: Value = serde_json::from_str(&anon.body).unwrap();
    assert_eq!(
        v,
        json!({"status": "ok"}),
        "status only for anonymous callers"
    );
    let full = get_with(&server, "/healthz", Some(TOKEN)).await;
    let v: Value = serde_json::from_str(&full.body).unwrap();
    assert_eq!(v["db"], "ok");
    assert!(full.body.contains(&path), "{}", full.body);
    assert!(!full.body.contains(TOKEN));
    let anon = get_with(&server, "/readyz", None).await;
    assert_eq!((anon.status, anon.body.as_str()), (200, "ready\n"));
    let full = get_with(&server, "/readyz", Some(TOKEN)).await;
    assert_eq!(full.status, 200);
    assert!(
        full.body.starts_with("ready: database read"),
        "{}",
        full.body
    );
    server.stop().await.unwrap();
}

/// The real binary, token from the environment, logs at debug level: every
/// kind of success and failure, then SIGTERM; no line contains a token.
#[test]
fn tokens_never_reach_the_logs() {
    use std::io::{BufRead, BufReader, Read};
    let (db, _conn) = TestDb::seeded();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("jwt-secret");
    std::fs::write(&secret_file, format!("{JWT_SECRET}\n")).unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut cmd = command(home.path());
    cmd.args(["serve", "--port", "0", "--db"])
        .arg(&db.path)
        .arg("--jwt-secret-file")
        .arg(&secret_file)
        .args(["--require-permission", PERMISSION, "--interval", "100ms"])
        .env("SKILLMON_TOKEN", TOKEN)
        .env("SKILLMON_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = Spawned::spawn(&mut cmd);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut logs = String::new();
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "exited early: {logs}"
        );
        logs.push_str(&line);
        if let Some(rest) = line.split("listening on ws://").nth(1) {
            break rest
                .split('/')
                .next()
                .unwrap()
                .parse::<std::net::SocketAddr>()
                .unwrap();
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let expired = jwt(Algorithm::HS256, JWT_SECRET, claims(-600, &[PERMISSION]));
    let used = [
        TOKEN.to_owned(),
        valid_jwt(),
        expired.clone(),
        alg_none_jwt(),
    ];
    rt.block_on(async {
        let url = format!("ws://{addr}/ws");
        for token in &used {
            if let Ok(mut c) = connect_bearer(&url, token).await {
                c.next_update().await;
            }
            let mut c = Client::connect_raw(&url).await;
            c.send_json(json!({"token": token})).await;
            let _ = c.next_event().await;
        }
        let mut ok = connect_bearer(&url, TOKEN).await.unwrap();
        ok.next_update().await;
        assert!(
            tokio_tungstenite::connect_async(format!("{url}?token={TOKEN}"))
                .await
                .is_err()
        );
        let r = http_raw(
            addr,
            &format!("GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"),
        )
        .await;
        assert_eq!(r.status, 200);
        let r = http_raw(
            addr,
            &format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {expired}\r\n\r\n"),
        )
        .await;
        assert!(!r.body.contains(&expired));
    });
    kill(child.id(), "TERM");
    stderr.read_to_string(&mut logs).unwrap();
    assert!(child.wait().unwrap().success(), "{logs}");
    assert!(logs.contains("refused"), "the failures were logged: {logs}");
    assert!(logs.contains("4001"), "{logs}");
    for token in used.iter().map(String::as_str).chain([JWT_SECRET]) {
        // Any signature part is as secret as the whole token.
        let tail = token.rsplit('.').next().unwrap_or(token);
        for needle in [token, tail] {
            if needle.len() < 8 {
                continue;
            }
            let hit = logs.lines().find(|l| l.contains(needle));
            assert!(hit.is_none(), "a log line carries a secret: {hit:?}");
        }
    }
}

#[test]
fn unreadable_or_empty_secret_files_stop_start_up_naming_the_flag() {
    let home = tempfile::tempdir().unwrap();
    let db = TestDb::missing();
    let empty = home.path().join("empty-token");
    std::fs::write(&empty, "\n  \n").unwrap();
    let absent = home.path().join("absent-secret");
    let cases = [
        ("--token-file", &empty, "empty"),
        ("--jwt-secret-file", &absent, "cannot read"),
    ];
    for (flag, path, says) in cases {
        let mut cmd = command(home.path());
        cmd.args(["serve", "--port", "0", "--db"])
            .arg(&db.path)
            .arg(flag)
            .arg(path);
        let out = run(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag}: started");
        assert!(stderr.contains(flag), "{flag}: {stderr}");
        assert!(
            stderr.contains(&path.display().to_string()),
            "{flag}: {stderr}"
        );
        assert!(stderr.contains(says), "{flag}: {stderr}");
    }
    // A secret is never taken from a flag's value.
    let mut cmd = command(home.path());
    cmd.args(["serve", "--port", "0", "--token", "x"]);
    let out = run(cmd);
    assert!(!out.status.success());
}
