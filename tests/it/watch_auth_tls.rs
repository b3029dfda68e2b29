//! `skillmon watch` across a network, as a user runs it: a token for a
//! session-buddy server with its JWT auth on (first frame, HS256), `wss://`
//! with a private CA, and the messages when either is missing. The servers
//! are written here (real sockets, certificates made with rcgen, JWTs
//! minted with jsonwebtoken), independent of `skillmon serve`.
// tungstenite's header callback must return its (large) `ErrorResponse`.
#![allow(clippy::result_large_err)]

use crate::support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::*;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const SECRET: &[u8] = b"test-secret-of-session-buddy";
const FIX: &str = "the server requires a token: pass --token-file or set SKILLMON_TOKEN";

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    user_id: String,
    permissions: Vec<String>,
    exp: u64,
    iat: u64,
}

fn mint_jwt() -> String {
    let now = chrono::Utc::now().timestamp() as u64;
    let claims = Claims {
        user_id: "alice".into(),
        permissions: vec!["session-buddy:read".into()],
        exp: now + 600,
        iat: now,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .expect("mint a JWT")
}

fn jwt_ok(token: &str) -> bool {
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<Claims>(token, &jsonwebtoken::DecodingKey::from_secret(SECRET), &v)
        .is_ok()
}

/// What an auth server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    authorization: Mutex<Vec<Option<String>>>,
}

/// session-buddy with `SESSION_BUDDY_JWT_SECRET` set: the first frame must
/// be `{"token": JWT}` within 5 s, else close 4001 "Authentication failed";
/// then `connected` (authenticated) and an update every 100 ms.
async fn jwt_server() -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            s.connections.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            tokio::spawn(async move {
                let cb = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    s.authorization
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(auth);
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await else {
                    return;
                };
                let first = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
                let token = match first {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        serde_json::from_str::<serde_json::Value>(t.as_str())
                            .ok()
                            .and_then(|v| {
                                v.get("token").and_then(|t| t.as_str()).map(str::to_owned)
                            })
                    }
                    _ => None,
                };
                if !token.as_deref().is_some_and(jwt_ok) {
                    let _ = ws
                        .close(Some(CloseFrame {
                            code: CloseCode::from(4001),
                            reason: "Authentication failed".into(),
                        }))
                        .await;
                    return;
                }
                let hello = "{\"type\": \"connected\", \"message\": \"Connected to Session Buddy real-time metrics\", \"authenticated\": true, \"timestamp\": \"2026-11-22T02:39:04.515314+00:00\"}";
                if ws.send(Message::text(hello)).await.is_err() {
                    return;
                }
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if ws
                        .send(Message::text(python_update(SB_SKILLS, true)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

fn write_token(dir: &Path, token: &str) -> std::path::PathBuf {
    let p = dir.join("token");
    std::fs::write(&p, format!("{token}\n")).expect("write token");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_in_the_first_frame_gets_data_and_never_reaches_the_log() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, seen) = jwt_server().await;
    let jwt = mint_jwt();
    let token_file = write_token(home.path(), &jwt);
    let log = home.path().join("watch.log");
    let mut c = command(home.path());
    c.env("SKILLMON_LOG", "trace").args([
        "watch",
        &url,
        "--once",
        "--token-file",
        token_file.to_str().expect("utf8 path"),
        "--log-file",
        log.to_str().expect("utf8 path"),
    ]);
    let out = output(c).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("pytest-run"), "{stdout}");
    assert!(stdout.contains("93.3%"), "{stdout}");
    // The same token also went as a Bearer header on the upgrade.
    let auth = seen.authorization.lock().expect("lock").clone();
    assert_eq!(auth, vec![Some(format!("Bearer {jwt}"))]);
    // Not in any output, not in the (trace-level) log.
    let log_text = std::fs::read_to_string(&log).expect("log file");
    assert!(
        log_text.contains("sending a token (from file"),
        "{log_text}"
    );
    let signature = jwt.rsplit('.').next().expect("signature");
    for (what, text) in [
        ("log", &log_text[..]),
        ("stdout", &stdout),
        ("stderr", &stderr),
    ] {
        assert!(
            !text.contains(signature),
            "the token is in the {what}: {}",
            text.lines()
                .filter(|l| l.contains(signature))
                .map(|l| &l[..l.len().min(400)])
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_close_4001_stops_with_the_fix() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, seen) = jwt_server().await;
    let mut c = command(home.path());
    c.args(["watch", &url, "--json"]);
    let out = output(c).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("4001"), "{stderr}");
    assert!(stderr.contains(FIX), "{stderr}");
    assert!(stderr.contains("not retrying"), "{stderr}");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);

    // A wrong token: the fix names where the token came from.
    let mut c = command(home.path());
    c.env("SKILLMON_TOKEN", "not.a.jwt")
        .args(["watch", &url, "--once"]);
    let out = output(c).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refused the token from env SKILLMON_TOKEN"),
        "{stderr}"
    );
    assert!(!stderr.contains("not.a.jwt"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_401_on_the_upgrade_stops_with_the_fix() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let n = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            n.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let cb = |_: &Request, _: Response| -> Result<Response, ErrorResponse> {
                    Err(tokio_tungstenite::tungstenite::http::Response::builder()
                        .status(401)
                        .header("WWW-Authenticate", "Bearer")
                        .body(Some("token required".into()))
                        .expect("response"))
                };
                let _ = tokio_tungstenite::accept_hdr_async(stream, cb).await;
            });
        }
    });
    let home = tempfile::tempdir().expect("tempdir");
    let mut c = command(home.path());
    c.args(["watch", &url, "--json"]);
    let out = output(c).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(stderr.contains(FIX), "{stderr}");
    assert_eq!(count.load(Ordering::SeqCst), 1, "no retry after a 401");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_config_names_the_token_source_never_the_value() {
    let home = tempfile::tempdir().expect("tempdir");
    let file = write_token(home.path(), "file-secret-value");
    let mut c = command(home.path());
    c.env("SKILLMON_TOKEN", "env-secret-value").args([
        "watch",
        "--print-config",
        "--token-file",
        file.to_str().expect("utf8 path"),
    ]);
    let out = output(c).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("token set (from file)"), "{stdout}");
    assert!(stdout.contains(file.to_str().expect("utf8")), "{stdout}");
    assert!(stdout.contains("max_frame = \"4 MiB\""), "{stdout}");

    let mut c = command(home.path());
    c.env("SKILLMON_TOKEN", "env-secret-value")
        .args(["watch", "--print-config"]);
    let out = output(c).await;
    let stdout2 = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout2.contains("token: set (from env SKILLMON_TOKEN)"),
        "{stdout2}"
    );
    for text in [&stdout, &stdout2] {
        assert!(!text.contains("secret-value"), "{text}");
    }

    // The config file's `token_file` is relative to the config file.
    let cfg = home.path().join("config").join("skillmon");
    std::fs::create_dir_all(&cfg).expect("mkdir");
    std::fs::write(cfg.join("config.toml"), "token_file = \"tok\"\n").expect("config");
    let out = run_ok(home.path(), &["watch", "--print-config"]).await;
    let stdout3 = String::from_utf8_lossy(&out.stdout);
    let expected = cfg.join("tok");
    assert!(
        stdout3.contains(&format!("token_file = \"{}\"  # file", expected.display())),
        "{stdout3}"
    );
}

/// A test CA and a certificate for `localhost` signed by it, as PEM.
struct TestPki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    /// The same name and CA, valid only in 2000.
    expired_pem: String,
}

fn make_pki() -> TestPki {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "skillmon test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let cert = params.signed_by(&key, &*ca).expect("sign");
    let mut old = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    old.not_before = rcgen::date_time_ymd(2000, 1, 1);
    old.not_after = rcgen::date_time_ymd(2000, 12, 31);
    let expired = old.signed_by(&key, &*ca).expect("sign");
    TestPki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        expired_pem: expired.pem(),
    }
}

/// A `wss://` server (tokio-rustls + tokio-tungstenite) sending `connected`
/// and an update every 100 ms; counts TLS connections attempted.
async fn tls_server(pki: &TestPki, cert_pem: &str) -> (u16, Arc<AtomicUsize>) {
    use rustls_pki_types::pem::PemObject as _;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("cert");
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let n = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            n.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                let hello = "{\"type\": \"connected\", \"message\": \"hi\", \"authenticated\": false, \"timestamp\": \"2026-11-22T02:39:04Z\"}";
                if ws.send(Message::text(hello)).await.is_err() {
                    return;
                }
                loop {
                    if ws
                        .send(Message::text(python_update(SB_SKILLS, false)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
    });
    (port, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_a_private_ca_works_and_without_it_fails_naming_the_host() {
    let pki = make_pki();
    let (port, count) = tls_server(&pki, &pki.cert_pem).await;
    let home = tempfile::tempdir().expect("tempdir");
    let ca = home.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("write ca");
    let url = format!("wss://localhost:{port}/ws");

    let out = run_ok(
        home.path(),
        &[
            "watch",
            &url,
            "--once",
            "--ca-cert",
            ca.to_str().expect("utf8"),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("pytest-run"), "{stdout}");

    // Without the CA: a certificate message naming the host, no retry.
    let before = count.load(Ordering::SeqCst);
    let mut c = command(home.path());
    c.args(["watch", &url, "--json"]);
    let out = output(c).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("TLS certificate of localhost not accepted: unknown issuer"),
        "{stderr}"
    );
    assert!(stderr.contains("--ca-cert"), "{stderr}");
    assert_eq!(count.load(Ordering::SeqCst) - before, 1, "no retry");

    // The right CA but a name the certificate does not list.
    let url_ip = format!("wss://127.0.0.1:{port}/ws");
    let (status, stderr) = once_with_ca(home.path(), &url_ip, &ca).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("TLS certificate of 127.0.0.1 not accepted: not valid for the name"),
        "{stderr}"
    );

    // The right CA and name, but expired.
    let (old_port, _) = tls_server(&pki, &pki.expired_pem).await;
    let (status, stderr) =
        once_with_ca(home.path(), &format!("wss://localhost:{old_port}"), &ca).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("TLS certificate of localhost not accepted: expired"),
        "{stderr}"
    );

    // A CA file that is not one stops before connecting, naming the file.
    let bad = home.path().join("bad.pem");
    std::fs::write(&bad, "hello\n").expect("write");
    let (status, stderr) = once_with_ca(home.path(), &url, &bad).await;
    assert!(!status.success());
    assert!(stderr.contains("bad.pem"), "{stderr}");
}

/// A self-signed certificate made as a CA (what a bare `openssl req -x509`
/// gives) used as the server's own: refused, with the fix named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_certificate_as_the_servers_own_is_explained() {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("self-signed");
    let pki = TestPki {
        ca_pem: cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        expired_pem: String::new(),
    };
    let (port, _) = tls_server(&pki, &pki.cert_pem).await;
    let home = tempfile::tempdir().expect("tempdir");
    let ca = home.path().join("cert.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("write");
    let (status, stderr) =
        once_with_ca(home.path(), &format!("wss://localhost:{port}/ws"), &ca).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("a CA certificate"), "{stderr}");
    assert!(stderr.contains("CA:FALSE"), "{stderr}");
}

/// `watch URL --once --ca-cert CA` in `home`: its exit status and stderr.
async fn once_with_ca(home: &Path, url: &str, ca: &Path) -> (std::process::ExitStatus, String) {
    let mut c = command(home);
    c.args([
        "watch",
        url,
        "--once",
        "--ca-cert",
        ca.to_str().expect("utf8"),
    ]);
    let out = output(c).await;
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
