//! `serve --tls-cert --tls-key` (issue 12): `wss://` and `https://` on one
//! port through rustls, with certificates made by rcgen (`support::pki`); a plain client
//! on the TLS port fails cleanly and the server stays up; bad files stop
//! start-up naming the file and the problem.

use crate::support;

use std::path::{Path, PathBuf};

use serde_json::json;
use skillmon::server::Handle;
use skillmon::server::tls::TlsFiles;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn tls_server(pki: &Pki, db: &Path) -> Handle {
    let mut cfg = config(db, LONG_INTERVAL, 10);
    cfg.net.tls = Some(pki.files());
    start(cfg).await
}

async fn connect_wss(pki: &Pki, url: &str) -> Result<Client, String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let connector = tokio_tungstenite::Connector::Rustls(pki.client_config());
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        skillmon::protocol::SUBPROTOCOL.parse().unwrap(),
    );
    match tokio::time::timeout(
        DEADLINE,
        tokio_tungstenite::connect_async_tls_with_config(req, None, false, Some(connector)),
    )
    .await
    .expect("connect timed out")
    {
        Ok((ws, _)) => Ok(Client::from_ws(ws)),
        Err(e) => Err(e.to_string()),
    }
}

/// `GET path` over TLS to `host` (for SNI and verification), read to EOF.
async fn https_get(pki: &Pki, server: &Handle, host: &str, path: &str) -> String {
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(pki.client_config());
    let name = rustls_pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, tls.read_to_end(&mut out))
        .await
        .expect("response timed out");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_and_https_on_one_port() {
    let pki = Pki::new();
    let (db, _conn) = TestDb::seeded();
    let server = tls_server(&pki, &db.path).await;
    assert!(server.url().starts_with("wss://"), "{}", server.url());
    for url in [
        server.url(),
        format!("wss://localhost:{}/ws", server.addr.port()),
    ] {
        let mut c = connect_wss(&pki, &url).await.expect("wss connect");
        assert_eq!(c.next_frame().await["type"], "connected");
        let u = c.next_update().await;
        assert_eq!(compat_top(&u), expected_top(&db.path, 10));
        assert_eq!(c.ping(json!(7)).await["id"], 7);
    }
    let r = https_get(&pki, &server, "localhost", "/healthz").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("\"db\":\"ok\""), "{r}");
    let r = https_get(&pki, &server, "127.0.0.1", "/metrics").await;
    assert!(r.contains("skillmon_tls_handshake_failures_total 0"), "{r}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_clients_on_the_tls_port_fail_cleanly_and_the_server_stays_up() {
    let pki = Pki::new();
    let (db, _conn) = TestDb::seeded();
    let server = tls_server(&pki, &db.path).await;
    // A ws:// client: refused with a plain-text 400 it can read.
    match tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 400);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("wss://"), "{body}");
        }
        Err(e) => panic!("expected a readable 400, got {e}"),
        Ok(_) => panic!("a plain WebSocket got through on the TLS port"),
    }
    // Plain HTTP, and a broken TLS hello: answered or dropped, never a crash.
    let r = http_get(server.addr, "/healthz").await;
    assert_eq!(r.status, 400, "{}", r.head);
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"\x16\x03\x01\x00\x05hello").await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut sink))
        .await
        .expect("the server closes a broken handshake");
    // A client that does not trust the certificate fails its handshake.
    let untrusting = Pki::new();
    let err = connect_wss(&untrusting, &server.url())
        .await
        .err()
        .expect("refused");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let text = server.shared.stats.prometheus();
    let failures = text
        .lines()
        .find_map(|l| l.strip_prefix("skillmon_tls_handshake_failures_total "))
        .unwrap();
    assert!(failures.parse::<u64>().unwrap() >= 3, "{text}");
    // Still serving.
    let mut c = connect_wss(&pki, &server.url()).await.expect("still up");
    assert_eq!(c.next_frame().await["type"], "connected");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificate_files_stop_start_up_naming_the_file() {
    let pki = Pki::new();
    let db = TestDb::missing();
    std::fs::write(pki.path("garbage.pem"), "not a certificate\n").unwrap();
    std::fs::write(
        pki.path("broken.pem"),
        "-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let other_key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(pki.path("other-key.pem"), other_key.serialize_pem()).unwrap();
    let cert = pki.path("cert.pem");
    let key = pki.path("key.pem");
    let cases: Vec<(PathBuf, PathBuf, &str, &str)> = vec![
        (
            pki.path("absent.pem"),
            key.clone(),
            "absent.pem",
            "cannot read",
        ),
        (
            pki.path("garbage.pem"),
            key.clone(),
            "garbage.pem",
            "CERTIFICATE",
        ),
        (pki.path("broken.pem"), key.clone(), "broken.pem", "base64"),
        (
            cert.clone(),
            pki.path("absent-key.pem"),
            "absent-key.pem",
            "cannot read",
        ),
        (cert.clone(), cert.clone(), "--tls-key", "no private key"),
        (
            cert.clone(),
            pki.path("other-key.pem"),
            "other-key.pem",
            "key",
        ),
    ];
    for (cert, key, names, says) in cases {
        let mut cfg = config(&db.path, LONG_INTERVAL, 10);
        cfg.net.tls = Some(TlsFiles { cert, key });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = match skillmon::server::start(listener, cfg).await {
            Ok(_) => panic!("{names}: started"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(names), "{names}: {err}");
        assert!(err.contains(says), "{names}: {err}");
        assert!(!err.contains("PRIVATE KEY-----"), "key material in {err}");
    }
}

#[test]
fn the_binary_refuses_bad_tls_flags() {
    let pki = Pki::new();
    let db = TestDb::missing();
    let run = |args: &[&str]| {
        let out = command(pki.dir.path())
            .args(["serve", "--port", "0", "--db"])
            .arg(&db.path)
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let cert = pki.path("cert.pem").display().to_string();
    let missing = pki.path("nope.pem").display().to_string();
    let err = run(&["--tls-cert", &cert]);
    assert!(err.contains("--tls-key"), "{err}");
    let err = run(&["--tls-cert", &cert, "--tls-key", &missing]);
    assert!(
        err.contains("--tls-key") && err.contains("nope.pem"),
        "{err}"
    );
}

/// Both roles over the network, as a user runs them: the real `watch
/// --once` against `serve` with TLS and a token (Bearer + first frame).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_once_over_wss_with_a_token_against_serve() {
    const TOKEN: &str = "e2e-token-5a1f93c7";
    let pki = Pki::new();
    std::fs::write(pki.path("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(pki.path("token"), format!("{TOKEN}\n")).unwrap();
    let (db, _conn) = TestDb::seeded();
    let mut cfg = config(&db.path, SHORT_INTERVAL, 10);
    cfg.net.tls = Some(pki.files());
    cfg.net.auth.token = skillmon::server::auth::Secret::new(TOKEN);
    let server = start(cfg).await;
    let url = format!("wss://localhost:{}/ws", server.addr.port());
    let home = tempfile::tempdir().unwrap();
    let ca = pki.path("ca.pem").display().to_string();
    let token = pki.path("token").display().to_string();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    let out = run_in(
        home.path(),
        &[
            "watch",
            &url,
            "--once",
            "--ca-cert",
            &ca,
            "--token-file",
            &token,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    for skill in ["gamma", "alpha", "beta", "delta"] {
        assert!(table.contains(skill), "{table}");
    }
    assert!(!table.contains(TOKEN) && !text(&out.stderr).contains(TOKEN));

    // Without the CA: a certificate error, no data.
    let out = run_in(
        home.path(),
        &["watch", &url, "--once", "--token-file", &token],
    )
    .await;
    assert!(!out.status.success());
    let err = text(&out.stderr).to_lowercase();
    assert!(err.contains("certificate"), "{err}");
    // Without the token: refused, with the fix.
    let out = run_in(home.path(), &["watch", &url, "--once", "--ca-cert", &ca]).await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("--token-file"), "{err}");
    // Plain ws:// to the TLS port: the server's reason, so the user knows
    // to switch to wss://.
    let plain = format!("ws://localhost:{}/ws", server.addr.port());
    let out = run_in(home.path(), &["watch", &plain, "--once"]).await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("HTTP 400") && err.contains("wss://"), "{err}");
    server.stop().await.unwrap();
}
